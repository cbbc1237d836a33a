//! In-memory store specifics: memory comes back after a burst of distinct keys, and the
//! key cap refuses new keys (never existing ones) when nothing has expired; time never
//! goes back within the store, whatever the clock does.

mod support;

use limiter_core::{
    Algorithm, Error, Limit, ManualClock, MemoryStore, Store, StoreError, DEFAULT_MAX_KEYS,
};
use support::*;

#[tokio::test]
async fn expired_entries_are_reclaimed_after_a_burst_of_distinct_keys() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .shards(8)
        .build();
    let policy = fresh_policy(vec![
        Limit::new(10, secs(1)),
        Limit::new(100, secs(10)).with_algorithm(Algorithm::SlidingLog),
    ]);
    for i in 0..50_000 {
        assert!(store
            .check(&policy, &format!("burst-{i}"), 1)
            .await
            .unwrap()
            .is_allowed());
    }
    assert_eq!(store.len(), 50_000);
    // Nothing expires before the longest window has passed.
    clock.advance(secs(9));
    assert_eq!(store.purge_expired(), 0);
    clock.advance(secs(1));
    assert_eq!(store.purge_expired(), 50_000);
    assert!(store.is_empty());

    // Without an explicit purge, new traffic sweeps as it goes: another burst of
    // distinct keys, each expiring before the next thousand arrive, stays bounded.
    for i in 0..50_000 {
        if i % 1000 == 0 {
            clock.advance(secs(11));
        }
        store.check(&policy, &format!("wave-{i}"), 1).await.unwrap();
    }
    assert!(store.len() < 10_000, "{} entries held", store.len());
}

#[tokio::test]
async fn peeks_and_denials_of_new_keys_create_no_state() {
    let clock = ManualClock::new(T0);
    let store = memory_store(&clock);
    let policy = fresh_policy(vec![Limit::new(1, secs(1))]);
    store.check(&policy, "peek", 0).await.unwrap();
    store.check(&policy, "never", 2).await.unwrap();
    assert!(store.is_empty());
}

#[tokio::test]
async fn key_cap_refuses_new_keys_but_serves_known_ones() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .shards(1)
        .max_keys(3)
        .build();
    let policy = fresh_policy(vec![Limit::new(5, secs(1))]);
    for key in ["a", "b", "c"] {
        store.check(&policy, key, 1).await.unwrap();
    }
    assert!(matches!(
        store.check(&policy, "d", 1).await,
        Err(Error::Store(StoreError::Full(3)))
    ));
    assert!(store.check(&policy, "a", 1).await.unwrap().is_allowed());
    // Once entries expire, the sweep makes room again.
    clock.advance(secs(1));
    assert!(store.check(&policy, "d", 1).await.unwrap().is_allowed());
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn usage_survives_a_policy_change_with_the_same_name() {
    let clock = ManualClock::new(T0);
    let store = memory_store(&clock);
    let old = limiter_core::Policy::new("reload", vec![Limit::new(10, secs(60))]).unwrap();
    for _ in 0..8 {
        store.check(&old, "u", 1).await.unwrap();
    }
    let raised = limiter_core::Policy::new("reload", vec![Limit::new(20, secs(120))]).unwrap();
    let d = store.check(&raised, "u", 0).await.unwrap();
    assert_eq!(
        d.windows()[0].remaining(),
        12,
        "the 8 already counted still count"
    );
}

#[tokio::test]
async fn usage_survives_a_change_in_the_number_of_windows() {
    let clock = ManualClock::new(T0);
    let store = memory_store(&clock);
    let per_minute = || Limit::new(10, secs(60));
    let policy = |limits| limiter_core::Policy::new("resized", limits).unwrap();
    let one = policy(vec![per_minute()]);
    let two = policy(vec![per_minute(), Limit::new(100, secs(3600))]);
    for _ in 0..3 {
        store.check(&one, "u", 1).await.unwrap();
    }
    // A peek under the new shape moves the state and keeps it, though it consumes nothing.
    let d = store.check(&two, "u", 0).await.unwrap();
    assert_eq!(d.windows()[0].remaining(), 7, "the 3 counted still count");
    assert_eq!(d.windows()[1].remaining(), 100, "a new window starts full");
    store.check(&two, "u", 2).await.unwrap();
    let d = store.check(&one, "u", 0).await.unwrap();
    assert_eq!(
        d.windows()[0].remaining(),
        5,
        "and back to one window: 5 counted"
    );
    assert_eq!(store.len(), 1, "one entry, whichever shape it has now");
}

/// A clock that can be set anywhere, backwards included: what a misbehaving time source
/// (or a TSC read racing a re-base on another CPU) could do.
#[derive(Clone)]
struct SettableClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl limiter_core::Clock for SettableClock {
    fn now_us(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn time_never_goes_back_within_the_store_even_if_the_clock_does() {
    let clock = SettableClock(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
        T0 + 1_500_000,
    )));
    let store = MemoryStore::builder()
        .clock(clock.clone())
        .shards(1)
        .build();
    let policy = fresh_policy(vec![
        Limit::new(2, secs(1)).with_algorithm(Algorithm::FixedWindow)
    ]);
    for _ in 0..2 {
        assert!(store.check(&policy, "k", 1).await.unwrap().is_allowed());
    }
    // Back into the previous window: read as that window, the count would start from 0
    // and admit a third request within one second.
    clock
        .0
        .store(T0 + 500_000, std::sync::atomic::Ordering::SeqCst);
    let denied = store.check(&policy, "k", 1).await.unwrap();
    assert!(
        !denied.is_allowed(),
        "no window is reopened by a clock going back"
    );
    assert_eq!(
        denied.retry_after(),
        Some(std::time::Duration::from_millis(500))
    );
}

#[tokio::test]
async fn a_million_unique_keys_stay_within_the_default_cap() {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let policy = fresh_policy(vec![Limit::new(1, secs(3600))]);
    let (mut admitted, mut refused) = (0, 0);
    for i in 0..DEFAULT_MAX_KEYS + 1_000 {
        match store.check_now(&policy, &format!("k{i}"), 1) {
            Ok(decision) => {
                assert!(decision.is_allowed(), "k{i}");
                admitted += 1;
            }
            Err(Error::Store(StoreError::Full(cap))) => {
                assert_eq!(cap, DEFAULT_MAX_KEYS);
                refused += 1;
            }
            Err(other) => panic!("k{i}: {other}"),
        }
    }
    assert_eq!(store.len(), DEFAULT_MAX_KEYS);
    assert_eq!((admitted, refused), (DEFAULT_MAX_KEYS, 1_000));
    // Tracked keys keep being decided exactly: each has used its one unit.
    for i in [0, 1, DEFAULT_MAX_KEYS / 2, DEFAULT_MAX_KEYS - 1] {
        assert!(!store
            .check_now(&policy, &format!("k{i}"), 1)
            .unwrap()
            .is_allowed());
    }
}

#[test]
fn threads_racing_for_the_last_places_never_exceed_the_cap() {
    let store = MemoryStore::builder().shards(64).max_keys(100).build();
    let policy = fresh_policy(vec![Limit::new(1, secs(3600))]);
    let admitted: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let (store, policy) = (&store, &policy);
                scope.spawn(move || {
                    (0..1_000)
                        .filter(|i| store.check_now(policy, &format!("{t}-{i}"), 1).is_ok())
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(admitted, 100);
    assert_eq!(store.len(), 100);
}
