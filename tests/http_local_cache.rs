//! `local_cache` on a Redis store: a flood from a client over its limit is answered 429
//! from memory, with the Retry-After Redis gave counted down, every hit counted in
//! `ratelimit_local_cache_hits_total{policy}`, and Redis asked about once for the flood.
//! The case runs with the default store timeout and breaker, and with both raised.
//!
//! The Prometheus recorder is process-global: each run counts under a policy of its own.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use limiter::telemetry::install_prometheus;
use metrics_exporter_prometheus::PrometheusHandle;
use redis_harness::RedisServer;

/// The store's `timeout` and the `breaker` of a run.
#[derive(Clone, Copy, Debug)]
enum Bounds {
    /// Neither set: what users get.
    Defaults,
    /// Generous: a busy test machine must not open the breaker by slowness alone.
    Raised,
}

impl Bounds {
    /// The name of the run's policy, which labels its hits.
    fn policy(self) -> &'static str {
        match self {
            Bounds::Defaults => "flood-defaults",
            Bounds::Raised => "flood-raised",
        }
    }
}

fn policies(url: &str, bounds: Bounds) -> String {
    let (timeout, breaker) = match bounds {
        Bounds::Defaults => ("", ""),
        Bounds::Raised => (", timeout: 500ms", "breaker: { slow_calls: 1000000 }"),
    };
    let policy = bounds.policy();
    format!(
        r#"
store: {{ kind: redis, url: "{url}", key_prefix: "cache:"{timeout}, local_cache: {{ max_keys: 1000 }} }}
{breaker}
endpoints:
  - {{ path: /flood, name: {policy}, scopes: [api_key], limits: [{{ name: h, max: 2, window: 1h }}] }}
"#
    )
}

/// The binary's Prometheus recorder, installed by the first run that asks.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| install_prometheus().expect("the only recorder of this binary"))
}

/// The status and `Retry-After` (whole seconds) of one request with `key`.
async fn get(client: &reqwest::Client, addr: SocketAddr, key: &str) -> (u16, Option<u64>) {
    let r = client
        .get(format!("http://{addr}/flood"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    if r.status() == 429 {
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        assert!(r.headers().contains_key("ratelimit"), "{:?}", r.headers());
        assert!(!r.headers().contains_key("ratelimit-degraded"));
    }
    (r.status().as_u16(), retry)
}

/// The hits counted under `policy`.
fn hits(text: &str, policy: &str) -> u64 {
    let series = format!(r#"ratelimit_local_cache_hits_total{{policy="{policy}"}} "#);
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_a_limited_client_is_answered_from_memory_with_the_defaults() {
    a_flood_from_a_limited_client_is_answered_from_memory(Bounds::Defaults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_a_limited_client_is_answered_from_memory_with_raised_bounds() {
    a_flood_from_a_limited_client_is_answered_from_memory(Bounds::Raised).await;
}

async fn a_flood_from_a_limited_client_is_answered_from_memory(bounds: Bounds) {
    let metrics = recorder();
    let policy = bounds.policy();
    let start = Instant::now();
    let redis = RedisServer::spawn();
    let layer = common::layer(&policies(&redis.url(), bounds)).await;
    assert!(layer.store().local_cache().is_some());
    let addr = common::serve(layer.clone(), "127.0.0.1:0").await;
    let client = common::client();

    for _ in 0..2 {
        assert_eq!(get(&client, addr, "flooder").await.0, 200);
    }
    let before = redis.script_calls();
    // GCRA, 2 an hour: the third request may come 30 minutes after the first two.
    let (status, first) = get(&client, addr, "flooder").await;
    assert_eq!(status, 429);
    let first = first.expect("Retry-After");
    let elapsed = |at: Instant| at.elapsed().as_secs() + 1;
    assert!(
        first <= 1800 && first + elapsed(start) >= 1800,
        "Retry-After {first}"
    );

    // Sequential, then concurrent: every one denied, counting down from Redis's answer.
    let flood = Instant::now();
    for i in 0..200 {
        let (status, retry) = get(&client, addr, "flooder").await;
        let retry = retry.expect("Retry-After");
        assert_eq!(status, 429, "#{i}");
        assert!(
            retry <= first && retry + elapsed(flood) >= first,
            "#{i}: Retry-After {retry}, first {first}"
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let client = client.clone();
        tasks.spawn(async move { get(&client, addr, "flooder").await });
    }
    while let Some(joined) = tasks.join_next().await {
        let (status, retry) = joined.unwrap();
        assert_eq!(status, 429);
        assert!(retry.is_some_and(|r| r <= first), "{retry:?}");
    }
    let calls = redis.script_calls() - before;
    assert!(calls <= 2, "251 denials made {calls} script calls");
    assert_eq!(
        hits(&metrics.render(), policy),
        250,
        "every denial after Redis's first was a hit:\n{}",
        metrics.render()
    );

    // Another client is unaffected, and its requests are no hits.
    assert_eq!(get(&client, addr, "someone-else").await.0, 200);
    assert_eq!(hits(&metrics.render(), policy), 250);
    assert_eq!(layer.store().local_cache().map(|c| c.len()), Some(1));
}
