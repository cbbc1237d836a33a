#!/usr/bin/env bash
# What a two-phase decision (reserve an estimate, settle the actual) costs against a plain
# one, in one run: decisions/s and Redis commands per decision on each store
# (crates/limiter-core/examples/reserve_settle.rs, on a redis-server of its own), then
# over HTTP with streamed bodies (examples/bench_http.rs, MODE=*stream-*): requests/s
# and server CPU per request, plain and settled alternating for RUNS rounds.
#   RUNS=3 SECS=5 bash scripts/bench-reserve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
RUNS=${RUNS:-3}
SECS=${SECS:-5}
PORT=${PORT:-6498}
HTTP_PORT=${HTTP_PORT:-18083}
TARGET=${CARGO_TARGET_DIR:-target}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >/dev/null &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
export REDIS_URL=redis://127.0.0.1:$PORT

cargo build --release -q -p limiter-core --example reserve_settle
cargo build --release -q --example bench_http
. scripts/bench-lib.sh

echo "## Decisions (${SECS}s each, 64 callers on Redis, one on memory)"
"$TARGET/release/examples/reserve_settle" "$REDIS_URL" "$SECS" 64

measure() { # mode
  local pid r before after
  MODE=$1 PORT=$HTTP_PORT "$TARGET/release/examples/bench_http" & pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$HTTP_PORT/" && break; sleep 0.1; done
  before=$(cpu_ticks "$pid")
  r=$(wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$HTTP_PORT/" 2>&1)
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '| %-19s | %10s | %8s |\n' "$1" "$(echo "$r" | awk '/Requests\/sec/{print $2}')" \
    "$(cpu_per_request "$before" "$after" "$r")"
}

echo
echo "## HTTP, streamed bodies (wrk -t1 -c64 -d${SECS}s, $RUNS rounds)"
echo "| mode                | requests/s | server CPU us/request |"
echo "|---------------------|-----------:|---------:|"
for round in $(seq "$RUNS"); do
  if [ $((round % 2)) = 1 ]; then order="plain usage"; else order="usage plain"; fi
  for store in stream redis-stream; do
    for kind in $order; do measure "$store-$kind"; done
  done
done
