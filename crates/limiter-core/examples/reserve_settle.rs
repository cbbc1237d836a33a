//! What a two-phase decision costs against a plain one, on each store: decisions per
//! second and, on Redis, the commands Redis ran per decision (INFO commandstats, the
//! benchmark's own calls only). Used by `scripts/bench-reserve.sh`.
//!
//! The policy is an LLM gateway's: answers and tokens a minute (fixed windows), never
//! reached. Plain:
//! `check` of one answer and 100 tokens. Committed: `reserve` of that estimate, then
//! `settle` for 60 tokens (a refund: the Redis settlement is a second script call).
//!
//! `cargo run --release -p limiter-core --example reserve_settle -- redis://127.0.0.1:6398 5 64`

use std::sync::Arc;
use std::time::{Duration, Instant};

use limiter_core::{Algorithm, Batched, Cost, Limit, MemoryStore, Policy, RedisStore, Store};

const ESTIMATE: Cost = Cost::new(1, 100);
const ACTUAL: Cost = Cost::new(1, 60);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Committed,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain check",
            Mode::Committed => "reserve + settle",
        }
    }
}

async fn decide<S: Store>(store: &S, policy: &Policy, key: &str, mode: Mode) -> bool {
    match mode {
        Mode::Plain => store.check(policy, key, ESTIMATE).await.is_ok(),
        Mode::Committed => match store.reserve(policy, key, ESTIMATE).await {
            Ok(reservation) => store.settle(policy, key, reservation, ACTUAL).await.is_ok(),
            Err(_) => false,
        },
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let concurrency: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(64);
    let length = Duration::from_secs(secs);
    let policy = Policy::new(
        "bench-reserve",
        vec![
            Limit::new(1_000_000_000, Duration::from_secs(60))
                .with_name("answers")
                .with_algorithm(Algorithm::FixedWindow),
            Limit::new(1_000_000_000_000, Duration::from_secs(60))
                .with_name("tokens")
                .counting("tokens")
                .with_algorithm(Algorithm::FixedWindow),
        ],
    )?;

    println!("store | decision | decisions/s | Redis commands per decision | errors");
    let memory = MemoryStore::new();
    for mode in [Mode::Plain, Mode::Committed] {
        let (rate, _, errors) = run(&memory, &policy, mode, 1, length).await;
        println!("memory | {} | {rate:.0} | - | {errors}", mode.name());
    }

    let redis = RedisStore::builder()
        .prefix("bench-reserve:")
        .connect(&url)
        .await?;
    let info = redis::Client::open(url.as_str())?;
    let mut info = info.get_multiplexed_async_connection().await?;
    let batched = Arc::new(Batched::builder(redis.clone()).build());
    for mode in [Mode::Plain, Mode::Committed] {
        let before = commands(&mut info).await?;
        let (rate, done, errors) = run(&redis, &policy, mode, concurrency, length).await;
        let per = (commands(&mut info).await? - before - 1) as f64 / done as f64;
        println!(
            "RedisStore, {concurrency} callers | {} | {rate:.0} | {per:.2} | {errors}",
            mode.name()
        );
    }
    for mode in [Mode::Plain, Mode::Committed] {
        let before = commands(&mut info).await?;
        let (rate, done, errors) = run(&batched, &policy, mode, concurrency, length).await;
        let per = (commands(&mut info).await? - before - 1) as f64 / done as f64;
        println!(
            "Batched, {concurrency} callers | {} | {rate:.0} | {per:.3} | {errors}",
            mode.name()
        );
    }
    Ok(())
}

/// The calls Redis has run, every command together (INFO included).
async fn commands(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<u64, Box<dyn std::error::Error>> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(text
        .lines()
        .filter_map(|line| line.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
        .sum())
}

/// `concurrency` callers deciding over 10,000 keys for `length`: decisions per second,
/// decisions and failed ones.
async fn run<S: Store + Clone>(
    store: &S,
    policy: &Policy,
    mode: Mode,
    concurrency: usize,
    length: Duration,
) -> (f64, u64, u64) {
    let start = Instant::now();
    let end = start + length;
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let (store, policy) = (store.clone(), policy.clone());
            tokio::spawn(async move {
                let (mut done, mut errors) = (0u64, 0u64);
                let mut i = w as u64;
                while Instant::now() < end {
                    let key = format!("u{}", i * 7_919 % 10_000);
                    i += 1;
                    if !decide(&store, &policy, &key, mode).await {
                        errors += 1;
                    }
                    done += 1;
                }
                (done, errors)
            })
        })
        .collect();
    let (mut done, mut errors) = (0, 0);
    for task in tasks {
        let (d, e) = task.await.expect("task");
        done += d;
        errors += e;
    }
    (done as f64 / start.elapsed().as_secs_f64(), done, errors)
}
