#!/usr/bin/env bash
# A burst on one key over HTTP, before and after a change, in one run: the demo
# (examples/demo.rs) is built from a git rev (in a temporary checkout) and from this
# tree; each measurement starts a fresh redis-server and three demo instances sharing it,
# under one policy (a global budget of LIMIT per hour on /status, the store a new user
# would write: Redis with `leases: on`), then examples/flood.rs sends TOTAL requests over
# C connections spread over the three, all at once. Rounds alternate which tree goes
# first, so the machine's drift spreads over both.
#   ROUNDS=2 CONNS="64 200 600 2000" TOTAL=3000 LIMIT=1000 bash scripts/bench-flood.sh fc502a8
# The rev defaults to HEAD (this tree's uncommitted changes against its last commit).
# BEFORE_TARGET=dir keeps the rev's build between runs. Prints one markdown table of the
# medians over the rounds, with each round's admitted/limit in the last column.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }
REV=${1:-HEAD}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64 200 600 2000}
TOTAL=${TOTAL:-3000}
LIMIT=${LIMIT:-1000}
ROUTE=/status # a route of the demo; the policy below puts the burst's budget on it
TARGET=${CARGO_TARGET_DIR:-target}
# 2,000 connections take 2,000 descriptors on each side: as many as the hard limit allows.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d)
pids=()
stop() { # every process of the measurement, by its id
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
cleanup() {
  stop
  git worktree remove --force "$tmp/src" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "command: ROUNDS=$ROUNDS CONNS=\"$CONNS\" TOTAL=$TOTAL LIMIT=$LIMIT bash scripts/bench-flood.sh $REV"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc: $(nproc), fd limit: $(ulimit -n)"
echo "before: $REV ($(git rev-parse --short "$REV")), after: this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ", with uncommitted changes"))"
echo

git worktree add -q --detach "$tmp/src" "$REV"
before_target=${BEFORE_TARGET:-$tmp/target}
(cd "$tmp/src" && CARGO_TARGET_DIR="$before_target" cargo build --release -q --example demo)
cargo build --release -q --example demo --example flood
before_demo=$before_target/release/examples/demo
after_demo=$TARGET/release/examples/demo
flood=$TARGET/release/examples/flood

# What a new user writes: Redis with leases at their defaults (and the failure mode,
# breaker, batching and enumeration defence at theirs: no request here presents an
# identity, so the enumeration defence counts nothing). Each measurement has a fresh
# Redis, so every burst starts from a full budget.
cat >"$tmp/policy.yaml" <<EOF
store: { kind: redis, url: "\${REDIS_URL}", leases: on }
endpoints:
  - path: $ROUTE
    name: flood
    scopes: [global]
    limits: [{ name: hour, max: $LIMIT, window: 1h }]
EOF

used_ports=" "
free_port() { # a loopback port nothing listens on, below the ephemeral range
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    case $used_ports in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      used_ports="$used_ports$p "
      echo "$p"
      return
    fi
  done
}

await() { # what, log file, command...: polls the command, 10 s at most
  local what=$1 log=$2
  shift 2
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "$what did not come up; its log:" >&2
  tail -20 "$log" >&2
  exit 1
}

measure() { # tree demo-binary conns round
  local redis_port port i line targets=()
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    >"$tmp/redis.log" 2>&1 &
  pids+=($!)
  await redis "$tmp/redis.log" redis-cli -p "$redis_port" ping
  for i in 1 2 3; do
    port=$(free_port)
    REDIS_URL="redis://127.0.0.1:$redis_port" "$2" --config "$tmp/policy.yaml" \
      --listen "127.0.0.1:$port" >"$tmp/demo-$i.log" 2>&1 &
    pids+=($!)
    targets+=("127.0.0.1:$port")
  done
  # /metrics answers once the demo listens (after its store is connected), and is never
  # rate-limited: polling it leaves the budget whole.
  for i in 1 2 3; do
    await "demo $i" "$tmp/demo-$i.log" curl -sf -o /dev/null "http://${targets[i - 1]}/metrics"
  done
  line=$("$flood" --conns "$3" --total "$TOTAL" --limit "$LIMIT" --path "$ROUTE" "${targets[@]}")
  stop
  echo "round $4 $1 C=$3: $line" >&2
  echo "$1 $3 $4 $line" >>"$tmp/rows"
}

for round in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    if [ $((round % 2)) = 1 ]; then order="before after"; else order="after before"; fi
    for tree in $order; do
      if [ "$tree" = before ]; then demo=$before_demo; else demo=$after_demo; fi
      measure "$tree" "$demo" "$c" "$round"
    done
  done
done

echo
echo "Burst of $TOTAL requests on one global key (limit $LIMIT/h) over three demo instances"
echo "on one Redis (leases on), C connections: medians of $ROUNDS alternating rounds."
echo "degraded: responses with RateLimit-Degraded; shed: 503; errors: connection errors,"
echo "timeouts and other statuses; latency: request sent to response read, in ms."
echo
echo "| tree | connections | admitted/limit | degraded | shed | errors | p50 | p99 | p99.9 | admitted/limit per round |"
echo "|---|---|---|---|---|---|---|---|---|---|"
awk -v conns="$CONNS" '
  function median(a, k,   i, j, t) {
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  function col(name,   i, a) {
    for (i = 1; i <= n[key]; i++) a[i] = v[key, i, name]
    return median(a, n[key])
  }
  {
    key = $1 " " $2; i = ++n[key]
    for (f = 4; f <= NF; f++) { split($f, kv, "="); v[key, i, kv[1]] = kv[2] }
    rounds[key] = rounds[key] (i > 1 ? ", " : "") kv2(v[key, i, "admitted_per_limit"])
  }
  function kv2(x) { return sprintf("%.3f", x) }
  END {
    split(conns, cs, " ")
    for (c = 1; c in cs; c++) for (t = 1; t <= 2; t++) {
      key = (t == 1 ? "before" : "after") " " cs[c]
      if (!(key in n)) continue
      printf "| %s | %s | %.3f | %g | %g | %g | %.1f | %.1f | %.1f | %s |\n", \
        (t == 1 ? "before" : "after"), cs[c], col("admitted_per_limit"), col("degraded"), \
        col("shed"), col("errors"), col("p50_ms"), col("p99_ms"), col("p999_ms"), rounds[key]
    }
  }' "$tmp/rows"
