//! Several policies per request (`Store::check_all`), all or nothing: users of 10 inside a
//! team of 25 admit exactly 25, each at most 10, under 1,000-way concurrency; a denied
//! request leaves no charge in any policy; on memory (atomic), Redis, `Batched`, leases
//! and a Cluster (reserve in each slot, give back on refusal).

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use limiter_core::{
    Algorithm, Batched, Check, Leased, Limit, MemoryStore, Policy, RedisStore, Store,
};
use redis_harness::{RedisCluster, RedisServer};
use support::*;

const HOUR: Duration = Duration::from_secs(3600);

fn policies() -> (Policy, Policy) {
    let window = |max| vec![Limit::new(max, HOUR).with_algorithm(Algorithm::FixedWindow)];
    (fresh_policy(window(10)), fresh_policy(window(25)))
}

/// Units `key` has used under `policy`.
async fn used<S: Store>(store: &S, policy: &Policy, key: &str) -> u64 {
    let now = store.peek(policy, key).await.unwrap();
    policy.limits()[0].max() - now.windows()[0].remaining()
}

/// 1,000 concurrent requests from three users of one team; `exact`: the store decides
/// atomically (or in an order that cannot refuse wrongly), so exactly 25 are admitted.
async fn team_of_three<S: Store>(store: Arc<S>, label: &str) {
    let (user, team) = policies();
    let users = ["ann", "bob", "cy"];
    let answers = join_all((0..1_000).map(|i| {
        let (store, user, team) = (Arc::clone(&store), user.clone(), team.clone());
        let who = users[i % 3];
        async move {
            let checks = [Check::new(&user, who, 1), Check::new(&team, "red", 1)];
            let joint = store.check_all(&checks).await.unwrap();
            (who, joint.is_allowed(), joint.denied_by())
        }
    }))
    .await;
    let admitted = |u: &str| answers.iter().filter(|(w, ok, _)| *w == u && *ok).count() as u64;
    let total: u64 = users.iter().map(|u| admitted(u)).sum();
    assert_eq!(total, 25, "{label}: the team's 25 exactly");
    for u in users {
        assert!(admitted(u) <= 10, "{label}: {u} admitted {}", admitted(u));
        // No partial charge: each user's window holds what was admitted for them.
        assert_eq!(
            used(&*store, &user, u).await,
            admitted(u),
            "{label}: {u}'s window"
        );
    }
    assert_eq!(
        used(&*store, &team, "red").await,
        25,
        "{label}: the team's window"
    );
    // Every denial names the policy that refused: a user's (0) or the team's (1).
    assert!(answers
        .iter()
        .all(|(_, ok, by)| *ok || matches!(by, Some(0 | 1))));
}

/// A request its user admits and its team refuses leaves its user's window untouched.
async fn no_partial_charge<S: Store>(store: &S, label: &str) {
    let (user, team) = policies();
    for _ in 0..25 {
        store.check(&team, "blue", 1).await.unwrap();
    }
    for _ in 0..5 {
        let joint = store
            .check_all(&[Check::new(&user, "dee", 1), Check::new(&team, "blue", 1)])
            .await
            .unwrap();
        assert_eq!(joint.denied_by(), Some(1), "{label}");
        assert_eq!(joint.decisions().len(), 2, "{label}");
    }
    assert_eq!(
        used(store, &user, "dee").await,
        0,
        "{label}: a partial charge"
    );
    // Denied by the first check: the second is never charged.
    let (user, team) = policies();
    for _ in 0..10 {
        store.check(&user, "eve", 1).await.unwrap();
    }
    let joint = store
        .check_all(&[Check::new(&user, "eve", 1), Check::new(&team, "green", 1)])
        .await
        .unwrap();
    assert_eq!(
        (joint.denied_by(), joint.decisions().len()),
        (Some(0), 1),
        "{label}"
    );
    assert_eq!(used(store, &team, "green").await, 0, "{label}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_admits_exactly_its_limit_and_no_denial_leaves_a_charge() {
    let memory = Arc::new(MemoryStore::new());
    no_partial_charge(&*memory, "memory").await;
    team_of_three(memory, "memory").await;

    let server = RedisServer::spawn();
    let redis = Arc::new(redis_store(&server).await);
    no_partial_charge(&*redis, "redis").await;
    team_of_three(redis, "redis").await;
    let batched = Arc::new(Batched::builder(redis_store(&server).await).build());
    no_partial_charge(&*batched, "batched").await;
    team_of_three(batched, "batched").await;
    let leased =
        Arc::new(Leased::builder(Batched::builder(redis_store(&server).await).build()).build());
    no_partial_charge(&*leased, "leased").await;
    team_of_three(leased, "leased").await;

    let cluster = RedisCluster::spawn();
    let nodes = cluster.nodes();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let store = RedisStore::builder()
        .connect_cluster(&nodes)
        .await
        .expect("connect to the test cluster");
    let store = Arc::new(store);
    no_partial_charge(&*store, "cluster").await;
    team_of_three(store, "cluster").await;
}

/// Two checks of one key in one request are decided together: 6 units of a window of 10
/// twice is refused whole, and the key keeps its 10.
#[tokio::test]
async fn the_memory_store_decides_a_key_checked_twice_as_one() {
    let store = MemoryStore::new();
    let (user, _) = policies();
    let checks = [Check::new(&user, "k", 6), Check::new(&user, "k", 6)];
    let joint = store.check_all(&checks).await.unwrap();
    assert_eq!(joint.denied_by(), Some(1));
    assert_eq!(used(&store, &user, "k").await, 0);
}

/// Redis's one-call joint decision agrees with the memory store's on every request of a
/// sequence over policies of several windows and algorithms, with costs that differ per
/// policy and units apart from requests: the same verdicts, the same refusing check,
/// the same units left.
#[tokio::test]
async fn redis_decides_joint_requests_as_memory_does() {
    let server = RedisServer::spawn();
    for gcra_only in [false, true] {
        let label = if gcra_only { "gcra only" } else { "mixed" };
        agrees_with_memory(
            &redis_store(&server).await,
            gcra_only,
            &format!("redis, {label}"),
        )
        .await;
        let batched = Batched::builder(redis_store(&server).await).build();
        agrees_with_memory(&batched, gcra_only, &format!("batched, {label}")).await;
    }
}

/// Policies of several algorithms, or (`gcra_only`, the script's fast path for joint
/// decisions) of GCRA windows only, one counting tokens, one with a burst.
async fn agrees_with_memory<S: Store>(redis: &S, gcra_only: bool, label: &str) {
    let window = |max, algorithm| Limit::new(max, HOUR).with_algorithm(algorithm);
    let (second, third, fourth) = if gcra_only {
        (
            Algorithm::Gcra { burst: Some(4) },
            Algorithm::Gcra { burst: None },
            Algorithm::Gcra { burst: None },
        )
    } else {
        (
            Algorithm::SlidingLog,
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
        )
    };
    let user = fresh_policy(vec![
        window(7, Algorithm::Gcra { burst: None }),
        window(9, second),
    ]);
    let team = fresh_policy(vec![
        window(12, third),
        window(40, fourth).counting("tokens"),
    ]);
    let everyone = fresh_policy(vec![window(15, Algorithm::Gcra { burst: None })]);
    let memory = MemoryStore::new();
    let left = |joint: &limiter_core::Joint| -> Vec<Vec<u64>> {
        joint
            .decisions()
            .iter()
            .map(|d| d.windows().iter().map(|w| w.remaining()).collect())
            .collect()
    };
    for i in 0..40u64 {
        let (who, tokens) = (["a", "b", "c"][(i % 3) as usize], 1 + i % 4);
        let checks = [
            Check::new(&user, who, 1),
            Check::new(&team, "t", limiter_core::Cost::new(1, tokens)),
            Check::new(&everyone, "all", 1),
        ];
        let (m, r) = (
            memory.check_all(&checks).await.unwrap(),
            redis.check_all(&checks).await.unwrap(),
        );
        assert_eq!(
            (m.is_allowed(), m.denied_by(), left(&m)),
            (r.is_allowed(), r.denied_by(), left(&r)),
            "{label}: request {i}"
        );
    }
    // No partial charge either way: the windows agree at the end.
    for (policy, key) in [(&user, "a"), (&team, "t"), (&everyone, "all")] {
        let (m, r) = (
            memory.peek(policy, key).await.unwrap(),
            redis.peek(policy, key).await.unwrap(),
        );
        let remaining = |d: &limiter_core::Decision| -> Vec<u64> {
            d.windows().iter().map(|w| w.remaining()).collect()
        };
        assert_eq!(remaining(&m), remaining(&r), "{label}: {}", policy.name());
    }
}
