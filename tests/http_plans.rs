//! Plans over HTTP: one endpoint, limits by plan. Two users on plans of 5 and 50 get
//! exactly 5 and 50 under concurrency; a token re-issued with the other plan moves its
//! user at once, usage kept; on memory and Redis. The plan read from a gateway's header
//! (believed from trusted proxies only), from API keys listed in the file, and from a
//! lookup in code.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use limiter::limiter_tower::{
    Endpoint, Limit, LimiterBuilder, LimiterLayer, PlanSource, Plans, Policy, Scope,
};
use redis_harness::RedisServer;
use serde_json::json;

const SECRET: &str = "plans-test-secret";

/// `/api`: 5 an hour per user, 50 on `pro`. GCRA over an hour: no unit comes back
/// during the test, so the counts are exact.
fn policies(store: &str, tag: &str) -> String {
    std::env::set_var("PLANS_HTTP_SECRET", SECRET);
    format!(
        r#"
store: {store}
jwt: {{ algorithms: [HS256], hs_secret_env: PLANS_HTTP_SECRET }}
plans: {{ claim: plan, default: free, names: [pro] }}
endpoints:
  - path: /api
    name: plans-{tag}
    scopes: [user]
    limits: [{{ name: hour, max: 5, window: 1h }}]
    plans:
      pro: {{ limits: [{{ name: hour, max: 50, window: 1h }}] }}
"#
    )
}

/// How many of `n` concurrent requests to `path` with `header` were admitted; every
/// other answer must be a 429.
async fn admitted(addr: SocketAddr, path: &str, header: (&str, &str), n: usize) -> usize {
    let client = common::client();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let request = client
            .get(format!("http://{addr}{path}"))
            .header(header.0, header.1);
        calls.spawn(async move { request.send().await.expect("answer").status().as_u16() });
    }
    let mut ok = 0;
    while let Some(status) = calls.join_next().await {
        match status.expect("task") {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    ok
}

fn bearer(user: &str, plan: Option<&str>) -> String {
    let mut claims = json!({ "sub": user });
    if let Some(plan) = plan {
        claims["plan"] = json!(plan);
    }
    format!("Bearer {}", common::hs256_claims(SECRET, claims))
}

async fn plans_on(store: &str, tag: &str) {
    let addr = common::serve(common::layer(&policies(store, tag)).await, "127.0.0.1:0").await;
    let alice_free = bearer("alice", Some("free"));
    let bob_pro = bearer("bob", Some("pro"));
    let carol = bearer("carol", None);
    let dave_unknown = bearer("dave", Some("platinum"));

    let (a, b) = tokio::join!(
        admitted(addr, "/api", ("authorization", &alice_free), 200),
        admitted(addr, "/api", ("authorization", &bob_pro), 200),
    );
    assert_eq!((a, b), (5, 50), "{tag}: free and pro");
    // No plan, or one nobody declared: the default plan.
    let (c, d) = tokio::join!(
        admitted(addr, "/api", ("authorization", &carol), 20),
        admitted(addr, "/api", ("authorization", &dave_unknown), 20),
    );
    assert_eq!((c, d), (5, 5), "{tag}: the default plan");

    // Alice upgrades: her next token says pro. She keeps the 5 she used: 45 more.
    let alice_pro = bearer("alice", Some("pro"));
    assert_eq!(
        admitted(addr, "/api", ("authorization", &alice_pro), 200).await,
        45,
        "{tag}: upgraded"
    );
    // Bob downgrades: he has used 50 of a free plan's 5.
    let bob_free = bearer("bob", Some("free"));
    assert_eq!(
        admitted(addr, "/api", ("authorization", &bob_free), 20).await,
        0,
        "{tag}: downgraded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_user_gets_exactly_their_plans_limit_and_moves_at_once() {
    plans_on("{ kind: memory }", "memory").await;
    let server = RedisServer::spawn();
    plans_on(
        &format!("{{ kind: redis, url: \"{}\" }}", server.url()),
        "redis",
    )
    .await;
}

/// `/h`: 2 an hour per client address, 20 on `pro`, the plan from `x-plan`, believed from
/// `proxies`.
fn header_plans(proxies: &str, tag: &str) -> String {
    format!(
        r#"
client_ip: {{ trusted_proxies: [{proxies}] }}
plans: {{ header: x-plan, default: free, names: [pro] }}
endpoints:
  - path: /h
    name: header-plans-{tag}
    scopes: [ip]
    limits: [{{ name: hour, max: 2, window: 1h }}]
    plans:
      pro: {{ limits: [{{ name: hour, max: 20, window: 1h }}] }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_header_is_believed_from_trusted_proxies_only() {
    // The test client's peer address is loopback: trusted here...
    let trusted = common::layer(&header_plans("127.0.0.1/32", "trusted")).await;
    let addr = common::serve(trusted, "127.0.0.1:0").await;
    assert_eq!(admitted(addr, "/h", ("x-plan", "pro"), 50).await, 20);

    // ...and not there: a client cannot name its own plan.
    let untrusted = common::layer(&header_plans("10.0.0.0/8", "untrusted")).await;
    let addr = common::serve(untrusted, "127.0.0.1:0").await;
    assert_eq!(admitted(addr, "/h", ("x-plan", "pro"), 50).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_listed_in_the_file_carry_their_plan() {
    std::env::set_var("PLANS_HTTP_PRO_KEY", "key-of-a-pro");
    let yaml = r#"
plans:
  default: free
  names: [pro]
  api_keys: { "${PLANS_HTTP_PRO_KEY}": pro, "key-of-a-free": free }
endpoints:
  - path: /k
    name: key-plans
    scopes: [api_key]
    limits: [{ name: hour, max: 3, window: 1h }]
    plans:
      pro: { limits: [{ name: hour, max: 30, window: 1h }] }
"#;
    let addr = common::serve(common::layer(yaml).await, "127.0.0.1:0").await;
    let (pro, free, unlisted) = tokio::join!(
        admitted(addr, "/k", ("x-api-key", "key-of-a-pro"), 60),
        admitted(addr, "/k", ("x-api-key", "key-of-a-free"), 60),
        admitted(addr, "/k", ("x-api-key", "key-nobody-listed"), 60),
    );
    assert_eq!((pro, free, unlisted), (30, 3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_in_code_maps_api_keys_to_plans() {
    let hour = |max| vec![Limit::new(max, Duration::from_secs(3600))];
    let lookup = Arc::new(|key: &str| key.starts_with("pro_").then(|| "pro".to_owned()));
    let layer: LimiterLayer = LimiterBuilder::new()
        .plans(Plans::new(PlanSource::api_key_lookup(lookup), "free").names(["pro"]))
        .endpoint(
            Endpoint::new("/l", Policy::new("lookup-plans", hour(4)).unwrap())
                .scopes([Scope::ApiKey])
                .plan("pro", hour(40)),
        )
        .build_in_memory()
        .unwrap();
    let addr = common::serve(layer, "127.0.0.1:0").await;
    let (pro, other) = tokio::join!(
        admitted(addr, "/l", ("x-api-key", "pro_123"), 80),
        admitted(addr, "/l", ("x-api-key", "abc"), 80),
    );
    assert_eq!((pro, other), (40, 4));
}
