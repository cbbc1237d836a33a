//! `LimiterLayer::peek` and `reset` with traffic over HTTP: a peek charges nothing, a
//! reset on one instance lets the key through on every instance sharing the store, and
//! an unknown policy is a typed error.

mod common;

use limiter::limiter_tower::UsageError;
use redis_harness::RedisServer;

fn policies(store: &str) -> String {
    format!(
        r#"
store: {store}
endpoints:
  - path: /orders
    name: orders
    scopes: [ip]
    limits: [{{ name: minute, max: 3, window: 1m }}]
"#
    )
}

async fn status(addr: std::net::SocketAddr) -> u16 {
    let url = format!("http://{addr}/orders");
    common::client()
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn reset_on(store: &str, instances: usize, label: &str) {
    let mut layers = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..instances {
        let layer = common::layer(&policies(store)).await;
        addrs.push(common::serve(layer.clone(), "127.0.0.1:0").await);
        layers.push(layer);
    }
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(status(addrs[i % instances]).await);
    }
    assert_eq!(statuses, [200, 200, 200, 429], "{label}");
    let key = "ip:127.0.0.1";
    for _ in 0..2 {
        let now = layers[0].peek("orders", key).await.unwrap();
        assert_eq!(
            now.windows()[0].remaining(),
            0,
            "{label}: a peek charges nothing"
        );
    }
    layers[0].reset("orders", key).await.unwrap();
    let last = addrs[instances - 1];
    assert_eq!(status(last).await, 200, "{label}: reset everywhere");
    let now = layers[instances - 1].peek("orders", key).await.unwrap();
    assert_eq!(now.windows()[0].remaining(), 2, "{label}");
    assert!(matches!(
        layers[0].reset("billing", key).await,
        Err(UsageError::UnknownPolicy(name)) if name == "billing"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_lets_the_key_through_on_every_instance() {
    reset_on("{ kind: memory }", 1, "memory").await;
    let server = RedisServer::spawn();
    let redis = format!("{{ kind: redis, url: \"{}\", leases: on }}", server.url());
    reset_on(&redis, 2, "redis, two instances").await;
}
