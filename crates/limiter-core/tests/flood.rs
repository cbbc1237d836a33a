//! A burst far above the concurrency an instance expects, with every setting as a user
//! gets it: three instances (each its own connection, batching queue, leases on or off,
//! and the failure mode outermost), one key with a limit of 1,000, and 3,000 checks from
//! 64, 600 or 2,000 concurrent tasks, on a standalone Redis and on a Cluster. At most
//! 1,000 and at least 990 are admitted, and not one decision is left to the failure
//! mode: the circuit breaker judges Redis, never this process's queue. The same holds
//! while every core is busy with other work. With a tiny queue bound, the excess is shed
//! and nothing is admitted that Redis did not count.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use limiter_core::{
    Algorithm, Batched, Error, FailureMode, Guarded, Leased, Limit, Limiter, Overload, Policy,
    RedisStore, Store,
};
use redis_harness::{RedisCluster, RedisServer};
use support::*;

/// One instance as the layer builds it, without the local cache of denials (which only
/// ever answers what Redis denied): the failure mode, leases, the batching queue.
type Instance = Guarded<Leased<Batched>>;

const LIMIT: u64 = 1_000;
const BURST: usize = 3_000;
const CONCURRENCY: [usize; 3] = [64, 600, 2_000];

fn algorithms() -> [Algorithm; 4] {
    [
        Algorithm::Gcra { burst: None },
        Algorithm::SlidingLog,
        Algorithm::SlidingWindow,
        Algorithm::FixedWindow,
    ]
}

/// Where the instances connect.
enum Redis<'a> {
    Standalone(&'a RedisServer),
    Cluster(&'a RedisCluster),
}

impl Redis<'_> {
    /// A store with every setting at its default.
    async fn store(&self) -> RedisStore {
        match self {
            Redis::Standalone(server) => redis_store(server).await,
            Redis::Cluster(cluster) => {
                let nodes = cluster.nodes();
                let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
                RedisStore::builder().connect_cluster(&nodes).await.unwrap()
            }
        }
    }

    /// Three instances with default settings; `queue` bounds their queued decisions.
    async fn instances(&self, leases: bool, queue: Option<usize>) -> Vec<Instance> {
        let mut all = Vec::new();
        for _ in 0..3 {
            let mut batched = Batched::builder(self.store().await);
            if let Some(queue) = queue {
                batched = batched.max_queued(queue);
            }
            let leased = Leased::builder(batched.build()).enabled(leases).build();
            all.push(Guarded::builder(leased).build().unwrap());
        }
        all
    }
}

/// What a burst got.
#[derive(Debug, Default)]
struct Tally {
    admitted: u64,
    degraded: u64,
    shed: u64,
}

/// `BURST` checks of one key from `tasks` concurrent tasks spread over the instances,
/// all released together.
async fn burst(instances: &[Instance], policy: &Policy, tasks: usize) -> Tally {
    let start = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let limiter = Limiter::new(policy.clone(), instances[t % instances.len()].clone());
            let start = Arc::clone(&start);
            let checks = BURST / tasks + usize::from(t < BURST % tasks);
            tokio::spawn(async move {
                start.wait().await;
                let mut tally = Tally::default();
                for _ in 0..checks {
                    match limiter.check("the-key", 1).await {
                        Ok(d) => {
                            tally.admitted += u64::from(d.is_allowed());
                            tally.degraded += u64::from(d.is_degraded());
                        }
                        Err(Error::Overloaded(Overload::Queued(_) | Overload::Waited(_))) => {
                            tally.shed += 1
                        }
                        Err(other) => panic!("a check failed: {other}"),
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for handle in handles {
        let tally = handle.await.unwrap();
        total.admitted += tally.admitted;
        total.degraded += tally.degraded;
        total.shed += tally.shed;
    }
    total
}

/// Every algorithm, leases on and off, every concurrency: exact and never degraded.
/// Without leases exactly the limit is admitted; with them, units a lease still held when
/// the burst ended were not admitted, and once the leases have ended every such unit is
/// back in the store: nothing over, nothing lost.
async fn bursts_hold(redis: Redis<'_>, concurrency: &[usize], label: &str) {
    for leases in [false, true] {
        let instances = redis.instances(leases, None).await;
        for algorithm in algorithms() {
            for &tasks in concurrency {
                let policy =
                    fresh_policy(vec![Limit::new(LIMIT, secs(3600)).with_algorithm(algorithm)]);
                let tally = burst(&instances, &policy, tasks).await;
                let case =
                    format!("{label}, leases {leases}, {algorithm:?}, {tasks} tasks: {tally:?}");
                assert!(tally.admitted <= LIMIT, "over the limit: {case}");
                if leases {
                    leases_given_back(&instances, &policy, tally.admitted, &case).await;
                } else {
                    assert_eq!(tally.admitted, LIMIT, "under the limit: {case}");
                }
                assert_eq!(tally.degraded, 0, "decided by the failure mode: {case}");
                assert_eq!(tally.shed, 0, "shed under the default bounds: {case}");
            }
        }
        for instance in &instances {
            assert_eq!(
                instance.inner().inner().inner().breaker_state(),
                limiter_core::BreakerState::Closed,
                "{label}, leases {leases}"
            );
        }
    }
}

/// Waits (at most 10 s) for every lease to end, then checks that the store holds
/// exactly the `admitted` units: a GCRA window may have refilled one unit meanwhile.
async fn leases_given_back(instances: &[Instance], policy: &Policy, admitted: u64, case: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while instances.iter().any(|i| i.inner().stats().outstanding > 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "leases never ended: {case}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        instances
            .iter()
            .all(|i| i.inner().stats().failed_refunds == 0),
        "a refund failed: {case}"
    );
    let now = instances[0].peek(policy, "the-key").await.unwrap();
    let left = now.windows()[0].remaining();
    let refill = u64::from(matches!(
        policy.limits()[0].algorithm(),
        Algorithm::Gcra { .. }
    ));
    assert!(
        (LIMIT - admitted..=LIMIT - admitted + refill).contains(&left),
        "{left} left in the store once the leases ended: {case}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_on_one_key_are_exact_with_the_defaults() {
    let server = RedisServer::spawn();
    bursts_hold(Redis::Standalone(&server), &CONCURRENCY, "standalone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_on_one_key_are_exact_with_the_defaults_on_a_cluster() {
    let cluster = RedisCluster::spawn();
    bursts_hold(Redis::Cluster(&cluster), &CONCURRENCY, "cluster").await;
}

/// Spins on every core until dropped: a machine busy with other work.
struct BusyCores {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyCores {
    fn start() -> BusyCores {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        BusyCores { stop, threads }
    }
}

impl Drop for BusyCores {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_are_exact_while_every_core_is_busy() {
    let server = RedisServer::spawn();
    let cluster = RedisCluster::spawn();
    let _busy = BusyCores::start();
    bursts_hold(Redis::Standalone(&server), &[2_000], "standalone, busy").await;
    bursts_hold(Redis::Cluster(&cluster), &[600], "cluster, busy").await;
}

/// A queue bound of 4 decisions per instance: the burst's excess is shed, never
/// admitted, and Redis counted exactly what was admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_queue_sheds_the_excess_and_admits_nothing_uncounted() {
    let server = RedisServer::spawn();
    let plain = redis_store(&server).await;
    for leases in [false, true] {
        let instances = Redis::Standalone(&server).instances(leases, Some(4)).await;
        let policy = fresh_policy(vec![Limit::new(LIMIT, secs(3600))]);
        let tally = burst(&instances, &policy, 600).await;
        assert!(tally.shed > 0, "leases {leases}: {tally:?}");
        assert!(tally.admitted <= LIMIT, "leases {leases}: {tally:?}");
        assert_eq!(tally.degraded, 0, "leases {leases}: {tally:?}");
        // Leases give back what they did not admit when they end; until then Redis
        // counts at least what was admitted.
        let used =
            LIMIT - plain.check(&policy, "the-key", 0).await.unwrap().windows()[0].remaining();
        if leases {
            assert!(used >= tally.admitted, "admitted {tally:?}, counted {used}");
        } else {
            assert_eq!(used, tally.admitted, "admitted {tally:?}, counted {used}");
        }
    }
}

/// The failure mode never decides a shed decision, whatever it is: fail open admits
/// what Redis could not decide, never what this process could not queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_decisions_pass_through_every_failure_mode() {
    let server = RedisServer::spawn();
    for mode in [
        FailureMode::Open,
        FailureMode::Closed,
        FailureMode::Local { share: 1.0 },
    ] {
        let batched = Batched::builder(redis_store(&server).await)
            .max_queued(1)
            .build();
        let store = Guarded::builder(batched)
            .failure_mode(mode)
            .build()
            .unwrap();
        let policy = fresh_policy(vec![Limit::new(LIMIT, secs(3600))]);
        let checks = (0..200).map(|i| {
            let (store, policy) = (store.clone(), policy.clone());
            tokio::spawn(async move { store.check(&policy, &format!("k{i}"), 1).await })
        });
        let mut shed = 0;
        for check in futures_util::future::join_all(checks).await {
            match check.unwrap() {
                Ok(d) => assert!(!d.is_degraded(), "{mode:?}"),
                Err(Error::Overloaded(_)) => shed += 1,
                Err(other) => panic!("{mode:?}: {other}"),
            }
        }
        assert!(shed > 0, "{mode:?}: 200 at once overflow a queue of one");
    }
}
