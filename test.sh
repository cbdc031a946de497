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

step "all checks passed"
