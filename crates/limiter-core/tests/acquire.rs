//! The waiting API: FIFO per key, exact sleeps (no polling loop), cancellation-safe,
//! bounded waits. Runs on tokio's paused clock, which the memory store follows through
//! a `Clock` reading tokio time: virtual time, no wall-clock timing.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use limiter_core::{
    AcquireError, Algorithm, Clock, Cost, Decision, Error, Limit, Limiter, MemoryStore, Policy,
    Reservation, Store,
};
use redis_harness::RedisServer;
use support::*;

/// The memory store's clock, following tokio's (paused) time.
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now_us(&self) -> i64 {
        T0 + self.0.elapsed().as_micros() as i64
    }
}

/// A store that counts the checks reaching the memory store behind it.
#[derive(Clone)]
struct Counting {
    inner: MemoryStore<Arc<TokioClock>>,
    checks: Arc<AtomicUsize>,
}

impl Store for Counting {
    async fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.inner.check(policy, key, cost).await
    }

    async fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        self.inner.reserve(policy, key, estimate).await
    }

    async fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        self.inner.settle(policy, key, reservation, actual).await
    }

    async fn reset(&self, policy: &Policy, key: &str) -> Result<(), Error> {
        self.inner.reset(policy, key).await
    }
}

fn one_per_100ms() -> Limiter<Counting> {
    let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
    let store = Counting {
        inner: MemoryStore::builder().clock(clock).build(),
        checks: Arc::new(AtomicUsize::new(0)),
    };
    let policy = fresh_policy(vec![
        Limit::new(10, secs(1)).with_algorithm(Algorithm::Gcra { burst: Some(1) })
    ]);
    Limiter::new(policy, store)
}

#[tokio::test(start_paused = true)]
async fn waiters_are_admitted_in_arrival_order_at_the_exact_rate() {
    let limiter = one_per_100ms();
    let start = tokio::time::Instant::now();
    assert!(limiter.check("q", 1).await.unwrap().is_allowed());
    let admitted = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for i in 0..5 {
        let (limiter, admitted) = (limiter.clone(), Arc::clone(&admitted));
        handles.push(tokio::spawn(async move {
            limiter.acquire("q", 1).await.unwrap();
            admitted.lock().unwrap().push((i, start.elapsed()));
        }));
        // Let the waiter reach its place in the queue before the next one arrives.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let admitted = admitted.lock().unwrap().clone();
    let order: Vec<usize> = admitted.iter().map(|&(i, _)| i).collect();
    assert_eq!(order, [0, 1, 2, 3, 4], "FIFO");
    let times: Vec<Duration> = admitted.iter().map(|&(_, t)| t).collect();
    let expected: Vec<Duration> = (1..=5).map(|i| Duration::from_millis(100 * i)).collect();
    assert_eq!(
        times, expected,
        "each admitted as soon as the rate allows (virtual time)"
    );
    // Each waiter checked at most twice: once when it reached the head, once after its
    // exact sleep. A polling loop would check many times per waiter.
    assert!(limiter.store().checks.load(Ordering::SeqCst) <= 1 + 2 * 5);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_consumes_nothing_and_leaves_the_queue() {
    let limiter = one_per_100ms();
    assert!(limiter.check("c", 1).await.unwrap().is_allowed());
    let gave_up = tokio::time::timeout(Duration::from_millis(50), limiter.acquire("c", 1)).await;
    assert!(gave_up.is_err(), "still waiting when dropped");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let peek = limiter.check("c", 0).await.unwrap();
    assert_eq!(
        peek.windows()[0].remaining(),
        1,
        "the dropped waiter took nothing"
    );
    // The next waiter is not stuck behind the dropped one.
    let t = tokio::time::Instant::now();
    limiter.acquire("c", 1).await.unwrap();
    assert_eq!(t.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn gives_up_at_once_when_the_wait_would_exceed_the_maximum() {
    let limiter = one_per_100ms().with_max_wait(Duration::from_millis(250));
    for _ in 0..3 {
        limiter.acquire("m", 1).await.unwrap();
    }
    let t = tokio::time::Instant::now();
    let err = limiter.acquire("m", 3).await.unwrap_err();
    assert_eq!(t.elapsed(), Duration::ZERO, "no pointless wait");
    assert!(
        matches!(err, AcquireError::NeverFits { window: 0 }),
        "{err:?}"
    );

    // Four more at 1 per 100 ms with at most 250 ms of waiting: the last cannot make it.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire("m", 1).await })
        })
        .collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(AcquireError::WaitTooLong { .. }))),
        "{results:?}"
    );
}

#[tokio::test]
async fn acquire_on_redis_waits_for_room() {
    let server = RedisServer::spawn();
    let policy = fresh_policy(vec![Limit::new(5, Duration::from_millis(100))]);
    let limiter = Limiter::new(policy, redis_store(&server).await);
    for _ in 0..8 {
        let d = limiter.acquire("r", 1).await.unwrap();
        assert!(d.is_allowed());
    }
}
