//! `OtlpDecisions` exports every decision as an OTLP span to a collector over HTTP: in
//! the caller's trace when it sends a sampled `traceparent`, in a trace of its own
//! without one, not at all when the caller does not sample; with the documented
//! attributes and the key only hashed. The collector is an axum route on loopback that
//! decodes what it receives with `opentelemetry-proto`.

mod common;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::Request;
use axum::routing::post;
use axum::Router;
use limiter::telemetry::decisions::OtlpDecisions;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use prost::Message;
use tower::ServiceExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const API_KEY: &str = "SECRET-API-KEY-77";
const POLICIES: &str = "endpoints:\n  - { path: /hello, name: hello, scopes: [api_key, endpoint], limits: [{ name: m, max: 2, window: 60s }] }\n";

/// A collector on loopback keeping every span it receives; its traces URL.
async fn collector() -> (Arc<Mutex<Vec<Span>>>, String) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&spans);
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| async move {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP request");
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    kept.lock().extend(scope.spans);
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (spans, url)
}

async fn send(app: &Router, traceparent: Option<String>) -> u16 {
    let mut request = Request::get("/hello").header("x-api-key", API_KEY);
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let request = request.body(Body::empty()).unwrap();
    app.clone()
        .oneshot(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The app behind a layer whose decisions go to an exporter posting to `url`.
async fn exporting_to(url: &str) -> (Router, Arc<OtlpDecisions>) {
    let exporter = OtlpDecisions::builder("otel-decisions-test")
        .endpoint(url)
        .build()
        .unwrap();
    let exporter = Arc::new(exporter);
    let layer = common::layer(POLICIES).await;
    layer.set_decision_sink(Some(Box::new(Arc::clone(&exporter))));
    (common::app().layer(layer), exporter)
}

/// Sends what is queued, and waits for it.
async fn shut_down(exporter: Arc<OtlpDecisions>) {
    tokio::task::spawn_blocking(move || exporter.shutdown())
        .await
        .unwrap();
}

fn text(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone()?.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sampled_decision_is_exported_in_its_callers_trace() {
    let (received, url) = collector().await;
    let (app, exporter) = exporting_to(&url).await;

    let sampled = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let unsampled = format!("00-{TRACE_ID}-{CALLER_SPAN}-00");
    assert_eq!(send(&app, Some(sampled.clone())).await, 200);
    assert_eq!(send(&app, None).await, 200);
    assert_eq!(send(&app, Some(unsampled)).await, 429);
    assert_eq!(send(&app, Some(sampled)).await, 429);
    shut_down(exporter).await;

    let spans = received.lock().clone();
    let results: Vec<_> = spans.iter().map(|s| text(s, "result")).collect();
    let string = |s: &str| Some(Value::StringValue(s.into()));
    assert_eq!(
        results,
        [string("allowed"), string("allowed"), string("denied")],
        "every decision but the unsampled one, in order"
    );
    let (joined, own) = (&spans[0], &spans[1]);
    assert_eq!(hex::encode(&joined.trace_id), TRACE_ID);
    assert_eq!(hex::encode(&joined.parent_span_id), CALLER_SPAN);
    assert_eq!(joined.span_id.len(), 8);
    assert_ne!(hex::encode(&own.trace_id), TRACE_ID);
    assert_eq!(own.trace_id.len(), 16);
    assert!(
        own.parent_span_id.is_empty(),
        "no caller: a trace of its own"
    );
    assert_ne!(joined.span_id, spans[2].span_id);
    for span in &spans {
        assert_eq!(span.name, "ratelimit.decide");
        assert!(span.start_time_unix_nano <= span.end_time_unix_nano);
        assert!(span.start_time_unix_nano > 1_700_000_000_000_000_000);
        assert_eq!(text(span, "policy"), string("hello"));
        assert_eq!(text(span, "scopes"), string("api_key,endpoint"));
        assert_eq!(text(span, "store"), string("memory"));
        assert_eq!(text(span, "degraded"), Some(Value::BoolValue(false)));
        assert!(matches!(text(span, "latency_us"), Some(Value::IntValue(_))));
        assert_eq!(text(span, "key_hash"), text(joined, "key_hash"), "one key");
        let Some(Value::StringValue(hash)) = text(span, "key_hash") else {
            panic!("no key_hash");
        };
        assert!(hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
        for attribute in &span.attributes {
            assert!(!format!("{attribute:?}").contains(API_KEY), "{attribute:?}");
        }
    }
}

/// A collector that is not there: the spans are dropped (counted), requests are served
/// as ever, and shutting down does not hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_decisions_are_made_and_spans_dropped() {
    let (app, exporter) = exporting_to(&common::unreachable_traces_url()).await;
    assert_eq!(send(&app, None).await, 200);
    shut_down(exporter).await;
}
