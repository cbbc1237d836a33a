//! The penalty box over HTTP: a key its policy denied stays denied for the penalty while
//! its window has room again, on the instance that denied it and, through Redis, on
//! another; the penalty ends by itself; a reset lets the key out; bad penalties are
//! configuration errors.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use limiter::limiter_tower::config::load_str;
use limiter::limiter_tower::LimiterLayer;
use redis_harness::RedisServer;

/// `/p`: 2 a second per address (a unit back every 500 ms), a penalty of 4 s.
fn policies(store: &str, tag: &str) -> String {
    format!(
        r#"
store: {store}
endpoints:
  - path: /p
    name: penalized-{tag}
    scopes: [ip]
    penalty: 4s
    limits: [{{ name: second, max: 2, window: 1s }}]
"#
    )
}

const KEY: &str = "ip:127.0.0.1";

/// The status, `Retry-After` and body of one request.
async fn call(addr: SocketAddr) -> (u16, u64, String) {
    let response = common::client()
        .get(format!("http://{addr}/p"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    (status, retry, response.text().await.unwrap())
}

/// Waits until the key's window has room again (the store alone would admit it).
async fn window_has_room(layer: &LimiterLayer, policy: &str) {
    common::eventually(|| async {
        let now = layer.peek(policy, KEY).await.map_err(|e| e.to_string())?;
        match now.windows()[0].remaining() {
            0 => Err("the window is still full".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_key_waits_out_its_penalty() {
    let layer = common::layer(&policies("{ kind: memory }", "memory")).await;
    let addr = common::serve(layer.clone(), "127.0.0.1:0").await;
    let policy = "penalized-memory";
    assert_eq!(call(addr).await.0, 200);
    assert_eq!(call(addr).await.0, 200);
    let (status, retry, _) = call(addr).await;
    assert_eq!(
        (status, retry),
        (429, 4),
        "the denial says how long the penalty lasts"
    );

    window_has_room(&layer, policy).await;
    let (status, retry, body) = call(addr).await;
    assert_eq!(status, 429, "the window has room, the penalty holds");
    assert!(body.contains("penalty"), "{body}");
    assert!((1..=4).contains(&retry), "{retry}");

    // It ends by itself.
    common::eventually(|| async {
        match call(addr).await.0 {
            200 => Ok(()),
            other => Err(format!("still {other}")),
        }
    })
    .await;

    // Denied again, then reset: out at once.
    while call(addr).await.0 == 200 {}
    layer.reset(policy, KEY).await.unwrap();
    assert_eq!(call(addr).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_instance_honours_the_penalty() {
    let server = RedisServer::spawn();
    let yaml = policies(
        &format!("{{ kind: redis, url: \"{}\" }}", server.url()),
        "redis",
    );
    let (a, b) = (common::layer(&yaml).await, common::layer(&yaml).await);
    let (addr_a, addr_b) = (
        common::serve(a.clone(), "127.0.0.1:0").await,
        common::serve(b.clone(), "127.0.0.1:0").await,
    );
    let policy = "penalized-redis";
    assert_eq!(call(addr_b).await.0, 200, "b has served the key before");
    assert_eq!(call(addr_a).await.0, 200);
    assert_eq!(call(addr_a).await.0, 429, "a denies: the penalty starts");
    assert!(a.penalty_left(policy, KEY).is_some());
    // b reads it from Redis, having denied nothing itself.
    common::eventually(|| async {
        match b.penalty_left(policy, KEY) {
            Some(_) => Ok(()),
            None => Err("b never read the penalty".to_owned()),
        }
    })
    .await;
    window_has_room(&b, policy).await;
    let (status, _, body) = call(addr_b).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("penalty"), "{body}");
}

#[test]
fn a_penalty_is_longer_than_zero_and_at_most_a_day() {
    for bad in ["0s", "2d"] {
        let yaml = policies("{ kind: memory }", "bad").replace("4s", bad);
        let error = load_str(&yaml, Path::new("p.yaml")).unwrap_err();
        assert_eq!(error.field(), Some("endpoints[0].penalty"), "{error}");
    }
}
