//! Drives a fixed number of decisions at a Redis store, for `scripts/bench-script-cost.sh`,
//! which counts the instructions Redis spends on them.
//!
//! Modes: `plain` (one decision per script call, one call at a time) and `batched`
//! (64 callers through [`Batched`], or the fifth argument's number, so calls carry
//! about that many decisions). Policies: `gcra`
//! (one GCRA window) and `sliding2` (two sliding-window-counter windows). Decisions
//! cycle over 1,000 keys whose limits are never reached, so every one writes.
//!
//! `cargo run --release -p limiter-core --example script_cost -- redis://127.0.0.1:6395 plain gcra 20000`

use std::time::Duration;

use limiter_core::{Algorithm, Batched, BreakerConfig, Limit, Policy, RedisStore, Store};

const KEYS: usize = 1_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let mode = args.next().unwrap_or_else(|| "plain".into());
    let policy = args.next().unwrap_or_else(|| "gcra".into());
    let decisions: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let callers: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(64);
    let limits = match policy.as_str() {
        "gcra" => vec![Limit::new(1_000_000, Duration::from_secs(60))],
        "sliding2" => vec![
            Limit::new(1_000_000, Duration::from_secs(1)).with_algorithm(Algorithm::SlidingWindow),
            Limit::new(1_000_000, Duration::from_secs(60)).with_algorithm(Algorithm::SlidingWindow),
        ],
        other => return Err(format!("unknown policy {other:?}").into()),
    };
    let policy = Policy::new(&policy, limits)?;
    // Under callgrind Redis runs tens of times slower: this measures Redis's work, not the
    // client's patience, so the store waits as long as it takes and never opens its breaker.
    let redis = RedisStore::builder()
        .prefix("cost:")
        .timeout(Duration::from_secs(60))
        .breaker(BreakerConfig {
            failures: u32::MAX,
            slow_calls: u32::MAX,
            slow_call: Duration::from_secs(30),
            ..BreakerConfig::default()
        })
        .connect(&url)
        .await?;
    match mode.as_str() {
        "plain" => {
            for i in 0..decisions {
                redis.check(&policy, &format!("k{}", i % KEYS), 1).await?;
            }
        }
        "batched" => {
            let store = Batched::builder(redis).max_batch(callers).build();
            let callers = (0..callers).map(|caller| {
                let (store, policy) = (store.clone(), policy.clone());
                tokio::spawn(async move {
                    for i in (caller..decisions).step_by(callers) {
                        store.check(&policy, &format!("k{}", i % KEYS), 1).await?;
                    }
                    Ok::<_, limiter_core::Error>(())
                })
            });
            for caller in futures_util::future::join_all(callers).await {
                caller??;
            }
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    }
    Ok(())
}
