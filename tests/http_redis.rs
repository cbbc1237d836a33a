//! Two server instances on one Redis enforce one budget; a Redis that stops answering
//! degrades by the failure mode instead of failing requests.

mod common;

use limiter::tower::RateLimitLayer;
use redis_harness::RedisServer;

fn policies(url: &str, failure_mode: &str) -> String {
    format!(
        r#"
store: {{ kind: redis, url: "{url}", key_prefix: "e2e:", timeout: 500ms }}
failure_mode: {failure_mode}
endpoints:
  - {{ path: /shared, name: shared, scopes: [global], limits: [{{ name: h, max: 25, window: 1h }}, {{ name: d, max: 1000, window: 1d, algorithm: sliding_log }}] }}
"#
    )
}

async fn instance(yaml: &str) -> (RateLimitLayer, std::net::SocketAddr) {
    let layer = common::layer(yaml).await;
    let addr = common::serve(layer.clone(), "127.0.0.1:0").await;
    (layer, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_budget() {
    let redis = RedisServer::spawn();
    let yaml = policies(&redis.url(), "deny");
    let (_a, addr_a) = instance(&yaml).await;
    let (_b, addr_b) = instance(&yaml).await;
    let client = common::client();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let client = client.clone();
        let addr = if i % 2 == 0 { addr_a } else { addr_b };
        tasks.spawn(async move {
            let r = client
                .get(format!("http://{addr}/shared"))
                .send()
                .await
                .unwrap();
            (
                i % 2,
                r.status().as_u16(),
                r.headers().contains_key("ratelimit-degraded"),
            )
        });
    }
    let mut allowed = [0usize; 2];
    while let Some(joined) = tasks.join_next().await {
        let (instance, status, degraded) = joined.unwrap();
        assert!(!degraded, "Redis answered every decision");
        match status {
            200 => allowed[instance] += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    assert_eq!(
        allowed[0] + allowed[1],
        25,
        "one budget across both instances: {allowed:?}"
    );
    assert!(
        allowed[0] > 0 && allowed[1] > 0,
        "both instances admitted some: {allowed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failure_degrades_by_failure_mode() {
    let mut redis = RedisServer::spawn();
    let (_allow, allow_addr) = instance(&policies(&redis.url(), "allow")).await;
    let (_deny, deny_addr) = instance(&policies(&redis.url(), "deny")).await;
    let client = common::client();
    let ok = client
        .get(format!("http://{allow_addr}/shared"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(!ok.headers().contains_key("ratelimit-degraded"));

    redis.kill();
    let open = client
        .get(format!("http://{allow_addr}/shared"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200, "fail open");
    assert_eq!(open.headers()["ratelimit-degraded"], "true");
    let closed = client
        .get(format!("http://{deny_addr}/shared"))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 429, "fail closed, never 5xx");
    assert_eq!(closed.headers()["ratelimit-degraded"], "true");
    assert_eq!(closed.headers()["content-type"], "application/problem+json");
}
