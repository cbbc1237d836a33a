//! Failure handling with real faults on a real Redis: killed, stalled (`CLIENT PAUSE`) and
//! restarted empty. Each case runs with the timeout and breaker a user gets by default,
//! and with both raised far beyond what a loaded machine could trip by accident;
//! assertions are on outcomes, never on timings.

mod support;

use std::time::Duration;

use limiter_core::{
    BreakerConfig, BreakerState, FailureMode, Guarded, Limit, Limiter, Policy, RedisStore, Store,
};
use redis_harness::RedisServer;
use support::*;

/// Upper bound for one decision in these tests: far above every deadline (1 s at most),
/// so finishing within it shows no call waited on Redis beyond its deadline.
const BOUND: Duration = Duration::from_secs(5);

async fn guarded(server: &RedisServer, mode: FailureMode, bounds: Bounds) -> Guarded<RedisStore> {
    let store = bounded_store(server, bounds).await;
    Guarded::builder(store)
        .failure_mode(mode)
        .retry_after(bounds.probe_interval())
        .build()
        .expect("valid guard")
}

fn policy(max: u64) -> Policy {
    fresh_policy(vec![Limit::new(max, secs(3600))])
}

/// Runs `n` checks on distinct keys concurrently, each bounded; returns the decisions.
async fn burst<S: Store + Clone>(
    limiter: &Limiter<S>,
    n: usize,
    tag: &str,
    bound: Duration,
) -> Vec<limiter_core::Decision> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let limiter = limiter.clone();
            let key = format!("{tag}-{i}");
            tokio::spawn(async move {
                tokio::time::timeout(bound, limiter.check(&key, 1))
                    .await
                    .expect("a decision never waits on a dead Redis")
                    .expect("failure modes answer instead of erroring")
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_fail_open_allows_everything() {
    for bounds in Bounds::ALL {
        killed_mid_load_fail_open(bounds).await;
    }
}

async fn killed_mid_load_fail_open(bounds: Bounds) {
    let mut server = RedisServer::spawn();
    let limiter = Limiter::new(
        policy(1_000),
        guarded(&server, FailureMode::Open, bounds).await,
    );
    // Four clients load the limiter; Redis is killed once 100 decisions are in, and the
    // clients make their other 500 only after it is dead, so that some must be degraded.
    let (progress, mut seen) = tokio::sync::watch::channel(0usize);
    let progress = std::sync::Arc::new(progress);
    let (killed, dead) = tokio::sync::watch::channel(false);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (limiter, progress) = (limiter.clone(), std::sync::Arc::clone(&progress));
            let mut dead = dead.clone();
            tokio::spawn(async move {
                let mut decisions = Vec::new();
                for i in 0..150 {
                    if i == 25 {
                        dead.wait_for(|&dead| dead).await.unwrap();
                    }
                    let d = tokio::time::timeout(BOUND, limiter.check(&format!("c{c}-{i}"), 1))
                        .await
                        .expect("a decision never waits on a dead Redis")
                        .expect("fail open answers instead of erroring");
                    decisions.push(d);
                    progress.send_modify(|n| *n += 1);
                }
                decisions
            })
        })
        .collect();
    seen.wait_for(|&n| n >= 100).await.unwrap();
    server.kill();
    killed.send(true).unwrap();
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap());
    }
    assert_eq!(all.len(), 600);
    assert!(
        all.iter().all(|d| d.is_allowed()),
        "fail open allows everything"
    );
    assert!(
        all.iter().any(|d| d.is_degraded()),
        "decisions after the kill are degraded"
    );
    assert!(!all[0].is_degraded());
    assert_eq!(limiter.store().inner().breaker_state(), BreakerState::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_closed_denies_with_a_retry_time() {
    for bounds in Bounds::ALL {
        let mut server = RedisServer::spawn();
        let store = guarded(&server, FailureMode::Closed, bounds).await;
        let limiter = Limiter::new(policy(1_000), store);
        server.kill();
        let after = burst(&limiter, 50, "closed", BOUND).await;
        for d in &after {
            assert!(!d.is_allowed() && d.is_degraded());
            assert_eq!(d.retry_after(), Some(bounds.probe_interval()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fail_local_keeps_enforcing_this_instances_share() {
    let mut server = RedisServer::spawn();
    let local = FailureMode::Local { share: 0.5 };
    let limiter = Limiter::new(policy(10), guarded(&server, local, Bounds::Defaults).await);
    server.kill();
    let mut allowed = 0;
    for _ in 0..20 {
        let d = tokio::time::timeout(BOUND, limiter.check("one-user", 1))
            .await
            .unwrap()
            .unwrap();
        assert!(d.is_degraded());
        allowed += usize::from(d.is_allowed());
    }
    assert_eq!(allowed, 5, "half of the limit of 10, enforced locally");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_redis_opens_the_breaker_and_decisions_stay_bounded() {
    for bounds in Bounds::ALL {
        stalled_redis(bounds).await;
    }
}

async fn stalled_redis(bounds: Bounds) {
    let server = RedisServer::spawn();
    let limiter = Limiter::new(
        policy(1_000),
        guarded(&server, FailureMode::Open, bounds).await,
    );
    until_decided_by_redis(&limiter).await;

    // Stall every client for 3 s (1 s past the raised timeout): each call now misses it.
    let _: () = server.cmd(&["CLIENT", "PAUSE", "3000", "ALL"]);
    let failures = BreakerConfig::default().failures.max(3);
    for i in 0..failures {
        let d = limiter.check(&format!("stalled-{i}"), 1).await.unwrap();
        assert!(d.is_degraded(), "timeout missed, failure mode decided");
    }
    assert_eq!(limiter.store().inner().breaker_state(), BreakerState::Open);
    // While open, no call touches Redis: 200 decisions, each well within the 3 s stall.
    let open = burst(&limiter, 200, "open", Duration::from_millis(1500)).await;
    assert!(open.iter().all(|d| d.is_allowed() && d.is_degraded()));

    // When the stall ends, the health check half-opens and a good call closes.
    until_decided_by_redis(&limiter).await;
    assert_eq!(
        limiter.store().inner().breaker_state(),
        BreakerState::Closed
    );
}

/// Decides until Redis (not the failure mode) answers; bounded.
async fn until_decided_by_redis<S: Store + Clone>(limiter: &Limiter<S>) -> limiter_core::Decision {
    for i in 0..400 {
        let d = limiter.check(&format!("probe-{i}"), 1).await.unwrap();
        if !d.is_degraded() {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("Redis never decided again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_recovers_without_restarting_the_application() {
    for bounds in Bounds::ALL {
        restarted_empty(bounds).await;
    }
}

async fn restarted_empty(bounds: Bounds) {
    let mut server = RedisServer::spawn();
    let limiter = Limiter::new(
        policy(5),
        guarded(&server, FailureMode::Closed, bounds).await,
    );
    until_decided_by_redis(&limiter).await;
    for _ in 0..5 {
        assert!(limiter.check("u", 1).await.unwrap().is_allowed());
    }
    server.kill();
    assert!(limiter.check("u", 1).await.unwrap().is_degraded());
    server.restart();
    // Reconnection and script reload happen by themselves; a bounded number of calls
    // sees the breaker close and the (empty) Redis decide again.
    let mut recovered = None;
    for _ in 0..200 {
        let d = limiter.check("u", 1).await.unwrap();
        if !d.is_degraded() {
            recovered = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let d = recovered.expect("recovers after Redis restarts");
    assert!(d.is_allowed());
    assert_eq!(
        d.windows()[0].remaining(),
        4,
        "a restarted Redis starts empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_can_name_its_own_failure_mode() {
    let mut server = RedisServer::spawn();
    let store = guarded(&server, FailureMode::Open, Bounds::Defaults).await;
    let search = policy(10);
    let payments = policy(10).with_failure_mode(FailureMode::Closed).unwrap();
    let local = FailureMode::Local { share: 0.3 };
    let uploads = policy(10).with_failure_mode(local).unwrap();
    server.kill();
    // The guard's default (open) for one policy, closed for another, local for a third.
    let d = store.check(&search, "u", 1).await.unwrap();
    assert!(d.is_allowed() && d.is_degraded());
    let d = store.check(&payments, "u", 1).await.unwrap();
    assert!(!d.is_allowed() && d.is_degraded());
    let mut allowed = 0;
    for _ in 0..10 {
        let d = store.check(&uploads, "u", 1).await.unwrap();
        assert!(d.is_degraded());
        allowed += usize::from(d.is_allowed());
    }
    assert_eq!(allowed, 3, "30% of 10, enforced locally");
    let bad = policy(10).with_failure_mode(FailureMode::Local { share: 2.0 });
    assert!(
        bad.is_err(),
        "an invalid share is an error, not a silent default"
    );
}

#[tokio::test]
async fn invalid_local_share_is_a_typed_error() {
    let server = RedisServer::spawn();
    let err = Guarded::builder(redis_store(&server).await)
        .failure_mode(FailureMode::Local { share: 0.0 })
        .build()
        .err();
    assert!(err.is_some());
}

/// A stalled Redis under load, every setting at its default: decisions queue behind
/// calls that time out until the breaker opens. Those that wait past the queue's
/// `max_wait` waited for Redis, not for this process: the failure mode decides them
/// (fail closed: 429), none is shed as overload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_held_up_by_a_stalled_redis_go_to_the_failure_mode_not_the_shed() {
    let server = RedisServer::spawn();
    let batched = limiter_core::Batched::builder(redis_store(&server).await).build();
    let store = Guarded::builder(batched)
        .failure_mode(FailureMode::Closed)
        .build()
        .unwrap();
    let limiter = Limiter::new(policy(1_000_000), store);
    until_decided_by_redis(&limiter).await;

    let _: () = server.cmd(&["CLIENT", "PAUSE", "4000", "ALL"]);
    // More tasks than a batch holds (256): some decisions wait for two failing calls.
    let clients: Vec<_> = (0..800)
        .map(|c| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut degraded = 0;
                // Until the breaker has opened: every decision after it is degraded at
                // once, the ones before waited behind failing calls.
                for i in 0..8 {
                    match limiter.check(&format!("c{c}-{i}"), 1).await {
                        Ok(d) => degraded += usize::from(d.is_degraded()),
                        Err(err) => panic!("only the failure mode answers a stalled Redis: {err}"),
                    }
                }
                degraded
            })
        })
        .collect();
    let mut degraded = 0;
    for client in clients {
        degraded += client.await.unwrap();
    }
    assert!(degraded > 0);
    assert_eq!(
        limiter.store().inner().inner().breaker_state(),
        BreakerState::Open
    );
}
