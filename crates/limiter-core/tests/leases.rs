//! Quota leases on a real Redis: hot keys admitted in process from units the shared
//! store counted first. Never more than the limit across instances (standalone and
//! Cluster), decisions within 1% of pure Redis, every unused unit given back once leases
//! end, a memory bound that holds under a million keys, and the failure mode deciding
//! when Redis stalls while leases are held.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use limiter_core::{
    Algorithm, Batched, FailureMode, Guarded, LeaseStats, Leased, Limit, Limiter, Period, Policy,
    RedisStore, Store,
};
use redis_harness::{RedisCluster, RedisServer};
use support::*;

/// One instance as the layer builds it: the failure mode outermost, leases over the
/// batched store.
type Instance = Guarded<Leased<Batched>>;

/// One instance on `redis` (its own connection, with the timeout and breaker it was
/// built with): batching, leases and the failure mode `mode`, each at its defaults.
fn instance(redis: RedisStore, mode: FailureMode) -> Instance {
    let leased = Leased::builder(Batched::builder(redis).build()).build();
    Guarded::builder(leased).failure_mode(mode).build().unwrap()
}

async fn instances(server: &RedisServer, n: usize, bounds: Bounds) -> Vec<Instance> {
    let mut all = Vec::new();
    for _ in 0..n {
        let redis = bounded_store(server, bounds).await;
        all.push(instance(redis, FailureMode::Closed));
    }
    all
}

fn stats(instance: &Instance) -> LeaseStats {
    instance.inner().stats()
}

fn algorithms() -> [Algorithm; 4] {
    [
        Algorithm::Gcra { burst: None },
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
    ]
}

fn total(stats: impl IntoIterator<Item = LeaseStats>) -> LeaseStats {
    stats.into_iter().fold(LeaseStats::default(), |mut sum, s| {
        sum.local_admissions += s.local_admissions;
        sum.leases += s.leases;
        sum.outstanding += s.outstanding;
        sum.refunded_units += s.refunded_units;
        sum.failed_refunds += s.failed_refunds;
        sum.oldest_use = sum.oldest_use.max(s.oldest_use);
        sum
    })
}

/// `tasks` concurrent tasks, spread over the instances, each making `each` checks in a
/// row on `key`; returns how many were admitted (by the store or from a lease).
async fn hammer(
    instances: &[Instance],
    policy: &Policy,
    key: &str,
    tasks: usize,
    each: usize,
) -> usize {
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let limiter = Limiter::new(policy.clone(), instances[i % instances.len()].clone());
            let key = key.to_owned();
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..each {
                    let decision = limiter.check(&key, 1).await.unwrap();
                    assert!(!decision.is_degraded(), "the store answered every call");
                    admitted += usize::from(decision.is_allowed());
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for handle in handles {
        admitted += handle.await.unwrap();
    }
    admitted
}

/// Waits (bounded) until every lease has ended and its refund is done.
async fn leases_ended(instances: &[Instance]) -> LeaseStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = total(instances.iter().map(stats));
        if stats.outstanding == 0 {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leases still held after 20 s: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_never_admit_more_than_the_limit() {
    let server = RedisServer::spawn();
    for (n, bounds) in [
        (2, Bounds::Defaults),
        (3, Bounds::Defaults),
        (3, Bounds::Raised),
    ] {
        let all = instances(&server, n, bounds).await;
        for algorithm in algorithms() {
            let policy =
                fresh_policy(vec![Limit::new(100, secs(86_400)).with_algorithm(algorithm)]);
            let admitted = hammer(&all, &policy, "hot", 1000, 1).await;
            assert!(
                (99..=100).contains(&admitted),
                "{n} instances, {bounds:?}, {algorithm:?}: {admitted} admitted"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_a_cluster_never_admit_more_than_the_limit() {
    let cluster = RedisCluster::spawn();
    let nodes = cluster.nodes();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let mut all = Vec::new();
    for _ in 0..3 {
        let redis = RedisStore::builder().connect_cluster(&nodes).await.unwrap();
        all.push(instance(redis, FailureMode::Closed));
    }
    for algorithm in algorithms() {
        let policy = fresh_policy(vec![Limit::new(100, secs(86_400)).with_algorithm(algorithm)]);
        let admitted = hammer(&all, &policy, "hot", 1000, 1).await;
        assert!((99..=100).contains(&admitted), "{algorithm:?}: {admitted}");
        // And a key hot for long enough to be leased, to its limit.
        let policy = fresh_policy(vec![
            Limit::new(1000, secs(86_400)).with_algorithm(algorithm)
        ]);
        let admitted = hammer(&all, &policy, "steady", 12, 200).await;
        assert!(
            (990..=1000).contains(&admitted),
            "{algorithm:?}: {admitted}"
        );
    }
    assert!(total(all.iter().map(stats)).local_admissions > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_keys_are_leased_up_to_their_limit_and_no_further() {
    let server = RedisServer::spawn();
    let all = instances(&server, 3, Bounds::Defaults).await;
    for algorithm in algorithms() {
        let policy = fresh_policy(vec![
            Limit::new(2000, secs(86_400)).with_algorithm(algorithm),
            Limit::new(5000, secs(86_400)).with_algorithm(Algorithm::SlidingWindow),
        ]);
        let before = server.script_calls();
        let admitted = hammer(&all, &policy, "tenant", 12, 500).await;
        let calls = server.script_calls() - before;
        assert!(
            (1980..=2000).contains(&admitted),
            "{algorithm:?}: {admitted} admitted"
        );
        assert!(
            calls < 6000 / 2,
            "{algorithm:?}: {calls} script calls for 6000 requests"
        );
    }
    let stats = leases_ended(&all).await;
    assert!(stats.local_admissions > 1000, "{stats:?}");
    for instance in &all {
        let policy = fresh_policy(vec![Limit::new(2000, secs(86_400))]);
        let leased = instance.inner();
        assert!(leased.stats().oldest_use <= leased.lifetime(&policy));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_units_are_given_back_when_leases_end() {
    let server = RedisServer::spawn();
    let all = instances(&server, 2, Bounds::Defaults).await;
    let plain = redis_store(&server).await;
    for algorithm in algorithms() {
        // Far from any limit, in a window so long that nothing refills meanwhile.
        let policy = fresh_policy(vec![
            Limit::new(100_000, secs(400 * 86_400)).with_algorithm(algorithm)
        ]);
        let refunded_before = total(all.iter().map(stats)).refunded_units;
        let admitted = hammer(&all, &policy, "k", 8, 300).await;
        assert_eq!(admitted, 2400, "{algorithm:?}");
        let stats = leases_ended(&all).await;
        assert!(
            stats.refunded_units > refunded_before,
            "{algorithm:?}: leases ended with units to give back: {stats:?}"
        );
        let peek = plain.check(&policy, "k", 0).await.unwrap();
        assert_eq!(
            peek.windows()[0].remaining(),
            100_000 - 2400,
            "{algorithm:?}: the store counts exactly the units admitted"
        );
    }
}

/// A recorded mix: 80% of requests from 8 hot keys, 20% from 400 others.
fn recorded_traffic(len: usize) -> Vec<String> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            if seed % 100 < 80 {
                format!("hot-{}", (seed >> 8) % 8)
            } else {
                format!("tail-{}", (seed >> 8) % 400)
            }
        })
        .collect()
}

/// Drift is counted per key: the same recorded requests sent to pure Redis and through
/// the wrappers, back to back, must admit the same number per key within 1% of all
/// requests. (Which request of a key at its limit gets the next unit depends on timing
/// in real time, so request-by-request comparison would measure the clock, not the
/// wrappers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_stay_within_one_percent_of_pure_redis() {
    let server = RedisServer::spawn();
    let pure = redis_store(&server).await;
    // Ten times the default speculation, so that even these small limits are leased.
    let wrapped = Leased::builder(Batched::builder(redis_store(&server).await).build())
        .speculation(0.05)
        .build();
    let traffic = recorded_traffic(4000);
    let mut drift = 0;
    let mut requests = 0;
    // Calendar windows too: both stores see the same minute boundaries.
    for algorithm in algorithms()
        .into_iter()
        .chain([Algorithm::Calendar(Period::Minute)])
    {
        let policy = fresh_policy(vec![
            Limit::new(40, secs(2)).with_algorithm(algorithm),
            Limit::new(150, secs(20)).with_algorithm(algorithm),
        ]);
        let twin = Policy::new(&format!("{}-w", policy.name()), policy.limits().to_vec()).unwrap();
        let mut admitted: HashMap<&str, (i64, i64)> = HashMap::new();
        for key in &traffic {
            let expected = pure.check(&policy, key, 1).await.unwrap();
            let got = wrapped.check(&twin, key, 1).await.unwrap();
            assert!(!got.is_degraded());
            let counts = admitted.entry(key).or_default();
            counts.0 += i64::from(expected.is_allowed());
            counts.1 += i64::from(got.is_allowed());
            requests += 1;
        }
        drift += admitted
            .values()
            .map(|(p, w)| (p - w).unsigned_abs())
            .sum::<u64>();
        assert!(
            wrapped.stats().oldest_use <= wrapped.lifetime(&twin),
            "{algorithm:?}: a lease admitted past its lifetime: {:?}",
            wrapped.stats()
        );
    }
    let stats = wrapped.stats();
    assert!(
        stats.local_admissions > requests / 20,
        "leases were used: {stats:?}"
    );
    assert!(
        drift * 100 <= requests,
        "admissions per key drift by {drift} of {requests} requests ({stats:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_keys_stay_within_the_memory_bound() {
    let server = RedisServer::spawn();
    let bound = 2_000_000;
    let batched = Batched::builder(redis_store(&server).await).build();
    let store = Arc::new(Leased::builder(batched).max_bytes(bound).build());
    let policy = fresh_policy(vec![Limit::new(2, secs(1))]);
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let (store, policy) = (Arc::clone(&store), policy.clone());
            tokio::spawn(async move {
                let mut admitted = 0u64;
                let mut peak = 0;
                for i in 0..(1_000_000 / 64) {
                    let key = format!("client-{t}-{i}");
                    // Every key twice, with room for two: both admitted, none more.
                    for _ in 0..2 {
                        let decision = store.check(&policy, &key, 1).await.unwrap();
                        admitted += u64::from(decision.is_allowed());
                    }
                    if i % 1024 == 0 {
                        peak = peak.max(store.held_bytes());
                    }
                }
                (admitted, peak)
            })
        })
        .collect();
    let mut admitted = 0;
    let mut peak = 0;
    for task in tasks {
        let (a, p) = task.await.unwrap();
        admitted += a;
        peak = peak.max(p);
    }
    assert_eq!(admitted, 2 * 64 * (1_000_000 / 64));
    assert!(peak <= bound, "held {peak} bytes, bound {bound}");
    assert!(peak > bound / 2, "the bound was reached: {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_while_leases_are_held_is_decided_by_the_failure_mode() {
    let server = RedisServer::spawn();
    let plain = redis_store(&server).await;
    let store = instance(redis_store(&server).await, FailureMode::Closed);
    let policy = fresh_policy(vec![Limit::new(100_000, secs(86_400))]);
    let limiter = Limiter::new(policy.clone(), store.clone());
    // Warm the key until a lease is held.
    let mut admitted = 0u64;
    for _ in 0..10_000 {
        admitted += u64::from(limiter.check("k", 1).await.unwrap().is_allowed());
        if stats(&store).outstanding > 0 {
            break;
        }
    }
    assert!(stats(&store).outstanding > 0, "a lease was taken");

    server.pause(Duration::from_secs(30));
    let mut local = 0u64;
    let mut degraded = 0u64;
    for _ in 0..200 {
        let decision = limiter.check("k", 1).await.unwrap();
        if decision.is_degraded() {
            assert!(!decision.is_allowed(), "fail closed denies");
            degraded += 1;
        } else {
            assert!(
                decision.is_leased(),
                "only leased units are admitted without Redis"
            );
            local += 1;
        }
    }
    assert!(
        degraded > 0,
        "once the lease was spent or expired, the failure mode decided"
    );
    server.unpause();

    let stats = leases_ended(std::slice::from_ref(&store)).await;
    admitted += local;
    // Nothing admitted that the store did not count; refunds gave back at most the rest.
    let used = 100_000 - plain.check(&policy, "k", 0).await.unwrap().windows()[0].remaining();
    assert!(
        used >= admitted,
        "admitted {admitted}, counted {used} ({stats:?})"
    );
    assert!(stats.leases >= 1 && stats.outstanding == 0);
}
