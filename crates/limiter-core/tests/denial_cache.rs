//! `DenialCache`: a hit only ever denies what the store would deny (a differential property
//! test against the plain store, per algorithm), a flood of denials on Redis costs about
//! one script call, and the cache stays within its bound.

mod support;

use std::time::Duration;

use limiter_core::{
    Algorithm, Clock, Decision, DenialCache, Limit, ManualClock, MemoryStore, Period, Policy, Store,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis_harness::RedisServer;
use support::*;

#[derive(Clone, Debug)]
struct Op {
    key: u8,
    cost: u64,
    step: Step,
}

#[derive(Clone, Copy, Debug)]
enum Step {
    /// Moves time on by this many microseconds.
    By(u64),
    /// Moves time to the end of this key's last denial (as the plain store reported its
    /// retry time), plus -1, 0 or +1 µs: the instants where a cache kept one microsecond
    /// too long would deny what the store admits. No step when that moment is past.
    ToRetry(i64),
}

fn ops(window_us: u64) -> impl Strategy<Value = (u64, Vec<Op>)> {
    let step = prop_oneof![
        // Mostly short steps: bursts of requests against a denial still in force.
        4 => Just(Step::By(0)),
        4 => (0..2_000u64).prop_map(Step::By),
        2 => (0..window_us).prop_map(Step::By),
        1 => (0..3 * window_us).prop_map(Step::By),
        // Whole tenths of the window, so that windows end exactly on a step.
        3 => (0..20u64).prop_map(move |tenths| Step::By(tenths * window_us / 10)),
        3 => (-1..=1i64).prop_map(Step::ToRetry),
    ];
    let op = (0u8..3, 0..=3u64, step).prop_map(|(key, cost, step)| Op { key, cost, step });
    // A random start offset so that window boundaries fall anywhere, or exactly on one.
    let offset = prop_oneof![0..86_400_000_000u64, Just(0)];
    (offset, prop::collection::vec(op, 1..80))
}

/// Runs random sequences through a cached store and a plain one on identical clocks:
/// the same requests are allowed; a decision the cache did not answer is the store's
/// own, identical to the plain store's; a cached one is a denial with a retry time no
/// later than the plain store's. Returns the number of cache hits over all cases.
fn cache_is_exact(limits: Vec<Limit>) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let window_us = limits
        .iter()
        .map(|l| l.window().as_micros() as u64)
        .max()
        .unwrap_or(1);
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    let hits = std::cell::Cell::new(0u64);
    let result = runner.run(&ops(window_us), |(offset, ops)| {
        rt.block_on(async {
            let policy = fresh_policy(limits.clone());
            let cached_clock = ManualClock::new(T0 + offset as i64);
            let plain_clock = ManualClock::new(T0 + offset as i64);
            let cached = DenialCache::builder(memory_store(&cached_clock))
                .clock(cached_clock.clone())
                .build();
            let plain = memory_store(&plain_clock);
            let mut denial_ends = [None::<i64>; 3];
            for (i, op) in ops.iter().enumerate() {
                let now = plain_clock.now_us();
                let step_us = match op.step {
                    Step::By(us) => us,
                    Step::ToRetry(delta) => denial_ends[usize::from(op.key)]
                        .map_or(0, |end| u64::try_from(end + delta - now).unwrap_or(0)),
                };
                let step = Duration::from_micros(step_us);
                cached_clock.advance(step);
                plain_clock.advance(step);
                let key = format!("k{}", op.key);
                let c = cached.check(&policy, &key, op.cost).await.unwrap();
                let p = plain.check(&policy, &key, op.cost).await.unwrap();
                prop_assert_eq!(
                    c.is_allowed(),
                    p.is_allowed(),
                    "op #{} {:?}: cached {:?}, plain {:?}",
                    i,
                    op,
                    c,
                    p
                );
                if let Some(retry) = p.retry_after() {
                    denial_ends[usize::from(op.key)] =
                        Some(plain_clock.now_us() + retry.as_micros() as i64);
                }
                if c.is_cached() {
                    hits.set(hits.get() + 1);
                    prop_assert!(!c.is_allowed() && op.cost > 0, "op #{} {:?}", i, op);
                    prop_assert_eq!(c.denied_by().is_some(), true);
                    let (Some(cr), Some(pr)) = (c.retry_after(), p.retry_after()) else {
                        return Err(TestCaseError::fail(format!(
                            "op #{i} {op:?}: a cached denial and the store's both name a retry time: {c:?} / {p:?}"
                        )));
                    };
                    prop_assert!(cr <= pr, "op #{} {:?}: cached retry {:?} > store's {:?}", i, op, cr, pr);
                    prop_assert!(cr > Duration::ZERO);
                } else {
                    prop_assert_eq!(&c, &p, "op #{} {:?}", i, op);
                }
            }
            Ok::<(), TestCaseError>(())
        })
    });
    if let Err(e) = result {
        panic!("the cache answered differently from the store: {e}");
    }
    hits.get()
}

fn assert_exact_and_used(limits: Vec<Limit>) {
    let hits = cache_is_exact(limits);
    assert!(hits > 100, "the sequences exercise the cache: {hits} hits");
}

#[test]
fn exact_on_gcra() {
    assert_exact_and_used(vec![Limit::new(3, secs(1))]);
    assert_exact_and_used(vec![Limit::new(2, Duration::from_millis(700))
        .with_algorithm(Algorithm::Gcra { burst: Some(5) })]);
}

#[test]
fn exact_on_fixed_windows() {
    assert_exact_and_used(vec![
        Limit::new(4, Duration::from_millis(1500)).with_algorithm(Algorithm::FixedWindow)
    ]);
    assert_exact_and_used(vec![Limit::per_calendar(4, Period::Minute)]);
}

#[test]
fn exact_on_sliding_counter() {
    assert_exact_and_used(vec![
        Limit::new(5, secs(1)).with_algorithm(Algorithm::SlidingWindow)
    ]);
}

#[test]
fn exact_on_sliding_log() {
    assert_exact_and_used(vec![
        Limit::new(4, secs(1)).with_algorithm(Algorithm::SlidingLog)
    ]);
}

#[test]
fn exact_on_a_multi_window_policy() {
    assert_exact_and_used(vec![
        Limit::new(3, Duration::from_millis(300)),
        Limit::new(5, secs(1)).with_algorithm(Algorithm::SlidingLog),
        Limit::new(6, secs(2)).with_algorithm(Algorithm::SlidingWindow),
        Limit::new(8, secs(3)).with_algorithm(Algorithm::FixedWindow),
    ]);
}

#[tokio::test]
async fn a_flood_of_denials_on_redis_costs_about_one_script_call() {
    let server = RedisServer::spawn();
    let cache = DenialCache::new(redis_store(&server).await);
    let policy = fresh_policy(vec![Limit::new(1, secs(3600)).with_name("hour")]);
    assert!(cache.check(&policy, "flood", 1).await.unwrap().is_allowed());

    let before = server.script_calls();
    for i in 0..1000 {
        let d = cache.check(&policy, "flood", 1).await.unwrap();
        assert!(!d.is_allowed(), "#{i}");
        assert_eq!(
            d.is_cached(),
            i > 0,
            "#{i}: only the first denial asks Redis"
        );
        let retry = d.retry_after().expect("a retry time");
        assert!(
            retry > Duration::ZERO && retry <= secs(3600),
            "#{i}: {retry:?}"
        );
        assert_eq!(d.denied_by(), Some(0));
    }
    let flood = server.script_calls() - before;
    assert!(flood <= 2, "1000 denials made {flood} script calls");

    // A larger cost is denied from memory too; another key is unaffected.
    assert!(cache.lookup(&policy, "flood", 1).is_some());
    assert!(cache.check(&policy, "other", 1).await.unwrap().is_allowed());
    assert!(!cache.check(&policy, "other", 1).await.unwrap().is_cached());

    // A peek reaches Redis, and reports Redis's figures.
    let before = server.script_calls();
    let peek = cache.check(&policy, "flood", 0).await.unwrap();
    assert!(!peek.is_cached());
    assert_eq!(peek.windows()[0].remaining(), 0);
    assert_eq!(
        server.script_calls() - before,
        1,
        "the peek was one script call"
    );
}

async fn deny(
    cache: &DenialCache<MemoryStore<ManualClock>, ManualClock>,
    policy: &Policy,
    key: &str,
) -> Decision {
    assert!(cache.check(policy, key, 1).await.unwrap().is_allowed());
    let denied = cache.check(policy, key, 1).await.unwrap();
    assert!(!denied.is_allowed());
    denied
}

#[tokio::test]
async fn holds_at_most_its_bound() {
    let clock = ManualClock::new(T0);
    for max_keys in [1, 100, 1_000] {
        let cache = DenialCache::builder(memory_store(&clock))
            .max_keys(max_keys)
            .clock(clock.clone())
            .build();
        // quick_cache splits the bound over shards of at least 32 entries each, rounding
        // each shard's share up.
        let capacity = cache.capacity();
        assert!(
            capacity >= max_keys && capacity <= max_keys + max_keys / 31 + 1,
            "max_keys {max_keys}: capacity {capacity}"
        );
        let policy = fresh_policy(vec![Limit::new(1, secs(3600))]);
        for i in 0..5 * max_keys {
            deny(&cache, &policy, &format!("key-{i}")).await;
            assert!(cache.len() <= capacity, "{} > {capacity}", cache.len());
        }
        assert!(!cache.is_empty());
        // Whatever was kept still answers.
        let retained = (0..5 * max_keys)
            .filter(|i| cache.lookup(&policy, &format!("key-{i}"), 1).is_some())
            .count();
        assert!(retained >= 1 && retained <= capacity, "{retained}");
    }
}

#[tokio::test]
async fn defaults_clones_and_a_zero_bound() {
    let clock = ManualClock::new(T0);
    let off = DenialCache::builder(memory_store(&clock))
        .max_keys(0)
        .clock(clock.clone())
        .build();
    assert_eq!(off.capacity(), 0, "a bound of 0 remembers nothing");
    let policy = fresh_policy(vec![Limit::new(1, secs(60))]);
    assert!(off.check(&policy, "k", 1).await.unwrap().is_allowed());
    let denied = off.check(&policy, "k", 1).await.unwrap();
    assert!(
        !denied.is_allowed() && !denied.is_cached(),
        "the store denied"
    );
    assert!(off.lookup(&policy, "k", 1).is_none() && off.is_empty());
    assert!(!off.check(&policy, "k", 1).await.unwrap().is_cached());

    let cache = DenialCache::builder(memory_store(&clock))
        .max_keys(1)
        .clock(clock.clone())
        .build();
    deny(&cache, &policy, "k").await;
    let clone = cache.clone();
    assert!(
        clone.lookup(&policy, "k", 1).is_some(),
        "clones share their memory"
    );
    assert!(clone.ping().await.is_ok());
    assert_eq!(clone.inner().len(), 1, "the store still holds the key");

    let default = DenialCache::new(MemoryStore::new());
    assert!(default.capacity() >= 10_000);
    assert!(default.is_empty());
}
