#!/usr/bin/env bash
# Runs the HTTP demo (examples/demo.rs) under config/demo.yaml on the embedded in-memory
# store; set REDIS_URL (REDIS_URL=redis://127.0.0.1:6379 bash scripts/demo.sh) to share
# budgets through Redis instead, with the file's store settings: its timeout, the local
# cache of denials, batching and leases for hot keys. Extra flags are passed on (e.g.
# --listen 0.0.0.0:3000). The file is watched: edit it and the limits change live.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
exec cargo run --release --example demo -- --config config/demo.yaml "$@"
