#!/usr/bin/env bash
# The HTTP layer and the in-memory store before and after a change, in one run: the
# examples bench_http (wrk -t1 -c64, MODE=allow and deny) and vs_governor are built from
# a git rev (in a temporary checkout) and from this tree, then measured in alternating
# rounds, so the machine's drift spreads over both.
#   RUNS=6 SECS=3 bash scripts/bench-before-after.sh b352fc0
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
. scripts/bench-lib.sh
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
REV=${1:?usage: bench-before-after.sh <git rev>}
RUNS=${RUNS:-6}
SECS=${SECS:-3}
tmp=$(mktemp -d)
cleanup() { git worktree remove --force "$tmp/src" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

git worktree add -q --detach "$tmp/src" "$REV"
build() { # source dir, target dir
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo build --release -q --example bench_http \
    && CARGO_TARGET_DIR="$2" cargo build --release -q -p limiter-core --example vs_governor)
}
build "$tmp/src" "${BEFORE_TARGET:-$tmp/target}"
build . "${CARGO_TARGET_DIR:-target}"
before=${BEFORE_TARGET:-$tmp/target}/release/examples
after=${CARGO_TARGET_DIR:-target}/release/examples

measure() { # label binary mode port
  local pid r t0 t1
  MODE=$3 PORT=$4 "$2" & pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$4/" && break; sleep 0.1; done
  t0=$(cpu_ticks "$pid")
  r=$(wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$4/" 2>&1)
  t1=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%s %s %s\n' "$1" "$(echo "$r" | awk '/Requests\/sec/{print $2}')" \
    "$(cpu_per_request "$t0" "$t1" "$r")"
}

rows=$tmp/rows
for round in $(seq "$RUNS"); do
  for mode in allow deny; do
    if [ $((round % 2)) = 1 ]; then
      measure "before-$mode" "$before/bench_http" "$mode" 18091 >>"$rows"
      measure "after-$mode" "$after/bench_http" "$mode" 18092 >>"$rows"
    else
      measure "after-$mode" "$after/bench_http" "$mode" 18092 >>"$rows"
      measure "before-$mode" "$before/bench_http" "$mode" 18091 >>"$rows"
    fi
  done
done

echo "HTTP, wrk -t1 -c64, $RUNS alternating rounds of ${SECS}s: medians"
echo
echo "| layer | before req/s | after req/s | after / before (median of per-round ratios) | before CPU µs/req | after CPU µs/req |"
echo "|---|---|---|---|---|---|"
awk '
  function median(a, k,   i, j, t) {
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  { split($1, p, "-"); n = ++count[$1]; rps[$1, n] = $2; cpu[$1, n] = $3 }
  END {
    split("allow deny", modes, " ")
    for (m = 1; m <= 2; m++) {
      mode = modes[m]; k = count["after-" mode]
      for (i = 1; i <= k; i++) {
        b[i] = rps["before-" mode, i]; a[i] = rps["after-" mode, i]; r[i] = a[i] / b[i]
        cb[i] = cpu["before-" mode, i]; ca[i] = cpu["after-" mode, i]
      }
      printf "| %s | %.0f | %.0f | %.3f | %.1f | %.1f |\n", mode, median(b, k), median(a, k),
        median(r, k), median(cb, k), median(ca, k)
    }
  }' "$rows"

echo
echo "In-memory store against governor (vs_governor 7), before, then after:"
"$before/vs_governor" 7
"$after/vs_governor" 7
