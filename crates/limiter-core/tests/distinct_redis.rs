//! `RedisDistinct` on a real redis-server: distinct counts per set, window TTLs.

use std::time::Duration;

use limiter_core::{DistinctCounter, RedisDistinct};
use redis_harness::RedisServer;

fn spread(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[tokio::test]
async fn counts_distinct_items_per_set_with_a_ttl() {
    let redis = RedisServer::spawn();
    let counter = RedisDistinct::connect(&redis.url(), "t:").await.unwrap();
    let minute = Duration::from_secs(60);
    for _ in 0..3 {
        counter.insert("10.0.0.1", spread(1), minute).await.unwrap();
    }
    assert_eq!(
        counter.insert("10.0.0.1", spread(2), minute).await.unwrap(),
        2
    );
    assert_eq!(
        counter.insert("10.0.0.2", spread(1), minute).await.unwrap(),
        1
    );
    let mut last = 0;
    for i in 0..10_000 {
        last = counter.insert("10.0.0.3", spread(i), minute).await.unwrap();
    }
    assert!((9_500..=10_500).contains(&last), "{last}");

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("t:{distinct:10.0.0.1}")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=60_000).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn a_prefix_with_braces_is_refused() {
    let redis = RedisServer::spawn();
    assert!(RedisDistinct::connect(&redis.url(), "a{b}").await.is_err());
}
