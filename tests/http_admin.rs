//! The operators' routes (`AdminApi`) over HTTP: closed until the application
//! authorizes a caller, a key's usage read without charging it, a reset seen by every
//! instance sharing the store, and bad input answered with a problem body naming the
//! field.

mod common;

use std::net::SocketAddr;

use limiter::limiter_tower::{AdminApi, LimiterLayer};
use redis_harness::RedisServer;
use serde_json::Value;

const TOKEN: &str = "Bearer admin-test-token";

fn policies(store: &str) -> String {
    format!(
        r#"
store: {store}
endpoints:
  - path: /orders
    name: orders
    scopes: [ip]
    limits: [{{ name: minute, max: 3, window: 1m }}, {{ name: tokens, max: 100, window: 1m, unit: tokens }}]
"#
    )
}

/// `layer` over the test app, with the admin routes under /admin (never limited).
async fn serve(layer: LimiterLayer) -> SocketAddr {
    let admin = AdminApi::new(&layer)
        .authorize(|headers| headers.get("authorization").is_some_and(|v| v == TOKEN))
        .router();
    let app = common::app().layer(layer).nest("/admin", admin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

async fn admin_on(store: &str, label: &str) {
    // Two instances: on Redis each with its own layer; in memory sharing one (a memory
    // store is one process's).
    let first = common::layer(&policies(store)).await;
    let second = if store.contains("memory") {
        first.clone()
    } else {
        common::layer(&policies(store)).await
    };
    let (a, b) = (serve(first).await, serve(second).await);
    let client = common::client();
    let order = |addr: SocketAddr| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://{addr}/orders"))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(
        [order(a).await, order(b).await, order(a).await],
        [200; 3],
        "{label}"
    );
    assert_eq!(order(b).await, 429, "{label}");

    let usage = format!("http://{a}/admin/usage/orders/ip:127.0.0.1");
    for token in [None, Some("Bearer wrong")] {
        let mut request = client.get(&usage);
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 401, "{label}: {token:?}");
        let deleted = client.delete(&usage).send().await.unwrap();
        assert_eq!(deleted.status(), 401, "{label}");
    }

    for _ in 0..2 {
        let r = client
            .get(&usage)
            .header("authorization", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{label}");
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["windows"][0]["remaining"], 0, "{label}: {body}");
        assert_eq!(body["windows"][0]["name"], "minute", "{label}");
        assert_eq!(body["windows"][1]["unit"], "tokens", "{label}");
    }

    let r = client
        .delete(&usage)
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{label}");
    assert_eq!(
        order(b).await,
        200,
        "{label}: the reset reached the other instance"
    );

    let unknown = format!("http://{a}/admin/usage/billing/ip:127.0.0.1");
    let r = client
        .get(&unknown)
        .header("authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "{label}");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{label}"
    );
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["field"], "policy", "{label}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_routes_read_and_reset_usage_for_authorized_callers_only() {
    admin_on("{ kind: memory }", "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_through_the_admin_routes_reaches_every_instance_on_redis() {
    let server = RedisServer::spawn();
    admin_on(
        &format!("{{ kind: redis, url: \"{}\" }}", server.url()),
        "redis",
    )
    .await;
}

/// `GET /over-limit` lists the keys this instance denied whose denial still stands, and
/// no more than 1,000 of them however many were denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_over_their_limit_are_listed_within_a_bound() {
    let yaml = r#"
enumeration: { enabled: false }
endpoints:
  - path: /orders
    name: per-key
    scopes: [api_key]
    limits: [{ name: hour, max: 1, window: 1h }]
"#;
    let addr = serve(common::layer(yaml).await).await;
    let client = common::client();
    let order = |key: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}/orders"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let listed = || async {
        let text = client
            .get(format!("http://{addr}/admin/over-limit"))
            .header("authorization", TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        body["keys"].as_array().unwrap().clone()
    };
    assert_eq!(order("over".into()).await, 200);
    assert_eq!(order("over".into()).await, 429);
    assert_eq!(order("under".into()).await, 200);
    let keys = listed().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["policy"], "per-key");
    assert!(keys[0]["key"].as_str().unwrap().starts_with("key:"));
    assert!(keys[0]["retry_after_secs"].as_u64().unwrap() > 3_000);

    for i in 0..1_500 {
        order(format!("k{i}")).await;
        assert_eq!(order(format!("k{i}")).await, 429);
    }
    let keys = listed().await;
    assert!((500..=1_000).contains(&keys.len()), "{} listed", keys.len());
}
