#!/usr/bin/env bash
# The whole zplan test suite, exactly what CI runs (.ci/run calls this script).
# Idempotent: sets up libtorch once (scripts/setup.sh), then formatting, lints and all tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
step() { echo "==> $*" >&2; }

step "setup (libtorch 2.11.0 from PyPI, cached per user)"
./scripts/setup.sh >/dev/null

step "zplan-sim must not depend on libtorch"
if cargo tree -p zplan-sim -e normal,build --prefix none | grep -Eq '^(tch|torch-sys) '; then
  echo "error: zplan-sim depends on tch/torch-sys" >&2; exit 1
fi

step "zplan-models builds without the simulator (feature sim off)"
cargo clippy -p zplan-models --no-default-features -- -D warnings

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace (unit, integration, doc tests)"
cargo test --workspace

step "Python bindings: maturin develop into the setup's venv, then pytest"
PY="${ZPLAN_PYTHON:-$(sed -n 's/^ZPLAN_PYTHON = { value = "\(.*\)", force.*/\1/p' .cargo/config.toml)}"
VIRTUAL_ENV="$("$PY" -c 'import sys; print(sys.prefix)')" \
  "$PY" -m maturin develop --quiet -m python/Cargo.toml >&2
"$PY" -m pytest -q -p no:cacheprovider python/tests

step "all checks passed"
