//! Shared pieces of the end-to-end tests: a real axum server on loopback behind the
//! layer, tokens, and a client.
#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::any;
use axum::Router;
use jsonwebtoken::{encode, EncodingKey, Header};
use limiter::limiter_tower::config::load_str;
use limiter::limiter_tower::{AnyStore, LimiterLayer};
use serde_json::json;

/// An app answering 200 on every path the tests use.
pub fn app() -> Router {
    Router::new()
        .route("/{*rest}", any(|| async { "ok" }))
        .route("/", any(|| async { "ok" }))
}

/// A layer from inline YAML on its own store (memory unless the YAML says otherwise).
pub async fn layer(yaml: &str) -> LimiterLayer {
    let loaded = load_str(yaml, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let store = AnyStore::connect(loaded.rules.store())
        .await
        .expect("store");
    LimiterLayer::new(loaded.rules, store)
}

/// Serves `layer` over [`app`] on `addr` (port 0: any free one) with `ConnectInfo`.
pub async fn serve(layer: LimiterLayer, addr: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind loopback");
    let local = listener.local_addr().expect("local addr");
    let service = app()
        .layer(layer)
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        axum::serve(listener, service).await.expect("server");
    });
    local
}

/// An OTLP traces URL on loopback where nothing listens (a port bound, then freed).
pub fn unreachable_traces_url() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!(
        "http://{}/v1/traces",
        closed.local_addr().expect("local addr")
    );
    drop(closed);
    url
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `sub` signed with `secret`, expiring `exp_in` seconds from now.
pub fn hs256(secret: &str, sub: &str, aud: Option<&str>, exp_in: i64) -> String {
    let mut claims = json!({ "sub": sub, "exp": (now() as i64 + exp_in) });
    if let Some(aud) = aud {
        claims["aud"] = json!(aud);
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An HS256 token with `claims` and an expiry an hour from now, signed with `secret`.
pub fn hs256_claims(secret: &str, mut claims: serde_json::Value) -> String {
    claims["exp"] = json!(now() + 3600);
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Awaits `condition`, asked every 10 ms for at most 10 s: `Ok` once it holds, otherwise
/// `Err` with what it saw, which is the panic message if it never holds. For what
/// happens after a response (a settlement on Redis, a stream the server drops).
pub async fn eventually<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match condition().await {
            Ok(()) => return,
            Err(seen) if tokio::time::Instant::now() >= deadline => panic!("{seen}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}
