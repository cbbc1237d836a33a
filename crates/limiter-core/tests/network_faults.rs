//! Network faults between the limiter and Redis, injected by a TCP proxy of the test
//! harness: connections cut mid-flight, added latency, a partition (blackhole), refused
//! connections. The store answers every call within its timeout, the failure mode decides
//! what Redis could not, and both recover on their own. Each case runs with the timeout
//! and breaker a user gets by default, and with both raised.

mod support;

use std::sync::Arc;
use std::time::Duration;

use limiter_core::{BreakerConfig, BreakerState, Decision, Guarded, Limit, Limiter, RedisStore};
use redis_harness::{FaultProxy, Mode, RedisServer};
use support::*;

/// Far above the deadline, far below the faults: finishing within it shows no call waited.
const BOUND: Duration = Duration::from_secs(3);

async fn limiter_through(proxy: &FaultProxy, bounds: Bounds) -> Limiter<Guarded<RedisStore>> {
    let store = bounds
        .apply(RedisStore::builder())
        .connect(&proxy.url())
        .await
        .expect("connect via proxy");
    let guarded = Guarded::builder(store).build().unwrap();
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
    for bounds in Bounds::ALL {
        connections_cut(bounds).await;
    }
}

async fn connections_cut(bounds: Bounds) {
    let server = RedisServer::spawn();
    let proxy = Arc::new(FaultProxy::start(("127.0.0.1", server.port())));
    let limiter = limiter_through(&proxy, bounds).await;
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
async fn latency_beyond_the_timeout_opens_the_breaker_until_the_network_heals() {
    for bounds in Bounds::ALL {
        latency_beyond_the_timeout(bounds).await;
    }
}

async fn latency_beyond_the_timeout(bounds: Bounds) {
    let server = RedisServer::spawn();
    let proxy = FaultProxy::start(("127.0.0.1", server.port()));
    let limiter = limiter_through(&proxy, bounds).await;
    until_recovered(&limiter).await;

    proxy.set_mode(Mode::Delay(Duration::from_millis(1500)));
    for i in 0..BreakerConfig::default().failures {
        assert!(decide(&limiter, &format!("slow-{i}")).await.is_degraded());
    }
    assert_eq!(breaker(&limiter), BreakerState::Open);
    for i in 0..100 {
        assert!(decide(&limiter, &format!("open-{i}")).await.is_degraded());
    }

    proxy.set_mode(Mode::Pass);
    until_recovered(&limiter).await;
    assert_eq!(breaker(&limiter), BreakerState::Closed);
}

/// Redis answering every call, but slower than the breaker's slow-call bound (10 ms by
/// default) and within the timeout (100 ms): the breaker opens once `slow_calls` such
/// calls fall within its window, and closes when the network is fast again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_slower_than_the_slow_call_bound_open_the_breaker() {
    let server = RedisServer::spawn();
    let proxy = FaultProxy::start(("127.0.0.1", server.port()));
    let limiter = limiter_through(&proxy, Bounds::Defaults).await;
    until_recovered(&limiter).await;

    // 7 ms each way: a 14 ms round trip.
    proxy.set_mode(Mode::Delay(Duration::from_millis(7)));
    let slow_calls = BreakerConfig::default().slow_calls;
    let mut degraded = 0;
    for i in 0..slow_calls + 10 {
        let d = decide(&limiter, &format!("slow-{i}")).await;
        degraded += usize::from(d.is_degraded());
    }
    assert_eq!(breaker(&limiter), BreakerState::Open);
    assert!(
        degraded >= 10,
        "the failure mode decides once the breaker opens"
    );

    proxy.set_mode(Mode::Pass);
    until_recovered(&limiter).await;
    assert_eq!(breaker(&limiter), BreakerState::Closed);
}

fn breaker(limiter: &Limiter<Guarded<RedisStore>>) -> BreakerState {
    limiter.store().inner().breaker_state()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_then_refused_connections_then_recovery() {
    for bounds in Bounds::ALL {
        partition_then_refused(bounds).await;
    }
}

async fn partition_then_refused(bounds: Bounds) {
    let server = RedisServer::spawn();
    let proxy = FaultProxy::start(("127.0.0.1", server.port()));
    let limiter = limiter_through(&proxy, bounds).await;
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
