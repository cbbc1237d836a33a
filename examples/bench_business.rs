//! What plans and several policies per request cost, in process: an axum route behind
//! the layer, each request carrying a user's bearer token (1,000 users, half on `pro`),
//! under
//!
//! - `one`: one policy per user;
//! - `plans`: the same with limits by the token's `plan` claim;
//! - `three`: the user's policy, their team's (a claim) and a global one, all or nothing;
//!
//! on the in-memory store and on Redis (a `redis-server` of its own; batching on, as
//! configured by default). Rounds alternate the scenarios; the tables give medians and
//! the ratios to `one` of the same store, per round. Every budget admits everything, so
//! each request is decided and answered 200.
//!
//! `cargo run --release --example bench_business [ROUNDS]` (`IN_FLIGHT=64`: requests in
//! flight on Redis, from a two-thread runtime).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use jsonwebtoken::{encode, EncodingKey, Header};
use limiter_tower::config::load_str;
use limiter_tower::{AnyStore, LimiterLayer};
use redis_harness::RedisServer;
use serde_json::json;
use tower::ServiceExt;

const SECRET: &str = "bench-business-secret";
const USERS: usize = 1_000;
const REQUESTS: usize = 20_000;

/// The policy file of `scenario` on `store`.
fn policies(store: &str, scenario: &str) -> String {
    let limits = "[{ name: second, max: 1000000, window: 1s, burst: 1000000000 }]";
    let mut yaml = format!(
        "store: {store}\nenumeration: {{ enabled: false }}\njwt: {{ algorithms: [HS256], hs_secret_env: BENCH_BUSINESS_SECRET }}\n"
    );
    if scenario == "plans" {
        yaml.push_str("plans: { claim: plan, default: free, names: [pro] }\n");
    }
    if scenario == "three" {
        yaml.push_str(&format!(
            "policies:\n  - {{ name: team, scopes: [{{ claim: team }}], limits: {limits} }}\n  - {{ name: everyone, scopes: [global], limits: {limits} }}\n"
        ));
    }
    yaml.push_str(&format!(
        "endpoints:\n  - {{ path: /, name: user-{scenario}, scopes: [user], limits: {limits}"
    ));
    match scenario {
        "plans" => yaml.push_str(&format!(", plans: {{ pro: {{ limits: {limits} }} }}")),
        "three" => yaml.push_str(", also: [team, everyone]"),
        _ => {}
    }
    yaml.push_str(" }\n");
    yaml
}

fn tokens() -> Vec<String> {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3_600;
    (0..USERS)
        .map(|i| {
            let plan = if i % 2 == 0 { "free" } else { "pro" };
            let claims = json!({ "sub": format!("user-{i}"), "plan": plan, "team": format!("team-{}", i % 50), "exp": exp });
            let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
                .expect("a token");
            format!("Bearer {token}")
        })
        .collect()
}

async fn app(store: &str, scenario: &str) -> Result<Router, Box<dyn std::error::Error>> {
    let loaded = load_str(&policies(store, scenario), Path::new("bench.yaml"))?;
    let store = AnyStore::connect(loaded.rules.store()).await?;
    let layer = LimiterLayer::new(loaded.rules, store);
    Ok(Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer))
}

/// Nanoseconds per request (wall time / requests) of `REQUESTS` requests, `in_flight`
/// at a time.
async fn time(app: &Router, tokens: &[String], in_flight: usize) -> f64 {
    let peer = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000)));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..in_flight {
        let (app, tokens) = (app.clone(), tokens.to_vec());
        tasks.spawn(async move {
            for i in (worker..REQUESTS).step_by(in_flight) {
                let req = Request::builder()
                    .uri("/")
                    .header("authorization", &tokens[i % tokens.len()])
                    .extension(peer)
                    .body(Body::empty())
                    .expect("a valid request");
                let response = app.clone().oneshot(req).await.expect("infallible");
                assert!(response.status().is_success(), "{}", response.status());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("no panic");
    }
    start.elapsed().as_nanos() as f64 / REQUESTS as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("BENCH_BUSINESS_SECRET", SECRET);
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let in_flight: usize = std::env::var("IN_FLIGHT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let tokens = tokens();
    let redis = RedisServer::spawn();
    let redis_store = format!("{{ kind: redis, url: \"{}\" }}", redis.url());
    let scenarios = ["one", "plans", "three"];
    for (label, store, flights) in [
        ("memory", "{ kind: memory }".to_owned(), vec![1]),
        ("redis", redis_store, vec![1, in_flight]),
    ] {
        let mut apps = Vec::new();
        for scenario in scenarios {
            apps.push(app(&store, scenario).await?);
        }
        for flight in flights {
            let mut times = vec![Vec::new(); scenarios.len()];
            for _ in 0..rounds {
                for (i, app) in apps.iter().enumerate() {
                    times[i].push(time(app, &tokens, flight).await);
                }
            }
            println!("\n{label}, {flight} in flight, {rounds} rounds\n");
            println!("| scenario | ns/request (median) | / one (median of per-round ratios) |");
            println!("|---|---|---|");
            for (i, scenario) in scenarios.iter().enumerate() {
                let ratios: Vec<f64> = times[i]
                    .iter()
                    .zip(&times[0])
                    .map(|(t, one)| t / one)
                    .collect();
                println!(
                    "| {scenario} | {:.0} | {:.2} |",
                    median(times[i].clone()),
                    median(ratios)
                );
            }
        }
    }
    Ok(())
}
