#!/usr/bin/env bash
# Instructions per request of the HTTP demo (examples/demo.rs, config/demo.yaml) on its
# in-memory store and on Redis with the file's local layer (batching, leases, the denial
# cache), counted by callgrind over every thread of the server: the measure of
# scripts/bench-demo-redis.sh's "server CPU per request" that this shared machine's noise
# does not move. Traffic: wrk -t1 -c8 with skewed client addresses
# (scripts/wrk/skewed-clients.lua). Each store runs twice under valgrind, wrk for
# ${SHORT:-4}s and for ${LONG:-12}s; the difference in instructions over the difference in
# requests is one request's work, set-up and shutdown cancelling out. Redis's own work is
# not counted (scripts/bench-script-cost.sh counts it).
# Under valgrind the server runs about SCALE (default 20) times slower than at full speed,
# so the address sets shrink by SCALE (HOT and TAIL of skewed-clients.lua): each client
# then sends at the rate it does at full speed, and leases, which live in wall-clock
# time, pay as they would there. SCALE=1 sends every hot client's requests too far apart
# for a lease to serve two of them: nearly every request becomes a Redis decision.
#   ROUTE=/catalog bash scripts/bench-demo-instructions.sh
#   BIN=/tmp/before/release/examples/demo bash scripts/bench-demo-instructions.sh  # another build
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
command -v valgrind >/dev/null || { apt-get update -q && apt-get install -y -q valgrind; }
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
ROUTE=${ROUTE:-/catalog}
SCALE=${SCALE:-20}
export HOT=$((1000 / SCALE)) TAIL=$((100000 / SCALE))
RPORT=${RPORT:-6396}
PORT=${PORT:-3918}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q --example demo
BIN=${BIN:-$TARGET/release/examples/demo}
tmp=$(mktemp -d)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" >/dev/null
trap 'kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

run() { # store seconds -> "instructions requests"
  local pid r
  redis-cli -p "$RPORT" flushall >/dev/null
  if [ "$1" = redis ]; then
    REDIS_URL="redis://127.0.0.1:$RPORT" valgrind --tool=callgrind \
      --callgrind-out-file="$tmp/out.$1" "$BIN" --config config/demo.yaml \
      --listen "127.0.0.1:$PORT" >/dev/null 2>&1 & pid=$!
  else
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out.$1" "$BIN" \
      --config config/demo.yaml --listen "127.0.0.1:$PORT" >/dev/null 2>&1 & pid=$!
  fi
  for _ in $(seq 300); do curl -s -o /dev/null "127.0.0.1:$PORT$ROUTE" && break; sleep 0.1; done
  r=$(wrk -t1 -c8 -d"$2s" -s scripts/wrk/skewed-clients.lua "http://127.0.0.1:$PORT$ROUTE" 2>&1)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [ -z "${KEEP:-}" ] || cp "$tmp/out.$1" "$KEEP.$1.$2"
  echo "$(awk '/^totals:/ { print $2 }' "$tmp/out.$1") $(echo "$r" | awk '/requests in/{print $1}')"
}

echo "| demo store ($ROUTE, wrk -t1 -c8, skewed X-Forwarded-For, $HOT + $TAIL clients) | instructions/request | vs memory |"
echo "|---|---|---|"
memory=""
for store in memory redis; do
  read -r i1 n1 <<<"$(run "$store" "${SHORT:-4}")"
  read -r i2 n2 <<<"$(run "$store" "${LONG:-12}")"
  per=$(((i2 - i1) / (n2 - n1)))
  [ -n "$memory" ] || memory=$per
  awk -v s="$store" -v p="$per" -v m="$memory" 'BEGIN { printf "| %s | %d | %.2fx |\n", s, p, p / m }'
done
