#!/usr/bin/env bash
# Fuzzes limiter-tower's parsers of untrusted input (fuzz/: the YAML policy loader, the
# X-Forwarded-For/Forwarded parser, key composition, bearer token extraction, the W3C
# traceparent parser) with cargo-fuzz and libFuzzer, SECS seconds per target.
#
#   SECS=600 bash scripts/fuzz.sh              # every target, 10 minutes each
#   SECS=3600 bash scripts/fuzz.sh jwt         # one target
#
# cargo-fuzz needs nightly compiler features (-Zsanitizer=address); on the stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks them. cargo-fuzz is installed from crates.io when
# missing. Exit status: 0 when every target ran clean, 1 when a target crashed (the
# input is saved under fuzz/artifacts/<target>/ and named in the output), 2 when the
# fuzzer could not be installed or built; FUZZ_OPTIONAL=1 turns 2 into a warning and 0,
# for callers whose guarantee is the property tests.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh

SECS="${SECS:-60}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(policy_yaml client_ip compose_key jwt traceparent)

unavailable() {
  echo "fuzz: NOT RUN: $1" >&2
  if [ "${FUZZ_OPTIONAL:-0}" = 1 ]; then
    echo "fuzz: continuing without fuzzing (FUZZ_OPTIONAL=1); the property tests still ran" >&2
    exit 0
  fi
  exit 2
}

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz not found: installing it from crates.io" >&2
  cargo install cargo-fuzz --locked >&2 || unavailable "cargo install cargo-fuzz failed"
fi

cd fuzz
cargo fuzz build -O || unavailable "cargo fuzz build failed (see above)"

# The shipped policy files seed the loader's corpus (copies: ignored by git).
for file in ../config/*.yaml; do
  cp "$file" "corpus/policy_yaml/config-$(basename "$file")"
done

failed=()
for target in "${TARGETS[@]}"; do
  echo "fuzz: $target for ${SECS}s" >&2
  if ! cargo fuzz run -O "$target" -- -max_total_time="$SECS" -rss_limit_mb=2048 \
      -print_final_stats=1; then
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>)" >&2
  exit 1
fi
echo "fuzz: ${TARGETS[*]}: no crash in ${SECS}s each" >&2
