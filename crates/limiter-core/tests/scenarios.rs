//! The behavioural scenarios, each run on the in-memory store and on a real Redis.

mod support;

use std::time::Duration;

use limiter_core::{
    Algorithm, Error, Limit, Limiter, ManualClock, Period, Store, Verdict, MAX_KEY_LEN,
};
use redis_harness::RedisServer;
use support::*;

/// Runs `scenario` on a memory store and on a Redis store, both driven by one manual clock.
macro_rules! on_both_stores {
    ($scenario:ident) => {{
        let server = RedisServer::spawn();
        let clock = ManualClock::new(T0);
        $scenario(memory_store(&clock), &clock).await;
        let clock = ManualClock::new(T0);
        $scenario(redis_store_on_clock(&server, &clock).await, &clock).await;
    }};
}

async fn ten_requests_at_five_per_second<S: Store + Clone>(store: S, clock: &ManualClock) {
    for algorithm in [
        Algorithm::Gcra { burst: None },
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
    ] {
        let policy = fresh_policy(vec![Limit::new(5, secs(1)).with_algorithm(algorithm)]);
        let limiter = Limiter::new(policy, store.clone());
        let mut allowed = Vec::new();
        for _ in 0..10 {
            allowed.push(limiter.check("k", 1).await.unwrap().is_allowed());
        }
        assert_eq!(
            allowed,
            [true, true, true, true, true, false, false, false, false, false],
            "{algorithm:?}"
        );
        // A full window later (two for the sliding counter's weighted previous window).
        clock.advance(secs(2));
        assert!(
            limiter.check("k", 1).await.unwrap().is_allowed(),
            "{algorithm:?}"
        );
    }
}

#[tokio::test]
async fn ten_requests_at_five_per_second_on_both_stores() {
    on_both_stores!(ten_requests_at_five_per_second);
}

async fn multi_window_names_the_denying_window<S: Store + Clone>(store: S, clock: &ManualClock) {
    let policy = fresh_policy(vec![
        Limit::new(5, secs(1))
            .with_name("second")
            .with_algorithm(Algorithm::FixedWindow),
        Limit::new(100, secs(60))
            .with_name("minute")
            .with_algorithm(Algorithm::SlidingLog),
    ]);
    let limiter = Limiter::new(policy, store.clone());
    for _ in 0..5 {
        assert!(limiter.check("u", 1).await.unwrap().is_allowed());
    }
    let sixth = limiter.check("u", 1).await.unwrap();
    assert_eq!(sixth.denied_by(), Some(0));
    assert_eq!(limiter.policy().limits()[0].name(), "second");
    // The denied request consumed nothing from the minute window.
    assert_eq!(sixth.windows()[1].remaining(), 95);

    clock.advance(secs(1));
    for i in 0..95 {
        if i % 5 == 0 && i > 0 {
            clock.advance(secs(1));
        }
        assert!(
            limiter.check("u", 1).await.unwrap().is_allowed(),
            "request {i}"
        );
    }
    clock.advance(secs(1));
    let last = limiter.check("u", 1).await.unwrap();
    assert!(!last.is_allowed());
    assert_eq!(last.denied_by(), Some(1), "the minute window denies");
    assert_eq!(
        last.windows()[0].remaining(),
        5,
        "nothing taken from the second window"
    );
    assert!(last.retry_after().unwrap() <= secs(60));
}

#[tokio::test]
async fn multi_window_five_per_second_and_hundred_per_minute() {
    on_both_stores!(multi_window_names_the_denying_window);
}

async fn denied_requests_consume_from_no_window<S: Store + Clone>(store: S, _clock: &ManualClock) {
    for algorithm in [
        Algorithm::Gcra { burst: None },
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
        Algorithm::Calendar(Period::Day),
    ] {
        let policy = fresh_policy(vec![
            Limit::new(10, secs(60)).with_algorithm(algorithm),
            Limit::new(3, secs(60)).with_algorithm(Algorithm::FixedWindow),
        ]);
        let limiter = Limiter::new(policy, store.clone());
        assert!(limiter.check("a", 3).await.unwrap().is_allowed());
        for _ in 0..5 {
            assert!(!limiter.check("a", 1).await.unwrap().is_allowed());
        }
        let peek = limiter.check("a", 0).await.unwrap();
        assert_eq!(peek.windows()[0].remaining(), 7, "{algorithm:?}");
    }
}

#[tokio::test]
async fn all_or_nothing_across_windows() {
    on_both_stores!(denied_requests_consume_from_no_window);
}

async fn peek_and_never_fitting_costs<S: Store + Clone>(store: S, _clock: &ManualClock) {
    let policy = fresh_policy(vec![Limit::new(5, secs(10)).with_name("ten-seconds")]);
    let limiter = Limiter::new(policy, store.clone());
    let peek = limiter.check("p", 0).await.unwrap();
    assert!(peek.is_allowed());
    assert_eq!(peek.windows()[0].remaining(), 5);
    assert_eq!(peek.windows()[0].reset_after(), Duration::ZERO);
    assert!(limiter.check("p", 2).await.unwrap().is_allowed());
    let peek = limiter.check("p", 0).await.unwrap();
    assert_eq!(peek.windows()[0].remaining(), 3, "a peek consumes nothing");
    assert_eq!(
        limiter.check("p", 0).await.unwrap().windows()[0].remaining(),
        3
    );

    let huge = limiter.check("p", 6).await.unwrap();
    assert!(!huge.is_allowed());
    assert!(huge.never_fits());
    assert_eq!(
        huge.retry_after(),
        None,
        "no retry time for a cost that never fits"
    );
    assert_eq!(huge.windows()[0].verdict(), Verdict::Never);
    assert_eq!(huge.windows()[0].remaining(), 3, "and it consumed nothing");
}

#[tokio::test]
async fn peek_and_never_fitting_cost() {
    on_both_stores!(peek_and_never_fitting_costs);
}

async fn bad_and_long_keys<S: Store + Clone>(store: S, _clock: &ManualClock) {
    let policy = fresh_policy(vec![Limit::new(1, secs(60))]);
    let limiter = Limiter::new(policy, store.clone());
    assert!(matches!(limiter.check("", 1).await, Err(Error::EmptyKey)));
    let a = format!("{}-a", "x".repeat(MAX_KEY_LEN));
    let b = format!("{}-b", "x".repeat(MAX_KEY_LEN));
    assert!(limiter.check(&a, 1).await.unwrap().is_allowed());
    assert!(
        limiter.check(&b, 1).await.unwrap().is_allowed(),
        "keys sharing a 256-byte prefix stay distinct"
    );
    assert!(!limiter.check(&a, 1).await.unwrap().is_allowed());
}

#[tokio::test]
async fn empty_key_is_an_error_and_long_keys_are_hashed() {
    on_both_stores!(bad_and_long_keys);
}

async fn weighted_costs<S: Store + Clone>(store: S, clock: &ManualClock) {
    let policy = fresh_policy(vec![Limit::new(1_000_000, secs(60))
        .with_name("tokens")
        .with_algorithm(Algorithm::SlidingLog)]);
    let limiter = Limiter::new(policy, store.clone());
    assert!(limiter.check("t", 600_000).await.unwrap().is_allowed());
    let d = limiter.check("t", 500_000).await.unwrap();
    assert_eq!(d.retry_after(), Some(secs(60)));
    clock.advance(secs(60));
    assert!(limiter.check("t", 1_000_000).await.unwrap().is_allowed());
}

#[tokio::test]
async fn weighted_costs_on_both_stores() {
    on_both_stores!(weighted_costs);
}

async fn calendar_month_resets_on_the_first<S: Store + Clone>(store: S, clock: &ManualClock) {
    let policy = fresh_policy(vec![Limit::per_calendar(2, Period::Month)]);
    let limiter = Limiter::new(policy, store.clone());
    // T0 is 2026-11-23; December starts 8 days later.
    assert!(limiter.check("m", 2).await.unwrap().is_allowed());
    let denied = limiter.check("m", 1).await.unwrap();
    assert_eq!(denied.retry_after(), Some(secs(8 * 86_400)));
    clock.advance(secs(8 * 86_400 - 1));
    assert!(!limiter.check("m", 1).await.unwrap().is_allowed());
    clock.advance(secs(1));
    assert!(limiter.check("m", 1).await.unwrap().is_allowed());
}

#[tokio::test]
async fn calendar_month_windows_on_both_stores() {
    on_both_stores!(calendar_month_resets_on_the_first);
}

#[tokio::test]
async fn high_rates_work_at_microsecond_resolution() {
    // 200k/s GCRA with burst 1: exactly one request per 5 us passes.
    let server = RedisServer::spawn();
    let clock = ManualClock::new(T0);
    let redis = redis_store_on_clock(&server, &clock).await;
    let policy = fresh_policy(vec![
        Limit::new(200_000, secs(1)).with_algorithm(Algorithm::Gcra { burst: Some(1) })
    ]);
    let mut allowed = 0;
    for _ in 0..200 {
        if redis.check(&policy, "fast", 1).await.unwrap().is_allowed() {
            allowed += 1;
        }
        clock.advance(Duration::from_micros(1));
    }
    assert_eq!(allowed, 40);
}
