//! Exactness under contention on Redis: 1000 concurrent requests on one key with room for
//! 100, from one instance and from two with separate connections, each algorithm, with
//! the store's default timeout and breaker. A binary of its own: the in-memory tests of
//! `concurrency.rs` running beside it on a two-core machine would compete for the CPU
//! that the store's I/O thread and Redis need.

mod support;

use limiter_core::{Algorithm, Limit, Limiter};
use redis_harness::RedisServer;
use support::*;

const LIMIT: u64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_admits_exactly_the_limit_from_one_and_two_instances() {
    let server = RedisServer::spawn();
    for algorithm in [
        Algorithm::Gcra { burst: None },
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
    ] {
        let limits = vec![Limit::new(LIMIT, secs(86_400)).with_algorithm(algorithm)];
        let one = Limiter::new(fresh_policy(limits.clone()), redis_store(&server).await);
        assert_eq!(
            admitted(&[one]).await,
            LIMIT as usize,
            "{algorithm:?}, one instance"
        );

        // Two limiters with separate connections: two application instances.
        let policy = fresh_policy(limits);
        let a = Limiter::new(policy.clone(), redis_store(&server).await);
        let b = Limiter::new(policy, redis_store(&server).await);
        assert_eq!(
            admitted(&[a, b]).await,
            LIMIT as usize,
            "{algorithm:?}, two instances"
        );
    }
}
