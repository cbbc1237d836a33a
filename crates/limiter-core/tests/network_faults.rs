//! Network faults between the limiter and Redis, injected by a TCP proxy of the test
//! harness: connections cut mid-flight, added latency, a partition (blackhole), refused
//! connections. The guard answers every call within its deadline and recovers on its own.

mod support;

use std::sync::Arc;
use std::time::Duration;

use limiter_core::{
    BreakerConfig, BreakerState, Decision, FailureMode, Guarded, Limit, Limiter, RedisStore,
};
use redis_harness::{FaultProxy, Mode, RedisServer};
use support::*;

/// Far above the deadline, far below the faults: finishing within it shows no call waited.
const BOUND: Duration = Duration::from_secs(3);

async fn limiter_through(proxy: &FaultProxy) -> Limiter<Guarded<RedisStore>> {
    let store = RedisStore::builder()
        .connect(&proxy.url())
        .await
        .expect("connect via proxy");
    let guarded = Guarded::builder(store)
        .deadline(Duration::from_millis(400))
        .failure_mode(FailureMode::Open)
        .breaker(BreakerConfig {
            failures: 3,
            slow_calls: 1_000, // a busy test machine must not trip it by slowness alone
            probe_interval: Duration::from_millis(50),
            ..BreakerConfig::default()
        })
        .build()
        .unwrap();
    Limiter::new(fresh_policy(vec![Limit::new(100_000, secs(3600))]), guarded)
}

async fn decide(limiter: &Limiter<Guarded<RedisStore>>, key: &str) -> Decision {
    tokio::time::timeout(BOUND, limiter.check(key, 1))
        .await
        .expect("no decision waits past its deadline")
        .expect("the guard answers")
}

/// Decides until the store (not the failure mode) answers again; bounded.
async fn until_recovered(limiter: &Limiter<Guarded<RedisStore>>) -> Decision {
    for i in 0..400 {
        let d = decide(limiter, &format!("recover-{i}")).await;
        if !d.is_degraded() {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the limiter did not recover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_flight_are_answered_and_reconnected() {
    let server = RedisServer::spawn();
    let proxy = Arc::new(FaultProxy::start(("127.0.0.1", server.port())));
    let limiter = limiter_through(&proxy).await;
    let (progress, mut seen) = tokio::sync::watch::channel(0usize);
    let progress = Arc::new(progress);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (limiter, progress) = (limiter.clone(), Arc::clone(&progress));
            tokio::spawn(async move {
                for i in 0..300 {
                    let d = decide(&limiter, &format!("c{c}-{i}")).await;
                    assert!(d.is_allowed());
                    progress.send_modify(|n| *n += 1);
                }
            })
        })
        .collect();
    // Cut every connection three times while requests are in flight.
    for round in 1..=3 {
        seen.wait_for(|&n| n >= round * 250).await.unwrap();
        proxy.cut_all();
    }
    for c in clients {
        c.await.expect("no panic, every decision answered");
    }
    assert!(!until_recovered(&limiter).await.is_degraded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_beyond_the_deadline_opens_the_breaker_until_the_network_heals() {
    let server = RedisServer::spawn();
    let proxy = FaultProxy::start(("127.0.0.1", server.port()));
    let limiter = limiter_through(&proxy).await;
    until_recovered(&limiter).await;

    proxy.set_mode(Mode::Delay(Duration::from_millis(1500)));
    for i in 0..3 {
        assert!(decide(&limiter, &format!("slow-{i}")).await.is_degraded());
    }
    assert_eq!(limiter.store().breaker_state(), BreakerState::Open);
    for i in 0..100 {
        assert!(decide(&limiter, &format!("open-{i}")).await.is_degraded());
    }

    proxy.set_mode(Mode::Pass);
    until_recovered(&limiter).await;
    assert_eq!(limiter.store().breaker_state(), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_then_refused_connections_then_recovery() {
    let server = RedisServer::spawn();
    let proxy = FaultProxy::start(("127.0.0.1", server.port()));
    let limiter = limiter_through(&proxy).await;
    until_recovered(&limiter).await;

    proxy.set_mode(Mode::Blackhole);
    for i in 0..20 {
        assert!(decide(&limiter, &format!("partitioned-{i}"))
            .await
            .is_degraded());
    }
    // The partition ends with the connections torn down, as TCP eventually does.
    proxy.set_mode(Mode::Refuse);
    for i in 0..20 {
        assert!(decide(&limiter, &format!("refused-{i}"))
            .await
            .is_degraded());
    }
    proxy.set_mode(Mode::Pass);
    let d = until_recovered(&limiter).await;
    assert!(d.is_allowed());
}
