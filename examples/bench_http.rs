//! The server of `scripts/bench-http.sh` and `scripts/bench-tracing.sh`: an axum hello
//! route, bare or behind the layer with one global GCRA budget (the key
//! tower_governor's peer benchmark uses): on the in-memory store admitting everything
//! (`allow`) or denying almost everything (`deny`), or on Redis at `REDIS_URL` admitting
//! everything (`redis`).
//!
//! `TRACING=info` installs a JSON log subscriber at INFO (writing to a sink, so that the
//! terminal's cost is left out): the DEBUG-level `ratelimit.decide` span is filtered at
//! its callsite. `TRACING=debug` enables it for `limiter_tower`: every span is created
//! and its fields formatted. `TRACING=events` also writes each span as a line when it
//! closes: a log line per decision. `TRACING=otlp` (feature `otel`) is the project's own
//! OpenTelemetry setup (`limiter::telemetry`: JSON logs at INFO, here to a sink, and
//! `otel::layer`): every decision's span exported in batches over OTLP/HTTP to
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`examples/otlp_count.rs` counts them); SIGTERM flushes
//! the last batch. `TRACING=sink` (feature `otel`) logs at INFO as `info` does and hands
//! every decision to `limiter::telemetry::decisions::OtlpDecisions`, which exports it as
//! a span over OTLP/HTTP without the OpenTelemetry SDK. Default `off`: no subscriber.
//!
//! The `stream-*` modes serve a streamed body (five chunks, each reporting 20 tokens to
//! the layer's `Usage` handle) under answers and tokens a minute, on memory or (`redis-`)
//! on Redis: `*-plain` charges each answer a fixed 150 tokens when it arrives, `*-usage`
//! reserves 150 and settles for the 100 reported when the body ends (a refund: on Redis, a
//! second script call)
//! (`scripts/bench-reserve.sh`).
//!
//! `MODE=bare|allow|deny|redis|stream-plain|stream-usage|redis-stream-plain|redis-stream-usage TRACING=off|info|debug|events|otlp|sink PORT=18081 cargo run --release --features otel --example bench_http`

use std::net::SocketAddr;
use std::path::Path;

use axum::routing::get;
use axum::Router;
use limiter_tower::config::load_str;
use limiter_tower::{AnyStore, LimiterLayer, Usage};
use tokio_stream::StreamExt;
use tracing_subscriber::fmt::format::FmtSpan;
#[cfg(feature = "otel")]
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

const ALLOW: &str = "endpoints:\n  - { path: /, name: bench, scopes: [global], limits: [{ name: all, max: 1000000, window: 1s, burst: 1000000000000 }] }\n";
/// Answers and tokens, never reached; `{usage}` is replaced by the policy's usage line.
const STREAM: &str = "endpoints:\n  - { path: /, name: bench, scopes: [global], cost: 150, {usage} limits: [{ name: answers, max: 1000000000, window: 60s, algorithm: fixed_window }, { name: tokens, max: 1000000000000, window: 60s, algorithm: fixed_window, unit: tokens }] }\n";
const REDIS_STORE: &str = "store: { kind: redis, url: \"${REDIS_URL}\", key_prefix: \"bench:\", timeout: 200ms }\nbreaker: { slow_call: 150ms }\n";
const DENY: &str = "endpoints:\n  - { path: /, name: bench, scopes: [global], limits: [{ name: one, max: 1, window: 1000s }] }\n";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tracing = std::env::var("TRACING").unwrap_or_else(|_| "off".into());
    #[cfg(feature = "otel")]
    let provider = if tracing == "otlp" {
        let provider = limiter::telemetry::otel::otlp_provider("bench_http")?;
        let logs = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::registry()
            .with(limiter::telemetry::otel::layer(&provider))
            .with(logs)
            .init();
        Some(provider)
    } else {
        None
    };
    let span_events = match tracing.as_str() {
        "off" => None,
        #[cfg(feature = "otel")]
        "otlp" => None,
        #[cfg(feature = "otel")]
        "sink" => Some((FmtSpan::NONE, "info")),
        "info" => Some((FmtSpan::NONE, "info")),
        "debug" => Some((FmtSpan::NONE, "info,limiter_tower=debug")),
        "events" => Some((FmtSpan::CLOSE, "info,limiter_tower=debug")),
        other => {
            return Err(format!(
            "TRACING must be off, info, debug, events or (feature otel) otlp or sink, not {other}"
        )
            .into())
        }
    };
    if let Some((span_events, filter)) = span_events {
        tracing_subscriber::fmt()
            .json()
            .with_span_events(span_events)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::sink)
            .init();
    }
    let mode = std::env::var("MODE").unwrap_or_else(|_| "bare".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(18081);
    let streamed = mode.contains("stream");
    let mut app = if streamed {
        Router::new().route("/", get(stream))
    } else {
        Router::new().route("/", get(|| async { "hello" }))
    };
    let usage = if mode.ends_with("usage") {
        "usage: { actual: report },"
    } else {
        ""
    };
    let stream_yaml = STREAM.replace("{usage}", usage);
    let yaml = match mode.as_str() {
        "bare" => None,
        "allow" => Some(ALLOW.to_owned()),
        "deny" => Some(DENY.to_owned()),
        "redis" => Some(format!("{REDIS_STORE}{ALLOW}")),
        "stream-plain" | "stream-usage" => Some(stream_yaml),
        "redis-stream-plain" | "redis-stream-usage" => Some(format!("{REDIS_STORE}{stream_yaml}")),
        other => return Err(format!("MODE must be bare, allow, deny, redis, stream-plain, stream-usage, redis-stream-plain or redis-stream-usage, not {other}").into()),
    };
    #[cfg(feature = "otel")]
    let decisions = if tracing == "sink" {
        let exporter = limiter::telemetry::decisions::OtlpDecisions::builder("bench_http");
        Some(std::sync::Arc::new(exporter.build()?))
    } else {
        None
    };
    if let Some(yaml) = yaml {
        let loaded = load_str(&yaml, Path::new("bench.yaml"))?;
        let store = AnyStore::connect(loaded.rules.store()).await?;
        let layer = LimiterLayer::new(loaded.rules, store);
        #[cfg(feature = "otel")]
        if let Some(decisions) = &decisions {
            layer.set_decision_sink(Some(Box::new(std::sync::Arc::clone(decisions))));
        }
        app = app.layer(layer);
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        term.recv().await;
    })
    .await?;
    #[cfg(feature = "otel")]
    if let Some(provider) = provider {
        provider.shutdown()?;
    }
    #[cfg(feature = "otel")]
    if let Some(decisions) = decisions {
        decisions.shutdown();
    }
    Ok(())
}

/// Five chunks, each reporting 20 tokens as it is handed over.
async fn stream(usage: Usage) -> axum::body::Body {
    let chunks = tokio_stream::iter(0..5).map(move |_| {
        usage.add(20);
        Ok::<_, std::convert::Infallible>("token token token token ")
    });
    axum::body::Body::from_stream(chunks)
}
