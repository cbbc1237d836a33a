//! What the layer costs per request in process, without sockets: an axum hello route
//! bare, behind `LimiterLayer` (in-memory store, one global GCRA budget admitting
//! everything) and behind `tower_governor` (its global key, its headers on), each request
//! built, routed, answered and dropped on one thread.
//!
//! End to end (`scripts/bench-http.sh`) the kernel's TCP path is most of a request and the
//! machine's noise hides differences of a few hundred nanoseconds; here only the router
//! and the middleware run. Rounds alternate the three servers; the table gives medians.
//!
//! `cargo run --release --example layer_overhead [ROUNDS]`
//!
//! `THREADS=2` runs each server on two threads at once, each with its own current-thread
//! runtime, sharing the server as a multi-threaded runtime's workers do: what is shared
//! between threads (the budget's state, counted references) then costs what it costs
//! under contention. Times are per request on one thread (wall time / requests each).
//!
//! `identity-layer` is the route behind `Router::layer` with a layer that does nothing:
//! the part of a layer's cost that is axum's, the same for both layers.
//!
//! `layer_overhead ROUNDS --only bare|limiter-tower|tower_governor|identity-layer` runs
//! one server alone and prints nothing: `scripts/bench-instructions.sh` counts its
//! instructions per request under callgrind, a measure this machine's noise does not
//! move.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use limiter_tower::config::load_str;
use limiter_tower::{AnyStore, LimiterLayer};
use tower::ServiceExt;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;
use tower_governor::GovernorLayer;

const ALLOW: &str = "endpoints:\n  - { path: /, name: bench, scopes: [global], limits: [{ name: all, max: 1000000, window: 1s, burst: 1000000000000 }] }\n";
const REQUESTS: u32 = 50_000;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Nanoseconds per request through `app`, with `threads` threads sending requests at once.
fn time(app: &Router, threads: usize) -> f64 {
    let start = std::sync::Barrier::new(threads);
    let elapsed: Vec<f64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .expect("a runtime");
                    start.wait();
                    runtime.block_on(requests(app))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("no panic"))
            .collect()
    });
    elapsed.iter().copied().fold(0.0, f64::max)
}

/// Nanoseconds per request of `REQUESTS` requests through `app` in turn.
async fn requests(app: &Router) -> f64 {
    let peer = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000)));
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let req = Request::builder()
            .uri("/")
            .extension(peer)
            .body(Body::empty())
            .expect("a valid request");
        let response = app.clone().oneshot(req).await.expect("infallible");
        assert!(response.status().is_success());
    }
    start.elapsed().as_nanos() as f64 / f64::from(REQUESTS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1)
        .max(1);
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(21);
    let only = match args.get(2).map(String::as_str) {
        Some("--only") => args.get(3).cloned(),
        _ => None,
    };
    let bare = Router::new().route("/", get(|| async { "hello" }));
    let loaded = load_str(ALLOW, Path::new("bench.yaml"))?;
    let store = AnyStore::connect(loaded.rules.store()).await?;
    let ours = bare.clone().layer(LimiterLayer::new(loaded.rules, store));
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000_000)
        .key_extractor(GlobalKeyExtractor)
        .use_headers()
        .finish()
        .ok_or("tower_governor rejected its configuration")?;
    let theirs = bare.clone().layer(GovernorLayer::new(Arc::new(governor)));
    // What `Router::layer` costs with a layer that does nothing: axum wraps and boxes
    // each route's service again, whatever the layer. Both layers pay this.
    let floor = bare.clone().layer(tower::layer::util::Identity::new());

    let apps = [
        ("bare", &bare),
        ("limiter-tower", &ours),
        ("tower_governor", &theirs),
        ("identity-layer", &floor),
    ];
    if let Some(name) = only {
        let (_, app) = apps
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or("--only takes bare, limiter-tower, tower_governor or identity-layer")?;
        for _ in 0..rounds {
            time(app, threads);
        }
        return Ok(());
    }
    let mut times = vec![Vec::with_capacity(rounds); apps.len()];
    for _ in 0..rounds {
        for (i, (_, app)) in apps.iter().enumerate() {
            times[i].push(time(app, threads));
        }
    }
    // Per round, server `i`'s time less server `base`'s.
    let above = |i: usize, base: usize| -> Vec<f64> {
        times[i]
            .iter()
            .zip(&times[base])
            .map(|(with, without)| with - without)
            .collect()
    };
    let per_round = |i: usize| above(i, 0);
    println!("{threads} thread(s)\n");
    println!("| server | ns/request (median of {rounds} rounds) | added to bare, ns (median of per-round differences) |");
    println!("|---|---|---|");
    for (i, (name, _)) in apps.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:.0} |",
            median(times[i].clone()),
            median(per_round(i))
        );
    }
    let ratio: Vec<f64> = per_round(1)
        .iter()
        .zip(per_round(2))
        .map(|(ours, theirs)| ours / theirs)
        .collect();
    println!(
        "\nlimiter-tower's added cost / tower_governor's (median of per-round ratios): {:.2}",
        median(ratio)
    );
    let own: Vec<f64> = above(1, 3)
        .iter()
        .zip(above(2, 3))
        .map(|(ours, theirs)| ours / theirs)
        .collect();
    println!(
        "the same above the identity layer (each layer's own work): {:.2}",
        median(own)
    );
    Ok(())
}
