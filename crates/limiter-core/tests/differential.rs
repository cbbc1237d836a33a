//! Differential property test: random sequences of (key, cost, time step, policy reload)
//! give identical decisions on the in-memory store (Rust algorithms) and on Redis (the
//! Lua script), for every algorithm and for a policy mixing them all. A reload swaps in
//! the policy with every `max` (and GCRA `burst`) changed, under the same name, so that
//! state written under one rate is read under another. Some decisions are reservations,
//! settled later for a random actual cost (twice: the second changes nothing), so that
//! refunds and forced excess charges agree too.

mod support;

use std::time::Duration;

use limiter_core::{Algorithm, Cost, Limit, ManualClock, Period, Policy, Reservation, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis_harness::RedisServer;
use support::*;

#[derive(Clone, Debug)]
struct Op {
    key: u8,
    /// Requests and units (the same figure in a policy of one unit).
    cost: (u64, u64),
    step_us: u64,
    /// Reload to this variant of the policy (see `variants`) before deciding.
    reload: Option<usize>,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Check,
    /// Reserve the cost, to be settled by a later `Settle`.
    Reserve,
    /// Settle the pending reservation at this index (modulo their number) for `cost`
    /// (instead of deciding it), twice.
    Settle(usize),
}

/// The policy as given, then with every `max` halved, raised by half (GCRA `burst` kept,
/// so only the emission interval changes), and doubled (`burst` too).
fn variants(limits: &[Limit]) -> Vec<Vec<Limit>> {
    let scale = |x: u64, (num, den): (u64, u64)| (x * num / den).max(1);
    [None, Some((1, 2)), Some((3, 2)), Some((2, 1))]
        .into_iter()
        .enumerate()
        .map(|(i, factor)| {
            limits
                .iter()
                .map(|l| {
                    let Some(factor) = factor else {
                        return l.clone();
                    };
                    let algorithm = match l.algorithm() {
                        Algorithm::Gcra { burst: Some(b) } if i != 2 => Algorithm::Gcra {
                            burst: Some(scale(b, factor)),
                        },
                        other => other,
                    };
                    Limit::new(scale(l.max(), factor), l.window())
                        .counting(l.unit())
                        .with_algorithm(algorithm)
                })
                .collect()
        })
        .collect()
}

const VARIANTS: usize = 4;

fn ops(max_cost: u64, window_us: u64) -> impl Strategy<Value = (u64, Vec<Op>)> {
    let kind = prop_oneof![
        3 => Just(Kind::Check),
        2 => Just(Kind::Reserve),
        2 => (0..8usize).prop_map(Kind::Settle),
    ];
    let op = (
        0u8..3,
        (0..=max_cost, 0..=max_cost),
        prop_oneof![
            3 => 0..2_000u64,
            2 => 0..window_us,
            1 => 0..3 * window_us,
            // Whole tenths of the window, so that entries expire exactly on a boundary.
            3 => (0..20u64).prop_map(move |tenths| tenths * window_us / 10),
        ],
        prop_oneof![6 => Just(None), 1 => (0..VARIANTS).prop_map(Some)],
        kind,
    )
        .prop_map(|(key, cost, step_us, reload, kind)| Op {
            key,
            cost,
            step_us,
            reload,
            kind,
        });
    // A random start offset so that window boundaries fall anywhere, or exactly on one.
    let offset = prop_oneof![0..86_400_000_000u64, Just(0)];
    (offset, prop::collection::vec(op, 1..60))
}

fn check_algorithm(limits: Vec<Limit>) {
    let server = RedisServer::spawn();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let variants = variants(&limits);
    let max_cost = variants
        .iter()
        .flatten()
        .map(|l| l.capacity())
        .max()
        .unwrap_or(1)
        + 1;
    let window_us = limits
        .iter()
        .map(|l| l.window().as_micros() as u64)
        .max()
        .unwrap_or(1);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let result = runner.run(&ops(max_cost, window_us), |(offset, ops)| {
        rt.block_on(async {
            let mut policy = fresh_policy(limits.clone());
            let clock = ManualClock::new(T0 + offset as i64);
            let memory = memory_store(&clock);
            let redis = redis_store_on_clock(&server, &clock).await;
            let mut pending: Vec<(String, Reservation, Reservation)> = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                if let Some(v) = op.reload {
                    policy = Policy::new(policy.name(), variants[v].clone())
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                clock.advance(Duration::from_micros(op.step_us));
                let key = format!("k{}", op.key);
                let fail = |e: limiter_core::Error| TestCaseError::fail(e.to_string());
                let mut cost = Cost::new(op.cost.0, op.cost.1);
                if policy.unit().is_none()
                    || !policy.limits().iter().any(|l| l.unit() == "requests")
                {
                    cost = Cost::from(op.cost.0);
                }
                match op.kind {
                    Kind::Check => {
                        let m = memory.check(&policy, &key, cost).await.map_err(fail)?;
                        let r = redis.check(&policy, &key, cost).await.map_err(fail)?;
                        prop_assert_eq!(m, r, "op #{} {:?}", i, op);
                    }
                    Kind::Reserve => {
                        let m = memory.reserve(&policy, &key, cost).await.map_err(fail)?;
                        let r = redis.reserve(&policy, &key, cost).await.map_err(fail)?;
                        prop_assert_eq!(m.decision(), r.decision(), "op #{} {:?}", i, op);
                        pending.push((key, m, r));
                    }
                    Kind::Settle(_) if pending.is_empty() => {}
                    Kind::Settle(which) => {
                        let (key, m, r) = pending.remove(which % pending.len());
                        // Twice under an id: the second changes nothing.
                        let (m, r) = (m.with_id(i as u64), r.with_id(i as u64));
                        for _ in 0..2 {
                            let (m, r) = (m.clone(), r.clone());
                            memory.settle(&policy, &key, m, cost).await.map_err(fail)?;
                            redis.settle(&policy, &key, r, cost).await.map_err(fail)?;
                        }
                        let m = memory
                            .check(&policy, &key, Cost::ZERO)
                            .await
                            .map_err(fail)?;
                        let r = redis.check(&policy, &key, Cost::ZERO).await.map_err(fail)?;
                        prop_assert_eq!(m, r, "after settling, op #{} {:?}", i, op);
                    }
                }
            }
            Ok::<(), TestCaseError>(())
        })
    });
    if let Err(e) = result {
        panic!("stores disagree: {e}");
    }
}

#[test]
fn gcra_agrees() {
    check_algorithm(vec![Limit::new(5, secs(1))]);
    check_algorithm(vec![Limit::new(3, Duration::from_millis(700))
        .with_algorithm(Algorithm::Gcra { burst: Some(7) })]);
}

#[test]
fn sliding_log_agrees() {
    check_algorithm(vec![
        Limit::new(5, secs(1)).with_algorithm(Algorithm::SlidingLog)
    ]);
}

#[test]
fn sliding_counter_agrees() {
    check_algorithm(vec![
        Limit::new(7, secs(1)).with_algorithm(Algorithm::SlidingWindow)
    ]);
}

#[test]
fn fixed_window_agrees() {
    check_algorithm(vec![
        Limit::new(5, Duration::from_millis(1500)).with_algorithm(Algorithm::FixedWindow)
    ]);
}

#[test]
fn calendar_windows_agree() {
    check_algorithm(vec![
        Limit::per_calendar(4, Period::Minute),
        Limit::per_calendar(9, Period::Hour),
    ]);
    check_algorithm(vec![
        Limit::per_calendar(6, Period::Day),
        Limit::per_calendar(8, Period::Week),
        Limit::per_calendar(10, Period::Month),
    ]);
}

#[test]
fn mixed_units_agree() {
    check_algorithm(vec![
        Limit::new(3, secs(1)),
        Limit::new(9, secs(2))
            .counting("tokens")
            .with_algorithm(Algorithm::SlidingLog),
        Limit::new(12, secs(3))
            .counting("tokens")
            .with_algorithm(Algorithm::SlidingWindow),
        Limit::new(15, secs(4))
            .counting("tokens")
            .with_algorithm(Algorithm::FixedWindow),
    ]);
    check_algorithm(vec![Limit::new(11, secs(2)).counting("bytes")]);
}

#[test]
fn mixed_policy_agrees() {
    check_algorithm(vec![
        Limit::new(4, secs(1)),
        Limit::new(6, secs(2)).with_algorithm(Algorithm::SlidingLog),
        Limit::new(8, secs(3)).with_algorithm(Algorithm::SlidingWindow),
        Limit::new(10, secs(4)).with_algorithm(Algorithm::FixedWindow),
        Limit::per_calendar(12, Period::Minute),
    ]);
}
