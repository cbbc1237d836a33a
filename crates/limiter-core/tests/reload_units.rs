//! Usage survives a policy reload in units, for every algorithm and on both stores: a
//! raised `max` gives its headroom at once, a lowered one keeps what was used.
//!
//! A reload is a policy re-created under the same name (the name is part of every
//! storage key). GCRA stores time, not counts, so it is the algorithm these cases are
//! for; the counting algorithms keep units by construction and are held to the same
//! answers. Each case runs with the window alone (the script's one-window GCRA fast
//! path) and beside a generous second window (its general path), at a fixed instant
//! (Redis reads the test clock), so the counts are exact.

mod support;

use std::time::Duration;

use limiter_core::{Algorithm, Decision, Limit, ManualClock, Policy, RedisStore, Store};
use redis_harness::RedisServer;
use support::*;

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Gcra { burst: None },
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
    Algorithm::FixedWindow,
];

const WINDOW: Duration = Duration::from_secs(60);

/// `max` per minute counted by `algorithm`, alone or with a second window that never
/// fills in these cases.
fn policy(name: &str, algorithm: Algorithm, max: u64, second_window: bool) -> Policy {
    let mut limits = vec![Limit::new(max, WINDOW).with_algorithm(algorithm)];
    if second_window {
        limits.push(Limit::new(1_000, secs(3_600)).with_algorithm(Algorithm::FixedWindow));
    }
    Policy::new(name, limits).expect("valid test policy")
}

/// Admits cost-1 requests for `key` until one is denied; returns how many were admitted
/// and the denial.
async fn admit_all(store: &impl Store, policy: &Policy, key: &str) -> (u64, Decision) {
    for admitted in 0..100 {
        let decision = store.check(policy, key, 1).await.expect("store answers");
        if !decision.is_allowed() {
            return (admitted, decision);
        }
    }
    panic!("{}: more than 100 admitted", policy.name());
}

/// Under `from` per minute, uses `used`; reloads to `to` per minute; returns how many
/// more are admitted and the denial that ends them.
async fn after_reload(
    store: &impl Store,
    algorithm: Algorithm,
    second_window: bool,
    (from, used, to): (u64, u64, u64),
) -> (u64, Decision) {
    let name = fresh_policy(vec![Limit::new(1, WINDOW)]).name().to_owned();
    let before = policy(&name, algorithm, from, second_window);
    for i in 0..used {
        let decision = store
            .check(&before, "user", 1)
            .await
            .expect("store answers");
        assert!(
            decision.is_allowed(),
            "{algorithm:?}: request {i} of {used}"
        );
    }
    let after = policy(&name, algorithm, to, second_window);
    admit_all(store, &after, "user").await
}

/// Every algorithm, alone and beside a second window, on `store`.
async fn check_every_algorithm(store: &impl Store, clock: &ManualClock) {
    for second_window in [false, true] {
        for algorithm in ALGORITHMS {
            let case = |what: &str| format!("{algorithm:?}, second window {second_window}: {what}");
            let (more, _) = after_reload(store, algorithm, second_window, (5, 5, 8)).await;
            assert_eq!(more, 3, "{}", case("5 of 5, raised to 8"));
            let (more, _) = after_reload(store, algorithm, second_window, (8, 5, 6)).await;
            assert_eq!(more, 1, "{}", case("5 of 8, lowered to 6"));
            let (more, denial) = after_reload(store, algorithm, second_window, (8, 5, 4)).await;
            assert_eq!(more, 0, "{}", case("5 of 8, lowered to 4"));
            let retry = denial.retry_after().expect("a cost of 1 fits some time");
            assert!(retry <= 2 * WINDOW, "{}", case(&format!("retry {retry:?}")));
            // Unchanged, as a control: no more than the limit.
            let (more, _) = after_reload(store, algorithm, second_window, (8, 5, 8)).await;
            assert_eq!(more, 3, "{}", case("5 of 8, reloaded unchanged"));
        }

        // GCRA owes exactly what was used, drained at the new rate: 5 units against a
        // capacity of 4 fit one more once 2 have drained, 15 s each.
        let gcra = Algorithm::Gcra { burst: None };
        let name = fresh_policy(vec![Limit::new(1, WINDOW)]).name().to_owned();
        for _ in 0..5 {
            let decision = store
                .check(&policy(&name, gcra, 8, second_window), "user", 1)
                .await
                .expect("store answers");
            assert!(decision.is_allowed());
        }
        let lowered = policy(&name, gcra, 4, second_window);
        let (more, denial) = admit_all(store, &lowered, "user").await;
        assert_eq!((more, denial.retry_after()), (0, Some(secs(30))));
        clock.advance(secs(30) - Duration::from_micros(1));
        assert!(!store.check(&lowered, "user", 1).await.unwrap().is_allowed());
        clock.advance(Duration::from_micros(1));
        assert_eq!(admit_all(store, &lowered, "user").await.0, 1);
        // And back up to 8: 4 units owed, 4 more.
        let raised = policy(&name, gcra, 8, second_window);
        assert_eq!(admit_all(store, &raised, "user").await.0, 4);
    }
}

#[tokio::test]
async fn memory_store_keeps_units_across_reloads() {
    let clock = ManualClock::new(T0);
    check_every_algorithm(&memory_store(&clock), &clock).await;
}

#[tokio::test]
async fn redis_store_keeps_units_across_reloads() {
    let server = RedisServer::spawn();
    let clock = ManualClock::new(T0);
    check_every_algorithm(&redis_store_on_clock(&server, &clock).await, &clock).await;
}

/// The GCRA key of window 0 for `key` under `policy`, with the default prefix.
fn gcra_key(policy: &Policy, key: &str) -> String {
    format!("rl:{{{}:{key}}}:0g", policy.name())
}

#[tokio::test]
async fn redis_gcra_value_is_tat_and_emission() {
    let server = RedisServer::spawn();
    let clock = ManualClock::new(T0);
    let store = redis_store_on_clock(&server, &clock).await;
    for second_window in [false, true] {
        let name = fresh_policy(vec![Limit::new(1, WINDOW)]).name().to_owned();
        let five = policy(&name, Algorithm::Gcra { burst: None }, 5, second_window);
        assert!(store.check(&five, "user", 1).await.unwrap().is_allowed());
        let value: String = server.cmd(&["GET", &gcra_key(&five, "user")]);
        assert_eq!(value, format!("{}:12000000", T0 + 12_000_000));

        // A denied request after a reload writes the converted state back: 1 unit of
        // 12 s is 1 of 7.5 s.
        let eight = policy(&name, Algorithm::Gcra { burst: None }, 8, second_window);
        store.check(&eight, "user", 100).await.unwrap();
        let value: String = server.cmd(&["GET", &gcra_key(&five, "user")]);
        assert_eq!(value, format!("{}:7500000", T0 + 7_500_000));
    }
}

#[tokio::test]
async fn redis_reads_a_legacy_gcra_value_under_the_current_emission() {
    let server = RedisServer::spawn();
    let clock = ManualClock::new(T0);
    let store = redis_store_on_clock(&server, &clock).await;
    for second_window in [false, true] {
        let name = fresh_policy(vec![Limit::new(1, WINDOW)]).name().to_owned();
        let five = policy(&name, Algorithm::Gcra { burst: None }, 5, second_window);
        let key = gcra_key(&five, "user");
        // Written by the previous script: the tat alone, 3 units of 12 s ahead.
        let legacy = (T0 + 36_000_000).to_string();
        let _: () = server.cmd(&["SET", &key, &legacy, "PX", "60000"]);
        let (more, _) = admit_all(&store, &five, "user").await;
        assert_eq!(more, 2, "second window {second_window}");
        let value: String = server.cmd(&["GET", &key]);
        assert_eq!(value, format!("{}:12000000", T0 + 60_000_000));
        // Unreadable values count as no state, as the other algorithms' do.
        let _: () = server.cmd(&["SET", &key, "garbage:1", "PX", "60000"]);
        assert_eq!(admit_all(&store, &five, "user").await.0, 5);
    }
}

/// On the production script (Redis `TIME`, no extra TTL): a lowered rate lengthens the
/// backlog, and the key's TTL follows at once, even when the request is denied, so the
/// usage is not forgotten when the old rate would have drained it.
#[tokio::test]
async fn redis_ttl_follows_a_lowered_rate() {
    let server = RedisServer::spawn();
    let store: RedisStore = redis_store(&server).await;
    for second_window in [false, true] {
        let name = fresh_policy(vec![Limit::new(1, WINDOW)]).name().to_owned();
        let eight = policy(&name, Algorithm::Gcra { burst: None }, 8, second_window);
        for _ in 0..5 {
            assert!(store.check(&eight, "user", 1).await.unwrap().is_allowed());
        }
        let key = gcra_key(&eight, "user");
        // At least the backlog; a key of one GCRA window outlives it by at most its
        // window (a minute).
        let ttl: i64 = server.cmd(&["PTTL", &key]);
        assert!(
            (37_000..=97_500).contains(&ttl),
            "5 units of 7.5 s: {ttl} ms"
        );
        let four = policy(&name, Algorithm::Gcra { burst: None }, 4, second_window);
        assert!(!store.check(&four, "user", 1).await.unwrap().is_allowed());
        let ttl: i64 = server.cmd(&["PTTL", &key]);
        assert!(
            (74_000..=75_000).contains(&ttl),
            "5 units of 15 s: {ttl} ms"
        );
    }
}

#[tokio::test]
async fn memory_store_keeps_a_lowered_rates_longer_backlog_through_sweeps() {
    let clock = ManualClock::new(T0);
    let store = memory_store(&clock);
    let name = fresh_policy(vec![Limit::new(1, WINDOW)]).name().to_owned();
    let eight = Policy::new(&name, vec![Limit::new(8, WINDOW)]).unwrap();
    for _ in 0..5 {
        assert!(store.check(&eight, "k", 1).await.unwrap().is_allowed());
    }
    // 5 of 8 per minute: the state would expire after 37.5 s. Under 4 per minute the
    // same 5 units are a 75 s backlog; a denial must keep the entry that long.
    let four = Policy::new(&name, vec![Limit::new(4, WINDOW)]).unwrap();
    assert!(!store.check(&four, "k", 1).await.unwrap().is_allowed());
    clock.advance(Duration::from_secs(40));
    store.purge_expired();
    // 35 s of backlog left: 2⅓ units used of 4, room for one more.
    let (admitted, _) = admit_all(&store, &four, "k").await;
    assert_eq!(admitted, 1, "the sweep kept the usage");
}
