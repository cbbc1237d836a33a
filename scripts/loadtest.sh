#!/usr/bin/env bash
# The production load test (crates/loadtest): a 3-master + 3-replica Redis Cluster, N demo
# instances sharing one policy file, skewed open-loop traffic with a spike, faults (a
# master killed, a node stalled, one instance partitioned, memory pressure, a reload),
# a flood on one key, and CPU probes with tracing on and off; everything on loopback,
# torn down at the end or on Ctrl-C. Writes docs/loadtest.md and PNG charts into docs/.
#   bash scripts/loadtest.sh                                  # 3 instances, 1,500 req/s
#   bash scripts/loadtest.sh --instances 10 --rate 20000      # a 16-core machine
#   bash scripts/loadtest.sh --soak 30                        # docs/soak.md (SOAK_MIN=30)
# Flags are passed through: `--help`-like usage is printed for an unknown flag.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
# redis-server and redis-cli (the harness forms the cluster with redis-cli), the font the
# charts' text is drawn with, and unshare/mount (util-linux: each instance gets its own
# /etc/hosts in a private mount namespace; see crates/loadtest/README.md).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v unshare >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q && apt-get install -y -q "${need[@]}"
fi
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q --example demo
cargo build --release -q -p loadtest
# Many connections on each side (the flood opens hundreds).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec "$TARGET/release/loadtest" --demo "$TARGET/release/examples/demo" "$@"
