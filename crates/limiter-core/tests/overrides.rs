//! `RedisOverrides` on a real Redis and Cluster: set, replace, clear and list; the version
//! moves with every change; an expired override is not listed; the hash expires with its
//! last override; a prefix with braces is refused.

use std::time::{Duration, SystemTime};

use limiter_core::{Adjustment, Override, RedisOverrides};
use redis_harness::{RedisCluster, RedisServer};

async fn round_trip(overrides: &RedisOverrides, label: &str) {
    let hour = SystemTime::now() + Duration::from_secs(3_600);
    assert_eq!(overrides.load().await.unwrap().1.len(), 0, "{label}");
    let before = overrides.version().await.unwrap();
    overrides
        .set("api", "user:1", Override::block(hour))
        .await
        .unwrap();
    let after = overrides.version().await.unwrap();
    assert!(
        after.is_some() && after != before,
        "{label}: the version moves"
    );
    overrides
        .set("api", "user:2", Override::scale(3.0, hour).unwrap())
        .await
        .unwrap();
    // Replaced, not added.
    overrides
        .set("api", "user:2", Override::scale(4.0, hour).unwrap())
        .await
        .unwrap();
    // A key with the separator's look cannot pass for another policy's.
    overrides
        .set("a", "pi:user:3", Override::block(hour))
        .await
        .unwrap();
    let (version, mut all) = overrides.load().await.unwrap();
    assert_eq!(version, overrides.version().await.unwrap(), "{label}");
    all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let seen: Vec<(&str, &str, Adjustment)> = all
        .iter()
        .map(|(p, k, o)| (p.as_str(), k.as_str(), o.adjustment()))
        .collect();
    assert_eq!(
        seen,
        [
            ("a", "pi:user:3", Adjustment::Block),
            ("api", "user:1", Adjustment::Block),
            ("api", "user:2", Adjustment::Scale(4.0)),
        ],
        "{label}"
    );
    overrides.clear("api", "user:1").await.unwrap();
    overrides.clear("api", "never-set").await.unwrap();
    assert_eq!(overrides.load().await.unwrap().1.len(), 2, "{label}");

    // Expired: not listed.
    let past = SystemTime::now() - Duration::from_secs(1);
    overrides
        .set("api", "user:9", Override::block(past))
        .await
        .unwrap();
    assert_eq!(overrides.load().await.unwrap().1.len(), 2, "{label}");
}

#[tokio::test]
async fn overrides_round_trip_on_redis_and_cluster() {
    let server = RedisServer::spawn();
    let overrides = RedisOverrides::connect(&server.url(), "t:").await.unwrap();
    round_trip(&overrides, "redis").await;
    assert!(RedisOverrides::connect(&server.url(), "{t}:")
        .await
        .is_err());

    // The hash lives as long as its longest override, no longer.
    let short = RedisOverrides::connect(&server.url(), "short:")
        .await
        .unwrap();
    let soon = SystemTime::now() + Duration::from_millis(1_500);
    short.set("p", "k", Override::block(soon)).await.unwrap();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("short:{overrides}")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=1_500).contains(&ttl), "ttl {ttl}");

    let cluster = RedisCluster::spawn();
    let nodes = cluster.nodes();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let overrides = RedisOverrides::connect_cluster(&nodes, "t:").await.unwrap();
    round_trip(&overrides, "cluster").await;
}
