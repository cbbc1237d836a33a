//! Two-phase decisions on every store: an estimate reserved, the actual cost settled
//! later. Exact under concurrency (the windows end up holding the sum of the admitted
//! actuals, no more, no less) on memory, on Redis from one and two instances, batched,
//! behind leases and on a Cluster; settlements happen once; a window that has moved on
//! keeps nothing to give back; an excess is a debt, never lost.

mod support;

use std::time::Duration;

use limiter_core::{
    Algorithm, Batched, Cost, Leased, Limit, ManualClock, MemoryStore, Policy, RedisStore, Store,
};
use redis_harness::{RedisCluster, RedisServer};
use support::*;

/// Long enough that no window ends during a test (a boundary every 400 days).
const FOREVER: Duration = Duration::from_secs(400 * 86_400);

const REQUESTS: u64 = 100_000;

/// Requests and tokens, counted together, in windows that never end during a test.
fn llm_policy(tokens: u64) -> Policy {
    fresh_policy(vec![
        Limit::new(REQUESTS, FOREVER).with_algorithm(Algorithm::FixedWindow),
        Limit::new(tokens, FOREVER)
            .counting("tokens")
            .with_algorithm(Algorithm::FixedWindow),
    ])
}

const CALLS: usize = 1_000;

/// A spread of actual costs in `0..=max`, the same every run.
fn actual(i: usize, max: u64) -> u64 {
    (i as u64 * 7_919) % (max + 1)
}

/// `CALLS` concurrent calls, spread over `instances`, each reserving one request and
/// `estimate` tokens and, when admitted, settling for its actual tokens: half of them
/// twice, as a retry would, under an id; the others once, without one (refunds that
/// `Batched` may merge). Returns how many were admitted and the sum of their actuals.
async fn reserve_and_settle<S: Store + Clone>(
    instances: &[S],
    policy: &Policy,
    estimate: u64,
    max_actual: u64,
) -> (u64, u64) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let store = instances[i % instances.len()].clone();
        let policy = policy.clone();
        tasks.spawn(async move {
            let reservation = store
                .reserve(&policy, "user", Cost::new(1, estimate))
                .await
                .expect("reserve");
            let (reservation, tries) = if i % 2 == 0 {
                (reservation.with_id(i as u64), 2)
            } else {
                (reservation, 1)
            };
            if !reservation.is_allowed() {
                return None;
            }
            // Other calls decide while this one "runs".
            tokio::task::yield_now().await;
            let used = Cost::new(1, actual(i, max_actual));
            for _ in 0..tries {
                store
                    .settle(&policy, "user", reservation.clone(), used)
                    .await
                    .expect("settle");
            }
            Some(used.units())
        });
    }
    let (mut admitted, mut sum) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        if let Some(units) = done.expect("task") {
            admitted += 1;
            sum += units;
        }
    }
    (admitted, sum)
}

/// What the policy's windows hold for "user": (requests, tokens), read without charging.
async fn used<S: Store>(store: &S, policy: &Policy, tokens: u64) -> (u64, u64) {
    let now = store.check(policy, "user", Cost::ZERO).await.expect("peek");
    let windows = now.windows();
    (
        REQUESTS - windows[0].remaining(),
        tokens - windows[1].remaining(),
    )
}

/// Under contention for the room (estimates of 400, actuals of 0 to 400, room for
/// 60,000 tokens): some calls are refused, and the windows hold exactly what the
/// admitted ones used. Then with actuals above the estimates (room to spare): every
/// excess is charged, exactly.
async fn exact_on<S: Store + Clone>(instances: &[S], label: &str) {
    let tokens = 60_000;
    let policy = llm_policy(tokens);
    let (admitted, sum) = reserve_and_settle(instances, &policy, 400, 400).await;
    assert!(admitted < CALLS as u64, "{label}: the room never ran out");
    assert!(sum <= tokens, "{label}: admitted past the limit");
    assert_eq!(
        used(&instances[0], &policy, tokens).await,
        (admitted, sum),
        "{label}: refunds"
    );

    let tokens = 1_000_000;
    let policy = llm_policy(tokens);
    let (admitted, sum) = reserve_and_settle(instances, &policy, 50, 200).await;
    assert_eq!(admitted, CALLS as u64, "{label}");
    assert_eq!(
        used(&instances[0], &policy, tokens).await,
        (admitted, sum),
        "{label}: excess"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_holds_exactly_the_admitted_actuals() {
    exact_on(&[MemoryStore::new()], "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_holds_exactly_the_admitted_actuals_from_one_and_two_instances() {
    let server = RedisServer::spawn();
    let one = redis_store(&server).await;
    exact_on(std::slice::from_ref(&one), "redis").await;
    let two = [one, redis_store(&server).await];
    exact_on(&two, "redis, two instances").await;
    let batched = two.map(|store| Batched::builder(store).build());
    exact_on(&batched, "batched, two instances").await;
    let leased = batched.map(|store| std::sync::Arc::new(Leased::builder(store).build()));
    exact_on(&leased, "leased, two instances").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_holds_exactly_the_admitted_actuals() {
    let cluster = RedisCluster::spawn();
    let nodes = cluster.nodes();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let store = RedisStore::builder()
        .connect_cluster(&nodes)
        .await
        .expect("connect to the test cluster");
    exact_on(&[Batched::builder(store).build()], "cluster").await;
}

/// The sequential rules, on one store whose clock the test moves.
async fn rules_on<S: Store>(store: &S, clock: &ManualClock, label: &str) {
    let tokens = || Limit::new(10, secs(1)).counting("tokens");
    let fixed = fresh_policy(vec![tokens().with_algorithm(Algorithm::FixedWindow)]);
    let remaining = |decision: limiter_core::Decision| decision.windows()[0].remaining();

    // Never settled: the estimate stays charged.
    let dropped = store.reserve(&fixed, "a", 4).await.unwrap();
    assert!(dropped.is_allowed());
    drop(dropped);
    assert_eq!(remaining(store.check(&fixed, "a", 0).await.unwrap()), 6);

    // Denied: nothing was held and nothing is settled.
    let denied = store.reserve(&fixed, "a", 7).await.unwrap();
    assert!(!denied.is_allowed(), "{label}");
    assert_eq!(denied.reserved(), Cost::ZERO);
    store.settle(&fixed, "a", denied, 9).await.unwrap();
    assert_eq!(remaining(store.check(&fixed, "a", 0).await.unwrap()), 6);

    // Settled once, however often a reservation with an id is retried.
    let once = store.reserve(&fixed, "b", 8).await.unwrap().with_id(1);
    for _ in 0..3 {
        store.settle(&fixed, "b", once.clone(), 3).await.unwrap();
    }
    assert_eq!(
        remaining(store.check(&fixed, "b", 0).await.unwrap()),
        7,
        "{label}"
    );

    // Settled after the window moved on: the old window's units are gone with it,
    // nothing is given back to the new one, and an excess is charged to the new one.
    let late = store.reserve(&fixed, "c", 8).await.unwrap();
    clock.advance(Duration::from_millis(1_500));
    store.settle(&fixed, "c", late, 2).await.unwrap();
    assert_eq!(
        remaining(store.check(&fixed, "c", 0).await.unwrap()),
        10,
        "{label}"
    );
    let later = store.reserve(&fixed, "c", 8).await.unwrap();
    clock.advance(Duration::from_millis(1_000));
    store.settle(&fixed, "c", later, 12).await.unwrap();
    assert_eq!(
        remaining(store.check(&fixed, "c", 0).await.unwrap()),
        6,
        "{label}"
    );

    // An excess beyond the room is a debt: later requests wait for it to drain.
    let gcra = fresh_policy(vec![Limit::new(10, secs(10)).counting("tokens")]);
    let small = store.reserve(&gcra, "d", 2).await.unwrap();
    store.settle(&gcra, "d", small, 25).await.unwrap();
    let refused = store.check(&gcra, "d", 1).await.unwrap();
    assert!(!refused.is_allowed(), "{label}");
    // 25 units at one per second, a burst of 10 back: 16 s before one more fits.
    assert_eq!(refused.retry_after(), Some(secs(16)), "{label}");

    // Requests and tokens apart: settling gives back tokens, keeps the request.
    let mixed = fresh_policy(vec![
        Limit::new(5, secs(1)).with_algorithm(Algorithm::FixedWindow),
        tokens().with_algorithm(Algorithm::SlidingLog),
    ]);
    let call = store.reserve(&mixed, "e", Cost::new(1, 9)).await.unwrap();
    store
        .settle(&mixed, "e", call, Cost::new(1, 4))
        .await
        .unwrap();
    let now = store.check(&mixed, "e", Cost::ZERO).await.unwrap();
    let left: Vec<u64> = now.windows().iter().map(|w| w.remaining()).collect();
    assert_eq!(left, [4, 6], "{label}");
}

#[tokio::test]
async fn settlement_rules_hold_on_both_stores() {
    let clock = ManualClock::new(T0);
    rules_on(&memory_store(&clock), &clock, "memory").await;
    let server = RedisServer::spawn();
    let clock = ManualClock::new(T0);
    let redis = redis_store_on_clock(&server, &clock).await;
    rules_on(&redis, &clock, "redis").await;
    let clock = ManualClock::new(T0);
    let batched = Batched::builder(redis_store_on_clock(&server, &clock).await).build();
    rules_on(&batched, &clock, "batched").await;
}

#[tokio::test]
async fn a_settlement_retried_by_another_instance_with_the_same_id_charges_once() {
    let server = RedisServer::spawn();
    let (a, b) = (redis_store(&server).await, redis_store(&server).await);
    let policy = llm_policy(1_000);
    let reservation = a
        .reserve(&policy, "user", Cost::new(1, 100))
        .await
        .unwrap()
        .with_id(0x5eed);
    a.settle(&policy, "user", reservation.clone(), Cost::new(1, 300))
        .await
        .unwrap();
    b.settle(&policy, "user", reservation, Cost::new(1, 300))
        .await
        .unwrap();
    assert_eq!(used(&b, &policy, 1_000).await, (1, 300));
}

#[tokio::test]
async fn a_detached_settlement_lands_and_reports_how_it_went() {
    let server = RedisServer::spawn();
    let store = Batched::builder(redis_store(&server).await).build();
    let policy = llm_policy(1_000);
    let reservation = store
        .reserve(&policy, "user", Cost::new(1, 500))
        .await
        .unwrap();
    let (tell, told) = tokio::sync::oneshot::channel();
    store.settle_detached(&policy, "user", reservation, Cost::new(1, 120), |result| {
        let _ = tell.send(result);
    });
    told.await.expect("told").expect("settled");
    assert_eq!(used(&store, &policy, 1_000).await, (1, 120));
}
