//! The Redis memory guard against a real server with a small `maxmemory`: above the
//! threshold new keys are refused through the failure mode and never written, keys Redis
//! holds keep being decided exactly, and once memory falls new keys are admitted again.

mod support;

use std::time::Duration;

use limiter_core::{
    Batched, BreakerState, Error, FailureMode, Guarded, Limit, MemoryGuard, Policy, RedisStore,
    Store, StoreError,
};
use redis_harness::RedisServer;
use support::*;

/// Used memory as `INFO memory` reports it.
fn used_memory(server: &RedisServer) -> u64 {
    let info: String = server.cmd(&["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO memory reports used_memory")
}

/// Adds 64 KiB values until Redis uses 90% of its 16 MB: above the guard's 80%, below
/// `maxmemory` (which would fail writes). Returns how many.
fn fill(server: &RedisServer) -> usize {
    let filler = "x".repeat(64 * 1024);
    let mut n = 0;
    while used_memory(server) < 16 * 1024 * 1024 * 9 / 10 {
        let _: () = server.cmd(&["SET", &format!("filler:{n}"), &filler]);
        n += 1;
        assert!(n < 1_000, "16 MB never filled");
    }
    n
}

/// Waits (bounded) until the guard reads `over`.
async fn await_over(store: &RedisStore, over: bool) {
    for _ in 0..1_000 {
        if store.memory_over() == Some(over) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the memory guard never read over = {over}");
}

/// Keys Redis holds for `key` under `policy`.
fn keys_of(server: &RedisServer, policy: &Policy, key: &str) -> Vec<String> {
    server.cmd(&["KEYS", &format!("rl:{{{}:{key}}}:*", policy.name())])
}

#[tokio::test]
async fn new_keys_are_refused_above_the_threshold_and_known_keys_decided_exactly() {
    let server = RedisServer::spawn_with(&["--maxmemory", "16mb"]);
    let store = RedisStore::builder()
        .memory_guard(MemoryGuard::default().interval(Duration::from_millis(10)))
        .connect(&server.url())
        .await
        .unwrap();
    let guarded = Guarded::builder(store.clone())
        .failure_mode(FailureMode::Closed)
        .build()
        .unwrap();
    let policy = fresh_policy(vec![Limit::new(5, secs(60)), Limit::new(50, secs(3600))]);
    for _ in 0..2 {
        assert!(guarded
            .check(&policy, "known", 1)
            .await
            .unwrap()
            .is_allowed());
    }
    await_over(&store, false).await;

    let fillers = fill(&server);
    await_over(&store, true).await;

    // A new key: each failure mode decides, and Redis is not written.
    let closed = guarded.check(&policy, "new", 1).await.unwrap();
    assert!(!closed.is_allowed() && closed.is_degraded());
    let open_policy = policy.clone().with_failure_mode(FailureMode::Open);
    let open = guarded
        .check(&open_policy.unwrap(), "new", 1)
        .await
        .unwrap();
    assert!(open.is_allowed() && open.is_degraded());
    let local_policy = policy
        .clone()
        .with_failure_mode(FailureMode::Local { share: 1.0 });
    let local = guarded
        .check(&local_policy.unwrap(), "new", 1)
        .await
        .unwrap();
    assert!(local.is_allowed() && local.is_degraded());
    assert!(matches!(
        store.check(&policy, "new", 1).await,
        Err(Error::Store(StoreError::MemoryPressure))
    ));
    let batched = Batched::builder(store.clone()).build();
    assert!(matches!(
        batched.check(&policy, "new", 1).await,
        Err(Error::Store(StoreError::MemoryPressure))
    ));
    assert!(keys_of(&server, &policy, "new").is_empty());

    // The known key is decided by Redis as usual: 3 units left of 5, then denied.
    for remaining in [2, 1, 0] {
        let d = guarded.check(&policy, "known", 1).await.unwrap();
        assert!(d.is_allowed() && !d.is_degraded());
        assert_eq!(d.windows()[0].remaining(), remaining);
    }
    let denied = batched.check(&policy, "known", 1).await.unwrap();
    assert!(!denied.is_allowed() && !denied.is_degraded());
    // Refusals are answers, not failures: the breaker stayed closed.
    assert_eq!(store.breaker_state(), BreakerState::Closed);

    // Memory falls: new keys are admitted again.
    for i in 0..fillers {
        let _: () = server.cmd(&["DEL", &format!("filler:{i}")]);
    }
    await_over(&store, false).await;
    let fresh = guarded.check(&policy, "new", 1).await.unwrap();
    assert!(fresh.is_allowed() && !fresh.is_degraded());
    assert!(!keys_of(&server, &policy, "new").is_empty());
}

#[tokio::test]
async fn an_invalid_guard_is_a_typed_error() {
    let server = RedisServer::spawn();
    let err = RedisStore::builder()
        .memory_guard(MemoryGuard::default().max_fraction(0.0))
        .connect(&server.url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("max_fraction"), "{err}");
}

/// A Cluster store with a guard starts while a node it lists is down (the Cluster decides
/// without it once its replica takes over), and the guard reads the nodes that answer:
/// over once one of them is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_at_start_does_not_keep_a_guarded_cluster_store_from_starting() {
    let mut cluster = redis_harness::RedisCluster::spawn();
    let nodes = cluster.nodes();
    cluster.kill_master(0);
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let store = RedisStore::builder()
        .memory_guard(MemoryGuard::default().interval(Duration::from_millis(20)))
        .connect_cluster(&nodes)
        .await
        .expect("the store starts with one listed node down");
    assert_eq!(store.memory_over(), Some(false));
    // A `maxmemory` of one byte on every node that answers: over, as the guard must read.
    let mut set = 0;
    for node in &nodes {
        let client = redis::Client::open(*node).unwrap();
        if let Ok(mut conn) = client.get_connection() {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg("1")
                .query(&mut conn)
                .unwrap();
            set += 1;
        }
    }
    assert_eq!(
        set,
        nodes.len() - 1,
        "every node but the killed one answers"
    );
    await_over(&store, true).await;
}
