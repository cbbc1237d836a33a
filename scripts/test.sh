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
# The fuzzer on top, when asked for (FUZZ_SECS=10: ten seconds per target). Off by default:
# installing cargo-fuzz and building its instrumented targets costs minutes for seconds of
# fuzzing; the property tests above check the same parsers on every run.
if [ -n "${FUZZ_SECS:-}" ]; then
  FUZZ_OPTIONAL=1 SECS="$FUZZ_SECS" bash scripts/fuzz.sh
fi
