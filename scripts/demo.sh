#!/usr/bin/env bash
# Runs the demo on the embedded in-memory store (set REDIS_URL to use Redis instead).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
exec cargo run --release -p limiter-core --example decisions -- "$@"
