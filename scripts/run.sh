#!/usr/bin/env bash
# Sets up a fresh machine, builds mjpegd (release) and runs it. Extra arguments go to mjpegd, e.g.
#   bash scripts/run.sh --listen 127.0.0.1:8080 --fps 15
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --locked -p mjpegd -- "$@"
