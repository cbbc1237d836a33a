#!/usr/bin/env bash
# Instructions per request, counted by callgrind: the HTTP layer against tower_governor
# with a measure this shared machine's noise does not move (its times drift by 20%
# between minutes, more than the layers differ). An instruction count is not a time: a
# cache miss, an atomic or a TSC read costs many cycles in one instruction, so read it
# next to the timed tables in BENCHMARKS.md.
#   bash scripts/bench-instructions.sh
# The identity layer is the route behind Router::layer with a layer that does nothing:
# axum's share of any layer's cost (it wraps and boxes each route's service again).
# Each server runs alone (examples/layer_overhead --only), once with one round of 50,000
# requests and once with two; the difference is one round's work, so set-up cancels out.
# Counted against us: valgrind runs code about 50x slower while the TSC keeps real time,
# so our clock's OS re-reads (natively once a millisecond) happen on most decisions.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
command -v valgrind >/dev/null || { apt-get update -q && apt-get install -y -q valgrind; }
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q --example layer_overhead
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

instructions() { # command... -> total instructions executed
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$@" >/dev/null 2>&1
  awk '/^totals:/ { print $2 }' "$tmp/out"
}
per_request() { # server -> instructions per request
  local one two
  one=$(instructions "$TARGET/release/examples/layer_overhead" 1 --only "$1")
  two=$(instructions "$TARGET/release/examples/layer_overhead" 2 --only "$1")
  echo $(((two - one) / 50000))
}

bare=$(per_request bare)
ours=$(per_request limiter-tower)
theirs=$(per_request tower_governor)
floor=$(per_request identity-layer)
echo "| server | instructions/request | added to bare | added to the identity layer |"
echo "|---|---|---|---|"
echo "| bare | $bare | 0 | |"
echo "| identity layer (axum's share) | $floor | $((floor - bare)) | 0 |"
echo "| limiter-tower | $ours | $((ours - bare)) | $((ours - floor)) |"
echo "| tower_governor | $theirs | $((theirs - bare)) | $((theirs - floor)) |"
echo
awk -v a=$((ours - bare)) -v b=$((theirs - bare)) \
  'BEGIN { printf "limiter-tower'\''s added instructions / tower_governor'\''s: %.2f\n", a / b }'
awk -v a=$((ours - floor)) -v b=$((theirs - floor)) \
  'BEGIN { printf "the same above the identity layer (each layer'\''s own work): %.2f\n", a / b }'
