#!/usr/bin/env bash
# Instructions per request of scripts/bench-tracing.sh's server (MODE=redis), per TRACING
# mode, counted by callgrind over every thread of the server (the OTLP exporter's
# included): a measure this shared machine's noise does not move. Each mode runs twice
# under valgrind, wrk for ${SHORT:-4}s and for ${LONG:-12}s (wrk -t1 -c8); the difference in
# instructions over the difference in requests is one request's work, set-up and shutdown
# cancelling out. An instruction count is not a time (a cache miss or a contended lock
# costs many cycles in one instruction): read it next to the timed table.
#   bash scripts/bench-tracing-instructions.sh
#   KEEP=/tmp/cg/tracing MODES="off sink" bash scripts/bench-tracing-instructions.sh  # keep the profiles
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
command -v valgrind >/dev/null || { apt-get update -q && apt-get install -y -q valgrind; }
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
RPORT=${RPORT:-6398}
PORT=${PORT:-18092}
CPORT=${CPORT:-14319}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -q --features otel --example bench_http --example otlp_count
BIN=${BIN:-$TARGET/release/examples/bench_http} # another build of it to compare
tmp=$(mktemp -d)
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" >/dev/null
PORT=$CPORT "$TARGET/release/examples/otlp_count" & collector=$!
trap 'kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true; kill "$collector" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 50); do curl -s -o /dev/null "127.0.0.1:$CPORT/count" && break; sleep 0.1; done

run() { # tracing seconds -> "instructions requests spans"
  local pid r spans0
  spans0=$(curl -s "127.0.0.1:$CPORT/count")
  REDIS_URL="redis://127.0.0.1:$RPORT" MODE=redis TRACING=$1 PORT=$PORT \
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$CPORT" \
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$BIN" >/dev/null 2>&1 & pid=$!
  for _ in $(seq 300); do curl -s -o /dev/null "127.0.0.1:$PORT/" && break; sleep 0.1; done
  r=$(wrk -t1 -c8 -d"$2s" "http://127.0.0.1:$PORT/" 2>&1)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [ -z "${KEEP:-}" ] || cp "$tmp/out" "$KEEP.$1.$2"
  echo "$(awk '/^totals:/ { print $2 }' "$tmp/out") $(echo "$r" | awk '/requests in/{print $1}') $(($(curl -s "127.0.0.1:$CPORT/count") - spans0))"
}

echo "| tracing | instructions/request | vs off | spans received (long run) of requests |"
echo "|---|---|---|---|"
off=""
for tracing in ${MODES:-off info debug otlp sink}; do
  read -r i1 n1 _ <<<"$(run "$tracing" "${SHORT:-4}")"
  read -r i2 n2 s2 <<<"$(run "$tracing" "${LONG:-12}")"
  per=$(((i2 - i1) / (n2 - n1)))
  [ -n "$off" ] || off=$per
  spans=""
  case $tracing in otlp | sink) spans="$s2 of $n2" ;; esac
  awk -v t="$tracing" -v p="$per" -v o="$off" -v s="$spans" \
    'BEGIN { printf "| %s | %d | %.2fx | %s |\n", t, p, p / o, s }'
done
