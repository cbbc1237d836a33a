#!/usr/bin/env bash
# Sourced by the HTTP bench scripts: server CPU per request, read from /proc.

# CPU time (user + system) the server process has used, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Server CPU microseconds per request: steadier than req/s on a shared, noisy machine,
# because it does not count the time the server waited for a core.
cpu_per_request() { # ticks_before ticks_after wrk_output
  local requests
  requests=$(echo "$3" | awk '/requests in/{print $1}')
  awk -v a="$1" -v b="$2" -v n="$requests" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { if (n > 0) printf "%.1f", (b - a) * 1e6 / hz / n; else print "-" }'
}
