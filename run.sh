#!/usr/bin/env bash
# zplan's main job: sets up libtorch once (scripts/setup.sh), builds zplan in release mode and
# runs the default scenario suite (scenarios/default.ron). Extra arguments go to `zplan run`,
# e.g. `./run.sh --out runs/mine` or `./run.sh scenarios/other.ron`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
echo "==> setup (libtorch 2.11.0 from PyPI, cached per user)" >&2
./scripts/setup.sh >/dev/null
echo "==> cargo build --release (first build compiles libtorch bindings: a few minutes)" >&2
cargo build --release --bin zplan
echo "==> zplan run $*" >&2
exec target/release/zplan run "$@"
