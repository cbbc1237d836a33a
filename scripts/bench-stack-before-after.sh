#!/usr/bin/env bash
# Section 5 of BENCHMARKS.md before and after a change, in one run: the skewed mix
# (crates/limiter-core/examples/skewed_mix.rs: the `issue` workload with the full local
# stack `all` and with leases only, limitador's `peer` workload with `all`) and the HTTP
# demo on Redis with the local layer (examples/demo.rs and config/demo.yaml of each tree,
# wrk -t1 -c64 with skewed client addresses), built from a git rev (in a temporary
# checkout) and from this tree, measured in alternating rounds on one Redis.
#   ROUNDS=3 SECS=6 BEFORE_TARGET=/tmp/before bash scripts/bench-stack-before-after.sh fc502a8
# Prints two markdown tables of medians, with the median of the per-round ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
. scripts/bench-lib.sh
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
REV=${1:?usage: bench-stack-before-after.sh <git rev>}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-6}
ROUTE=${ROUTE:-/catalog}
redis_port=${REDIS_PORT:-6395}
http_port=${HTTP_PORT:-3918}
tmp=$(mktemp -d)
cleanup() {
  kill "$(cat "$tmp/redis.pid" 2>/dev/null)" 2>/dev/null || true
  git worktree remove --force "$tmp/src" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

git worktree add -q --detach "$tmp/src" "$REV"
build() { # source dir, target dir
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo build --release -q --example demo \
    && CARGO_TARGET_DIR="$2" cargo build --release -q -p limiter-core --example skewed_mix)
}
before_target=${BEFORE_TARGET:-$tmp/target}
after_target=$(realpath "${CARGO_TARGET_DIR:-target}")
build "$tmp/src" "$before_target"
build . "$after_target"
declare -A tree=([before]="$tmp/src" [after]="$PWD")
declare -A bin=([before]="$before_target/release/examples" [after]="$after_target/release/examples")

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "$tmp/redis.pid" >/dev/null
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
url="redis://127.0.0.1:$redis_port"

# wrk prints latencies as 850.00us, 1.20ms or 1.02s.
to_ms() { awk '/us$/ { printf "%.3f", $1 / 1000; next } /ms$/ { printf "%.3f", $1 + 0; next }
  /s$/ { printf "%.3f", $1 * 1000 }'; }
field() { grep -m1 -oE "(^| )$1=[^ ]+" "$2" | cut -d= -f2; }
skewed() { # which workload mode round
  redis-cli -p "$redis_port" flushall >/dev/null
  "${bin[$1]}/skewed_mix" "$url" "$SECS" "$3" "$2" >"$tmp/$1.$2-$3.$4"
}
http() { # which round
  local pid r t0 t1
  redis-cli -p "$redis_port" flushall >/dev/null
  (cd "${tree[$1]}" && REDIS_URL="$url" exec "${bin[$1]}/demo" --config config/demo.yaml \
    --listen "127.0.0.1:$http_port") >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$http_port$ROUTE" && break; sleep 0.1; done
  t0=$(cpu_ticks "$pid")
  r=$(wrk -t1 -c64 -d"${SECS}s" --latency -s scripts/wrk/skewed-clients.lua \
    "http://127.0.0.1:$http_port$ROUTE" 2>&1)
  t1=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf 'rate=%s p50=%s p99=%s cpu=%s\n' "$(echo "$r" | awk '/Requests\/sec/{print $2}')" \
    "$(echo "$r" | awk '/ 50%/{print $2}' | to_ms)" "$(echo "$r" | awk '/ 99%/{print $2}' | to_ms)" \
    "$(cpu_per_request "$t0" "$t1" "$r")" >"$tmp/$1.http.$2"
}

cases="issue-all issue-leased peer-all"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="before after"; else order="after before"; fi
  for c in $cases http; do
    for which in $order; do
      echo "round $r: $c $which" >&2
      if [ "$c" = http ]; then http "$which" "$r"; else skewed "$which" "${c%-*}" "${c#*-}" "$r"; fi
    done
  done
done

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
med() { for f in "$tmp/$1".*; do field "$2" "$f"; done | tr -d 'ms%' | median; }
ratio() { # case field: the median of the per-round after / before ratios
  for r in $(seq "$ROUNDS"); do
    awk -v a="$(field "$2" "$tmp/after.$1.$r" | tr -d 'ms%')" \
      -v b="$(field "$2" "$tmp/before.$1.$r" | tr -d 'ms%')" 'BEGIN { printf "%.3f\n", a / b }'
  done | median
}
echo "skewed mix, $ROUNDS alternating rounds of ${SECS}s: medians; after / before is the median of the rounds' ratios"
echo
echo "| workload-stack | before decisions/s per instance | after | after / before | before p99 ms | after p99 ms | after: admitted / exact, over |"
echo "|---|---|---|---|---|---|---|"
for c in $cases; do
  last="$tmp/after.$c.$ROUNDS"
  echo "| $c | $(med "before.$c" per_instance) | $(med "after.$c" per_instance) | $(ratio "$c" per_instance) | $(med "before.$c" p99) | $(med "after.$c" p99) | $(field admitted "$last") / $(field exact "$last"), $(field over "$last") |"
done
echo
echo "HTTP demo on Redis with the local layer ($ROUTE, wrk -t1 -c64, skewed X-Forwarded-For)"
echo
echo "| tree | req/s | p50 | p99 | server CPU µs/request |"
echo "|---|---|---|---|---|"
for which in before after; do
  echo "| $which | $(med "$which.http" rate) | $(med "$which.http" p50) | $(med "$which.http" p99) | $(med "$which.http" cpu) |"
done
echo "after / before: req/s $(ratio http rate), CPU per request $(ratio http cpu)"
