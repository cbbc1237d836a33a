//! The server of `scripts/bench-http.sh`: an axum hello route, bare or behind the layer
//! on the in-memory store with one global GCRA budget (the key tower_governor's peer
//! benchmark uses), either admitting everything or denying almost everything.
//!
//! `MODE=bare|allow|deny PORT=18081 cargo run --release --example bench_http`

use std::net::SocketAddr;
use std::path::Path;

use axum::routing::get;
use axum::Router;
use limiter_tower::config::load_str;
use limiter_tower::{AnyStore, RateLimitLayer};

const ALLOW: &str = "endpoints:\n  - { path: /, name: bench, scopes: [global], limits: [{ name: all, max: 1000000, window: 1s, burst: 1000000000000 }] }\n";
const DENY: &str = "endpoints:\n  - { path: /, name: bench, scopes: [global], limits: [{ name: one, max: 1, window: 1000s }] }\n";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::var("MODE").unwrap_or_else(|_| "bare".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(18081);
    let mut app = Router::new().route("/", get(|| async { "hello" }));
    let yaml = match mode.as_str() {
        "bare" => None,
        "allow" => Some(ALLOW),
        "deny" => Some(DENY),
        other => return Err(format!("MODE must be bare, allow or deny, not {other}").into()),
    };
    if let Some(yaml) = yaml {
        let loaded = load_str(yaml, Path::new("bench.yaml"))?;
        let store = AnyStore::connect(loaded.rules.store()).await?;
        app = app.layer(RateLimitLayer::new(loaded.rules, store));
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
