#!/usr/bin/env bash
# What a decision costs Redis itself: instructions per decision counted by callgrind on a
# dedicated redis-server (a measure this shared machine's noise does not move), and
# usec_per_call from INFO commandstats on a native one (a time: noisy). Plain is one
# decision per script call; batched, 64 callers through Batched (about 64 per call; 16
# for the two-window policy, whose larger calls outlast the client's response timeout
# under valgrind).
#   bash scripts/bench-script-cost.sh            # the working tree
#   bash scripts/bench-script-cost.sh main       # a git rev, built in a temporary checkout
# The rev is built with this tree's examples/script_cost.rs copied in (it uses only the
# public API). Decisions cycle over 1,000 warm keys whose limits are never reached.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
command -v valgrind >/dev/null || { apt-get update -q && apt-get install -y -q valgrind; }
REV=${1:-}
N_PLAIN=${N_PLAIN:-2000}
N_BATCHED=${N_BATCHED:-8000}
PORT=${PORT:-6497}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$REV" ]; then git worktree remove --force "$tmp/src" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

src=.
if [ -n "$REV" ]; then
  git worktree add -q --detach "$tmp/src" "$REV"
  cp crates/limiter-core/examples/script_cost.rs "$tmp/src/crates/limiter-core/examples/"
  src=$tmp/src
fi
# A rev builds into a target directory of its own (BEFORE_TARGET keeps it between runs):
# built into this tree's, its binary would stand in the place of this tree's, which cargo
# then finds fresh and does not copy there again.
target=${CARGO_TARGET_DIR:-$PWD/target}
[ -z "$REV" ] || target=${BEFORE_TARGET:-$tmp/target}
(cd "$src" && CARGO_TARGET_DIR=$target cargo build -q -p limiter-core --example script_cost)
client=$target/debug/examples/script_cost
cp "$client" "$tmp/client"

url=redis://127.0.0.1:$PORT
cli() { redis-cli -p "$PORT" "$@"; }
start() { # command... -> starts a redis-server on $PORT and waits for it
  "$@" redis-server --port "$PORT" --save '' --appendonly no >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do cli ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis-server did not start" >&2; exit 1
}
stop() { cli shutdown nosave >/dev/null 2>&1 || true; wait "${pids[-1]}" 2>/dev/null || true; }

usec_per_call() { # mode policy n callers -> usec_per_call of EVALSHA (warm keys)
  start
  "$tmp/client" "$url" "$1" "$2" "$3" "$4" >/dev/null
  cli config resetstat >/dev/null
  "$tmp/client" "$url" "$1" "$2" "$3" "$4" >/dev/null
  local stats calls
  stats=$(cli info commandstats | tr -d '\r' | grep '^cmdstat_evalsha:')
  calls=$(sed 's/^[^:]*:calls=\([0-9]*\).*/\1/' <<<"$stats")
  echo "$(sed 's/.*usec_per_call=\([0-9.]*\).*/\1/' <<<"$stats") $calls"
  stop
}
instructions() { # mode policy n callers -> instructions Redis executed for the second run
  start valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1.$2" \
    --dump-instr=no --collect-systime=no
  local pid=${pids[-1]}
  "$tmp/client" "$url" "$1" "$2" "$3" "$4" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$tmp/client" "$url" "$1" "$2" "$3" "$4" >/dev/null || { echo "the client failed" >&2; exit 1; }
  callgrind_control -d "$pid" >/dev/null 2>&1
  stop
  awk '/^(summary|totals):/ { print $2; exit }' "$tmp/cg.$1.$2.1"
}

echo "| mode | policy | decisions/call | instructions/decision | usec_per_call | us/decision |"
echo "|---|---|---|---|---|---|"
for mode in plain batched; do
  n=$N_PLAIN
  [ "$mode" = batched ] && n=$N_BATCHED
  for policy in gcra sliding2; do
    callers=64
    [ "$policy" = sliding2 ] && callers=16
    read -r usec calls < <(usec_per_call "$mode" "$policy" "$n" "$callers")
    total=$(instructions "$mode" "$policy" "$n" "$callers")
    awk -v t="$total" -v n="$n" -v c="$calls" -v u="$usec" -v m="$mode" -v p="$policy" \
      'BEGIN { printf "| %s | %s | %.1f | %d | %.2f | %.2f |\n", m, p, n / c, t / n, u, u * c / n }'
  done
done
