//! Costs known after the response, end to end through the layer: each request reserves
//! an estimate, the handler reports what it used (through `Usage`, as it goes, or a
//! response header), and the layer settles. Exact under 1,000 concurrent requests on
//! memory, on Redis from two and three instances with leases on and off, and on a
//! Cluster; streams charged what they reported, whether they end or the client goes
//! away; a panicking handler keeps its estimate; status rules count failed logins only;
//! a reload keeps the usage.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use limiter::limiter_core::{Cost, Policy, Store};
use limiter::limiter_tower::config::load_str;
use limiter::limiter_tower::{LimiterLayer, Usage, UsageReport};
use redis_harness::{RedisCluster, RedisServer};
use serde::Deserialize;
use tokio_stream::wrappers::IntervalStream;
use tokio_stream::StreamExt;

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    tokens: u64,
    #[serde(default)]
    chunks: u64,
    #[serde(default)]
    ok: bool,
}

/// What each stream had reported when it was dropped.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<u64>>>);

/// Records the stream's usage when the stream is dropped: in the same task that polls
/// the body, so no report can slip in between this and the layer's settlement.
struct Recorder(Usage, Seen);

impl Drop for Recorder {
    fn drop(&mut self) {
        self.1 .0.lock().unwrap().push(self.0.get().unwrap_or(0));
    }
}

fn app(seen: Seen) -> Router {
    Router::new()
        .route(
            "/complete",
            get(|usage: Usage, Query(p): Query<Params>| async move {
                usage.set(p.tokens);
                "done"
            }),
        )
        .route(
            "/stream",
            get(
                |usage: Usage, State(seen): State<Seen>, Query(p): Query<Params>| async move {
                    let recorder = Recorder(usage, seen);
                    let ticks = tokio::time::interval(Duration::from_millis(2));
                    let events =
                        IntervalStream::new(ticks)
                            .take(p.chunks as usize)
                            .map(move |_| {
                                // Reported as the chunk is handed over: what the client may
                                // have seen is what it is charged.
                                recorder.0.add(p.tokens);
                                Ok::<_, std::convert::Infallible>(Event::default().data("tok"))
                            });
                    Sse::new(events)
                },
            ),
        )
        .route(
            "/panic",
            get(|usage: Usage| async move {
                usage.set(1);
                if usage.get().is_some() {
                    panic!("the handler fails after reporting");
                }
                "unreachable"
            }),
        )
        .route(
            "/header",
            get(|Query(p): Query<Params>| async move {
                let mut headers = HeaderMap::new();
                headers.insert("x-tokens-used", HeaderValue::from(p.tokens));
                (headers, "done")
            }),
        )
        .route(
            "/login",
            get(|Query(p): Query<Params>| async move {
                if p.ok {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        )
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/reported",
            get(|Query(p): Query<Params>| async move {
                (axum::Extension(UsageReport(p.tokens)), "done")
            }),
        )
        .with_state(seen)
}

async fn serve(layer: LimiterLayer, seen: Seen) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let service = app(seen)
        .layer(layer)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.expect("server") });
    addr
}

/// A policy file: `store`, then per-user chat answers and tokens on every route under
/// one global key (windows that never end during a test), `usage` as given.
fn policies(store: &str, name: &str, tokens: u64, estimate: u64, usage: &str) -> String {
    format!(
        r#"
store: {store}
endpoints:
  - path: /{{*route}}
    name: {name}
    scopes: [global]
    limits:
      - {{ name: answers, max: 1000000, window: 400d, algorithm: fixed_window }}
      - {{ name: tokens, max: {tokens}, window: 400d, algorithm: fixed_window, unit: tokens }}
    cost: {estimate}
    usage: {usage}
"#
    )
}

async fn layer(yaml: &str) -> LimiterLayer {
    common::layer(yaml).await
}

fn policy(layer: &LimiterLayer, name: &str) -> Policy {
    let rules = layer.rules();
    let found = rules.policies().find(|p| p.name() == name).cloned();
    found.expect("the policy is loaded")
}

/// What the policy's windows hold: (answers, tokens), read without charging.
async fn used(layer: &LimiterLayer, name: &str) -> (u64, u64) {
    let policy = policy(layer, name);
    let now = layer
        .store()
        .check(&policy, "global", Cost::ZERO)
        .await
        .expect("peek");
    let w = now.windows();
    (
        w[0].limit() - w[0].remaining(),
        w[1].limit() - w[1].remaining(),
    )
}

/// Waits until the windows hold `expected`: settlements on Redis land after the
/// responses.
async fn settles_to(layer: &LimiterLayer, name: &str, expected: (u64, u64), label: &str) {
    common::eventually(|| async {
        let now = used(layer, name).await;
        (now == expected)
            .then_some(())
            .ok_or_else(|| format!("{label}: the windows hold {now:?}, not {expected:?}"))
    })
    .await;
}

const CALLS: u64 = 1_000;

/// 1,000 concurrent requests spread over `instances`, each reporting its own number of
/// tokens (0 to 400, the estimate), against room for 60,000: the windows end up holding
/// exactly the answers admitted and the sum of their tokens.
async fn exact_over_http(store: &str, instances: usize, label: &str) {
    let name = format!("chat-{}", label.replace([' ', ','], "-"));
    let yaml = policies(store, &name, 60_000, 400, "{ actual: report }");
    let mut layers = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..instances {
        let layer = layer(&yaml).await;
        addrs.push(serve(layer.clone(), Seen::default()).await);
        layers.push(layer);
    }
    let client = common::client();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let tokens = (i * 7_919) % 401;
        let url = format!(
            "http://{}/complete?tokens={tokens}",
            addrs[i as usize % addrs.len()]
        );
        let client = client.clone();
        calls.spawn(async move {
            let response = client.get(url).send().await.expect("answer");
            let status = response.status().as_u16();
            response.bytes().await.expect("body");
            (status, tokens)
        });
    }
    let (mut admitted, mut sum, mut refused) = (0, 0, 0);
    while let Some(call) = calls.join_next().await {
        match call.expect("task") {
            (200, tokens) => {
                admitted += 1;
                sum += tokens;
            }
            (429, _) => refused += 1,
            (status, _) => panic!("{label}: answered {status}"),
        }
    }
    assert!(refused > 0, "{label}: the room never ran out");
    assert!(sum <= 60_000, "{label}: admitted past the limit");
    settles_to(&layers[0], &name, (admitted, sum), label).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reported_costs_sum_exactly_on_memory() {
    exact_over_http("{ kind: memory }", 1, "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reported_costs_sum_exactly_on_redis_from_two_and_three_instances() {
    let server = RedisServer::spawn();
    let url = server.url();
    for (instances, leases) in [(2, "on"), (3, "off"), (3, "on")] {
        let store = format!("{{ kind: redis, url: \"{url}\", leases: {leases} }}");
        let label = format!("redis {instances} leases {leases}");
        exact_over_http(&store, instances, &label).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reported_costs_sum_exactly_on_a_cluster() {
    let cluster = RedisCluster::spawn();
    let nodes = cluster.nodes().join("\", \"");
    let store = format!("{{ kind: redis_cluster, nodes: [\"{nodes}\"] }}");
    exact_over_http(&store, 2, "cluster").await;
}

/// Streams on `store`: a completed one is charged its total, one the client leaves
/// mid-way what it had reported when the layer saw it go, a panicking handler its
/// estimate, and one reporting more than its estimate the excess too.
async fn streams_on(store: &str, label: &str) {
    let name = format!("streams-{}", label.replace(' ', "-"));
    let yaml = policies(store, &name, 1_000_000, 50, "{ actual: report }");
    let layer = layer(&yaml).await;
    let seen = Seen::default();
    let addr = serve(layer.clone(), seen.clone()).await;
    let client = common::client();

    let whole = client
        .get(format!("http://{addr}/stream?tokens=7&chunks=5"))
        .send()
        .await
        .expect("answer");
    assert_eq!(whole.status(), 200);
    let text = whole.text().await.expect("the whole stream");
    assert_eq!(text.matches("tok").count(), 5, "{label}");
    settles_to(&layer, &name, (1, 35), label).await;

    let mut left = client
        .get(format!("http://{addr}/stream?tokens=3&chunks=100000"))
        .send()
        .await
        .expect("answer");
    let mut received = 0;
    while received < 3 {
        let chunk = left.chunk().await.expect("a chunk").expect("more");
        received += String::from_utf8_lossy(&chunk).matches("tok").count();
    }
    drop(left);
    // The server notices when its next write fails, and drops the stream.
    common::eventually(|| async {
        let dropped = seen.0.lock().unwrap().len() > 1;
        dropped
            .then_some(())
            .ok_or(format!("{label}: never dropped"))
    })
    .await;
    let reported = seen.0.lock().unwrap()[1];
    assert!((9..300_000).contains(&reported), "{label}: {reported}");
    settles_to(&layer, &name, (2, 35 + reported), label).await;

    let panicked = client.get(format!("http://{addr}/panic")).send().await;
    assert!(
        panicked.is_err(),
        "{label}: the connection goes with the panic"
    );
    settles_to(&layer, &name, (3, 35 + reported + 50), label).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_charged_what_they_reported() {
    streams_on("{ kind: memory }", "memory").await;
    let server = RedisServer::spawn();
    streams_on(
        &format!("{{ kind: redis, url: \"{}\" }}", server.url()),
        "redis",
    )
    .await;
}

/// 100 logins, 30 of them failing, 10 failures a minute allowed: successes cost nothing,
/// the 11th failure is the first request refused, and every one after it too (the
/// window is full). Then a header's actual (stripped) and a refunded 5xx.
async fn statuses_on(store: &str, label: &str) {
    let name = format!("logins-{}", label.replace(' ', "-"));
    let yaml = format!(
        r#"
store: {store}
endpoints:
  - path: /login
    name: {name}
    scopes: [global]
    limits: [{{ name: failures, max: 10, window: 1m }}]
    usage: {{ charge_statuses: [401] }}
  - path: /header
    name: {name}-header
    scopes: [global]
    limits: [{{ name: tokens, max: 1000, window: 400d, algorithm: fixed_window, unit: tokens }}]
    cost: 100
    usage: {{ actual: header, header: x-tokens-used, strip_header: true }}
  - path: /reported
    name: {name}-reported
    scopes: [global]
    limits: [{{ name: tokens, max: 1000, window: 400d, algorithm: fixed_window, unit: tokens }}]
    cost: 100
    usage: {{ actual: report }}
  - path: /broken
    name: {name}-broken
    scopes: [global]
    limits: [{{ name: calls, max: 5, window: 1m }}]
    usage: {{ refund_server_errors: true }}
"#
    );
    let layer = layer(&yaml).await;
    let addr = serve(layer.clone(), Seen::default()).await;
    let client = common::client();
    let mut failures = 0;
    let mut first_refused = None;
    for i in 0..100 {
        let fails = i % 10 < 3;
        failures += u32::from(fails);
        let url = format!("http://{addr}/login?ok={}", !fails);
        let status = client.get(url).send().await.expect("answer").status();
        match (status.as_u16(), first_refused) {
            (200, None) => assert!(!fails, "{label}: #{i}"),
            (401, None) => assert!(fails && failures <= 10, "{label}: #{i}"),
            (429, None) => {
                assert!(fails && failures == 11, "{label}: first refused #{i}");
                first_refused = Some(i);
            }
            (429, Some(_)) => {}
            (status, _) => panic!("{label}: #{i} answered {status}"),
        }
        // On Redis a refund lands after the response: wait for it before the next login.
        if status == 200 {
            settles_to_remaining(&layer, &name, 10 - u64::from(failures), label).await;
        }
    }
    assert!(
        first_refused.is_some(),
        "{label}: the 11th failure was admitted"
    );

    let answer = client
        .get(format!("http://{addr}/header?tokens=240"))
        .send()
        .await
        .expect("answer");
    assert!(answer.headers().get("x-tokens-used").is_none(), "{label}");
    let header = format!("{name}-header");
    settles_to_remaining(&layer, &header, 760, label).await;

    // A response extension: 30 of the 100 reserved.
    let answer = client
        .get(format!("http://{addr}/reported?tokens=30"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 200);
    settles_to_remaining(&layer, &format!("{name}-reported"), 970, label).await;

    for _ in 0..20 {
        let status = client
            .get(format!("http://{addr}/broken"))
            .send()
            .await
            .expect("answer")
            .status();
        assert_eq!(status, 500, "{label}: 5xx are refunded, never refused");
        // Refunded on Redis after the answer: wait before the next request.
        settles_to_remaining(&layer, &format!("{name}-broken"), 5, label).await;
    }
}

/// Waits until the only window of `name` has `remaining` units left.
async fn settles_to_remaining(layer: &LimiterLayer, name: &str, remaining: u64, label: &str) {
    let policy = policy(layer, name);
    common::eventually(|| async {
        let now = layer.store().check(&policy, "global", 0).await.unwrap();
        let left = now.windows()[0].remaining();
        (left == remaining)
            .then_some(())
            .ok_or_else(|| format!("{label}: {name} has {left} left, not {remaining}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_rules_charge_only_the_responses_they_name() {
    statuses_on("{ kind: memory }", "memory").await;
    let server = RedisServer::spawn();
    statuses_on(
        &format!("{{ kind: redis, url: \"{}\" }}", server.url()),
        "redis",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_the_limits_keeps_the_usage() {
    let server = RedisServer::spawn();
    for store in [
        "{ kind: memory }".to_owned(),
        format!("{{ kind: redis, url: \"{}\" }}", server.url()),
    ] {
        let yaml = |tokens| policies(&store, "reloaded", tokens, 100, "{ actual: report }");
        let layer = layer(&yaml(1_000)).await;
        let addr = serve(layer.clone(), Seen::default()).await;
        let client = common::client();
        let answer = client
            .get(format!("http://{addr}/complete?tokens=300"))
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status(), 200);
        answer.bytes().await.expect("body");
        settles_to(&layer, "reloaded", (1, 300), &store).await;
        for tokens in [2_000, 500] {
            let loaded = load_str(&yaml(tokens), std::path::Path::new("reload.yaml")).unwrap();
            layer.replace_rules(loaded.rules);
            settles_to(&layer, "reloaded", (1, 300), &store).await;
            let policy = policy(&layer, "reloaded");
            let now = layer.store().check(&policy, "global", 0).await.unwrap();
            assert_eq!(now.windows()[1].remaining(), tokens - 300, "{store}");
        }
    }
}
