#!/usr/bin/env bash
# Cost of tracing on the Redis path: examples/bench_http.rs with MODE=redis (the layer,
# one global GCRA budget on a local redis-server) with TRACING=off (no subscriber),
# TRACING=info (a JSON subscriber at INFO: the DEBUG-level ratelimit.decide span is
# filtered out), TRACING=debug (the same with limiter_tower at DEBUG: every span created
# and its fields formatted), TRACING=events (also one JSON line per decision, at span
# close; written to a sink) and TRACING=otlp (the project's OpenTelemetry setup: every
# decision's span exported over OTLP/HTTP to examples/otlp_count.rs, a collector stand-in
# on 127.0.0.1 that counts the spans it receives) and TRACING=sink (logs at INFO, and every
# decision exported as a span by limiter::telemetry::decisions, without the SDK, to the
# same stand-in), each run twice, interleaved, with the
# same wrk settings: wrk -t1 -c${CONNS:-32} -d${SECS:-8}s. Prints one table row per run;
# for otlp, the spans the stand-in received against the requests served (wrk's and the
# readiness probe's).
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
CPORT=${CPORT:-14318}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -q --features otel --example bench_http --example otlp_count
BIN="$TARGET/release/examples/bench_http"
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "/tmp/bench-tracing-$RPORT.pid" >/dev/null
PORT=$CPORT "$TARGET/release/examples/otlp_count" & collector=$!
trap 'kill "$(cat /tmp/bench-tracing-$RPORT.pid)" 2>/dev/null || true; kill "$collector" 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
for _ in $(seq 50); do curl -s -o /dev/null "127.0.0.1:$CPORT/count" && break; sleep 0.1; done

. scripts/bench-lib.sh

spans_received() { curl -s "127.0.0.1:$CPORT/count"; }

measure() { # tracing run
  local tracing=$1 run=$2 pid r spans0 spans=""
  spans0=$(spans_received)
  REDIS_URL="redis://127.0.0.1:$RPORT" MODE=redis TRACING=$tracing PORT=$PORT \
    OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$CPORT" "$BIN" & pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$PORT/" && break; sleep 0.1; done
  local before after
  before=$(cpu_ticks "$pid")
  r=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$PORT/" 2>&1)
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true # SIGTERM: the otlp mode flushes
  if [ "$tracing" = otlp ] || [ "$tracing" = sink ]; then
    spans="$(($(spans_received) - spans0)) of $(($(echo "$r" | awk '/requests in/{print $1}') + 1))"
  fi
  printf '| %-8s | %s | %10s | %8s | %8s | %8s | %6s | %s |\n' "$tracing" "$run" \
    "$(echo "$r" | awk '/Requests\/sec/{print $2}')" \
    "$(echo "$r" | awk '/ 50%/{print $2}')" "$(echo "$r" | awk '/ 99%/{print $2}')" \
    "$(echo "$r" | awk '/Non-2xx/{print $NF}')" "$(cpu_per_request "$before" "$after" "$r")" \
    "$spans"
}

echo "| tracing  | run |      req/s |      p50 |      p99 | non-2xx | server CPU µs/request | spans received of requests |"
echo "|---|---|---|---|---|---|---|---|"
for run in $(seq "${RUNS:-2}"); do
  for tracing in ${MODES:-off info debug events otlp sink}; do
    measure "$tracing" "$run"
  done
done
