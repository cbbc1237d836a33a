#!/usr/bin/env bash
# The HTTP demo (examples/demo.rs, config/demo.yaml) on Redis with the local layer
# (batching, leases, the denial cache: the file's store settings) against the same demo
# on its in-memory store, with wrk and skewed client addresses (scripts/wrk/
# skewed-clients.lua: 80% of requests from 1,000 clients, 20% from 100,000, sent as
# X-Forwarded-For through the trusted 127.0.0.1), in alternating rounds.
#   ROUNDS=3 SECS=8 ROUTE=/public bash scripts/bench-demo-redis.sh
#   CONNS=1 ROUTE=/catalog bash scripts/bench-demo-redis.sh     # one request at a time
# Prints one markdown table: per store the median req/s, p50, p99, the share of 429s
# and server CPU per request, then the median of the per-round ratios Redis / memory.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
SECS=${SECS:-8}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
ROUTE=${ROUTE:-/public}
redis_port=${REDIS_PORT:-6394}
http_port=${HTTP_PORT:-3917}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -q --example demo
. scripts/bench-lib.sh
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "/tmp/bench-demo-redis-$redis_port.pid" >/dev/null
out=$(mktemp -d)
trap 'kill $(cat /tmp/bench-demo-redis-'"$redis_port"'.pid) 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

measure() { # store round
  local pid r before after
  if [ "$1" = redis ]; then
    redis-cli -p "$redis_port" flushall >/dev/null
    REDIS_URL="redis://127.0.0.1:$redis_port" "$TARGET/release/examples/demo" \
      --config config/demo.yaml --listen "127.0.0.1:$http_port" >/dev/null 2>&1 &
  else
    "$TARGET/release/examples/demo" --config config/demo.yaml \
      --listen "127.0.0.1:$http_port" >/dev/null 2>&1 &
  fi
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$http_port$ROUTE" && break; sleep 0.1; done
  before=$(cpu_ticks "$pid")
  r=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s scripts/wrk/skewed-clients.lua \
    "http://127.0.0.1:$http_port$ROUTE" 2>&1)
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local requests non2xx
  requests=$(echo "$r" | awk '/requests in/{print $1}')
  non2xx=$(echo "$r" | awk '/Non-2xx/{print $NF}')
  printf '%s %s %s %s %s\n' \
    "$(echo "$r" | awk '/Requests\/sec/{print $2}')" \
    "$(echo "$r" | awk '/ 50%/{print $2}')" "$(echo "$r" | awk '/ 99%/{print $2}')" \
    "$(awk -v n="${non2xx:-0}" -v t="$requests" 'BEGIN { printf "%.1f%%", 100 * n / t }')" \
    "$(cpu_per_request "$before" "$after" "$r")" >"$out/$1.$2"
}

ratios=()
for r in $(seq "$ROUNDS"); do
  # Alternate which store goes first, so that the machine's drift spreads over both.
  if [ $((r % 2)) = 1 ]; then order="memory redis"; else order="redis memory"; fi
  for store in $order; do echo "round $r: $store" >&2; measure "$store" "$r"; done
  ratios+=("$(awk -v a="$(cut -d' ' -f1 "$out/redis.$r")" -v b="$(cut -d' ' -f1 "$out/memory.$r")" \
    'BEGIN { printf "%.3f", a / b }')")
done
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
col() { for f in "$out/$1".*; do cut -d' ' -f"$2" "$f"; done | median; }
echo "| demo store ($ROUTE, wrk -t1 -c$CONNS, skewed X-Forwarded-For) | req/s | p50 | p99 | 429s | server CPU µs/request |"
echo "|---|---|---|---|---|---|"
for store in memory redis; do
  echo "| $store | $(col "$store" 1) | $(col "$store" 2) | $(col "$store" 3) | $(col "$store" 4) | $(col "$store" 5) |"
done
echo "rounds' req/s ratios redis / memory: ${ratios[*]}; median $(printf '%s\n' "${ratios[@]}" | median)"
