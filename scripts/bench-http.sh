#!/usr/bin/env bash
# Requests/s and p50/p99 latency of one axum hello route: bare, behind RateLimitLayer
# (in-memory store, one global GCRA budget) admitting everything and denying almost
# everything, and the same for tower_governor (../shared/bench/peers/tower-governor-http),
# all in one run with the same wrk settings: wrk -t1 -c64 -d${SECS:-8}s.
#   RUNS=5 SECS=4 bash scripts/bench-http.sh
# PAIR=allow measures only the two layers admitting everything, in alternating order
# (ours first in odd rounds, tower_governor first in even ones), for many short rounds:
# the closest comparison of the two that this machine's drift allows.
#   PAIR=allow RUNS=40 SECS=2 bash scripts/bench-http.sh
# PAIR=bare does the same with both binaries serving the bare route: a check that the
# two servers differ only by their layer (its ratio should be 1).
# PIN=1 gives each server one tokio worker pinned to CPU 1 and wrk CPU 0 (taskset): no
# thread migrates and none contends for the budget, so req/s is one core's cost per
# request, the layer's own work included. Combines with PAIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
SERVER_ON=() CLIENT_ON=()
if [ "${PIN:-}" = 1 ]; then
  [ "$(nproc)" -ge 2 ] || { echo "PIN=1 needs two CPUs" >&2; exit 1; }
  SERVER_ON=(env TOKIO_WORKER_THREADS=1 taskset -c 1) CLIENT_ON=(taskset -c 0)
fi
PEER=${PEER:-../shared/bench/peers/tower-governor-http}
SECS=${SECS:-8}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -q --example bench_http
OURS="$TARGET/release/examples/bench_http"
if [ -d "$PEER" ]; then
  PEER_TARGET=$(mktemp -d)
  CARGO_TARGET_DIR="$PEER_TARGET" cargo build --release -q --manifest-path "$PEER/Cargo.toml"
  THEIRS="$PEER_TARGET/release/tower-governor-http"
fi

. scripts/bench-lib.sh

measure() { # name binary mode port
  local name=$1 bin=$2 mode=$3 port=$4 pid r
  MODE=$mode PORT=$port "${SERVER_ON[@]}" "$bin" & pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$port/" && break; sleep 0.1; done
  local before after
  before=$(cpu_ticks "$pid")
  r=$("${CLIENT_ON[@]}" wrk -t1 -c64 -d"${SECS}s" --latency "http://127.0.0.1:$port/" 2>&1)
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '| %-23s | %10s | %8s | %8s | %8s | %6s |\n' "$name" \
    "$(echo "$r" | awk '/Requests\/sec/{print $2}')" \
    "$(echo "$r" | awk '/ 50%/{print $2}')" "$(echo "$r" | awk '/ 99%/{print $2}')" \
    "$(echo "$r" | awk '/Non-2xx/{print $NF}')" "$(cpu_per_request "$before" "$after" "$r")"
}

table=$(mktemp)
trap 'rm -rf "${PEER_TARGET:-}" "$table"' EXIT
{
echo "| server                  |      req/s |      p50 |      p99 | non-2xx | server CPU µs/request |"
echo "|---|---|---|---|---|---|"
# RUNS rounds, each measuring every server once, so that the machine's drift spreads
# over all of them.
for round in $(seq "${RUNS:-1}"); do
  if [ -n "${PAIR:-}" ]; then
    [ -n "${THEIRS:-}" ] || { echo "PAIR needs the peer at $PEER" >&2; exit 1; }
    case $PAIR in
      allow) mine="limiter-tower, allowed" peers="tower_governor, allowed" ;;
      bare) mine="bare" peers="tower_governor's bare" ;;
      *) echo "PAIR must be allow or bare, not $PAIR" >&2; exit 1 ;;
    esac
    if [ $((round % 2)) = 1 ]; then
      measure "$mine"  "$OURS" "$PAIR" 18082
      measure "$peers" "$THEIRS" "$PAIR" 18084
    else
      measure "$peers" "$THEIRS" "$PAIR" 18084
      measure "$mine"  "$OURS" "$PAIR" 18082
    fi
    continue
  fi
  measure "bare"                   "$OURS" bare  18081
  measure "limiter-tower, allowed" "$OURS" allow 18082
  measure "limiter-tower, denied"  "$OURS" deny  18083
  if [ -n "${THEIRS:-}" ]; then
    measure "tower_governor, allowed" "$THEIRS" allow 18084
    measure "tower_governor, denied"  "$THEIRS" deny  18085
  fi
done
} | tee "$table"

# Ratios of req/s within each round, then their median (and range) over the rounds.
echo
awk -F'|' '
  NR > 2 { name = $2; gsub(/^ +| +$/, "", name); rps[name, ++n[name]] = $3 + 0 }
  function median(a, k,   i, j, t) {
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  function ratio(label, top, bottom,   k, i, r, above) {
    k = n[top]; if (!k || !n[bottom]) return
    for (i = 1; i <= k; i++) { r[i] = rps[top, i] / rps[bottom, i]; above += r[i] > 1 }
    m = median(r, k)
    printf "%-44s %.3f (%.3f-%.3f over %d rounds, above 1 in %d)\n", label ":", m, r[1], r[k], k, above
  }
  END {
    ratio("limiter-tower allowed / bare", "limiter-tower, allowed", "bare")
    ratio("limiter-tower denied / bare", "limiter-tower, denied", "bare")
    ratio("tower_governor allowed / bare", "tower_governor, allowed", "bare")
    ratio("tower_governor denied / bare", "tower_governor, denied", "bare")
    ratio("limiter-tower / tower_governor, allowing", "limiter-tower, allowed", "tower_governor, allowed")
    ratio("limiter-tower / tower_governor, denying", "limiter-tower, denied", "tower_governor, denied")
    ratio("our bare server / tower_governor'"'"'s", "bare", "tower_governor'"'"'s bare")
  }' "$table"
