#!/usr/bin/env bash
# Sets up a fresh machine and runs every test of the workspace (unit, property and end-to-end tests against
# the real binary over real TCP).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --locked "$@"
