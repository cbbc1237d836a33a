#!/usr/bin/env bash
# Instructions per in-memory decision, ours and governor's, counted by callgrind for each
# case of examples/vs_governor.rs: a measure this shared machine's noise does not move.
# Each case runs alone (`--only`), once with one round of 200,000 checks and once with
# two; the difference is one round's work, so set-up cancels out. Only the checks are
# counted (the cases' closures): the clock's calibration at set-up runs for a time, not a
# number of instructions, and would otherwise leak into the difference.
#   bash scripts/bench-memory-instructions.sh [CASE...]   # default: every case
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p limiter-core --example vs_governor
bin=${BIN:-"$TARGET/release/examples/vs_governor"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

instructions() { # rounds case -> total instructions executed
  valgrind --tool=callgrind --toggle-collect='vs_governor::main::{{closure}}' \
    --callgrind-out-file="$tmp/out" "$bin" "$1" --only "$2" >"$tmp/stdout" 2>/dev/null
  awk '/^totals:/ { print $2 }' "$tmp/out"
}

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(0 1 2 3 4 5 6 7 8 9 10 11 12)
echo "| case | instructions/check |"
echo "|---|---|"
for c in "${cases[@]}"; do
  one=$(instructions 1 "$c")
  two=$(instructions 2 "$c")
  name=$(cut -d: -f1 "$tmp/stdout")
  echo "| $name | $(((two - one) / 200000)) |"
done
