//! Decisions per second and latency of the Redis store from one process, at several
//! concurrencies, over 10,000 keys (one multiplexed connection: concurrent calls are
//! pipelined). Used by `scripts/bench-redis.sh`, which runs the peers in the same run.
//!
//! Two workloads, each matching a peer's: `ceiling` is the quota of the GCRA script in
//! `redis-ceiling.sh` (100/s, burst 99: keys expire within ~10 ms), `rlf` is
//! rate-limiter-flexible's (100 per minute: keys live a minute).
//!
//! The client runs on a current-thread Tokio runtime by default, as the peers do
//! (redis-benchmark and Node are single-threaded): on a 2-core machine that leaves Redis
//! a core of its own. `THREADS=2` runs it on a two-worker runtime instead, where the
//! client's threads and Redis contend for the two cores.
//!
//! `cargo run --release -p limiter-core --example redis_throughput -- redis://127.0.0.1:6395 8 1,16,64 ceiling`

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use limiter_core::{Algorithm, Limit, Policy, RedisStore, Store};

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
    runtime.block_on(bench(threads.max(1)))
}

async fn bench(threads: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(8);
    let levels: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1,16,64".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let workload = args.next().unwrap_or_else(|| "rlf".into());
    let limit = match workload.as_str() {
        "ceiling" => Limit::new(100, Duration::from_secs(1))
            .with_algorithm(Algorithm::Gcra { burst: Some(99) }),
        _ => Limit::new(100, Duration::from_secs(60)),
    };
    let store = RedisStore::builder().prefix("bench:").connect(&url).await?;
    let policy = Policy::new("bench", vec![limit])?;
    for concurrency in levels {
        let (rate, hist, errors) =
            run(&store, &policy, concurrency, Duration::from_secs(secs)).await;
        println!(
            "ours RedisStore GCRA ({workload} workload, client threads={threads}) conc={concurrency}: {rate:.0} decisions/s p50={:.3}ms p99={:.3}ms errors={errors}",
            hist.value_at_quantile(0.50) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
        );
    }
    Ok(())
}

async fn run(
    store: &RedisStore,
    policy: &Policy,
    concurrency: usize,
    length: Duration,
) -> (f64, Histogram<u64>, u64) {
    let start = Instant::now();
    let end = start + length;
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let (store, policy) = (store.clone(), Arc::new(policy.clone()));
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let mut errors = 0u64;
                let mut i = w as u64;
                while Instant::now() < end {
                    let key = format!("u{}", i * 7919 % 10_000);
                    i += 1;
                    let t = Instant::now();
                    if store.check(&policy, &key, 1).await.is_err() {
                        errors += 1;
                    }
                    let _ = hist.record(t.elapsed().as_micros() as u64);
                }
                (hist, errors)
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut errors = 0;
    for task in tasks {
        let (hist, e) = task.await.expect("task");
        all.add(hist).expect("same bounds");
        errors += e;
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    (rate, all, errors)
}
