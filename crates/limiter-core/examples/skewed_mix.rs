//! Decisions per second, latency, Redis traffic and accuracy of the Redis store with and
//! without the local layer (batching, leases, the denial cache), on a skewed mix: 80% of
//! requests from the top 1,000 users, 20% from a tail of 100,000. Used by
//! `scripts/bench-leases.sh`, which runs limitador's storages in the same run.
//!
//! `skewed_mix REDIS_URL SECS MODE WORKLOAD`
//! - MODE: `plain` (one script call per decision, today's path), `batched`, `leased`
//!   (batched + leases), `all` (batched + leases + denial cache), `memory` (the
//!   in-memory store, for the `hot` workload's comparison).
//! - WORKLOAD: `peer` (limitador's run: one instance, 100 per 60 s fixed window, 64
//!   concurrent tasks) or `issue` (two instances with their own connections, 6,000 per
//!   minute fixed window and 100,000 per hour sliding window, 64 concurrent tasks in
//!   all), or
//!   `cold` (one instance, users uniform over 10 million, so every key is new: nothing
//!   for leases or caches, 100 per minute GCRA), or `hot` (one key, one task deciding in a
//!   loop, a billion per hour, fixed window: a hot key under a lease against the in-memory
//!   store).
//!
//! `CONC` sets the concurrent tasks (default 64). Prints one line of `key=value` fields. "exact" is what exact limits admit for the
//! requests made: per user, the requests or the limit, whichever is smaller (the run is
//! started where no window boundary falls inside it). "over" counts admissions beyond it.
//! Redis commands come from `INFO commandstats`: `calls` counts the script calls
//! (EVALSHA), `cmds` every command, those a script runs included.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use limiter_core::{
    Algorithm, Batched, Decision, DenialCache, Error, Guarded, Leased, Limit, MemoryStore, Policy,
    RedisStore, Store,
};

/// The stacks compared, as one type.
#[derive(Clone)]
enum Stack {
    Memory(MemoryStore),
    Plain(RedisStore),
    Batched(Batched),
    Leased(Arc<Leased<Batched>>),
    All(Arc<Guarded<DenialCache<Leased<Batched>>>>),
}

impl Stack {
    async fn check(&self, policy: &Policy, key: &str) -> Result<Decision, Error> {
        match self {
            Stack::Memory(s) => s.check(policy, key, 1).await,
            Stack::Plain(s) => s.check(policy, key, 1).await,
            Stack::Batched(s) => s.check(policy, key, 1).await,
            Stack::Leased(s) => s.check(policy, key, 1).await,
            Stack::All(s) => s.check(policy, key, 1).await,
        }
    }
}

async fn stack(url: &str, mode: &str) -> Result<Stack, Box<dyn std::error::Error>> {
    let redis = RedisStore::builder().prefix("bench:").connect(url).await?;
    // Every setting at its default: what a user gets.
    let leased = || Leased::builder(Batched::builder(redis.clone()).build()).build();
    Ok(match mode {
        "memory" => Stack::Memory(MemoryStore::new()),
        "plain" => Stack::Plain(redis.clone()),
        "batched" => Stack::Batched(Batched::builder(redis.clone()).build()),
        "leased" => Stack::Leased(Arc::new(leased())),
        "all" => Stack::All(Arc::new(
            Guarded::builder(DenialCache::new(leased())).build()?,
        )),
        other => return Err(format!("mode {other}: plain, batched, leased or all").into()),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let runtime = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    runtime.block_on(bench())
}

async fn bench() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(8);
    let mode = args.next().unwrap_or_else(|| "all".into());
    let workload = args.next().unwrap_or_else(|| "issue".into());
    let unique = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
    let (instances, limits, cap, align) = match workload.as_str() {
        "peer" => (
            1,
            vec![Limit::new(100, Duration::from_secs(60)).with_algorithm(Algorithm::FixedWindow)],
            100,
            60,
        ),
        "issue" => (
            2,
            vec![
                Limit::new(6_000, Duration::from_secs(60)).with_algorithm(Algorithm::FixedWindow),
                Limit::new(100_000, Duration::from_secs(3600))
                    .with_algorithm(Algorithm::SlidingWindow),
            ],
            6_000,
            60,
        ),
        "cold" => (1, vec![Limit::new(100, Duration::from_secs(60))], 100, 0),
        "hot" => (
            1,
            vec![Limit::new(1_000_000_000, Duration::from_secs(3600))
                .with_algorithm(Algorithm::FixedWindow)],
            1_000_000_000,
            3600,
        ),
        other => return Err(format!("workload {other}: peer, issue, cold or hot").into()),
    };
    let policy = Policy::new(&format!("{workload}-{mode}-{unique}"), limits)?;
    let cold = workload == "cold";
    let hot = workload == "hot";
    let tasks: u64 = if hot {
        1
    } else {
        std::env::var("CONC")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(64)
    };
    let mut stacks = Vec::new();
    for _ in 0..instances {
        stacks.push(stack(&url, &mode).await?);
    }
    wait_for_window_start(align, secs + 2).await;

    let (calls_before, cmds_before) = redis_calls(&url).await?;
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..tasks)
        .map(|t| {
            let (stack, policy) = (stacks[t as usize % instances].clone(), policy.clone());
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let mut per_user: HashMap<u32, (u64, u64)> = HashMap::new();
                let mut errors = 0u64;
                let mut seed =
                    0x9e37_79b9_7f4a_7c15u64 ^ (t + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let mut key = String::with_capacity(16);
                while Instant::now() < end {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let user = if hot {
                        0
                    } else if cold {
                        ((seed >> 8) % 10_000_000) as u32
                    } else if seed % 100 < 80 {
                        ((seed >> 8) % 1000) as u32
                    } else {
                        1000 + ((seed >> 8) % 100_000) as u32
                    };
                    key.clear();
                    use std::fmt::Write as _;
                    let _ = write!(key, "u{user}");
                    let at = Instant::now();
                    let result = stack.check(&policy, &key).await;
                    let _ = hist.record(at.elapsed().as_micros().max(1) as u64);
                    let counts = per_user.entry(user).or_default();
                    counts.0 += 1;
                    match result {
                        Ok(decision) => {
                            counts.1 += u64::from(decision.is_allowed() && !decision.is_degraded())
                        }
                        Err(_) => errors += 1,
                    }
                }
                (hist, per_user, errors)
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut per_user: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut errors = 0;
    for task in tasks {
        let (h, users, e) = task.await?;
        hist.add(h)?;
        errors += e;
        for (user, (requests, admitted)) in users {
            let counts = per_user.entry(user).or_default();
            counts.0 += requests;
            counts.1 += admitted;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (calls_after, cmds_after) = redis_calls(&url).await?;
    let decisions = hist.len();
    let admitted: u64 = per_user.values().map(|c| c.1).sum();
    let exact: u64 = per_user.values().map(|c| c.0.min(cap)).sum();
    let over: u64 = per_user
        .values()
        .map(|c| c.1.saturating_sub(c.0.min(cap)))
        .sum();
    let q = |x: f64| hist.value_at_quantile(x) as f64 / 1000.0;
    println!(
        "mode={mode} workload={workload} instances={instances} rate={:.0} per_instance={:.0} p50={:.3}ms p99={:.3}ms p999={:.3}ms calls_per_decision={:.4} cmds_per_decision={:.3} admitted={admitted} exact={exact} over={over} drift={:.2}% errors={errors} rss_mb={:.1}",
        decisions as f64 / elapsed,
        decisions as f64 / elapsed / instances as f64,
        q(0.5),
        q(0.99),
        q(0.999),
        (calls_after - calls_before) as f64 / decisions as f64,
        (cmds_after - cmds_before) as f64 / decisions as f64,
        100.0 * exact.abs_diff(admitted) as f64 / exact.max(1) as f64,
        rss_mb(),
    );
    for stack in &stacks {
        let leased = match stack {
            Stack::Leased(s) => Some(s.stats()),
            Stack::All(s) => Some(s.inner().inner().stats()),
            Stack::Memory(_) | Stack::Plain(_) | Stack::Batched(_) => None,
        };
        if let Some(stats) = leased {
            println!(
                "  leases: local_admissions={} leases={} refunded_units={}",
                stats.local_admissions, stats.leases, stats.refunded_units
            );
        }
    }
    std::process::exit(0);
}

/// Sleeps until at least `room` seconds remain in the current `window`-second window, so
/// that no window boundary falls inside the run (0: no window to wait for).
async fn wait_for_window_start(window: u64, room: u64) {
    if window == 0 {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let into = now % window;
    if window - into < room {
        tokio::time::sleep(Duration::from_secs(window - into + 1)).await;
    }
}

/// Script calls and all commands Redis has counted (`INFO commandstats`, INFO excluded).
async fn redis_calls(url: &str) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await?;
    let mut calls = 0;
    let mut cmds = 0;
    for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
        let n: u64 = line
            .split("calls=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if line.starts_with("cmdstat_info") {
            continue;
        }
        if line.starts_with("cmdstat_evalsha") || line.starts_with("cmdstat_eval:") {
            calls += n;
        }
        cmds += n;
    }
    Ok((calls, cmds))
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
