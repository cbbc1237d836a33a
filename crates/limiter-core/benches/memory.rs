//! In-memory store vs `governor`'s keyed limiter, same run: single-window GCRA on 1 hot
//! key and 10,000 keys, 1 and 2 threads; and a three-window policy.
//!
//! Both limiters get the same quota as in `examples/vs_governor.rs`: 1000/s per key with
//! a burst of 4 billion, so every check is admitted (a burst of 1M, as before, ran out
//! on the hot key within a few iterations and measured denials) and every key keeps its
//! state. Each policy has a store of its own, as each governor limiter holds one quota's
//! keys. `cargo bench -p limiter-core --bench memory`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use governor::{Quota, RateLimiter};
use limiter_core::{Algorithm, CoarseClock, Limit, ManualClock, MemoryStore, Policy};

const KEYS: usize = 10_000;
const BURST: u64 = 4_000_000_000;

fn sustained() -> Limit {
    Limit::new(1000, Duration::from_secs(1)).with_algorithm(Algorithm::Gcra { burst: Some(BURST) })
}

fn one_window() -> Policy {
    Policy::new("bench", vec![sustained()]).unwrap()
}

fn three_windows() -> Policy {
    Policy::new(
        "bench3",
        vec![
            sustained(),
            Limit::new(60_000_000_000, Duration::from_secs(60))
                .with_algorithm(Algorithm::SlidingWindow),
            Limit::new(3_600_000_000_000, Duration::from_secs(3600))
                .with_algorithm(Algorithm::FixedWindow),
        ],
    )
    .unwrap()
}

/// Runs `iters` checks split over `threads` threads; returns the wall time.
fn threaded(
    iters: u64,
    threads: u64,
    check: impl Fn(u64, u64) + Send + Sync + 'static,
) -> Duration {
    let check = Arc::new(check);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let check = Arc::clone(&check);
            std::thread::spawn(move || {
                for i in 0..iters / threads {
                    check(t, i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("user:{i}")).collect());
    let (store, store3) = (MemoryStore::new(), MemoryStore::new());
    let policy = one_window();
    let policy3 = three_windows();
    let quota = Quota::per_second(NonZeroU32::new(1000).unwrap())
        .allow_burst(NonZeroU32::new(BURST as u32).unwrap());
    let gov = Arc::new(RateLimiter::keyed(quota));
    let gov_str: Arc<RateLimiter<String, _, _>> = Arc::new(RateLimiter::keyed(quota));
    for (i, key) in keys.iter().enumerate() {
        let _ = store.check_now(&policy, key, 1);
        let _ = store3.check_now(&policy3, key, 1);
        let _ = gov.check_key(&(i as u64));
        let _ = gov_str.check_key(key);
    }

    let mut g = c.benchmark_group("gcra 1 window, 1 thread");
    g.bench_function("ours, 1 hot key", |b| {
        b.iter(|| {
            black_box(
                store
                    .check_now(&policy, "user:7", 1)
                    .map(|d| d.is_allowed()),
            )
        })
    });
    // The same store on a clock that costs nothing to read: what the OS clock read costs.
    let manual = MemoryStore::builder()
        .clock(ManualClock::new(1_795_392_000_000_000))
        .build();
    let _ = manual.check_now(&policy, "user:7", 1);
    g.bench_function("ours, 1 hot key, clock read excluded", |b| {
        b.iter(|| {
            black_box(
                manual
                    .check_now(&policy, "user:7", 1)
                    .map(|d| d.is_allowed()),
            )
        })
    });
    let (coarse, coarse3) = (
        MemoryStore::builder()
            .clock(CoarseClock::new(Duration::from_millis(1)))
            .build(),
        MemoryStore::builder()
            .clock(CoarseClock::new(Duration::from_millis(1)))
            .build(),
    );
    g.bench_function("ours, 1 hot key, CoarseClock", |b| {
        b.iter(|| {
            black_box(
                coarse
                    .check_now(&policy, "user:7", 1)
                    .map(|d| d.is_allowed()),
            )
        })
    });
    g.bench_function("governor, 1 hot key", |b| {
        b.iter(|| black_box(gov.check_key(&7u64).is_ok()))
    });
    let mut i = 0;
    g.bench_function("ours, 10k keys", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(
                store
                    .check_now(&policy, &keys[i], 1)
                    .map(|d| d.is_allowed()),
            )
        })
    });
    g.bench_function("ours, 10k keys, CoarseClock", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(
                coarse
                    .check_now(&policy, &keys[i], 1)
                    .map(|d| d.is_allowed()),
            )
        })
    });
    g.bench_function("governor, 10k keys (u64)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(gov.check_key(&(i as u64)).is_ok())
        })
    });
    g.bench_function("governor, 10k keys (String)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(gov_str.check_key(&keys[i]).is_ok())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("gcra 1 window, 2 threads, 10k keys (time per check)");
    {
        let (store, policy, keys) = (store.clone(), policy.clone(), Arc::clone(&keys));
        g.bench_function("ours", move |b| {
            let (store, policy, keys) = (store.clone(), policy.clone(), Arc::clone(&keys));
            b.iter_custom(move |iters| {
                let (store, policy, keys) = (store.clone(), policy.clone(), Arc::clone(&keys));
                threaded(iters, 2, move |t, i| {
                    let k = &keys[((i * 7 + t) % KEYS as u64) as usize];
                    black_box(store.check_now(&policy, k, 1).is_ok());
                })
            })
        });
    }
    {
        let gov = Arc::clone(&gov);
        g.bench_function("governor (u64)", move |b| {
            let gov = Arc::clone(&gov);
            b.iter_custom(move |iters| {
                let gov = Arc::clone(&gov);
                threaded(iters, 2, move |t, i| {
                    black_box(gov.check_key(&((i * 7 + t) % KEYS as u64)).is_ok());
                })
            })
        });
    }
    {
        let (gov_str, keys) = (Arc::clone(&gov_str), Arc::clone(&keys));
        g.bench_function("governor (String)", move |b| {
            let (gov_str, keys) = (Arc::clone(&gov_str), Arc::clone(&keys));
            b.iter_custom(move |iters| {
                let (gov_str, keys) = (Arc::clone(&gov_str), Arc::clone(&keys));
                threaded(iters, 2, move |t, i| {
                    let k = &keys[((i * 7 + t) % KEYS as u64) as usize];
                    black_box(gov_str.check_key(k).is_ok());
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("three windows, 1 thread");
    g.bench_function("ours, 1 hot key", |b| {
        b.iter(|| {
            black_box(
                store3
                    .check_now(&policy3, "user:7", 1)
                    .map(|d| d.is_allowed()),
            )
        })
    });
    g.bench_function("ours, 10k keys", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(
                store3
                    .check_now(&policy3, &keys[i], 1)
                    .map(|d| d.is_allowed()),
            )
        })
    });
    g.bench_function("ours, 1 hot key, CoarseClock", |b| {
        b.iter(|| {
            black_box(
                coarse3
                    .check_now(&policy3, "user:7", 1)
                    .map(|d| d.is_allowed()),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
