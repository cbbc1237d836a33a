//! Prints rate-limit decisions from the embedded in-memory store, or from Redis when
//! `REDIS_URL` is set: a multi-window policy, a weighted cost, a peek, a never-fitting
//! cost, and the waiting API.

use std::time::Duration;

use limiter_core::{Algorithm, Decision, Limit, Limiter, MemoryStore, Policy, RedisStore, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = Policy::new(
        "demo",
        vec![
            Limit::new(5, Duration::from_secs(1)).with_name("per-second"),
            Limit::new(20, Duration::from_secs(60))
                .with_name("per-minute")
                .with_algorithm(Algorithm::SlidingWindow),
        ],
    )?;
    match std::env::var("REDIS_URL") {
        Ok(url) => {
            println!("store: redis at {url}");
            let store = RedisStore::builder().prefix("demo:").connect(&url).await?;
            run(Limiter::new(policy, store)).await
        }
        Err(_) => {
            println!("store: in-memory (set REDIS_URL to use Redis)");
            run(Limiter::new(policy, MemoryStore::new())).await
        }
    }
}

async fn run<S: Store>(limiter: Limiter<S>) -> Result<(), Box<dyn std::error::Error>> {
    let key = format!("user-{}", std::process::id());
    println!("policy: 5/s (GCRA) + 20/min (sliding window counter), key {key}\n");
    for i in 1..=7 {
        show(
            &format!("request {i}"),
            &limiter.check(&key, 1).await?,
            limiter.policy(),
        );
    }
    show(
        "peek (cost 0)",
        &limiter.check(&key, 0).await?,
        limiter.policy(),
    );
    show("cost 50", &limiter.check(&key, 50).await?, limiter.policy());
    let waited = std::time::Instant::now();
    let decision = limiter.acquire(&key, 1).await?;
    show(
        &format!("acquire after {:?}", waited.elapsed()),
        &decision,
        limiter.policy(),
    );
    Ok(())
}

fn show(label: &str, d: &Decision, policy: &Policy) {
    let verdict = if d.is_allowed() {
        "allowed".to_owned()
    } else if d.never_fits() {
        "denied, can never fit".to_owned()
    } else {
        let window = d.denied_by().map_or("", |i| policy.limits()[i].name());
        format!(
            "denied by {window}, retry after {:?}",
            d.retry_after().unwrap_or_default()
        )
    };
    let windows: Vec<String> = d
        .windows()
        .iter()
        .map(|w| {
            format!(
                "{}/{} left, reset {:?}",
                w.remaining(),
                w.limit(),
                w.reset_after()
            )
        })
        .collect();
    println!("{label:>24}: {verdict:<44} [{}]", windows.join("; "));
}
