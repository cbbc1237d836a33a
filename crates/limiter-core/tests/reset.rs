//! `peek` and `reset` on every store: a peek charges nothing; a reset makes every window
//! of the key whole again (other keys untouched), on memory, Redis, `Batched`, a
//! Cluster and behind the failure modes; behind leases, the lease held before the reset
//! admits nothing after it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use limiter_core::{
    Algorithm, Batched, FailureMode, Guarded, Leased, Limit, MemoryStore, RedisStore, Store,
};
use redis_harness::{RedisCluster, RedisServer};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

async fn reset_on<S: Store>(store: &S, label: &str) {
    let policy = fresh_policy(vec![
        Limit::new(5, MINUTE),
        Limit::new(8, MINUTE).with_algorithm(Algorithm::SlidingLog),
        Limit::new(9, MINUTE).with_algorithm(Algorithm::SlidingWindow),
        Limit::new(10, MINUTE).with_algorithm(Algorithm::FixedWindow),
    ]);
    let left = |d: limiter_core::Decision| -> Vec<u64> {
        d.windows().iter().map(|w| w.remaining()).collect()
    };
    for _ in 0..5 {
        assert!(
            store.check(&policy, "k", 1).await.unwrap().is_allowed(),
            "{label}"
        );
    }
    store.check(&policy, "other", 2).await.unwrap();
    assert!(
        !store.check(&policy, "k", 1).await.unwrap().is_allowed(),
        "{label}"
    );
    for _ in 0..2 {
        let now = store.peek(&policy, "k").await.unwrap();
        assert_eq!(left(now), [0, 3, 4, 5], "{label}: a peek charges nothing");
    }
    store.reset(&policy, "k").await.unwrap();
    let now = store.peek(&policy, "k").await.unwrap();
    assert_eq!(left(now), [5, 8, 9, 10], "{label}: whole again");
    let other = store.peek(&policy, "other").await.unwrap();
    assert_eq!(
        left(other),
        [3, 6, 7, 8],
        "{label}: another key is untouched"
    );
    assert!(
        store.check(&policy, "k", 1).await.unwrap().is_allowed(),
        "{label}"
    );
    store.reset(&policy, "never-seen").await.unwrap();
}

#[tokio::test]
async fn reset_makes_the_windows_whole_on_every_store() {
    reset_on(&MemoryStore::new(), "memory").await;
    let server = RedisServer::spawn();
    reset_on(&redis_store(&server).await, "redis").await;
    reset_on(
        &Batched::builder(redis_store(&server).await).build(),
        "batched",
    )
    .await;
    for mode in [FailureMode::Open, FailureMode::Local { share: 0.5 }] {
        let guarded = Guarded::builder(redis_store(&server).await)
            .failure_mode(mode)
            .build()
            .unwrap();
        reset_on(&guarded, &format!("guarded {mode:?}")).await;
    }
    let cluster = RedisCluster::spawn();
    let nodes = cluster.nodes();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let store = RedisStore::builder()
        .connect_cluster(&nodes)
        .await
        .expect("connect to the test cluster");
    reset_on(&store, "cluster").await;
}

/// A hot key takes a lease; after the reset, the lease's units (counted before it) are
/// not admitted again: the key gets exactly its limit afresh, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_before_a_reset_admits_nothing_after_it() {
    let server = RedisServer::spawn();
    let leased =
        Arc::new(Leased::builder(Batched::builder(redis_store(&server).await).build()).build());
    let policy = fresh_policy(vec![
        Limit::new(1_000, MINUTE).with_algorithm(Algorithm::FixedWindow)
    ]);
    let burst = |n: usize| {
        join_all((0..n).map(|_| {
            let (leased, policy) = (Arc::clone(&leased), policy.clone());
            async move { leased.check(&policy, "hot", 1).await.unwrap().is_allowed() }
        }))
    };
    // The store's first answer tells the lane its room; the bursts after it lease.
    assert!(leased.check(&policy, "hot", 1).await.unwrap().is_allowed());
    for _ in 0..3 {
        assert!(burst(100).await.iter().all(|a| *a));
    }
    assert!(leased.stats().leases > 0, "no lease was taken");
    leased.reset(&policy, "hot").await.unwrap();
    let admitted = burst(1_500).await.into_iter().filter(|a| *a).count();
    assert!(admitted <= 1_000, "{admitted} admitted after the reset");
    assert!(admitted >= 990, "only {admitted} admitted after the reset");
}
