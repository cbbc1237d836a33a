//! With the W3C propagator installed and `continue_trace` outermost, a request carrying
//! `traceparent` produces a `ratelimit.decide` span in the caller's trace, with the
//! documented fields and the key only hashed. No collector: spans go to an in-memory
//! exporter; the router is called directly, without a socket.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use limiter::telemetry::otel;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::Value;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use parking_lot::Mutex;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const API_KEY: &str = "SECRET-API-KEY-77";

/// Keeps every exported span.
#[derive(Clone, Debug, Default)]
struct Captured(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Captured {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().extend(batch);
        Ok(())
    }
}

const POLICIES: &str = "endpoints:\n  - { path: /hello, name: hello, scopes: [api_key, endpoint], limits: [{ name: m, max: 5, window: 60s }] }\n";

/// Sends one request (with `traceparent` when given) and returns the spans it made.
async fn decide(traceparent: Option<&str>) -> Vec<SpanData> {
    otel::install_propagator();
    let captured = Captured::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(captured.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(otel::layer(&provider));
    let _default = tracing::subscriber::set_default(subscriber);

    let app = common::app()
        .layer(common::layer(POLICIES).await)
        .layer(axum::middleware::from_fn(otel::continue_trace));
    let mut request = Request::get("/hello").header("x-api-key", API_KEY);
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    provider.force_flush().unwrap();
    let spans = captured.0.lock().clone();
    spans
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no {name} span in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

#[tokio::test]
async fn decision_span_joins_the_callers_trace_with_hashed_key() {
    let spans = decide(Some(&format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))).await;
    let decision = named(&spans, "ratelimit.decide");
    let request = named(&spans, "http.request");
    let trace_id = TraceId::from_hex(TRACE_ID).unwrap();
    assert_eq!(decision.span_context.trace_id(), trace_id);
    assert_eq!(request.span_context.trace_id(), trace_id);
    assert_eq!(
        request.parent_span_id,
        SpanId::from_hex(CALLER_SPAN).unwrap()
    );
    assert_eq!(decision.parent_span_id, request.span_context.span_id());

    let text = |key: &str| attribute(decision, key).map(|v| v.as_str().into_owned());
    assert_eq!(text("policy").as_deref(), Some("hello"));
    assert_eq!(text("scopes").as_deref(), Some("api_key,endpoint"));
    assert_eq!(text("store").as_deref(), Some("memory"));
    assert_eq!(text("result").as_deref(), Some("allowed"));
    assert_eq!(attribute(decision, "degraded"), Some(&Value::Bool(false)));
    assert!(matches!(
        attribute(decision, "latency_us"),
        Some(Value::I64(_))
    ));
    let hash = text("key_hash").expect("key_hash");
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    for span in &spans {
        for kv in &span.attributes {
            assert!(
                !kv.value.as_str().contains(API_KEY),
                "{}: {kv:?}",
                span.name
            );
        }
    }
}

#[tokio::test]
async fn without_traceparent_a_new_trace_starts() {
    let spans = decide(None).await;
    let decision = named(&spans, "ratelimit.decide");
    assert_ne!(
        decision.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).unwrap()
    );
    assert_ne!(decision.span_context.trace_id(), TraceId::INVALID);
    assert_eq!(
        named(&spans, "http.request").parent_span_id,
        SpanId::INVALID
    );
}
