#!/usr/bin/env bash
# Runs the whole test suite. Installs redis-server (the tests spawn their own servers on
# free loopback ports) and the Rust toolchain when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing it with apt-get" >&2
  apt-get update -q && apt-get install -y -q redis-server
fi
cargo test --workspace --all-features
