//! OpenTelemetry (feature `otel`): `tracing` spans exported over OTLP/HTTP, and the
//! caller's W3C `traceparent` continued, so that a `ratelimit.decide` span joins the
//! trace of the request that caused it, across instances.
//!
//! ```no_run
//! use axum::{middleware, routing::get, Router};
//! use limiter::telemetry::{init_logs, otel, LogFormat};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! otel::install_propagator();
//! // OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318) names the collector.
//! let provider = otel::otlp_provider("my-service")?;
//! init_logs(LogFormat::Json, otel::layer(&provider))?;
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     // .layer(rate_limit_layer)
//!     .layer(middleware::from_fn(otel::continue_trace)); // outermost
//! # let _ = app;
//! provider.shutdown()?; // flushes at exit
//! # Ok(()) }
//! ```

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::TelemetryError;

/// Makes W3C Trace Context (`traceparent`, `tracestate`) the global propagator that
/// [`continue_trace`] reads incoming requests with.
pub fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

/// A tracer provider exporting in batches over OTLP/HTTP (protobuf) to
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, as service `service_name`. Call `shutdown` on it at
/// exit to flush.
pub fn otlp_provider(service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`: INFO and
/// above, plus the rate limiter's DEBUG-level `ratelimit.decide` span of every decision
/// (DEBUG so that logs at INFO do not pay for it).
///
/// A span carries its own fields only: not the attributes `tracing-opentelemetry` adds
/// by default to every span (source file, module and line; thread id and name; target;
/// busy and idle nanoseconds). With a span per decision they were eight more attributes on
/// each (one allocated: the thread's name), four more clock reads, and most of what went
/// over the wire, while constant for a span name (location, target) or told better by
/// the span's own fields (`latency_us`, its start and end times).
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("limiter"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(
            Targets::new()
                .with_default(LevelFilter::INFO)
                .with_target("limiter_tower", LevelFilter::DEBUG),
        )
}

/// axum middleware (`middleware::from_fn(continue_trace)`, outermost): runs the request
/// in an `http.request` span whose parent is the caller's `traceparent`, so every span
/// below it (the rate limiter's decision among them) is part of the caller's trace.
/// Without a (valid) `traceparent` a new trace starts.
pub async fn continue_trace(request: Request, next: Next) -> Response {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(request.headers()))
    });
    // The method only: paths and headers may carry user data.
    let span = tracing::info_span!("http.request", http.method = %request.method());
    // Fails only when no OpenTelemetry layer records this span: nothing to join then.
    let _ = span.set_parent(parent);
    next.run(request).instrument(span).await
}

/// Reads propagation fields from request headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
