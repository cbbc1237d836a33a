//! docs/loadtest.md (or docs/soak.md): the command, the machine and the date, then the
//! measurements, the targets met or missed, and the capacity arithmetic, with the charts.

use std::fmt::Write as _;
use std::path::Path;

use crate::capacity::{cores_for, Costs, UTILIZATION};
use crate::charts::{Chart, ChartError, Series};
use crate::identities::{TAIL_USERS, TOP_SHARE};
use crate::record::Second;
use crate::sample::{self, Sample};
use crate::scenario::{Outcome, Probe};
use crate::schedule::Phase;

const P99_TARGET_MS: f64 = 5.0;
const P999_TARGET_MS: f64 = 20.0;
const REDIS_CPU_TARGET: f64 = 70.0;
const RSS_GROWTH_TARGET: f64 = 5.0;
/// The share of the tail identities drawn at which the working set counts as in.
const WORKING_SET_SHARE: f64 = 0.95;

/// The machine the run was on.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores (nproc), {model}")
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

/// CPU% of each node between consecutive samples: `series[node]` = [(t, %)].
fn redis_cpu(samples: &[Sample], nodes: usize) -> Vec<Vec<(f64, f64)>> {
    let mut series = vec![Vec::new(); nodes];
    for w in samples.windows(2) {
        let dt = w[1].t - w[0].t;
        for (n, points) in series.iter_mut().enumerate() {
            let a = w[0].nodes.get(n).cloned().flatten().map(|c| c.cpu_s);
            let b = w[1].nodes.get(n).cloned().flatten().map(|c| c.cpu_s);
            if let Some(r) = sample::rate(a, b, dt) {
                points.push((w[1].t, r * 100.0));
            }
        }
    }
    series
}

/// Commands/s of each node between consecutive samples.
fn redis_commands(samples: &[Sample], node: usize) -> Vec<f64> {
    let commands = |s: &Sample| {
        let counters = s.nodes.get(node)?.as_ref()?;
        Some(counters.commands as f64)
    };
    samples
        .windows(2)
        .filter_map(|w| sample::rate(commands(&w[0]), commands(&w[1]), w[1].t - w[0].t))
        .collect()
}

/// Cores used between consecutive samples: (t, instances, Redis, generator, other work
/// on the machine = busy − the three).
fn cpu_groups(samples: &[Sample]) -> Vec<[f64; 5]> {
    let sum = |xs: &[Option<f64>]| -> Option<f64> { xs.iter().copied().sum() };
    let redis = |s: &Sample| -> f64 { s.nodes.iter().flatten().map(|c| c.cpu_s).sum() };
    samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let dt = b.t - a.t;
            let inst = sample::rate(sum(&a.instance_cpu_s), sum(&b.instance_cpu_s), dt)?;
            // A node that stopped answering leaves the sum: count none for that second.
            let redis = if a.nodes.iter().flatten().count() == b.nodes.iter().flatten().count() {
                sample::rate(Some(redis(a)), Some(redis(b)), dt).unwrap_or(0.0)
            } else {
                0.0
            };
            let generator = sample::rate(a.generator_cpu_s, b.generator_cpu_s, dt)?;
            let busy = sample::rate(a.machine_busy_s, b.machine_busy_s, dt)?;
            let other = (busy - inst - redis - generator).max(0.0);
            Some([b.t, inst, redis, generator, other])
        })
        .collect()
}

fn cpu_section(md: &mut String, o: &Outcome) {
    let groups = cpu_groups(&o.samples);
    if groups.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## CPU by process group\n\nMean cores in use per phase, from /proc (the instances, this load generator, the machine) and `INFO cpu` (the Redis nodes); other: what the rest of the machine's work took (the machine is shared). {} cores in all.\n\n| phase | instances | Redis (6 nodes) | load generator | other work |\n|---|---|---|---|---|",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut names: Vec<&str> = Vec::new();
    for g in &groups {
        if let Some(p) = o.schedule.phase(g[0].floor() as u64) {
            if !names.contains(&p.name()) {
                names.push(p.name());
            }
        }
    }
    for name in names {
        let rows: Vec<&[f64; 5]> = groups
            .iter()
            .filter(|g| o.schedule.phase(g[0].floor() as u64).map(|p| p.name()) == Some(name))
            .collect();
        let col = |i: usize| mean(&rows.iter().map(|g| g[i]).collect::<Vec<_>>());
        let _ = writeln!(
            md,
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            col(1),
            col(2),
            col(3),
            col(4)
        );
    }
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Per-phase totals, in the schedule's order, as (name, seconds, totals); the phase with
/// the faults also without the seconds its faults disturbed.
fn phases(o: &Outcome) -> Vec<(String, u64, Second)> {
    let mut out: Vec<(String, u64, Second)> = Vec::new();
    let mut add = |name: String, second: &Second| match out.iter_mut().find(|(p, _, _)| *p == name)
    {
        Some((_, n, total)) => {
            *n += 1;
            total.add(second);
        }
        None => out.push((name, 1, second.clone())),
    };
    for (s, second) in o.seconds.iter().enumerate() {
        let Some(phase) = o.schedule.phase(s as u64) else {
            continue;
        };
        add(phase.name().to_string(), second);
        if phase == Phase::Faults && !disturbed(o, s as f64, s as f64 + 1.0) {
            add(
                format!("{}, outside the fault windows", phase.name()),
                second,
            );
        }
    }
    out
}

/// Whether `[from, to)` overlaps a fault's window.
fn disturbed(o: &Outcome, from: f64, to: f64) -> bool {
    o.windows.iter().any(|w| to > w.from && from < w.to)
}

/// The seconds overlapping `[from, to)`, added up.
fn during(o: &Outcome, from: f64, to: f64) -> Second {
    let mut total = Second::default();
    for (s, second) in o.seconds.iter().enumerate() {
        if (s as f64 + 1.0) > from && (s as f64) < to {
            total.add(second);
        }
    }
    total
}

/// Writes the report and the charts into `dir`; returns the report's path.
pub fn write(o: &Outcome, dir: &Path) -> Result<std::path::PathBuf, ReportError> {
    std::fs::create_dir_all(dir).map_err(ReportError::Io)?;
    let stem = match (o.args.soak_min, o.args.leases) {
        (Some(_), _) => "soak",
        (None, false) => "loadtest",
        (None, true) => "loadtest-leases",
    };
    let mut md = String::new();
    header(&mut md, o);
    let phases = phases(o);
    phase_table(&mut md, &phases);
    faults_section(&mut md, o);
    accuracy_section(&mut md, o);
    redis_section(&mut md, o);
    rss_section(&mut md, o);
    cpu_section(&mut md, o);
    if let Some(flood) = &o.flood {
        let ok = flood.admitted <= flood.limit && flood.degraded == 0;
        let _ = writeln!(
            md,
            "\n## Flood\n\n{} requests on one global key (limit {} per hour) over {} connections \
             spread over the instances, in {:.2} s, with Redis healthy: **{} admitted**, {} denied, \
             {} degraded, {} shed, {} errors. Admitted ≤ limit and zero degraded: {}.",
            flood.sent, flood.limit, flood.conns, flood.seconds, flood.admitted, flood.denied,
            flood.degraded, flood.shed, flood.errors, yes(ok)
        );
    }
    capacity_section(&mut md, o);
    let charts = draw_charts(o, dir, stem)?;
    let _ = writeln!(md, "\n## Charts\n");
    for (file, what) in charts {
        let _ = writeln!(md, "{what}:\n\n![{what}]({file})\n");
    }
    let path = dir.join(format!("{stem}.md"));
    std::fs::write(&path, md).map_err(ReportError::Io)?;
    Ok(path)
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing the report: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Chart(#[from] ChartError),
}

fn header(md: &mut String, o: &Outcome) {
    let title = match o.args.soak_min {
        Some(m) => format!("# Soak: {m} minutes of steady traffic"),
        None => "# Load test: instances over a Redis Cluster, with a spike and faults".into(),
    };
    let _ = writeln!(md, "{title}\n\nWritten by `crates/loadtest` (scripts/loadtest.sh) from the run it describes.\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| command | `{}` |", o.args.command);
    let _ = writeln!(md, "| machine | {} |", machine());
    let _ = writeln!(md, "| date | {} |", date());
    let _ = writeln!(
        md,
        "| load average (1, 5, 15 min) | {} at the start, {} at the end of the traffic: the machine is shared, and other work competes for its cores |",
        o.load.0, o.load.1
    );
    let _ = writeln!(
        md,
        "| setup | {} demo instances (release build), tracing {} (every decision's `ratelimit.decide` span recorded: `RUST_LOG=info,limiter_tower=debug`, JSON logs); a 3-master + 3-replica Redis Cluster ({}); store `redis_cluster` with leases {}, local cache 2,000 keys, failure mode, breaker and batching at their defaults |",
        o.args.instances,
        if o.args.tracing { "on" } else { "off" },
        redis_version(),
        if o.args.leases { "on" } else { "off" }
    );
    let _ = writeln!(
        md,
        "| traffic | open loop at {} req/s (warm-up at half, spike at twice), latency from each request's scheduled send time; 80% of requests from the top 1,000 users, 20% from 100,000 more; signed JWTs (HS256) and client addresses in `X-Forwarded-For`; `GET /users/{{id}}` 40%, `/me` 30%, `/catalog` 30% |",
        o.args.rate
    );
    let _ = writeln!(
        md,
        "| run | {:.0} s of traffic, {} requests scheduled |",
        o.run_s,
        o.schedule.total()
    );
}

fn redis_version() -> String {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("v="))
                .map(|v| format!("Redis {v}"))
        })
        .unwrap_or_else(|| "Redis".into())
}

fn phase_table(md: &mut String, phases: &[(String, u64, Second)]) {
    let _ = writeln!(
        md,
        "\n## Per phase\n\nLost: no answer within 2 s, a connection error, or a 5xx other than 503. Degraded: answers with `RateLimit-Degraded` (decided by the failure mode). Shed: 503.\n"
    );
    let _ = writeln!(md, "| phase | seconds | offered req/s | answered req/s | 2xx | 429 | degraded | shed | lost | p50 ms | p99 ms | p99.9 ms | p99 < 5 ms | p99.9 < 20 ms | zero lost |");
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for (phase, n, s) in phases {
        let secs = *n as f64;
        let _ = writeln!(
            md,
            "| {} | {n} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            phase,
            s.sent as f64 / secs,
            (s.sent - s.lost) as f64 / secs,
            s.ok,
            s.denied,
            s.degraded,
            s.shed,
            s.lost,
            s.ms(0.5),
            s.ms(0.99),
            s.ms(0.999),
            yes(s.ms(0.99) < P99_TARGET_MS),
            yes(s.ms(0.999) < P999_TARGET_MS),
            yes(s.lost == 0)
        );
    }
}

fn faults_section(md: &mut String, o: &Outcome) {
    if o.marks.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Faults\n\nInstance {} reaches every node through a `FaultProxy` (see crates/loadtest/README.md: the nodes announce a host name that only this instance resolves to the proxies); instance {} takes the memory-pressure storm. Fn is the line's label on the charts.\n\n| | t (s) | what |\n|---|---|---|",
        o.proxied, o.stormed
    );
    for (i, m) in o.marks.iter().enumerate() {
        let _ = writeln!(md, "| F{} | {:.1} | {} |", i + 1, m.t, m.label);
    }
    let _ = writeln!(md, "\nAnswers per instance over the whole run, and degraded answers in its last 10 scheduled seconds (after every fault has ended: an instance that has not recovered still answers degraded there):\n\n| instance | requests | degraded | degraded in the last 10 s | lost |\n|---|---|---|---|---|");
    let last = o.schedule.len();
    for (i, t) in o.by_instance.iter().enumerate() {
        let tail: u64 = (last.saturating_sub(10)..last)
            .filter_map(|s| t.degraded_by_second.get(s as usize))
            .sum();
        let _ = writeln!(
            md,
            "| {i} | {} | {} ({:.1}%) | {tail} | {} |",
            t.sent,
            t.degraded,
            100.0 * t.degraded as f64 / t.sent.max(1) as f64,
            t.lost
        );
    }
    let _ = writeln!(
        md,
        "\nEach fault's window (its start to its end plus 2 s), by scheduled second: what the clients saw.\n\n| fault | seconds | requests | degraded | shed | lost | p50 ms | p99 ms | p99.9 ms |\n|---|---|---|---|---|---|---|---|---|"
    );
    for w in &o.windows {
        let s = during(o, w.from, w.to);
        let _ = writeln!(
            md,
            "| {} | {:.1} to {:.1} | {} | {} ({:.0}%) | {} | {} | {:.2} | {:.2} | {:.2} |",
            w.what,
            w.from,
            w.to,
            s.sent,
            s.degraded,
            100.0 * s.degraded as f64 / s.sent.max(1) as f64,
            s.shed,
            s.lost,
            s.ms(0.5),
            s.ms(0.99),
            s.ms(0.999)
        );
    }
}

fn accuracy_section(md: &mut String, o: &Outcome) {
    let _ = writeln!(
        md,
        "\n## Accuracy per key\n\nAdmitted (2xx without `RateLimit-Degraded`) per key against the policy's limit per hour, plus what GCRA refills over the {:.0} s run (the allowance). Degraded and lost requests are left out of what was decided: the fate of a lost one is unknown, and a degraded one may or may not have been counted by Redis (a call that timed out at the client can have run there). A key short by no more than its own degraded answers is counted apart: the failure mode's effect, on the safe side; `under` keys are short by more. Expected: exact with leases off; with leases on, under-admission within 1%; never over.\n",
        o.run_s
    );
    let _ = writeln!(md, "| policy | limit/h | keys | keys over the limit | exact | short by degraded answers (shortfall) | under | over | shortfall of `under` keys | excess | degraded answers |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (endpoint, a) in &o.accuracy {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} ({}, {:.2}%) | {} | {} | {} ({:.2}%) | {} | {} |",
            endpoint.name(),
            endpoint.limit(o.args.flood_limit),
            a.keys,
            a.limited,
            a.exact,
            a.short_by_degraded,
            a.shortfall_by_degraded,
            a.shortfall_by_degraded_pct(),
            a.under,
            a.over,
            a.shortfall,
            a.shortfall_pct(),
            a.excess,
            a.degraded
        );
    }
    let over: u64 = o.accuracy.values().map(|a| a.over).sum();
    let (shortfall, expected) = o
        .accuracy
        .values()
        .fold((0, 0), |(s, e), a| (s + a.shortfall, e + a.expected));
    let share = if expected == 0 {
        0.0
    } else {
        100.0 * shortfall as f64 / expected as f64
    };
    let bound = if o.args.leases { 1.0 } else { 0.0 };
    let _ = writeln!(
        md,
        "\nNever over: {} ({over} keys over). Under-admission beyond what degraded answers account for: {share:.2}% of what was due (target ≤ {bound}% with leases {}): {}.",
        yes(over == 0),
        if o.args.leases { "on" } else { "off" },
        yes(share <= bound)
    );
}

fn redis_section(md: &mut String, o: &Outcome) {
    let cpu = redis_cpu(&o.samples, o.ports.len());
    let _ = writeln!(md, "\n## Redis\n\nCPU% of each node (used_cpu_sys + used_cpu_user per second) and commands/s, over the whole run. Roles at the start; a killed node stops reporting.\n");
    let _ = writeln!(md, "| node | role at start | role at end | mean CPU% | max CPU% | mean commands/s | keys at end | CPU < 70% |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for (n, port) in o.ports.iter().enumerate() {
        let values: Vec<f64> = cpu[n].iter().map(|p| p.1).collect();
        let max = values.iter().copied().fold(0.0, f64::max);
        let role = |masters: &[usize]| {
            if masters.contains(&n) {
                "master"
            } else {
                "replica"
            }
        };
        let keys = o
            .samples
            .iter()
            .rev()
            .find_map(|s| s.nodes.get(n).cloned().flatten())
            .map_or(0, |c| c.keys);
        let _ = writeln!(
            md,
            "| :{port} | {} | {} | {:.1} | {:.1} | {:.0} | {keys} | {} |",
            role(&o.masters),
            if o.samples
                .last()
                .and_then(|s| s.nodes.get(n).cloned().flatten())
                .is_none()
            {
                "down"
            } else {
                role(&o.masters_at_end)
            },
            mean(&values),
            max,
            mean(&redis_commands(&o.samples, n)),
            yes(max < REDIS_CPU_TARGET)
        );
    }
    let keys_at_end: u64 = o
        .masters_at_end
        .iter()
        .filter_map(|&n| o.samples.last()?.nodes.get(n).cloned().flatten())
        .map(|c| c.keys)
        .sum();
    let _ = writeln!(
        md,
        "\nKeys on the masters at the end: {keys_at_end}, for {} distinct (policy, key) pairs the traffic touched (the live set: every window is an hour, longer than the run).",
        o.live_keys
    );
}

/// (mean RSS over the first `n` samples from `from`, mean over the last `n`) per instance.
fn rss_span(samples: &[Sample], from: f64, n: usize, instance: usize) -> Option<(f64, f64)> {
    let values: Vec<f64> = samples
        .iter()
        .filter(|s| s.t >= from)
        .filter_map(|s| s.rss_mib.get(instance).cloned().flatten())
        .collect();
    if values.len() < 2 {
        return None;
    }
    let n = n.min(values.len() / 2).max(1);
    Some((mean(&values[..n]), mean(&values[values.len() - n..])))
}

fn rss_section(md: &mut String, o: &Outcome) {
    let warm = o
        .schedule
        .start_of(Phase::Soak)
        .or_else(|| o.schedule.start_of(Phase::Steady))
        .unwrap_or(0) as f64;
    // Bounded caches (the enumeration defence's sources, the denials listed, the local
    // caches) fill while the traffic keeps bringing identities never seen: a leak shows
    // as growth once it has drawn nearly all of them (or over the second half of a run
    // too short for that).
    let end = o.samples.last().map_or(warm, |s| s.t);
    let half = warm + (end - warm) / 2.0;
    let drawn = o
        .schedule
        .seconds_until_drawn(TAIL_USERS, 1.0 - TOP_SHARE, WORKING_SET_SHARE)
        .map_or(half, |s| s as f64);
    let settled = drawn.clamp(warm, half);
    let _ = writeln!(md, "\n## Instance memory (RSS)\n\nVmRSS from /proc/PID/status each second. Growth: the mean of the last 30 samples against the mean of the first 30 from a moment on. The target's moment is when the working set is in: by t = {drawn:.0} s the traffic has drawn {:.0}% of its {TAIL_USERS} tail identities in expectation, so that later growth is not bounded caches filling with new identities (at most half-way through the run: here t = {settled:.0} s). From the end of the half-rate warm-up (t = {warm:.0} s) for comparison.\n", WORKING_SET_SHARE * 100.0);
    let _ = writeln!(
        md,
        "| instance | after warm-up MiB | working set in MiB | at end MiB | max MiB | growth from the warm-up | growth once the working set is in | < 5% |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for i in 0..o.args.instances {
        let max = o
            .samples
            .iter()
            .filter_map(|s| s.rss_mib.get(i).cloned().flatten())
            .fold(0.0, f64::max);
        if let (Some((first, last)), Some((settled_at, _))) = (
            rss_span(&o.samples, warm, 30, i),
            rss_span(&o.samples, settled, 30, i),
        ) {
            let from_warm = 100.0 * (last - first) / first;
            let growth = 100.0 * (last - settled_at) / settled_at;
            let _ = writeln!(
                md,
                "| {i} | {first:.1} | {settled_at:.1} | {last:.1} | {max:.1} | {from_warm:+.1}% | {growth:+.1}% | {} |",
                yes(growth < RSS_GROWTH_TARGET)
            );
        }
    }
    // Every window is an hour, so the live set only grows during a run shorter than
    // that: set the RSS growth against the keys that appeared meanwhile.
    let keys_at = |s: &Sample| -> u64 {
        o.masters_at_end
            .iter()
            .filter_map(|&n| s.nodes.get(n).cloned().flatten())
            .map(|c| c.keys)
            .sum()
    };
    let after_warm = o.samples.iter().find(|s| s.t >= warm);
    if let (Some(a), Some(b)) = (after_warm, o.samples.last()) {
        let rss = |s: &Sample| s.rss_mib.iter().flatten().sum::<f64>();
        let (k0, k1) = (keys_at(a), keys_at(b));
        let per_key = (rss(b) - rss(a)) * 1024.0 * 1024.0 / (k1.saturating_sub(k0).max(1) as f64);
        let _ = writeln!(
            md,
            "\nMeanwhile the live set grew: the masters held {k0} keys after the warm-up and {k1} at the end (every window is an hour, so no key expires during a shorter run, and the 100,000 tail users keep bringing new ones). The instances' RSS together grew by {:.1} MiB, {per_key:.0} bytes per new Redis key.",
            rss(b) - rss(a)
        );
    }
}

/// How much less a busier instance costs per request than one at the run's own rate,
/// from the probes after the run (the same state of the users' budgets for both).
struct BusierInstance {
    /// Instance CPU per request, busiest probe over the run's-rate probe.
    instance: f64,
    /// Redis CPU per request, the same ratio: fuller batches, more coalesced keys.
    redis: f64,
    rate_per_instance: u32,
    base_rate_per_instance: u32,
}

impl BusierInstance {
    fn of(o: &Outcome) -> Option<BusierInstance> {
        let with_tracing = |(p, c): &&(Probe, Costs)| p.tracing == o.args.tracing && c.requests > 0;
        let (base_probe, base) = o
            .probes
            .iter()
            .filter(with_tracing)
            .find(|(p, _)| p.instances == o.args.instances)?;
        let (probe, busiest) = o
            .probes
            .iter()
            .filter(with_tracing)
            .max_by_key(|(p, _)| p.rate_per_instance())?;
        let ratio = |a: f64, b: f64| if b > 0.0 { (a / b).min(1.0) } else { 1.0 };
        (probe.rate_per_instance() > base_probe.rate_per_instance()).then(|| BusierInstance {
            instance: ratio(busiest.instance_us(), base.instance_us()),
            redis: ratio(busiest.redis_us(), base.redis_us()),
            rate_per_instance: probe.rate_per_instance(),
            base_rate_per_instance: base_probe.rate_per_instance(),
        })
    }
}

fn capacity_section(md: &mut String, o: &Outcome) {
    let _ = writeln!(md, "\n## Cost per request and capacity for 1M requests/s\n");
    let row = |md: &mut String, what: &str, c: &Costs| {
        let _ = writeln!(
            md,
            "| {what} | {} | {:.0} | {:.1} | {:.0} | {:.2} | {:.3} | {:.1} | {:.1} |",
            c.requests,
            c.requests as f64 / c.seconds.max(1e-9),
            c.instance_us(),
            c.per_core_rps(),
            c.commands_per_request(),
            c.scripts_per_request(),
            c.redis_us_per_command(),
            c.redis_us()
        );
    };
    let _ = writeln!(md, "Instance CPU from /proc/PID/stat (utime + stime of every instance), Redis CPU and commands from `INFO` of the masters, over the window named.");
    if !o.probes.is_empty() {
        let _ = writeln!(md, "The probes start fresh instances after the main run and send them traffic for 10 s each: every instance at {} req/s with tracing on and off (what tracing costs), then one instance alone at {} and at {} req/s (what an instance costs per request when it is busier). Most top users are then already over their limits, and many answers are 429s from the local cache, so the probes compare with each other; the steady row is the mix of a fresh run.", o.args.rate, o.args.rate, o.args.rate.saturating_mul(2));
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "| window | requests | req/s | instance CPU µs/request | requests per core-second | Redis commands/request | decision scripts/request | Redis CPU µs/command | Redis CPU µs/request |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    if let Some(c) = &o.steady {
        let what = if o.args.soak_min.is_some() {
            "soak (steady part)"
        } else {
            "steady phase before the spike"
        };
        row(
            md,
            &format!(
                "{what}, tracing {}",
                if o.args.tracing { "on" } else { "off" }
            ),
            c,
        );
    }
    for (probe, c) in &o.probes {
        let what = format!(
            "probe: {} instance{} at {} req/s ({} per instance), tracing {}",
            probe.instances,
            if probe.instances == 1 { "" } else { "s" },
            probe.rate,
            probe.rate_per_instance(),
            if probe.tracing { "on" } else { "off" }
        );
        row(md, &what, c);
    }
    let Some(c) = &o.steady else { return };
    let top: Vec<String> = c
        .top_commands(6)
        .iter()
        .map(|(name, n)| format!("`{}` {n:.3}", name.to_uppercase()))
        .collect();
    let _ = writeln!(
        md,
        "\nRedis commands per request in the steady row, by command (`INFO commandstats` of the masters, which also counts the commands a script runs: `EVALSHA` and `PFADD` come over the network, the others run inside the decision script): {}.",
        top.join(", ")
    );
    let (steady_us, steady_redis_us) = (c.instance_us(), c.redis_us());
    let (inst_us, redis_us, from) = match BusierInstance::of(o) {
        Some(b) => (
            steady_us * b.instance,
            steady_redis_us * b.redis,
            format!(
                "the steady row's costs scaled to the busiest instance measured: × {:.3} for the instances and × {:.3} for Redis, the probe at {} req/s per instance against the probe at the run's own {} (both after the run, so the same users over their limits: the ratio is the rate's effect alone)",
                b.instance, b.redis, b.rate_per_instance, b.base_rate_per_instance
            ),
        ),
        None => (steady_us, steady_redis_us, "the steady row".to_string()),
    };
    let _ = writeln!(
        md,
        "\nThe arithmetic, from {from}; each core kept under {:.0}%, the issue's Redis target, so that queues stay short:\n",
        UTILIZATION * 100.0
    );
    let _ = writeln!(md, "| rate | instances (1 CPU each) = rate × {inst_us:.1} µs / {:.0}% | Redis shards (1 master core each) = rate × {redis_us:.2} µs / {:.0}% |", UTILIZATION * 100.0, UTILIZATION * 100.0);
    let _ = writeln!(md, "|---|---|---|");
    for rate in [1e6, 2e6] {
        let _ = writeln!(
            md,
            "| {:.0}M req/s | {} | {} |",
            rate / 1e6,
            cores_for(rate, inst_us),
            cores_for(rate, redis_us)
        );
    }
    let _ = writeln!(
        md,
        "\nIn the steady row, Redis CPU per request is {:.2} commands × {:.1} µs per command. The shard count is an upper bound: batching puts more decisions into one script call as the rate per instance grows, and leases and the local cache answer more hot keys in process, so commands per request fall with load (at this run's rate, {:.3} decision scripts per request). Size for the spike (2M), since a cluster is not resharded in 10 s.\n\n\
         Scaling argument. Here {} instances, 6 Redis nodes and the load generator share {} cores, so every process waits for a core now and then, and the latency percentiles above include that wait; the costs per request (CPU seconds per request, from /proc and INFO) do not, which is why the arithmetic uses them rather than the throughput. Three instances are what this machine can hold next to the cluster and the generator: each still gets a share of a core, as the 1-CPU instances of the specification do. An instance's CPU per request is not fixed: at a few hundred requests a second much of it goes to waking threads (the request's worker, the Redis I/O thread) for each request alone, and it falls as the rate grows, because wake-ups serve several requests and batches fill (see the probes above). An instance run at {:.0}% of a core is busier than any measured here, so its CPU per request is lower still: the instance count is an upper bound, as the shard count is. On 16 cores (`--instances 10 --rate R`), each instance and each Redis master gets a core of its own, the offered rate can grow until the instances reach {:.0}% of their cores (at most about {:.0} req/s per instance at {inst_us:.1} µs), and the latency then reflects queueing in the limiter rather than CPU contention between processes. The 512 MB per instance is not enforced here (no cgroup): the RSS table shows what each instance used.",
        c.commands_per_request(),
        c.redis_us_per_command(),
        c.scripts_per_request(),
        o.args.instances,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        UTILIZATION * 100.0,
        UTILIZATION * 100.0,
        UTILIZATION * 1e6 / inst_us.max(1e-9),
    );
}

fn draw_charts(o: &Outcome, dir: &Path, stem: &str) -> Result<Vec<(String, String)>, ReportError> {
    let per_second = |f: &dyn Fn(&Second) -> f64| -> Vec<(f64, f64)> {
        o.seconds
            .iter()
            .enumerate()
            .filter(|(_, s)| s.sent > 0)
            .map(|(t, s)| (t as f64, f(s)))
            .collect()
    };
    let series = |name: &str, points| Series {
        name: name.into(),
        points,
    };
    let mut out = Vec::new();
    let mut draw = |file: String, what: &str, chart: Chart| -> Result<(), ReportError> {
        chart.draw(&dir.join(&file))?;
        out.push((file, what.to_string()));
        Ok(())
    };
    draw(
        format!("{stem}-latency.png"),
        "Latency per second (from the scheduled send time), faults marked",
        Chart {
            title: "Latency per second (ms, log scale)",
            y_label: "ms",
            series: vec![
                series("p50", per_second(&|s| s.ms(0.5))),
                series("p99", per_second(&|s| s.ms(0.99))),
                series("p99.9", per_second(&|s| s.ms(0.999))),
            ],
            marks: &o.marks,
            log_y: true,
            targets: &[
                (P99_TARGET_MS, "p99 target 5 ms"),
                (P999_TARGET_MS, "p99.9 target 20 ms"),
            ],
        },
    )?;
    draw(
        format!("{stem}-throughput.png"),
        "Requests per second by answer",
        Chart {
            title: "Requests per second (by scheduled second)",
            y_label: "requests/s",
            series: vec![
                series("offered", per_second(&|s| s.sent as f64)),
                series("2xx", per_second(&|s| s.ok as f64)),
                series("429", per_second(&|s| s.denied as f64)),
                series("degraded", per_second(&|s| s.degraded as f64)),
                series("lost + shed", per_second(&|s| (s.lost + s.shed) as f64)),
            ],
            marks: &o.marks,
            log_y: false,
            targets: &[],
        },
    )?;
    let rss = (0..o.args.instances)
        .map(|i| {
            let points = o
                .samples
                .iter()
                .filter_map(|s| Some((s.t, s.rss_mib.get(i).cloned().flatten()?)))
                .collect();
            series(&format!("instance {i}"), points)
        })
        .collect();
    draw(
        format!("{stem}-rss.png"),
        "Instance RSS",
        Chart {
            title: "Instance RSS (MiB)",
            y_label: "MiB",
            series: rss,
            marks: &o.marks,
            log_y: false,
            targets: &[],
        },
    )?;
    let groups = cpu_groups(&o.samples);
    let group = |name: &str, i: usize| series(name, groups.iter().map(|g| (g[0], g[i])).collect());
    draw(
        format!("{stem}-cpu.png"),
        "CPU by process group (other: the rest of the shared machine)",
        Chart {
            title: "CPU by process group (cores)",
            y_label: "cores",
            series: vec![
                group("instances", 1),
                group("Redis (6 nodes)", 2),
                group("load generator", 3),
                group("other work", 4),
            ],
            marks: &o.marks,
            log_y: false,
            targets: &[],
        },
    )?;
    let cpu = redis_cpu(&o.samples, o.ports.len())
        .into_iter()
        .zip(&o.ports)
        .map(|(points, port)| series(&format!(":{port}"), points))
        .collect();
    draw(
        format!("{stem}-redis-cpu.png"),
        "Redis CPU per node",
        Chart {
            title: "Redis CPU per node (%)",
            y_label: "CPU %",
            series: cpu,
            marks: &o.marks,
            log_y: false,
            targets: &[(REDIS_CPU_TARGET, "target 70%")],
        },
    )?;
    Ok(out)
}
