//! [`QuotaRoute`]: a route that tells callers their own quota, identified by their own
//! credentials exactly as the layer identifies their requests (Bifrost's quota endpoint).

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{Method, StatusCode};
use limiter_core::Store;
use serde_json::{json, Value};

use crate::admin::{failed, usage_windows, with_field};
use crate::layer::{LimiterLayer, UsageError};
use crate::plan::{plan, Plan};

/// `GET /?path=/v1/chat&method=POST`: what the caller has left under every policy a
/// request of theirs to that path would meet (its own and the shared ones, under the
/// caller's plan and override), charging nothing. The caller is identified as the
/// layer identifies requests (token, API key, client address), so it can only ever read
/// its own quota; a request the layer would refuse (a bad token, a blocked key) gets the
/// same answer here. `method` defaults to `GET`.
///
/// Mount it behind the layer (its own requests then count under the default policy) or
/// beside it:
///
/// ```
/// use std::time::Duration;
/// use axum::Router;
/// use limiter_tower::{Endpoint, Limit, LimiterLayer, Policy, QuotaRoute};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let api = Policy::new("api", vec![Limit::new(100, Duration::from_secs(60))])?;
/// let layer = LimiterLayer::builder().endpoint(Endpoint::new("/api", api)).build_in_memory()?;
/// let app: Router = Router::new()
///     .nest("/me/quota", QuotaRoute::new(&layer).router())
///     .layer(layer);
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct QuotaRoute {
    layer: LimiterLayer,
}

impl QuotaRoute {
    /// The route over `layer`'s rules and store.
    pub fn new<M>(layer: &LimiterLayer<M>) -> Self {
        QuotaRoute {
            layer: layer.same_body(),
        }
    }

    /// The route, to nest where the application wants it.
    pub fn router<S>(self) -> Router<S> {
        Router::new().route("/", get(quota)).with_state(self)
    }
}

async fn quota(
    State(route): State<QuotaRoute>,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let probe = match probe(&query, &req) {
        Ok(probe) => probe,
        Err((field, detail)) => {
            return with_field(StatusCode::BAD_REQUEST, "Invalid query", &detail, field)
        }
    };
    let shared = route.layer.shared();
    let rules = shared.rules.load();
    let (rule, key, also) = match plan(&rules, shared, &probe) {
        Plan::Pass => return Json(json!({ "limited": false, "policies": [] })).into_response(),
        Plan::Reject(rejection) => return rejection.into_response(),
        Plan::Check {
            rule, key, also, ..
        } => (rule, key, also),
    };
    let parts: Vec<(_, String)> = std::iter::once((rule.into_owned(), key.into_owned()))
        .chain(
            also.into_iter()
                .map(|a| (a.rule.into_owned(), a.key.into_owned())),
        )
        .collect();
    drop(rules);
    let mut policies: Vec<Value> = Vec::with_capacity(parts.len());
    for (rule, key) in parts {
        match shared.store.peek(&rule.policy, &key).await {
            Ok(decision) => policies.push(json!({
                "policy": rule.policy.name(),
                "windows": usage_windows(rule.policy.limits(), &decision),
            })),
            Err(error) => return failed(UsageError::Store(error)),
        }
    }
    Json(json!({ "limited": true, "policies": policies })).into_response()
}

/// The request the caller asks about: the path and method of the query, the caller's
/// headers and address.
fn probe(
    query: &HashMap<String, String>,
    req: &Request,
) -> Result<http::Request<()>, (&'static str, String)> {
    let path = query.get("path").filter(|p| p.starts_with('/')).ok_or((
        "path",
        "The path to ask about, starting with `/`.".to_owned(),
    ))?;
    let method = match query.get("method") {
        Some(method) => Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| ("method", format!("{method:?} is not an HTTP method.")))?,
        None => Method::GET,
    };
    let mut probe = http::Request::builder()
        .method(method)
        .uri(path.as_str())
        .body(())
        .map_err(|_| ("path", format!("{path:?} is not a request path.")))?;
    *probe.headers_mut() = req.headers().clone();
    if let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        probe.extensions_mut().insert(*peer);
    }
    Ok(probe)
}
