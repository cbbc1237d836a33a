//! The HTTP demo: an axum server with ten endpoints under the policies of a YAML file,
//! reloaded when the file changes or on SIGHUP.
//!
//! ```sh
//! cargo run --release --example demo -- --config config/demo.yaml --listen 127.0.0.1:3000
//! ```
//!
//! In-memory by default; with `REDIS_URL` set, every instance shares one Redis budget.
//! `--listen` may be given several times (curl-demo.sh listens on 127.0.0.1 and ::1).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use limiter_tower::config::{self, StoreConfig, StoreSetup};
use limiter_tower::{AnyStore, RateLimitLayer};
use serde_json::{json, Value};

/// The HMAC secret of the demo's tokens when `DEMO_JWT_SECRET` is not set.
const DEMO_SECRET: &str = "demo-secret-do-not-use-in-production";

struct Args {
    config: PathBuf,
    listen: Vec<SocketAddr>,
}

fn parse_args() -> Result<Args, String> {
    let mut config = PathBuf::from("config/demo.yaml");
    let mut listen = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--config" => config = PathBuf::from(value),
            "--listen" => listen.push(
                value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?,
            ),
            other => {
                return Err(format!(
                    "unknown flag {other}; use --config PATH --listen ADDR"
                ))
            }
        }
    }
    if listen.is_empty() {
        listen.push(SocketAddr::from(([127, 0, 0, 1], 3000)));
    }
    Ok(Args { config, listen })
}

fn app() -> Router {
    let ok = |what: &'static str| move || async move { Json(json!({ "ok": what })) };
    Router::new()
        .route("/public", get(ok("public")))
        .route("/hello", get(ok("hello")))
        .route("/me", get(ok("me")))
        .route(
            "/users/{id}",
            get(|Path(id): Path<String>| async move { Json(json!({ "user": id })) }),
        )
        .route("/orders", post(ok("order created")))
        .route("/search", get(ok("search results")))
        .route(
            "/reports/{id}",
            get(|Path(id): Path<String>| async move { Json(json!({ "report": id })) }),
        )
        .route("/export", post(ok("export started")))
        .route("/upload", post(ok("uploaded")))
        .route("/status", get(ok("status")))
        .route(
            "/health",
            get(|| async { Json::<Value>(json!({ "healthy": true })) }),
        )
}

async fn store_for(setup: &StoreSetup) -> Result<AnyStore, String> {
    let mut setup = setup.clone();
    if let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
        setup.store = StoreConfig::Redis {
            url,
            key_prefix: Some("demo:".into()),
            timeout: config::Seconds(Duration::from_millis(200)),
        };
    }
    AnyStore::connect(&setup)
        .await
        .map_err(|e| format!("store: {e}"))
}

async fn run(args: Args) -> Result<(), String> {
    let loaded = config::load(&args.config).map_err(|e| e.to_string())?;
    let store = store_for(loaded.rules.store()).await?;
    tracing::info!(
        store = store.kind(),
        failure_mode = store.failure_mode().name(),
        "store ready"
    );
    let layer = RateLimitLayer::new(loaded.rules, store);
    let _watch = layer
        .reloader(&args.config)
        .watch(Duration::from_millis(200))
        .map_err(|e| format!("watching {}: {e}", args.config.display()))?;
    let app = app().layer(layer);

    let mut servers = tokio::task::JoinSet::new();
    for addr in &args.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("listen {addr}: {e}"))?;
        tracing::info!(%addr, config = %args.config.display(), "demo listening");
        let service = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        servers.spawn(async move {
            axum::serve(listener, service)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
        });
    }
    while let Some(result) = servers.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("server: {e}")),
            Err(e) => return Err(format!("server task: {e}")),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("DEMO_JWT_SECRET").is_none() {
        // Before any thread exists: setting the environment is only sound then.
        std::env::set_var("DEMO_JWT_SECRET", DEMO_SECRET);
        tracing::warn!("DEMO_JWT_SECRET not set; using the demo's built-in secret");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
