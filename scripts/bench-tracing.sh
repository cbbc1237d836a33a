#!/usr/bin/env bash
# Cost of tracing on the Redis path: examples/bench_http.rs with MODE=redis (the layer,
# one global GCRA budget on a local redis-server) with TRACING=off (no subscriber),
# TRACING=info (a JSON subscriber at INFO: the DEBUG-level ratelimit.decide span is
# filtered out), TRACING=debug (the same with limiter_tower at DEBUG: every span created
# and its fields formatted) and TRACING=events (also one JSON line per decision, at span
# close; written to a sink), each run twice, interleaved, with the same wrk settings:
# wrk -t1 -c${CONNS:-32} -d${SECS:-8}s. Prints one table row per run.
#   RUNS=5 SECS=4 bash scripts/bench-tracing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
SECS=${SECS:-8}
CONNS=${CONNS:-32}
RPORT=${RPORT:-6397}
PORT=${PORT:-18091}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -q --example bench_http
BIN="$TARGET/release/examples/bench_http"
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "/tmp/bench-tracing-$RPORT.pid" >/dev/null
trap 'kill "$(cat /tmp/bench-tracing-$RPORT.pid)" 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

. scripts/bench-lib.sh

measure() { # tracing run
  local tracing=$1 run=$2 pid r
  REDIS_URL="redis://127.0.0.1:$RPORT" MODE=redis TRACING=$tracing PORT=$PORT "$BIN" & pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$PORT/" && break; sleep 0.1; done
  local before after
  before=$(cpu_ticks "$pid")
  r=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$PORT/" 2>&1)
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '| %-8s | %s | %10s | %8s | %8s | %8s | %6s |\n' "$tracing" "$run" \
    "$(echo "$r" | awk '/Requests\/sec/{print $2}')" \
    "$(echo "$r" | awk '/ 50%/{print $2}')" "$(echo "$r" | awk '/ 99%/{print $2}')" \
    "$(echo "$r" | awk '/Non-2xx/{print $NF}')" "$(cpu_per_request "$before" "$after" "$r")"
}

echo "| tracing  | run |      req/s |      p50 |      p99 | non-2xx | server CPU µs/request |"
echo "|---|---|---|---|---|---|---|"
for run in $(seq "${RUNS:-2}"); do
  measure off "$run"
  measure info "$run"
  measure debug "$run"
  measure events "$run"
done
