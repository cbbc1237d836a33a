//! Runtime overrides over HTTP: a key's limits raised, lowered and blocked for a time,
//! usage kept; set on one instance and applied by another sharing Redis; cleared, or
//! expired, back to the file's limits; and the admin routes that set them refuse an
//! unauthenticated caller and name the field of a bad body.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use limiter::limiter_tower::{AdminApi, LimiterLayer, Override};
use redis_harness::RedisServer;
use serde_json::{json, Value};

/// `/o`: 5 an hour per client address (GCRA over an hour: nothing comes back during the
/// test).
fn policies(store: &str, tag: &str) -> String {
    format!(
        r#"
store: {store}
endpoints:
  - path: /o
    name: overridden-{tag}
    scopes: [ip]
    limits: [{{ name: hour, max: 5, window: 1h }}]
"#
    )
}

const KEY: &str = "ip:127.0.0.1";

/// How many of `n` requests in a row were admitted (every other answer a 429).
async fn admitted(addr: SocketAddr, n: usize) -> usize {
    let client = common::client();
    let mut ok = 0;
    for _ in 0..n {
        let status = client
            .get(format!("http://{addr}/o"))
            .send()
            .await
            .unwrap()
            .status();
        match status.as_u16() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    ok
}

fn later(secs: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_limits_follow_its_override_and_keep_its_usage() {
    let layer = common::layer(&policies("{ kind: memory }", "memory")).await;
    let addr = common::serve(layer.clone(), "127.0.0.1:0").await;
    let policy = "overridden-memory";
    assert_eq!(admitted(addr, 8).await, 5);

    // Raised 10x: 50 in all, the 5 used included.
    let raised = Override::scale(10.0, later(3_600)).unwrap();
    layer.set_override(policy, KEY, raised).await.unwrap();
    assert_eq!(admitted(addr, 60).await, 45);
    let listed = layer.overrides().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].0.as_str(), listed[0].1.as_str()), (policy, KEY));

    // Cleared: the file's 5 again, with 50 used.
    layer.clear_override(policy, KEY).await.unwrap();
    assert_eq!(admitted(addr, 3).await, 0);
    assert!(layer.overrides().await.unwrap().is_empty());

    // Another client's key is never touched; a block refuses with Retry-After, and
    // lapses by itself.
    layer.reset(policy, KEY).await.unwrap();
    layer
        .set_override(policy, KEY, Override::block(later(2)))
        .await
        .unwrap();
    let blocked = common::client()
        .get(format!("http://{addr}/o"))
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 429);
    let retry: u64 = blocked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    common::eventually(|| async {
        match admitted(addr, 1).await {
            1 => Ok(()),
            _ => Err("the block never ended".to_owned()),
        }
    })
    .await;

    // A scale the policy cannot hold is refused, as is an unknown policy.
    let absurd = Override::scale(limiter::limiter_core::MAX_FACTOR, later(60)).unwrap();
    assert!(layer.set_override(policy, KEY, absurd).await.is_ok());
    let huge = policies("{ kind: memory }", "huge")
        .replace("max: 5,", "max: 1000000000000, algorithm: fixed_window,");
    let huge = common::layer(&huge).await;
    assert!(huge
        .set_override("overridden-huge", KEY, absurd)
        .await
        .is_err());
    assert!(layer.set_override("nope", KEY, absurd).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_instance_applies_an_override_set_on_one() {
    let server = RedisServer::spawn();
    let yaml = policies(
        &format!("{{ kind: redis, url: \"{}\" }}", server.url()),
        "redis",
    );
    let (a, b) = (common::layer(&yaml).await, common::layer(&yaml).await);
    let addr_b = common::serve(b.clone(), "127.0.0.1:0").await;
    let policy = "overridden-redis";

    a.set_override(policy, KEY, Override::block(later(3_600)))
        .await
        .unwrap();
    common::eventually(|| async {
        match admitted(addr_b, 1).await {
            0 => Ok(()),
            _ => Err("instance b never applied the block".to_owned()),
        }
    })
    .await;
    assert_eq!(b.overrides().await.unwrap().len(), 1, "listed from Redis");
    // (b's first request may have passed before it read the block.)
    a.reset(policy, KEY).await.unwrap();

    // Raised 4x on a: b admits 20 in all.
    let raised = Override::scale(4.0, later(3_600)).unwrap();
    a.set_override(policy, KEY, raised).await.unwrap();
    common::eventually(|| async {
        match admitted(addr_b, 1).await {
            1 => Ok(()),
            _ => Err("instance b never applied the raise".to_owned()),
        }
    })
    .await;
    assert_eq!(admitted(addr_b, 30).await, 19);

    // An override that expires: b is back to the file's 5 (20 used) once it lapses.
    a.reset(policy, KEY).await.unwrap();
    a.set_override(policy, KEY, Override::scale(4.0, later(2)).unwrap())
        .await
        .unwrap();
    for limit in [20, 5] {
        common::eventually(|| async {
            let now = b.peek(policy, KEY).await.map_err(|e| e.to_string())?;
            match now.windows()[0].limit() {
                seen if seen == limit => Ok(()),
                other => Err(format!("limited at {other}, not {limit}")),
            }
        })
        .await;
    }
    assert!(a.overrides().await.unwrap().is_empty());
}

async fn admin_app(layer: &LimiterLayer) -> SocketAddr {
    let admin = AdminApi::new(layer)
        .authorize(|h| h.get("x-admin").is_some_and(|v| v == "yes"))
        .router();
    let app = common::app().layer(layer.clone()).nest("/admin", admin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

#[tokio::test]
async fn the_admin_routes_set_list_and_clear_overrides() {
    let layer = common::layer(&policies("{ kind: memory }", "admin")).await;
    let addr = admin_app(&layer).await;
    let client = common::client();
    let url = |path: &str| format!("http://{addr}/admin{path}");
    let put = |path: &str, body: Value, auth: bool| {
        let mut request = client.put(url(path)).body(body.to_string());
        if auth {
            request = request.header("x-admin", "yes");
        }
        request.send()
    };
    let path = format!("/overrides/overridden-admin/{KEY}");

    let refused = put(&path, json!({ "factor": 2, "seconds": 60 }), false)
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let bad = [
        (json!("x"), "body"),
        (json!({ "factor": 2 }), "seconds"),
        (json!({ "factor": 2, "seconds": 0 }), "seconds"),
        (json!({ "factor": 0, "seconds": 60 }), "factor"),
        (json!({ "factor": "lots", "seconds": 60 }), "factor"),
        (json!({ "block": false, "seconds": 60 }), "block"),
        (json!({ "factor": 2, "block": true, "seconds": 60 }), "body"),
        (json!({ "factr": 2, "seconds": 60 }), "body"),
    ];
    for (body, field) in bad {
        let answer = put(&path, body.clone(), true).await.unwrap();
        assert_eq!(answer.status(), 400, "{body}");
        let problem: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(problem["field"], field, "{body}: {problem}");
    }
    let unknown = put(
        "/overrides/nope/k",
        json!({ "block": true, "seconds": 60 }),
        true,
    );
    let unknown: Value =
        serde_json::from_str(&unknown.await.unwrap().text().await.unwrap()).unwrap();
    assert_eq!(unknown["field"], "policy");

    let set = put(&path, json!({ "factor": 3, "seconds": 600 }), true)
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    let listed = client
        .get(url("/overrides"))
        .header("x-admin", "yes")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let entry = &listed["overrides"][0];
    assert_eq!(
        (entry["key"].as_str(), entry["factor"].as_f64()),
        (Some(KEY), Some(3.0))
    );
    assert!(entry["seconds_left"].as_u64().unwrap() <= 600);
    assert_eq!(admitted(addr, 20).await, 15);

    let cleared = client
        .delete(url(&path))
        .header("x-admin", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert!(layer.overrides().await.unwrap().is_empty());
}
