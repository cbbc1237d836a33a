//! Redis memory per key: runs `KEYS` unique keys (default 1,000,000) through the store
//! under the default GCRA policy and under a two-window sliding-counter policy, printing
//! `used_memory` before and after and the bytes per key (windows of 10 minutes, so that
//! nothing expires during the run) and checks a sample of keys (`RANDOMKEY` + `PTTL`) all
//! carry a TTL; then runs 20,000 keys under the same policies with windows of 1-2 s and
//! waits for every key to expire.
//!
//! `REDIS_URL=redis://127.0.0.1:6390 cargo run --release -p limiter-core --example redis_memory`
//! (or `scripts/bench-redis-memory.sh`, which spawns the server).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use limiter_core::{Algorithm, Batched, Limit, Policy, RedisStore, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let keys: usize = std::env::var("KEYS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(1_000_000);
    let client = redis::Client::open(url.as_str())?;
    let mut admin = client.get_multiplexed_async_connection().await?;
    let store = Batched::builder(RedisStore::builder().connect(&url).await?).build();
    for (window, keys, wait) in [(600, keys, false), (1, 20_000, true)] {
        let policies = policies(window)?;
        run(&store, &mut admin, &policies, keys, wait).await?;
    }
    Ok(())
}

/// The default GCRA policy and a two-window sliding counter, windows of `secs` and more.
fn policies(secs: u64) -> Result<[Policy; 2], limiter_core::PolicyError> {
    Ok([
        Policy::new("gcra", vec![Limit::new(100, Duration::from_secs(secs))])?,
        Policy::new(
            "sliding",
            vec![
                Limit::new(10, Duration::from_secs(secs)).with_algorithm(Algorithm::SlidingWindow),
                Limit::new(100, Duration::from_secs(2 * secs))
                    .with_algorithm(Algorithm::SlidingWindow),
            ],
        )?,
    ])
}

async fn run(
    store: &Batched,
    admin: &mut redis::aio::MultiplexedConnection,
    policies: &[Policy],
    keys: usize,
    wait: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut admin = admin.clone();
    for policy in policies {
        redis::cmd("FLUSHALL")
            .arg("ASYNC")
            .query_async::<()>(&mut admin)
            .await?;
        // The flush frees memory in the background: measure once it is done.
        for _ in 0..600 {
            let info: String = redis::cmd("INFO")
                .arg("memory")
                .query_async(&mut admin)
                .await?;
            if info.contains("lazyfree_pending_objects:0") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let before = used_memory(&mut admin).await?;
        let start = Instant::now();
        for chunk in (0..keys).collect::<Vec<_>>().chunks(2_000) {
            let checks = chunk.iter().map(|i| {
                let key = format!("user:{i:08}");
                async move { store.check(policy, &key, 1).await }
            });
            for result in join_all(checks).await {
                assert!(result?.is_allowed());
            }
        }
        let after = used_memory(&mut admin).await?;
        let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut admin).await?;
        println!(
            "{}: {keys} identities, {dbsize} Redis keys in {:.1?}; used_memory {before} -> {after} \
             (+{:.1} MB), {:.1} bytes per identity, {:.1} per Redis key",
            policy.name(),
            start.elapsed(),
            after.saturating_sub(before) as f64 / 1e6,
            after.saturating_sub(before) as f64 / keys as f64,
            after.saturating_sub(before) as f64 / dbsize as f64,
        );
        let mut sampled = 0;
        for _ in 0..10_000 {
            let Some(key): Option<String> = redis::cmd("RANDOMKEY").query_async(&mut admin).await?
            else {
                break;
            };
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut admin).await?;
            // -1 is a key without a TTL; -2 one that expired between the two commands.
            assert!(ttl != -1, "{key} has no TTL");
            sampled += 1;
        }
        println!("{}: {sampled} sampled keys all carry a TTL", policy.name());
        if !wait {
            continue;
        }
        let waiting = Instant::now();
        loop {
            let dbsize: u64 = redis::cmd("DBSIZE").query_async(&mut admin).await?;
            if dbsize == 0 {
                break;
            }
            assert!(
                waiting.elapsed() < Duration::from_secs(120),
                "{dbsize} keys never expired"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "{}: every key expired {:.1?} after the last write",
            policy.name(),
            waiting.elapsed()
        );
    }
    Ok(())
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}
