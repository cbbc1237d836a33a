#!/usr/bin/env bash
# Redis memory per key: spawns a redis-server on a free port, runs KEYS unique keys
# (default 1,000,000) through the store under the default GCRA policy and a two-window
# sliding policy (crates/limiter-core/examples/redis_memory.rs), prints used_memory
# before/after and bytes per key, checks that sampled keys carry a TTL and waits for
# every key to expire. PROFILE=dev skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-6391}
dir=$(mktemp -d)
redis-server --port "$port" --save "" --appendonly no --dir "$dir" --daemonize yes --pidfile "$dir/pid"
trap 'kill "$(cat "$dir/pid")" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS_URL="redis://127.0.0.1:$port" cargo run --profile "${PROFILE:-release}" -q -p limiter-core --example redis_memory
