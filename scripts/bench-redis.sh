#!/usr/bin/env bash
# Redis store throughput and latency at concurrency 1/16/64, with the peers in the same
# run: the one-Redis-core ceiling (redis-benchmark running a GCRA script) and
# rate-limiter-flexible (Node). Prints result lines; BENCHMARKS.md records them.
#   bash scripts/bench-redis.sh            (SECS=8 per level by default)
# The ceiling moves by a factor of two between minutes on a shared machine, so the script
# ends with ROUNDS (default 7) paired rounds: the peer's GCRA ceiling (the same
# redis-benchmark command redis-ceiling.sh runs) and ours at concurrency 64, back to back
# on one Redis, with the median of the per-round ratios.
# Ours runs twice at each step: with a one-thread client (THREADS=1, as the peers'
# clients are) and with a two-worker runtime (THREADS=2: its threads and Redis contend
# for the machine's two cores).
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
for threads in 1 2; do
  THREADS=$threads ./target/release/examples/redis_throughput "redis://127.0.0.1:$port" "$secs" 1,16,64 ceiling
  THREADS=$threads ./target/release/examples/redis_throughput "redis://127.0.0.1:$port" "$secs" 64 rlf
done

echo "== peer: rate-limiter-flexible (Node, ioredis)"
work=$(mktemp -d)
cp "$peers/rlf/package.json" "$peers/rlf/bench.js" "$work/"
(cd "$work" && npm install -q --no-audit --no-fund >/dev/null 2>&1 && PORT=$port SECS=$secs node bench.js)
rm -rf "$work"

echo "== paired rounds: the peer's GCRA ceiling (redis-benchmark -c 50 -P 16), then ours at concurrency 64"
sha=$(redis-cli -p "$port" SCRIPT LOAD "$(cat "$peers/gcra.lua")")
ratios1=()
ratios2=()
ours() {
  THREADS=$1 ./target/release/examples/redis_throughput "redis://127.0.0.1:$port" 3 64 ceiling |
    grep -oE 'conc=64: [0-9]+' | cut -d' ' -f2
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
for r in $(seq "${ROUNDS:-7}"); do
  ceiling=$(redis-benchmark -p "$port" -n 200000 -c 50 -r 10000 -P 16 -q \
    EVALSHA "$sha" 1 key:__rand_int__ 10000 990000 1 | tr '\r' '\n' |
    grep -oE '[0-9.]+ requests per second' | tail -1 | cut -d' ' -f1)
  one=$(ours 1)
  two=$(ours 2)
  r1=$(ratio "$one" "$ceiling")
  r2=$(ratio "$two" "$ceiling")
  ratios1+=("$r1")
  ratios2+=("$r2")
  echo "round $r: ceiling ${ceiling}/s, ours (1 thread) ${one}/s = $r1, ours (2 workers) ${two}/s = $r2"
done
echo "median ratio to the ceiling, 1-thread client: $(printf '%s\n' "${ratios1[@]}" | median)"
echo "median ratio to the ceiling, 2-worker client: $(printf '%s\n' "${ratios2[@]}" | median)"
