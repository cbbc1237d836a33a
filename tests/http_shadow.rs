//! Shadow mode over HTTP: a shadow policy never denies, and marks exactly the requests
//! enforcing it would have denied (the same traffic, enforced, is the reference), under
//! concurrency, on memory and Redis; its fields are sent only when asked; the file's
//! `shadow` covers every policy without its own; a reload turns a policy's enforcement
//! on.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use axum::http::{HeaderMap, HeaderValue};
use axum::routing::get;
use axum::{Extension, Router};
use limiter::limiter_tower::config::load_str;
use limiter::limiter_tower::{LimiterLayer, ShadowDenied};
use redis_harness::RedisServer;

/// Answers 200, saying in `x-shadow-denied` which window of which shadow policy would
/// have denied the request.
fn app() -> Router {
    Router::new().route(
        "/{*route}",
        get(|shadow: Option<Extension<ShadowDenied>>| async move {
            let mut headers = HeaderMap::new();
            if let Some(Extension(denied)) = shadow {
                let said = format!("{}/{}", denied.policy(), denied.window().unwrap_or("-"));
                headers.insert("x-shadow-denied", HeaderValue::from_str(&said).unwrap());
            }
            (headers, "ok")
        }),
    )
}

async fn serve(layer: LimiterLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app()
        .layer(layer)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

/// The same limits twice: enforced on /enforced, in shadow on /shadow.
fn policies(store: &str, tag: &str, shadow_headers: bool) -> String {
    format!(
        r#"
store: {store}
endpoints:
  - path: /enforced
    name: enforced-{tag}
    scopes: [global]
    limits: [{{ name: minute, max: 50, window: 1m, algorithm: fixed_window }}]
  - path: /shadow
    name: shadow-{tag}
    scopes: [global]
    shadow: true
    shadow_headers: {shadow_headers}
    limits: [{{ name: minute, max: 50, window: 1m, algorithm: fixed_window }}]
"#
    )
}

/// Statuses and shadow marks of `n` concurrent requests to `path`.
async fn burst(addr: SocketAddr, path: &str, n: usize) -> Vec<(u16, Option<String>, bool)> {
    let client = common::client();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url) = (client.clone(), format!("http://{addr}{path}"));
        calls.spawn(async move {
            let r = client.get(url).send().await.expect("answer");
            let mark = r
                .headers()
                .get("x-shadow-denied")
                .map(|v| v.to_str().unwrap().to_owned());
            let fields = r.headers().contains_key("ratelimit");
            (r.status().as_u16(), mark, fields)
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = calls.join_next().await {
        answers.push(answer.expect("task"));
    }
    answers
}

async fn shadow_on(store: &str, tag: &str) {
    let layer = common::layer(&policies(store, tag, false)).await;
    let addr = serve(layer.clone()).await;

    let enforced = burst(addr, "/enforced", 300).await;
    let refused = enforced.iter().filter(|(s, _, _)| *s == 429).count();
    assert_eq!(refused, 250, "{tag}: the enforced policy admits exactly 50");

    let shadow = burst(addr, "/shadow", 300).await;
    assert!(
        shadow.iter().all(|(s, _, _)| *s == 200),
        "{tag}: a shadow policy denied"
    );
    let marked: Vec<&String> = shadow.iter().filter_map(|(_, m, _)| m.as_ref()).collect();
    assert_eq!(
        marked.len(),
        refused,
        "{tag}: marked as enforcement refused"
    );
    let expected = format!("shadow-{tag}/minute");
    assert!(marked.iter().all(|m| **m == expected), "{tag}: {marked:?}");
    assert!(
        shadow.iter().all(|(_, _, fields)| !fields),
        "{tag}: a shadow policy's fields are sent only when asked"
    );

    // Asked: the fields go out; a reload enforcing the policy denies from then on (the
    // usage counted in shadow kept).
    let yaml = policies(store, tag, true);
    let rules = load_str(&yaml, Path::new("reload.yaml")).unwrap().rules;
    layer.replace_rules(rules);
    let shown = burst(addr, "/shadow", 10).await;
    assert!(
        shown.iter().all(|(s, m, f)| *s == 200 && m.is_some() && *f),
        "{tag}: {shown:?}"
    );
    let enforcing = yaml.replace("    shadow: true\n", "");
    let rules = load_str(&enforcing, Path::new("reload.yaml"))
        .unwrap()
        .rules;
    layer.replace_rules(rules);
    let now = burst(addr, "/shadow", 10).await;
    assert!(now.iter().all(|(s, _, _)| *s == 429), "{tag}: {now:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadow_policy_marks_exactly_what_enforcement_refuses() {
    shadow_on("{ kind: memory }", "memory").await;
    let server = RedisServer::spawn();
    shadow_on(
        &format!("{{ kind: redis, url: \"{}\" }}", server.url()),
        "redis",
    )
    .await;
}

#[tokio::test]
async fn the_files_shadow_covers_every_policy_without_its_own() {
    let yaml = r#"
shadow: true
endpoints:
  - path: /a
    name: file-shadow-a
    scopes: [global]
    limits: [{ name: minute, max: 1, window: 1m }]
  - path: /b
    name: file-shadow-b
    scopes: [global]
    shadow: false
    limits: [{ name: minute, max: 1, window: 1m }]
"#;
    let addr = serve(common::layer(yaml).await).await;
    let a = burst(addr, "/a", 3).await;
    assert!(a.iter().all(|(s, _, _)| *s == 200));
    assert_eq!(a.iter().filter(|(_, m, _)| m.is_some()).count(), 2);
    let b = burst(addr, "/b", 3).await;
    assert_eq!(b.iter().filter(|(s, _, _)| *s == 429).count(), 2);
}
