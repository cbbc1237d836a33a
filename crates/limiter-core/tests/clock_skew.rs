//! Clock skew: two application instances whose host clocks differ by 8 hours. The Redis
//! store reads only Redis `TIME`, so both make the decisions one instance would make. A
//! naive sliding log fed with each host's clock, kept only here, shows the failure.

mod support;

use std::time::Duration;

use limiter_core::{Algorithm, Clock, Limit, Limiter, ManualClock};
use redis::AsyncCommands;
use redis_harness::RedisServer;
use support::*;

const EIGHT_HOURS: Duration = Duration::from_secs(8 * 3600);

/// A naive sliding log whose "now" comes from the calling host.
async fn naive_log(
    conn: &mut redis::aio::MultiplexedConnection,
    host: &ManualClock,
    limit: usize,
) -> bool {
    let now = host.now_us();
    let window = 60_000_000;
    let _: () = conn.zrembyscore("naive", 0, now - window).await.unwrap();
    let count: usize = conn.zcard("naive").await.unwrap();
    if count >= limit {
        return false;
    }
    let member = format!("{now}-{count}");
    let _: () = conn.zadd("naive", member, now).await.unwrap();
    true
}

#[tokio::test]
async fn skewed_instances_decide_identically_on_redis() {
    let server = RedisServer::spawn();
    let utc = ManualClock::new(T0);
    // Instance B's host clock runs 8 hours behind A's.
    let behind = ManualClock::new(T0 - EIGHT_HOURS.as_micros() as i64);

    // Ours: both instances see the same sequence of decisions, whatever their clocks.
    for algorithm in [
        Algorithm::Gcra { burst: None },
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
    ] {
        let policy = fresh_policy(vec![Limit::new(5, secs(60)).with_algorithm(algorithm)]);
        let a = Limiter::new(policy.clone(), redis_store(&server).await);
        let b = Limiter::new(policy, redis_store(&server).await);
        let mut seen = Vec::new();
        for i in 0..10 {
            let limiter = if i % 2 == 0 { &a } else { &b };
            let d = limiter.check("user", 1).await.unwrap();
            seen.push((d.is_allowed(), d.windows()[0].remaining()));
        }
        let expected: Vec<(bool, u64)> = (0..10).map(|i| (i < 5, 4u64.saturating_sub(i))).collect();
        assert_eq!(seen, expected, "{algorithm:?}");
    }

    // Naive: each host's clock decides; B's entries look 8 hours old to A, which drops
    // them, and the two instances together admit far more than the limit.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut admitted = 0;
    for i in 0..10 {
        let host = if i % 2 == 0 { &utc } else { &behind };
        admitted += usize::from(naive_log(&mut conn, host, 5).await);
    }
    assert!(
        admitted > 5,
        "naive host clocks admitted {admitted} at limit 5"
    );
}
