//! Redis store specifics: key layout (prefix, hash tags, TTLs), recovery after the script
//! cache is flushed or Redis restarts empty, and typed errors when Redis is gone.

mod support;

use std::collections::HashSet;

use limiter_core::{
    Algorithm, Error, Limit, Period, RedisStore, Store, StoreConfigError, StoreError,
};
use redis_harness::RedisServer;
use support::*;

fn every_algorithm() -> Vec<Limit> {
    vec![
        Limit::new(5, secs(1)),
        Limit::new(5, secs(2)).with_algorithm(Algorithm::SlidingLog),
        Limit::new(5, secs(3)).with_algorithm(Algorithm::SlidingWindow),
        Limit::new(5, secs(4)).with_algorithm(Algorithm::FixedWindow),
        Limit::per_calendar(5, Period::Hour),
    ]
}

#[tokio::test]
async fn keys_share_a_hash_tag_carry_the_prefix_and_expire() {
    let server = RedisServer::spawn();
    let store = RedisStore::builder()
        .prefix("app:rl:")
        .connect(&server.url())
        .await
        .unwrap();
    let policy = fresh_policy(every_algorithm());
    assert!(store
        .check(&policy, "user:42", 1)
        .await
        .unwrap()
        .is_allowed());

    let keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    assert_eq!(
        keys.len(),
        6,
        "one key per window, two for the log: {keys:?}"
    );
    let tags: HashSet<&str> = keys
        .iter()
        .map(|k| {
            assert!(k.starts_with("app:rl:{"), "{k}");
            let open = k.find('{').unwrap();
            let close = k[open..].find('}').unwrap() + open;
            &k[open + 1..close]
        })
        .collect();
    assert_eq!(
        tags,
        HashSet::from([&*format!("{}:user:42", policy.name())])
    );
    for key in &keys {
        let ttl: i64 = server.cmd(&["PTTL", key]);
        assert!(ttl > 0 && ttl <= 3_600_000, "{key} has TTL {ttl} ms");
    }
    // The hour window's key lives until the hour ends; the others about one window.
    let ttl: i64 = server.cmd(&[
        "PTTL",
        &keys.iter().find(|k| k.ends_with("4c")).unwrap().clone(),
    ]);
    assert!(ttl > 0);
    let ttl: i64 = server.cmd(&[
        "PTTL",
        &keys.iter().find(|k| k.ends_with("0g")).unwrap().clone(),
    ]);
    // Its backlog (one unit of 200 ms) and at most its window (1 s) more.
    assert!(
        (200..=1_200).contains(&ttl),
        "GCRA key lives as long as its backlog and at most a window more: {ttl} ms"
    );
}

/// Many distinct clients leave nothing behind: every key they create carries a TTL, and
/// once their windows have passed Redis holds no key at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_many_clients_all_expire_after_their_windows() {
    let server = RedisServer::spawn();
    let store = redis_store(&server).await;
    let policy = fresh_policy(vec![
        Limit::new(3, secs(1)),
        Limit::new(3, secs(1)).with_algorithm(Algorithm::SlidingLog),
        Limit::new(3, secs(1)).with_algorithm(Algorithm::SlidingWindow),
        Limit::new(3, secs(1)).with_algorithm(Algorithm::FixedWindow),
    ]);
    for client in 0..2_000 {
        let key = format!("client-{client}");
        for _ in 0..2 {
            store.check(&policy, &key, 1).await.unwrap();
        }
    }
    let keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    assert!(keys.len() >= 2_000, "{} keys", keys.len());
    for key in &keys {
        let ttl: i64 = server.cmd(&["PTTL", key]);
        // At most two windows (a sliding counter's count matters through the next one),
        // or expiring now (0) or gone (-2); never without a TTL (-1).
        assert!(
            ttl == -2 || (0..=2_000).contains(&ttl),
            "{key} has TTL {ttl} ms"
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left: i64 = server.cmd(&["DBSIZE"]);
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} keys outlived their windows"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A decision in a window already started writes only its count and leaves the TTL the
/// window's first write set: every key still carries one, bounded by its window's.
#[tokio::test]
async fn keys_keep_their_ttl_through_decisions_in_one_window() {
    let server = RedisServer::spawn();
    let store = redis_store(&server).await;
    let policy = fresh_policy(vec![
        // Hour-long windows: the five decisions fall in one of each.
        Limit::new(50, secs(3_600)).with_algorithm(Algorithm::SlidingWindow),
        Limit::new(50, secs(3_600)).with_algorithm(Algorithm::FixedWindow),
        Limit::per_calendar(50, Period::Hour),
    ]);
    for _ in 0..5 {
        assert!(store
            .check(&policy, "user:42", 1)
            .await
            .unwrap()
            .is_allowed());
    }
    let keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in &keys {
        let ttl: i64 = server.cmd(&["PTTL", key]);
        // A sliding counter's count matters until the next window ends.
        let bound = if key.ends_with('s') {
            7_200_000
        } else {
            3_600_000
        };
        assert!(ttl > 0 && ttl <= bound, "{key} has TTL {ttl} ms");
        let fields: Vec<String> = server.cmd(&["HVALS", key]);
        assert!(
            fields.contains(&"5".to_owned()),
            "{key} counts 5: {fields:?}"
        );
    }

    // One GCRA window: its tat is rewritten in place while the TTL set by the first
    // write outlasts the backlog; the TTL covers the backlog (five units of 72 s) and
    // outlives it by at most the window.
    let gcra = fresh_policy(vec![Limit::new(50, secs(3_600))]);
    for _ in 0..5 {
        assert!(store.check(&gcra, "user:42", 1).await.unwrap().is_allowed());
    }
    let keys: Vec<String> = server.cmd(&["KEYS", "*g"]);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = server.cmd(&["PTTL", &keys[0]]);
    assert!(
        (359_000..=3_960_000).contains(&ttl),
        "{} has TTL {ttl} ms",
        keys[0]
    );
    let value: String = server.cmd(&["GET", &keys[0]]);
    assert!(value.ends_with(":72000000"), "{value}");
}

#[tokio::test]
async fn reloads_the_script_after_a_flush_and_recovers_after_a_restart() {
    let mut server = RedisServer::spawn();
    let store = redis_store(&server).await;
    let policy = fresh_policy(every_algorithm());
    assert!(store.check(&policy, "k", 1).await.unwrap().is_allowed());

    let _: () = server.cmd(&["SCRIPT", "FLUSH"]);
    assert!(
        store.check(&policy, "k", 1).await.unwrap().is_allowed(),
        "NOSCRIPT is handled"
    );

    server.restart();
    // The connection manager reconnects in the background: the first calls may fail,
    // with a typed error; a bounded number of attempts must succeed.
    let mut recovered = false;
    for _ in 0..400 {
        match store.check(&policy, "k", 1).await {
            Ok(d) => {
                assert_eq!(
                    d.windows()[1].remaining(),
                    4,
                    "a restarted Redis starts empty"
                );
                recovered = true;
                break;
            }
            Err(Error::Store(StoreError::Redis(_))) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert!(recovered, "the store recovers after Redis restarts");
}

#[tokio::test]
async fn a_dead_redis_is_a_typed_error() {
    let mut server = RedisServer::spawn();
    let store = redis_store(&server).await;
    let policy = fresh_policy(vec![Limit::new(1, secs(1))]);
    server.kill();
    let err = store.check(&policy, "k", 1).await.unwrap_err();
    let Error::Store(StoreError::Redis(redis_err)) = &err else {
        panic!("expected a Redis error, got {err:?}");
    };
    let source = std::error::Error::source(&err);
    assert!(
        source.is_some_and(|s| s.to_string() == redis_err.to_string()),
        "the Redis client's error is the source: {err:?}"
    );
}

#[tokio::test]
async fn bad_prefix_is_rejected() {
    let server = RedisServer::spawn();
    let err = RedisStore::builder()
        .prefix("a{b")
        .connect(&server.url())
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(StoreError::Config(StoreConfigError::KeyPrefix(ref p))) if p == "a{b"
        ),
        "{err:?}"
    );
}
