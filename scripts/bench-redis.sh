#!/usr/bin/env bash
# Redis store throughput and latency at concurrency 1/16/64, with the peers in the same
# run: the one-Redis-core ceiling (redis-benchmark running a GCRA script) and
# rate-limiter-flexible (Node). Prints result lines; BENCHMARKS.md records them.
#   bash scripts/bench-redis.sh            (SECS=8 per level by default)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
peers=${PEERS:-../shared/bench/peers}
port=${PORT:-6396}
secs=${SECS:-8}
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
  { apt-get update -q && apt-get install -y -q redis-server redis-tools; }

cargo build --release -q -p limiter-core --example redis_throughput

echo "== peer: one Redis core (redis-benchmark, $peers/redis-ceiling.sh)"
PORT=$((port + 1)) bash "$peers/redis-ceiling.sh"

redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "/tmp/bench-redis-$port.pid" >/dev/null
trap 'kill $(cat /tmp/bench-redis-'"$port"'.pid) 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "== ours: RedisStore, one multiplexed connection, 10k keys"
echo "   (ceiling workload: the quota of the peer's GCRA script; rlf workload: 100/min)"
./target/release/examples/redis_throughput "redis://127.0.0.1:$port" "$secs" 1,16,64 ceiling
./target/release/examples/redis_throughput "redis://127.0.0.1:$port" "$secs" 64 rlf

echo "== peer: rate-limiter-flexible (Node, ioredis)"
work=$(mktemp -d)
cp "$peers/rlf/package.json" "$peers/rlf/bench.js" "$work/"
(cd "$work" && npm install -q --no-audit --no-fund >/dev/null 2>&1 && PORT=$port SECS=$secs node bench.js)
rm -rf "$work"
