#!/usr/bin/env bash
# Redis at in-memory speed: the local layer (Batched, Leased, DenialCache) against today's
# one-script-call-per-decision path, the in-memory store and limitador, in one run, on one
# Redis. Prints one markdown table; BENCHMARKS.md records it.
#   bash scripts/bench-leases.sh        (SECS=8 per run, ROUNDS=3 rounds, modes interleaved)
# Each figure is the median over the rounds; "x plain" divides by the median of today's
# path in the same workload. Workloads (crates/limiter-core/examples/skewed_mix.rs):
#   issue  two instances, 80% of requests from the top 1,000 users and 20% from 100,000,
#          6,000/min fixed + 100,000/h sliding window, 64 concurrent tasks
#   cold   one instance, every key new (uniform over 10M): what batching alone does
#   hot    one key, one task: a hot key under a lease against the in-memory store
#   peer   limitador's own skewed run (one instance, 100/min fixed window, 64 tasks),
#          with its AsyncRedisStorage and CachedRedisStorage (../shared/bench/peers)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-toolchain.sh
peers=${PEERS:-../shared/bench/peers}
port=${PORT:-6393}
secs=${SECS:-8}
rounds=${ROUNDS:-3}
command -v redis-server >/dev/null || { apt-get update -q && apt-get install -y -q redis-server; }

cargo build --release -q -p limiter-core --example skewed_mix
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "/tmp/bench-leases-$port.pid" >/dev/null
trap 'kill $(cat /tmp/bench-leases-'"$port"'.pid) 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

out=$(mktemp -d)
run() { # workload mode round
  local s=$secs
  [ "$1" = hot ] && s=3
  ./target/release/examples/skewed_mix "redis://127.0.0.1:$port" "$s" "$2" "$1" >"$out/$1.$2.$3"
}
field() { grep -m1 -oE "(^| )$1=[^ ]+" "$2" | cut -d= -f2; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
med() { # workload mode field
  for f in "$out/$1.$2".*; do field "$3" "$f"; done | tr -d 'ms%' | median
}

declare -A modes=([issue]="plain batched leased all" [cold]="plain batched" [hot]="memory leased" [peer]="plain all")
for r in $(seq "$rounds"); do
  for w in issue cold hot peer; do
    for m in ${modes[$w]}; do
      echo "round $r: $w $m" >&2
      run "$w" "$m" "$r"
    done
  done
done

echo "| workload | stack | decisions/s per instance | x plain | p50 ms | p99 ms | p99.9 ms | script calls per decision | Redis commands per decision | admitted / exact | over | RSS MB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for w in issue cold hot peer; do
  base=$(med "$w" "${modes[$w]%% *}" per_instance)
  for m in ${modes[$w]}; do
    rate=$(med "$w" "$m" per_instance)
    last="$out/$w.$m.$rounds"
    printf '| %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s / %s | %s | %s |\n' "$w" "$m" "$rate" \
      "$(awk -v a="$rate" -v b="$base" 'BEGIN { print a / b }')" \
      "$(med "$w" "$m" p50)" "$(med "$w" "$m" p99)" "$(med "$w" "$m" p999)" \
      "$(med "$w" "$m" calls_per_decision)" "$(med "$w" "$m" cmds_per_decision)" \
      "$(field admitted "$last")" "$(field exact "$last")" "$(field over "$last")" "$(field rss_mb "$last")"
  done
done

# limitador's storages on the same Redis, its own skewed run (one round: each storage
# runs under a time limit, its cached storage has stalled here before). Its run.sh finds
# the published crate in cargo's registry: fetched here first when it is not there yet.
mkdir -p /tmp/limitador-peer
cp -r "$peers/limitador/Cargo.toml" "$peers/limitador/src" /tmp/limitador-peer/
(cd /tmp/limitador-peer && cargo fetch -q)
PORT=$port SECS=$secs bash "$peers/limitador/run.sh" >"$out/limitador" 2>&1 || true
grep -E "skewed|accuracy" "$out/limitador" | while read -r line; do
  storage=$(echo "$line" | grep -oE '(Async|Cached)RedisStorage')
  if echo "$line" | grep -q accuracy; then
    echo "| peer | limitador $storage | accuracy: $(echo "$line" | grep -oE '[0-9]+ of 2000 allowed at limit 100') (two instances) |"
  else
    echo "| peer | limitador $storage | $(echo "$line" | grep -oE '[0-9]+ decisions/s' | cut -d' ' -f1) | | $(echo "$line" | grep -oE 'p50=[0-9.]+' | cut -d= -f2) | $(echo "$line" | grep -oE 'p99=[0-9.]+' | cut -d= -f2) | | | $(echo "$line" | grep -oE 'redis_cmds_per_decision=[0-9.]+' | cut -d= -f2) | allowed $(echo "$line" | grep -oE 'allowed=[0-9.]+%' | cut -d= -f2) | | |"
  fi
done
grep -E "stopped after" "$out/limitador" || true
rm -rf "$out"
