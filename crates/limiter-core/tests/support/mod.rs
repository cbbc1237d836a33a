//! Shared set-up for limiter-core's integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use limiter_core::{
    BreakerConfig, Limit, Limiter, ManualClock, MemoryStore, Policy, RedisStore, Store,
};
use redis_harness::RedisServer;

/// 2026-11-23T00:00:00Z in microseconds: tests start at a fixed, realistic time.
pub const T0: i64 = 1_795_392_000_000_000;

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A policy with a name no other test uses, so state never leaks between tests.
pub fn fresh_policy(limits: Vec<Limit>) -> Policy {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Policy::new(&format!("p{}-{n}", std::process::id()), limits).expect("valid test policy")
}

pub fn memory_store(clock: &ManualClock) -> MemoryStore<ManualClock> {
    MemoryStore::builder().clock(clock.clone()).build()
}

/// A Redis store whose script reads "now" from `clock` (test-clock builds only).
pub async fn redis_store_on_clock(server: &RedisServer, clock: &ManualClock) -> RedisStore {
    redis_store(server).await.with_script_clock(clock.clone())
}

/// A Redis store using Redis `TIME`, as in production.
pub async fn redis_store(server: &RedisServer) -> RedisStore {
    RedisStore::builder()
        .connect(&server.url())
        .await
        .expect("connect to the test redis")
}

/// How a test's Redis store is bounded: as a user gets it, or with the timeout and the
/// breaker raised far beyond what a loaded machine could trip by accident. Tests of
/// timing-sensitive parts run with both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bounds {
    Defaults,
    Raised,
}

impl Bounds {
    pub const ALL: [Bounds; 2] = [Bounds::Defaults, Bounds::Raised];

    /// The store's timeout and breaker under these bounds.
    pub fn apply(
        self,
        builder: limiter_core::RedisStoreBuilder,
    ) -> limiter_core::RedisStoreBuilder {
        match self {
            Bounds::Defaults => builder,
            Bounds::Raised => builder
                .timeout(Duration::from_secs(1))
                .breaker(BreakerConfig {
                    failures: 3,
                    slow_calls: 1_000,
                    slow_share: 0.5,
                    slow_call: Duration::from_secs(1),
                    window: Duration::from_secs(60),
                    probe_interval: Duration::from_millis(50),
                }),
        }
    }

    /// How often an open breaker probes under these bounds.
    pub fn probe_interval(self) -> Duration {
        match self {
            Bounds::Defaults => BreakerConfig::default().probe_interval,
            Bounds::Raised => Duration::from_millis(50),
        }
    }
}

/// A Redis store using Redis `TIME`, with `bounds`.
pub async fn bounded_store(server: &RedisServer, bounds: Bounds) -> RedisStore {
    bounds
        .apply(RedisStore::builder())
        .connect(&server.url())
        .await
        .expect("connect to the test redis")
}

/// Concurrent checks of the concurrency tests: far above the concurrency any one limit
/// expects.
pub const TASKS: usize = 1000;

/// Fires [`TASKS`] concurrent checks of the key "hot", alternating between `limiters`;
/// returns how many passed.
pub async fn admitted<S: Store + Clone>(limiters: &[Limiter<S>]) -> usize {
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let limiter = limiters[i % limiters.len()].clone();
            tokio::spawn(async move { limiter.check("hot", 1).await })
        })
        .collect();
    let mut allowed = 0;
    for handle in handles {
        if handle.await.expect("task").expect("check").is_allowed() {
            allowed += 1;
        }
    }
    allowed
}
