#!/usr/bin/env bash
# The whole test suite: set up (idempotently, same as a new user), check the charts, the
# compose files and scripts/run.sh, then run every test of the workspace (release profile:
# the build the set-up made is reused).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
export PATH="$ROOT/.tools/bin:$PATH"
bash "$ROOT/scripts/check-charts.sh"
bash "$ROOT/scripts/check-run.sh"
cargo test --release --workspace --locked "$@"
