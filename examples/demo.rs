//! The HTTP demo: an axum server with a dozen endpoints under the policies of a YAML
//! file, reloaded when the file changes or on SIGHUP. `GET /chat` streams an LLM-style
//! answer and is limited per user in answers and tokens per minute, charged the tokens
//! it streamed.
//!
//! ```sh
//! cargo run --release --example demo -- --config config/demo.yaml --listen 127.0.0.1:3000
//! ```
//!
//! In-memory by default; with `REDIS_URL` set, the policy file's store is used as written
//! (config/demo.yaml: Redis at `${REDIS_URL}` with batching, leases for hot keys and the
//! local cache of denials), and every instance shares one Redis budget.
//! `--listen` may be given several times (curl-demo.sh listens on 127.0.0.1 and ::1).
//! `GET /metrics` serves Prometheus metrics (never rate-limited); `--log-format json`
//! writes one JSON object per log line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::{Path, Query};
use axum::http::header::AUTHORIZATION;
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use limiter::telemetry::{self, LogFormat};
use limiter_tower::config::{self, StoreConfig, StoreSetup};
use limiter_tower::{AdminApi, AnyStore, LimiterLayer, QuotaRoute, ShadowDenied, Usage};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use tokio_stream::wrappers::IntervalStream;
use tokio_stream::{Stream, StreamExt};

/// The HMAC secret of the demo's tokens when `DEMO_JWT_SECRET` is not set.
const DEMO_SECRET: &str = "demo-secret-do-not-use-in-production";

/// The admin routes' bearer token when `DEMO_ADMIN_TOKEN` is not set.
const DEMO_ADMIN_TOKEN: &str = "demo-admin-token-do-not-use-in-production";

/// Compares two secrets in time independent of where they differ: their SHA-256 digests,
/// whose differences say nothing about the secrets'.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    Sha256::digest(given) == Sha256::digest(expected)
}

struct Args {
    config: PathBuf,
    listen: Vec<SocketAddr>,
    log_format: LogFormat,
}

fn parse_args() -> Result<Args, String> {
    let mut config = PathBuf::from("config/demo.yaml");
    let mut listen = Vec::new();
    let mut log_format = LogFormat::Text;
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
            "--log-format" => log_format = value.parse().map_err(|e| format!("{e}"))?,
            other => {
                return Err(format!(
                    "unknown flag {other}; use --config PATH --listen ADDR --log-format text|json"
                ))
            }
        }
    }
    if listen.is_empty() {
        listen.push(SocketAddr::from(([127, 0, 0, 1], 3000)));
    }
    Ok(Args {
        config,
        listen,
        log_format,
    })
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
        .route("/catalog", get(ok("catalog")))
        .route("/status", get(ok("status")))
        .route("/chat", get(chat))
        .route("/beta", get(beta))
        .route("/v1/work", get(ok("work done")))
        .route(
            "/health",
            get(|| async { Json::<Value>(json!({ "healthy": true })) }),
        )
}

/// A route under a policy in shadow mode: never refused by it, and told when it would
/// have been.
async fn beta(shadow: Option<Extension<ShadowDenied>>) -> Json<Value> {
    let would_deny = shadow
        .map(|Extension(denied)| json!({ "policy": denied.policy(), "window": denied.window() }));
    Json(json!({ "ok": "beta", "shadow_denied": would_deny }))
}

#[derive(serde::Deserialize)]
struct ChatQuery {
    /// How many tokens the "model" answers with.
    words: Option<u64>,
}

/// An LLM-style answer: `words` tokens (120 unless asked) streamed as server-sent events,
/// each reported to the layer as it is sent, then a `usage` event with the total. The
/// layer reserved the policy's estimate before the answer started and settles it for the
/// tokens reported when the stream ends, or when the client leaves mid-way.
async fn chat(
    usage: Usage,
    Query(query): Query<ChatQuery>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let words = query.words.unwrap_or(120).min(10_000);
    let ticks = IntervalStream::new(tokio::time::interval(Duration::from_millis(2)));
    let mut sent = 0;
    let events = ticks.take(words as usize + 1).map(move |_| {
        if sent == words {
            let total = json!({ "tokens": sent }).to_string();
            return Ok(Event::default().event("usage").data(total));
        }
        sent += 1;
        usage.add(1);
        Ok(Event::default().data(format!("token-{sent}")))
    });
    Sse::new(events)
}

/// The store the demo runs on: the policy file's, as written, when `REDIS_URL` is set
/// (config/demo.yaml names a Redis store at `${REDIS_URL}` with its timeout, local cache,
/// batching and leases); otherwise the embedded in-memory store, so that the same file
/// runs without a Redis.
async fn store_for(setup: &StoreSetup, file: &std::path::Path) -> Result<AnyStore, String> {
    let redis_url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
    let mut setup = setup.clone();
    match (&setup.store, redis_url) {
        (StoreConfig::Memory { .. }, Some(_)) => tracing::warn!(
            file = %file.display(),
            "REDIS_URL is set but the policy file names the memory store: running in memory"
        ),
        (StoreConfig::Memory { .. }, None) | (_, Some(_)) => {}
        (_, None) => setup.store = StoreConfig::Memory { max_keys: None },
    }
    AnyStore::connect(&setup)
        .await
        .map_err(|e| format!("store: {e}"))
}

async fn run(args: Args, metrics: PrometheusHandle) -> Result<(), String> {
    let loaded = config::load(&args.config).map_err(|e| e.to_string())?;
    let store = store_for(loaded.rules.store(), &args.config).await?;
    tracing::info!(
        store = store.kind(),
        failure_mode = store.failure_mode().name(),
        local_cache = store.local_cache().is_some(),
        batched = store.is_batched(),
        leases = store.lease_stats().is_some(),
        "store ready"
    );
    let layer = LimiterLayer::new(loaded.rules, store);
    let _watch = layer
        .reloader(&args.config)
        .watch(Duration::from_millis(200))
        .map_err(|e| format!("watching {}: {e}", args.config.display()))?;
    // The operators' routes, behind a bearer token (DEMO_ADMIN_TOKEN): without the
    // token every admin request is refused.
    let admin_token = std::env::var("DEMO_ADMIN_TOKEN").unwrap_or_else(|_| DEMO_ADMIN_TOKEN.into());
    let expected = format!("Bearer {admin_token}");
    let admin = AdminApi::new(&layer)
        .authorize(move |headers| {
            let given = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
            given.is_some_and(|given| same_secret(given, expected.as_bytes()))
        })
        .router();
    let quota_layer = layer.clone();
    // Merged after the layer: scrapes, the admin routes and the quota route are never
    // rate-limited.
    let app = app()
        .layer(layer)
        .merge(telemetry::metrics_router(metrics))
        .nest("/admin", admin)
        .nest("/me/quota", QuotaRoute::new(&quota_layer).router());
    // Outermost: the caller's trace is the parent of every span of the request.
    #[cfg(feature = "otel")]
    let app = app.layer(axum::middleware::from_fn(
        limiter::telemetry::otel::continue_trace,
    ));

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
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    let default_secret = std::env::var_os("DEMO_JWT_SECRET").is_none();
    if default_secret {
        // Before any thread exists (the runtime's, the metrics upkeep): setting the
        // environment is only sound then.
        std::env::set_var("DEMO_JWT_SECRET", DEMO_SECRET);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let flush = init_telemetry(args.log_format)?;
        let metrics = telemetry::install_prometheus().map_err(|e| format!("metrics: {e}"))?;
        if default_secret {
            tracing::warn!("DEMO_JWT_SECRET not set; using the demo's built-in secret");
        }
        let result = run(args, metrics).await;
        flush.shutdown();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What has to be flushed at exit.
struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("demo: flushing traces: {e}");
            }
        }
    }
}

#[cfg(not(feature = "otel"))]
fn init_telemetry(format: LogFormat) -> Result<Telemetry, String> {
    telemetry::init_logs(format, tracing_subscriber::layer::Identity::new())
        .map_err(|e| e.to_string())?;
    Ok(Telemetry {})
}

/// With the `otel` feature, traces go over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
#[cfg(feature = "otel")]
fn init_telemetry(format: LogFormat) -> Result<Telemetry, String> {
    use limiter::telemetry::otel;
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        telemetry::init_logs(format, tracing_subscriber::layer::Identity::new())
            .map_err(|e| e.to_string())?;
        return Ok(Telemetry { provider: None });
    }
    otel::install_propagator();
    let provider = otel::otlp_provider("limiter-demo").map_err(|e| e.to_string())?;
    telemetry::init_logs(format, otel::layer(&provider)).map_err(|e| e.to_string())?;
    Ok(Telemetry {
        provider: Some(provider),
    })
}
