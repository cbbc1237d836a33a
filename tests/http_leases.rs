//! Batching and quota leases end to end, on a real Redis: two instances sharing one key
//! never admit more than its limit and lose at most a unit to leases; a hot key is
//! admitted from leases with a fraction of the script calls; `leases: off` on a policy
//! sends every request to Redis, and a reload changes that; each policy's failure mode
//! still decides for leased policies when Redis is gone. Each case runs with the default
//! store timeout and breaker, and with both raised.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use limiter::limiter_tower::config::load;
use limiter::limiter_tower::{AnyStore, LimiterLayer};
use redis_harness::RedisServer;

/// The store's `timeout` and the `breaker` of a case.
#[derive(Clone, Copy, Debug)]
enum Bounds {
    /// Neither set: what users get.
    Defaults,
    /// Generous: a busy test machine must not open the breaker by slowness alone.
    Raised,
}

/// A Redis store with batching (the default) and `leases`, and `endpoints` under it.
fn policies(url: &str, prefix: &str, leases: &str, endpoints: &str, bounds: Bounds) -> String {
    let (timeout, breaker) = match bounds {
        Bounds::Defaults => ("", ""),
        Bounds::Raised => ("timeout: 500ms", "breaker: { slow_calls: 1000000 }"),
    };
    format!(
        r#"
store:
  kind: redis
  url: "{url}"
  key_prefix: "{prefix}"
  leases: {leases}
  {timeout}
{breaker}
endpoints:
{endpoints}"#
    )
}

async fn instance(yaml: &str) -> (LimiterLayer, SocketAddr) {
    let layer = common::layer(yaml).await;
    let addr = common::serve(layer.clone(), "127.0.0.1:0").await;
    (layer, addr)
}

async fn status(client: &reqwest::Client, addr: SocketAddr, path: &str) -> u16 {
    client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

/// Waits until every lease `layer` took has ended and been given back.
async fn leases_ended(layer: &LimiterLayer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = layer.store().lease_stats().expect("leases are configured");
        if stats.outstanding == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leases still outstanding after 10s: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_sharing_a_key_admit_at_most_its_limit() {
    // One run after the other, not two tests: two such floods at once on a small machine
    // slow batching down until it saves fewer script calls than asserted.
    for bounds in [Bounds::Defaults, Bounds::Raised] {
        eprintln!("bounds: {bounds:?}"); // shown with a failure
        two_instances_sharing_a_key_admit_at_most_its_limit_with(bounds).await;
    }
}

async fn two_instances_sharing_a_key_admit_at_most_its_limit_with(bounds: Bounds) {
    let redis = RedisServer::spawn();
    // GCRA, 100 a day: no unit comes back by time passing while the test runs. Leases
    // may speculate 10% of it (the default, 0.5%, is less than a unit of 100).
    let yaml = policies(
        &redis.url(),
        "shared:",
        "{ lifetime: 100ms, speculation: 0.1 }",
        "  - { path: /hot, name: hot, scopes: [global], limits: [{ name: d, max: 100, window: 1d }] }\n",
        bounds,
    );
    let (a, addr_a) = instance(&yaml).await;
    let (b, addr_b) = instance(&yaml).await;
    assert!(a.store().is_batched() && a.store().lease_stats().is_some());
    let client = common::client();

    // Eight clients per instance, each sending its requests one after the other: a
    // steady concurrent load on one key, well past its limit.
    let before = redis.script_calls();
    let (clients, each) = (8, 25);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2 * clients {
        let client = client.clone();
        let (instance, addr) = if i % 2 == 0 { (0, addr_a) } else { (1, addr_b) };
        tasks.spawn(async move {
            let mut allowed = 0;
            for _ in 0..each {
                match status(&client, addr, "/hot").await {
                    200 => allowed += 1,
                    429 => {}
                    other => panic!("status {other}"),
                }
            }
            (instance, allowed)
        });
    }
    let mut allowed = [0usize; 2];
    while let Some(joined) = tasks.join_next().await {
        let (instance, n) = joined.unwrap();
        allowed[instance] += n;
    }
    let requests = 2 * clients * each;
    let calls = redis.script_calls() - before;
    let total = allowed[0] + allowed[1];
    let (stats_a, stats_b) = (
        a.store().lease_stats().unwrap(),
        b.store().lease_stats().unwrap(),
    );
    assert!(
        (99..=100).contains(&total),
        "limit 100 across both instances: {allowed:?}, leases {stats_a:?} {stats_b:?}"
    );
    assert!(
        stats_a.local_admissions + stats_b.local_admissions > 0,
        "some requests were admitted from leases: {stats_a:?} {stats_b:?}"
    );
    // Leases and batching spared calls. How many depends on how the requests
    // interleave, which a loaded machine changes (201 to 252 calls for these 400 were
    // seen under load, about 70 to 200 on a quiet machine): the figures are
    // BENCHMARKS.md's, the test only requires that some were spared.
    assert!(
        calls < requests as u64,
        "{requests} requests made {calls} script calls"
    );

    // Once every lease has been given back, whatever was refunded can be admitted once
    // more, never beyond the limit.
    leases_ended(&a).await;
    leases_ended(&b).await;
    let mut after = 0;
    for _ in 0..5 {
        for addr in [addr_a, addr_b] {
            if status(&client, addr, "/hot").await == 200 {
                after += 1;
            }
        }
    }
    assert!(
        (99..=100).contains(&(total + after)),
        "{total} admitted, then {after} more after the refunds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_is_admitted_from_leases_and_off_means_every_request_to_redis_with_the_defaults()
{
    a_hot_key_is_admitted_from_leases_and_off_means_every_request_to_redis(Bounds::Defaults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_is_admitted_from_leases_and_off_means_every_request_to_redis_with_raised_bounds()
{
    a_hot_key_is_admitted_from_leases_and_off_means_every_request_to_redis(Bounds::Raised).await;
}

async fn a_hot_key_is_admitted_from_leases_and_off_means_every_request_to_redis(bounds: Bounds) {
    let redis = RedisServer::spawn();
    let yaml = policies(
        &redis.url(),
        "hot:",
        "{ lifetime: 100ms }",
        "  - { path: /feed, name: feed, scopes: [global], limits: [{ name: h, max: 1000000, window: 1h }] }\n  - { path: /pay, name: pay, scopes: [global], leases: off, limits: [{ name: h, max: 1000000, window: 1h }] }\n",
        bounds,
    );
    let (layer, addr) = instance(&yaml).await;
    let client = common::client();

    // One request at a time: batching cannot merge them, only leases save calls.
    let before = redis.script_calls();
    for _ in 0..500 {
        assert_eq!(status(&client, addr, "/feed").await, 200);
    }
    let calls = redis.script_calls() - before;
    let stats = layer.store().lease_stats().unwrap();
    assert!(
        calls < 100,
        "500 requests made {calls} script calls: {stats:?}"
    );
    assert!(stats.local_admissions >= 400, "{stats:?}");
    assert!(stats.oldest_use <= Duration::from_millis(100), "{stats:?}");

    let admitted_locally = stats.local_admissions;
    let before = redis.script_calls();
    for _ in 0..100 {
        assert_eq!(status(&client, addr, "/pay").await, 200);
    }
    let stats = layer.store().lease_stats().unwrap();
    // Leases of /feed may expire meanwhile: a refund is a script call too.
    let refunds = stats.leases;
    let calls = redis.script_calls() - before;
    assert!(
        (100..=100 + refunds).contains(&calls),
        "`leases: off`: one call per request, made {calls}"
    );
    assert_eq!(
        stats.local_admissions, admitted_locally,
        "nothing of /pay was leased"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_a_policys_leases_with_the_defaults() {
    a_reload_changes_a_policys_leases(Bounds::Defaults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_a_policys_leases_with_raised_bounds() {
    a_reload_changes_a_policys_leases(Bounds::Raised).await;
}

async fn a_reload_changes_a_policys_leases(bounds: Bounds) {
    let redis = RedisServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.yaml");
    let file = |leases: &str| {
        policies(
            &redis.url(),
            "reload:",
            "on",
            &format!("  - {{ path: /feed, name: feed, scopes: [global], leases: {leases}, limits: [{{ name: h, max: 1000000, window: 1h }}] }}\n"),
            bounds,
        )
    };
    std::fs::write(&path, file("off")).unwrap();
    let loaded = load(&path).unwrap_or_else(|e| panic!("{e}"));
    let store = AnyStore::connect(loaded.rules.store()).await.unwrap();
    let layer = LimiterLayer::new(loaded.rules, store);
    let addr = common::serve(layer.clone(), "127.0.0.1:0").await;
    let client = common::client();

    // The first call also loads the script.
    assert_eq!(status(&client, addr, "/feed").await, 200);
    let before = redis.script_calls();
    for _ in 0..100 {
        assert_eq!(status(&client, addr, "/feed").await, 200);
    }
    assert_eq!(redis.script_calls() - before, 100, "not leased");
    assert_eq!(layer.store().lease_stats().unwrap().leases, 0);

    let reloader = layer.reloader(&path);
    std::fs::write(&path, file("{ lifetime: 50ms }")).unwrap();
    assert!(reloader.reload().unwrap(), "applied");
    let before = redis.script_calls();
    for _ in 0..300 {
        assert_eq!(status(&client, addr, "/feed").await, 200);
    }
    let calls = redis.script_calls() - before;
    let stats = layer.store().lease_stats().unwrap();
    assert!(
        calls < 100 && stats.leases > 0,
        "leased after the reload: {calls} calls, {stats:?}"
    );
    assert!(stats.oldest_use <= Duration::from_millis(50), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policys_failure_mode_decides_for_leased_policies_with_the_defaults() {
    each_policys_failure_mode_decides_for_leased_policies(Bounds::Defaults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policys_failure_mode_decides_for_leased_policies_with_raised_bounds() {
    each_policys_failure_mode_decides_for_leased_policies(Bounds::Raised).await;
}

async fn each_policys_failure_mode_decides_for_leased_policies(bounds: Bounds) {
    let mut redis = RedisServer::spawn();
    let yaml = policies(
        &redis.url(),
        "modes:",
        "on",
        "  - { path: /search, name: search, scopes: [global], limits: [{ name: h, max: 1000, window: 1h }] }\n  - { path: /pay, name: pay, scopes: [global], failure_mode: closed, limits: [{ name: h, max: 1000, window: 1h }] }\n",
        bounds,
    );
    let (layer, addr) = instance(&yaml).await;
    redis.kill();
    let client = common::client();
    for _ in 0..10 {
        // Enough requests for the keys to be in demand: leases are asked for and fail.
        let r = client
            .get(format!("http://{addr}/search"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the file's default: fail open");
        assert_eq!(r.headers()["ratelimit-degraded"], "true");
        let r = client
            .get(format!("http://{addr}/pay"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "this policy fails closed, leased or not");
        assert_eq!(r.headers()["ratelimit-degraded"], "true");
        assert!(r.headers().contains_key("retry-after"));
    }
    assert_eq!(layer.store().lease_stats().unwrap().leases, 0);
}
