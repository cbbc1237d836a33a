//! A [`DecisionSink`] receives every decision the layer makes, with the caller's trace
//! context, and nothing once it is taken away.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use limiter_tower::{
    DecisionRecord, DecisionSink, Limit, LimiterLayer, Policy, PolicyRule, Scope, TraceParent,
};
use tower::ServiceExt;

/// What a record says, owned.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    policy: String,
    scopes: String,
    store: &'static str,
    key_hash: u64,
    result: &'static str,
    degraded: bool,
    parent: Option<TraceParent>,
}

#[derive(Default)]
struct Collect(Mutex<Vec<Seen>>);

impl DecisionSink for Collect {
    fn record(&self, d: &DecisionRecord<'_>) {
        assert!(d.end > std::time::UNIX_EPOCH);
        self.0.lock().unwrap().push(Seen {
            policy: d.policy.to_string(),
            scopes: d.scopes.to_string(),
            store: d.store,
            key_hash: d.key_hash,
            result: d.result,
            degraded: d.degraded,
            parent: d.parent,
        });
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn send(app: &Router, traceparent: Option<&str>) -> StatusCode {
    let mut request = Request::get("/search");
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let request = request.body(Body::empty()).unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn every_decision_reaches_the_sink_with_the_callers_trace() {
    let policy = Policy::new("search", vec![Limit::new(2, Duration::from_secs(60))]).unwrap();
    let layer = LimiterLayer::builder()
        .default_policy(PolicyRule::new(policy).scopes([Scope::Global]))
        .build_in_memory()
        .unwrap();
    let sink = Arc::new(Collect::default());
    layer.set_decision_sink(Some(Box::new(Arc::clone(&sink))));
    let app = Router::new()
        .route("/search", get(|| async { "ok" }))
        .layer(layer.clone());

    assert_eq!(send(&app, Some(TRACEPARENT)).await, StatusCode::OK);
    assert_eq!(
        send(&app, Some("00-not-a-traceparent")).await,
        StatusCode::OK
    );
    assert_eq!(send(&app, None).await, StatusCode::TOO_MANY_REQUESTS);

    let seen = sink.0.lock().unwrap().clone();
    let results: Vec<_> = seen.iter().map(|s| s.result).collect();
    assert_eq!(results, ["allowed", "allowed", "denied"]);
    let first = &seen[0];
    assert_eq!(first.policy, "search");
    assert_eq!(first.scopes, "global");
    assert_eq!(first.store, "memory");
    assert!(!first.degraded);
    assert_eq!(first.parent, TraceParent::parse(TRACEPARENT));
    assert_eq!(seen[1].parent, None, "a malformed traceparent is no parent");
    assert!(
        seen.iter().all(|s| s.key_hash == first.key_hash),
        "one key, one hash"
    );

    // Taken away: nothing more is recorded.
    layer.set_decision_sink(None);
    send(&app, None).await;
    assert_eq!(sink.0.lock().unwrap().len(), 3);
}
