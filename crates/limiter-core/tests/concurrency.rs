//! Exactness under contention: 1000 concurrent requests on one key with room for 100, on
//! the in-memory store (Redis: `concurrency_redis.rs`) -- and the naive two-round-trip
//! design the scripts replace, for contrast.

mod support;

use std::sync::Arc;

use limiter_core::{Algorithm, Limit, Limiter, MemoryStore, Store};
use redis::AsyncCommands;
use redis_harness::RedisServer;
use support::*;

const LIMIT: u64 = 100;

fn algorithms() -> [Algorithm; 4] {
    [
        Algorithm::Gcra { burst: None },
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_admits_exactly_the_limit() {
    let store = MemoryStore::new();
    for algorithm in algorithms() {
        // A day-long window: no refill can happen during the test, whatever its speed.
        let policy = fresh_policy(vec![
            Limit::new(LIMIT, secs(86_400)).with_algorithm(algorithm)
        ]);
        let limiter = Limiter::new(policy, store.clone());
        assert_eq!(admitted(&[limiter]).await, LIMIT as usize, "{algorithm:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_stays_exact_among_many_other_keys_and_policies() {
    // One shared budget hit by 3000 requests interleaved with 30,000 on other keys and
    // policies (inserts, sweeps, other shards), on the production clock.
    let store = MemoryStore::builder().shards(4).build();
    let shared = fresh_policy(vec![Limit::new(500, secs(86_400))]);
    let others = fresh_policy(vec![
        Limit::new(2, secs(3600)),
        Limit::new(5, secs(86_400)).with_algorithm(Algorithm::SlidingWindow),
    ]);
    let tasks: Vec<_> = (0..3000)
        .map(|i| {
            let (store, shared, others) = (store.clone(), shared.clone(), others.clone());
            tokio::spawn(async move {
                for j in 0..10 {
                    store
                        .check(&others, &format!("user-{i}-{j}"), 1)
                        .await
                        .unwrap();
                }
                store
                    .check(&shared, "global", 1)
                    .await
                    .unwrap()
                    .is_allowed()
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += usize::from(t.await.unwrap());
    }
    assert_eq!(allowed, 500);
}

/// The design the scripts replace: read the count, decide in the application, then
/// increment -- two round trips with a gap between them. Kept only here, as the contrast.
async fn naive_check_then_increment(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> bool {
    let count: Option<u64> = conn.get(key).await.expect("GET");
    if count.unwrap_or(0) >= LIMIT {
        return false;
    }
    let _: u64 = conn.incr(key, 1).await.expect("INCR");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn naive_two_round_trips_over_admit_by_more_than_ten_percent() {
    let server = RedisServer::spawn();
    let client = redis::Client::open(server.url()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let conn = Arc::new(conn);
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut conn = (*conn).clone();
            tokio::spawn(async move { naive_check_then_increment(&mut conn, "naive").await })
        })
        .collect();
    let mut allowed = 0;
    for handle in handles {
        allowed += usize::from(handle.await.unwrap());
    }
    assert!(
        allowed as u64 > LIMIT + LIMIT / 10,
        "the naive design admitted {allowed} of {TASKS} at limit {LIMIT}: expected over-admission above 10%"
    );
    println!("naive check-then-increment admitted {allowed} at limit {LIMIT}");
}
