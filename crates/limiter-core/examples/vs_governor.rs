//! In-memory store vs `governor`'s keyed limiter, as ratios that hold on a noisy machine.
//!
//! Criterion measures one benchmark for seconds, then the next: on a shared machine the
//! speed drifts between them by more than the difference measured. Here every round times
//! each case for a few milliseconds in turn, so each round's ratios compare cases run
//! moments apart; the table gives the median over the rounds.
//!
//! `cargo run --release -p limiter-core --example vs_governor [ROUNDS]`
//!
//! `vs_governor ROUNDS --only CASE` runs the case numbered `CASE` (its row in the table,
//! from 0) alone, for counting its instructions under callgrind: the difference between
//! two rounds and one is one round's `CHECKS` checks, set-up cancelled out.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use limiter_core::{Algorithm, Limit, MemoryStore, Policy};

const KEYS: usize = 10_000;
const CHECKS: u64 = 200_000;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Nanoseconds per check of `CHECKS` checks split over `threads` threads, and how many
/// were admitted.
fn time(threads: u64, check: &(dyn Fn(u64, u64) -> bool + Sync)) -> (f64, u64) {
    let start = Instant::now();
    let admitted = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || (0..CHECKS / threads).filter(|&i| check(t, i)).count()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap() as u64).sum()
    });
    (start.elapsed().as_nanos() as f64 / CHECKS as f64, admitted)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(31);
    let only: Option<usize> = match args.get(2).map(String::as_str) {
        Some("--only") => Some(
            args.get(3)
                .and_then(|c| c.parse().ok())
                .expect("--only takes a case number"),
        ),
        _ => None,
    };
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user:{i}")).collect();
    // Both limiters get the same quota: 1000/s per key with a burst of 4 billion, so that
    // every check of a run is admitted (even the hot key's millions) and both take the
    // same path. Each check adds 1 ms of backlog, more than the time until that key's
    // next check, so every key keeps its state, as governor (which never forgets a key)
    // does. The "expiring" case (1M/s: 1 µs of backlog) measures keys whose state has
    // lapsed by their next check: our store drops such entries, so each check there
    // inserts. The "over its limit" pair (1/s) measures the denial path.
    //
    // Under callgrind (`--only`) code runs some fifty times slower while time runs as
    // usual: at 1000/s the 10,000 keys' backlogs would lapse between their checks, and
    // the count would be of inserts. There the rate is 1/s (a second of backlog per
    // check), which takes the same paths as 1000/s does natively.
    let rate = if only.is_some() { 1 } else { 1000 };
    let burst = 4_000_000_000;
    let sustained = |per_second| {
        Limit::new(per_second, Duration::from_secs(1))
            .with_algorithm(Algorithm::Gcra { burst: Some(burst) })
    };
    let one = Policy::new("bench", vec![sustained(rate)]).unwrap();
    let expiring = Policy::new("expiring", vec![sustained(1_000_000)]).unwrap();
    let three = Policy::new(
        "bench3",
        vec![
            sustained(rate),
            Limit::new(60_000_000_000, Duration::from_secs(60))
                .with_algorithm(Algorithm::SlidingWindow),
            Limit::new(3_600_000_000_000, Duration::from_secs(3600))
                .with_algorithm(Algorithm::FixedWindow),
        ],
    )
    .unwrap();
    let strict = Policy::new("strict", vec![Limit::new(1, Duration::from_secs(1))]).unwrap();
    // One store per policy, as each governor limiter holds one quota's keys: a shared
    // store would hold all of them (30,000 entries where governor's maps hold 10,000).
    let (store, store3, store_expiring, store_strict) = (
        MemoryStore::new(),
        MemoryStore::new(),
        MemoryStore::new(),
        MemoryStore::new(),
    );
    let quota = Quota::per_second(NonZeroU32::new(rate as u32).unwrap())
        .allow_burst(NonZeroU32::new(burst as u32).unwrap());
    let gov = Arc::new(RateLimiter::keyed(quota));
    let gov_strict = RateLimiter::keyed(Quota::per_second(NonZeroU32::MIN));
    let gov_str: Arc<RateLimiter<String, _, _>> = Arc::new(RateLimiter::keyed(quota));
    for (i, key) in keys.iter().enumerate() {
        let _ = store.check_now(&one, key, 1);
        let _ = store3.check_now(&three, key, 1);
        let _ = gov.check_key(&(i as u64));
        let _ = gov_str.check_key(key);
    }
    let _ = store_strict.check_now(&strict, "user:7", 1);
    let _ = gov_strict.check_key(&7u64);
    let key = |t: u64, i: u64| ((i * 7 + t) % KEYS as u64) as usize;

    type Case<'a> = (&'static str, u64, Box<dyn Fn(u64, u64) -> bool + Sync + 'a>);
    let cases: Vec<Case> = vec![
        (
            "governor, 1 hot key",
            1,
            Box::new(|_, _| black_box(gov.check_key(&7).is_ok())),
        ),
        (
            "ours, 1 window, 1 hot key",
            1,
            Box::new(|_, _| {
                black_box(
                    store
                        .check_now(&one, "user:7", 1)
                        .is_ok_and(|d| d.is_allowed()),
                )
            }),
        ),
        (
            "ours, 3 windows, 1 hot key",
            1,
            Box::new(|_, _| {
                black_box(
                    store3
                        .check_now(&three, "user:7", 1)
                        .is_ok_and(|d| d.is_allowed()),
                )
            }),
        ),
        (
            "governor, 1 hot key over its limit (denied)",
            1,
            Box::new(|_, _| black_box(gov_strict.check_key(&7).is_ok())),
        ),
        (
            "ours, 1 window, 1 hot key over its limit (denied)",
            1,
            Box::new(|_, _| {
                black_box(
                    store_strict
                        .check_now(&strict, "user:7", 1)
                        .is_ok_and(|d| d.is_allowed()),
                )
            }),
        ),
        (
            "governor, 10k keys (u64)",
            1,
            Box::new(|t, i| black_box(gov.check_key(&(key(t, i) as u64)).is_ok())),
        ),
        (
            "governor, 10k keys (String)",
            1,
            Box::new(|t, i| black_box(gov_str.check_key(&keys[key(t, i)]).is_ok())),
        ),
        (
            "ours, 1 window, 10k keys",
            1,
            Box::new(|t, i| {
                black_box(
                    store
                        .check_now(&one, &keys[key(t, i)], 1)
                        .is_ok_and(|d| d.is_allowed()),
                )
            }),
        ),
        (
            "ours, 1 window, 10k keys, expiring between checks",
            1,
            Box::new(|t, i| {
                black_box(
                    store_expiring
                        .check_now(&expiring, &keys[key(t, i)], 1)
                        .is_ok_and(|d| d.is_allowed()),
                )
            }),
        ),
        (
            "ours, 3 windows, 10k keys",
            1,
            Box::new(|t, i| {
                black_box(
                    store3
                        .check_now(&three, &keys[key(t, i)], 1)
                        .is_ok_and(|d| d.is_allowed()),
                )
            }),
        ),
        (
            "governor, 10k keys (u64), 2 threads",
            2,
            Box::new(|t, i| black_box(gov.check_key(&(key(t, i) as u64)).is_ok())),
        ),
        (
            "governor, 10k keys (String), 2 threads",
            2,
            Box::new(|t, i| black_box(gov_str.check_key(&keys[key(t, i)]).is_ok())),
        ),
        (
            "ours, 1 window, 10k keys, 2 threads",
            2,
            Box::new(|t, i| {
                black_box(
                    store
                        .check_now(&one, &keys[key(t, i)], 1)
                        .is_ok_and(|d| d.is_allowed()),
                )
            }),
        ),
    ];
    // The peer each case is compared with, by index into `cases`: the same key type.
    let peer = [0, 0, 0, 3, 3, 5, 5, 6, 6, 6, 10, 10, 11];

    if let Some(i) = only {
        let (name, threads, check) = &cases[i];
        let admitted: u64 = (0..rounds).map(|_| time(*threads, check.as_ref()).1).sum();
        println!("{name}: {admitted} of {} admitted", rounds as u64 * CHECKS);
        return;
    }

    let mut times = vec![Vec::with_capacity(rounds); cases.len()];
    let mut admitted = vec![0; cases.len()];
    for _ in 0..rounds {
        for (i, (_, threads, check)) in cases.iter().enumerate() {
            let (ns, n) = time(*threads, check.as_ref());
            times[i].push(ns);
            admitted[i] += n;
        }
    }
    println!("| case | admitted | ns/check (median of {rounds} rounds) | ratio to governor (median of per-round ratios) |");
    println!("|---|---|---|---|");
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let ratios = times[i]
            .iter()
            .zip(&times[peer[i]])
            .map(|(ours, theirs)| ours / theirs)
            .collect();
        println!(
            "| {name} | {:.1}% | {:.1} | {:.2}x |",
            100.0 * admitted[i] as f64 / (rounds as u64 * CHECKS) as f64,
            median(times[i].clone()),
            median(ratios)
        );
    }
}
