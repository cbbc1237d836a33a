//! Two server instances on one Redis enforce one budget; a Redis that stops answering
//! degrades by the failure mode instead of failing requests. Each case runs with the
//! default store timeout and breaker, and with both raised.

mod common;

use limiter::limiter_core::BreakerState;
use limiter::limiter_tower::LimiterLayer;
use redis_harness::RedisServer;

/// The store's `timeout` and the `breaker` of a case.
#[derive(Clone, Copy, Debug)]
enum Bounds {
    /// Neither set: what users get.
    Defaults,
    /// Generous: a busy test machine must not open the breaker by slowness alone.
    Raised,
}

impl Bounds {
    /// The `timeout` field of a flow-style `store`, and the `breaker` section.
    fn yaml(self) -> (&'static str, &'static str) {
        match self {
            Bounds::Defaults => ("", ""),
            Bounds::Raised => (", timeout: 500ms", "breaker: { slow_calls: 1000000 }"),
        }
    }
}

fn policies(url: &str, failure_mode: &str, bounds: Bounds) -> String {
    let (timeout, breaker) = bounds.yaml();
    format!(
        r#"
store: {{ kind: redis, url: "{url}", key_prefix: "e2e:"{timeout} }}
{breaker}
failure_mode: {failure_mode}
endpoints:
  - {{ path: /shared, name: shared, scopes: [global], limits: [{{ name: h, max: 25, window: 1h }}, {{ name: d, max: 1000, window: 1d, algorithm: sliding_log }}] }}
"#
    )
}

async fn instance(yaml: &str) -> (LimiterLayer, std::net::SocketAddr) {
    let layer = common::layer(yaml).await;
    let addr = common::serve(layer.clone(), "127.0.0.1:0").await;
    (layer, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_budget_with_the_defaults() {
    two_instances_share_one_budget(Bounds::Defaults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_budget_with_raised_bounds() {
    two_instances_share_one_budget(Bounds::Raised).await;
}

async fn two_instances_share_one_budget(bounds: Bounds) {
    let redis = RedisServer::spawn();
    let yaml = policies(&redis.url(), "deny", bounds);
    let (_a, addr_a) = instance(&yaml).await;
    let (_b, addr_b) = instance(&yaml).await;
    let client = common::client();

    // Ten requests in turn, then fifty at once, alternating between the instances.
    let mut allowed = [0usize; 2];
    let mut count = |instance: usize, status: u16, degraded: bool| {
        assert!(!degraded, "Redis answered every decision");
        match status {
            200 => allowed[instance] += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    };
    for i in 0..10 {
        let addr = if i % 2 == 0 { addr_a } else { addr_b };
        let r = get(&client, addr).await;
        count(
            i % 2,
            r.status().as_u16(),
            r.headers().contains_key("ratelimit-degraded"),
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let client = client.clone();
        let addr = if i % 2 == 0 { addr_a } else { addr_b };
        tasks.spawn(async move {
            let r = get(&client, addr).await;
            (
                i % 2,
                r.status().as_u16(),
                r.headers().contains_key("ratelimit-degraded"),
            )
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (instance, status, degraded) = joined.unwrap();
        count(instance, status, degraded);
    }
    assert_eq!(
        allowed[0] + allowed[1],
        25,
        "one budget across both instances: {allowed:?}"
    );
    assert!(
        allowed[0] >= 5 && allowed[1] >= 5,
        "both instances admitted their turns: {allowed:?}"
    );
}

async fn get(client: &reqwest::Client, addr: std::net::SocketAddr) -> reqwest::Response {
    client
        .get(format!("http://{addr}/shared"))
        .send()
        .await
        .expect("the server answers while Redis is down")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure_degrades_by_failure_mode_with_the_defaults() {
    store_failure_degrades_by_failure_mode(Bounds::Defaults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure_degrades_by_failure_mode_with_raised_bounds() {
    store_failure_degrades_by_failure_mode(Bounds::Raised).await;
}

async fn store_failure_degrades_by_failure_mode(bounds: Bounds) {
    let mut redis = RedisServer::spawn();
    // `allow` is the older name of `open`; `closed` the newer one of `deny`.
    let (open_layer, open_addr) = instance(&policies(&redis.url(), "allow", bounds)).await;
    let (_closed, closed_addr) = instance(&policies(&redis.url(), "closed", bounds)).await;
    let client = common::client();
    for addr in [open_addr, closed_addr] {
        let ok = get(&client, addr).await;
        assert_eq!(ok.status(), 200);
        assert!(!ok.headers().contains_key("ratelimit-degraded"));
    }
    assert_eq!(
        open_layer.store().breaker_state(),
        Some(BreakerState::Closed)
    );

    redis.kill();
    let open = get(&client, open_addr).await;
    assert_eq!(open.status(), 200, "fail open");
    assert_eq!(open.headers()["ratelimit-degraded"], "true");
    let closed = get(&client, closed_addr).await;
    assert_eq!(closed.status(), 429, "fail closed, never 5xx");
    assert_eq!(closed.headers()["ratelimit-degraded"], "true");
    assert_eq!(closed.headers()["content-type"], "application/problem+json");
    let retry: u64 = closed.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    let body = closed.text().await.unwrap();
    assert!(body.contains("Rate limiter unavailable"), "{body}");

    // Failures open the breaker (5 by default); the failure mode keeps deciding.
    for _ in 0..20 {
        if open_layer.store().breaker_state() == Some(BreakerState::Open) {
            break;
        }
        let r = get(&client, open_addr).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-degraded"], "true");
    }
    assert_eq!(open_layer.store().breaker_state(), Some(BreakerState::Open));
    let r = get(&client, open_addr).await;
    assert_eq!(
        (r.status().as_u16(), &r.headers()["ratelimit-degraded"]),
        (200, &"true".parse().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_failure_mode_enforces_this_instances_share_with_the_defaults() {
    local_failure_mode_enforces_this_instances_share(Bounds::Defaults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_failure_mode_enforces_this_instances_share_with_raised_bounds() {
    local_failure_mode_enforces_this_instances_share(Bounds::Raised).await;
}

async fn local_failure_mode_enforces_this_instances_share(bounds: Bounds) {
    let mut redis = RedisServer::spawn();
    // 25 an hour shared; 0.2 of it is 5 for this instance while Redis is away.
    let (_layer, addr) = instance(&policies(
        &redis.url(),
        "{ mode: local, share: 0.2 }",
        bounds,
    ))
    .await;
    let client = common::client();
    let ok = get(&client, addr).await;
    assert_eq!(ok.status(), 200);
    assert!(!ok.headers().contains_key("ratelimit-degraded"));

    redis.kill();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = get(&client, addr).await;
        assert_eq!(r.headers()["ratelimit-degraded"], "true");
        assert!(
            r.headers().contains_key("ratelimit"),
            "the stand-in's own figures"
        );
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let body = r.text().await.unwrap();
            assert!(body.contains("quota-exceeded"), "{body}");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_can_override_the_failure_mode_with_the_defaults() {
    each_endpoint_can_override_the_failure_mode(Bounds::Defaults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_can_override_the_failure_mode_with_raised_bounds() {
    each_endpoint_can_override_the_failure_mode(Bounds::Raised).await;
}

async fn each_endpoint_can_override_the_failure_mode(bounds: Bounds) {
    let mut redis = RedisServer::spawn();
    let (timeout, breaker) = bounds.yaml();
    let yaml = format!(
        r#"
store: {{ kind: redis, url: "{url}", key_prefix: "e2e-modes:"{timeout} }}
{breaker}
failure_mode: open
endpoints:
  - {{ path: /search, name: search, scopes: [global], limits: [{{ name: h, max: 100, window: 1h }}] }}
  - {{ path: /pay, name: pay, scopes: [global], failure_mode: closed, limits: [{{ name: h, max: 100, window: 1h }}] }}
  - {{ path: /upload, name: upload, scopes: [global], failure_mode: {{ mode: local, share: 0.05 }}, limits: [{{ name: h, max: 100, window: 1h }}] }}
"#,
        url = redis.url()
    );
    let (_layer, addr) = instance(&yaml).await;
    let client = common::client();
    assert_eq!(
        client
            .get(format!("http://{addr}/pay"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    redis.kill();

    let at = |path: &str| format!("http://{addr}{path}");
    for _ in 0..10 {
        let r = client.get(at("/search")).send().await.unwrap();
        assert_eq!(r.status(), 200, "the file's default: fail open");
        assert!(r.headers().contains_key("ratelimit-degraded"));
        let r = client.get(at("/pay")).send().await.unwrap();
        assert_eq!(r.status(), 429, "this endpoint fails closed");
        assert!(r.headers().contains_key("retry-after"));
    }
    let mut uploads = Vec::new();
    for _ in 0..10 {
        uploads.push(
            client
                .get(at("/upload"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        uploads.iter().filter(|s| **s == 200).count(),
        5,
        "5% of 100 enforced locally: {uploads:?}"
    );
}
