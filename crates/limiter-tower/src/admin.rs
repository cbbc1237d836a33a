//! [`AdminApi`]: an axum [`Router`] for operators to read and reset a key's usage,
//! mounted by the application behind its own authentication.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::time::{Duration, SystemTime};

use limiter_core::{Adjustment, Decision, Error as StoreFailure, Override};
use serde_json::{json, Value};

use crate::layer::{LimiterLayer, UsageError};
use crate::problem;

type Authorize = dyn Fn(&HeaderMap) -> bool + Send + Sync;

/// The operators' routes over a layer's store, relative to where they are mounted:
///
/// - `GET /usage/{policy}/{key}`: the key's windows under the policy in force (limit,
///   remaining, unit, seconds until reset), charging nothing;
/// - `DELETE /usage/{policy}/{key}`: the key's windows whole again, on every instance
///   sharing the store (204);
/// - `PUT /overrides/{policy}/{key}` with `{"factor": 10, "seconds": 2592000}` (the
///   key's limits scaled) or `{"block": true, "seconds": 3600}` (every request refused),
///   applied by every instance sharing the store within about a second (204);
/// - `GET /overrides`: every override in force, with the seconds it has left;
/// - `DELETE /overrides/{policy}/{key}`: the policy's own limits again (204);
/// - `GET /over-limit`: the keys over their limit as this instance saw them (its
///   denials that still stand, at most 1,000, latest kept), with the seconds until a
///   retry can succeed; each instance lists its own.
///
/// Never open by default: every request is refused (401) until
/// [`authorize`](Self::authorize) accepts it. Bad input gets a problem body naming the
/// field (`policy`, `key`).
///
/// ```
/// use std::time::Duration;
/// use axum::Router;
/// use limiter_tower::{AdminApi, Endpoint, Limit, LimiterLayer, Policy};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let orders = Policy::new("orders", vec![Limit::new(10, Duration::from_secs(60))])?;
/// let layer = LimiterLayer::builder().endpoint(Endpoint::new("/orders", orders)).build_in_memory()?;
/// let admin = AdminApi::new(&layer)
///     .authorize(|headers| headers.get("x-admin-token").is_some_and(|t| t == "let-me-in"))
///     .router();
/// let app: Router = Router::new().nest("/admin", admin);
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AdminApi {
    layer: LimiterLayer,
    authorize: Arc<Authorize>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// The routes over `layer`'s store and rules, refusing every request until
    /// [`authorize`](Self::authorize) is set.
    pub fn new<M>(layer: &LimiterLayer<M>) -> Self {
        AdminApi {
            layer: layer.same_body(),
            authorize: Arc::new(|_| false),
        }
    }

    /// Admits the requests `authorize` accepts: the application's own check of the
    /// caller (a token compared in constant time, an mTLS identity a proxy vouches for).
    pub fn authorize(
        mut self,
        authorize: impl Fn(&HeaderMap) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Arc::new(authorize);
        self
    }

    /// The routes, to nest under the application's admin prefix.
    pub fn router<S>(self) -> Router<S> {
        Router::new()
            .route("/usage/{policy}/{key}", get(usage).delete(reset))
            .route("/overrides", get(list_overrides))
            .route("/over-limit", get(over_limit))
            .route(
                "/overrides/{policy}/{key}",
                axum::routing::put(set_override).delete(clear_override),
            )
            .with_state(self)
    }
}

async fn usage(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    Path((policy, key)): Path<(String, String)>,
) -> Response {
    if !(api.authorize)(&headers) {
        return unauthorized();
    }
    match api.layer.peek(&policy, &key).await {
        Ok(decision) => Json(usage_body(&api, &policy, &key, &decision)).into_response(),
        Err(error) => failed(error),
    }
}

async fn reset(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    Path((policy, key)): Path<(String, String)>,
) -> Response {
    if !(api.authorize)(&headers) {
        return unauthorized();
    }
    match api.layer.reset(&policy, &key).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => failed(error),
    }
}

/// The longest override: a year.
const MAX_OVERRIDE_SECS: u64 = 366 * 86_400;

async fn set_override(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    Path((policy, key)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if !(api.authorize)(&headers) {
        return unauthorized();
    }
    let adjustment = match override_of(&body) {
        Ok(adjustment) => adjustment,
        Err((field, detail)) => {
            return with_field(StatusCode::BAD_REQUEST, "Invalid override", &detail, field)
        }
    };
    match api.layer.set_override(&policy, &key, adjustment).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => failed(error),
    }
}

/// The override a request body asks for, or the field at fault and why.
fn override_of(body: &[u8]) -> Result<Override, (&'static str, String)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ("body", format!("The body is not JSON: {e}.")))?;
    let Some(object) = value.as_object() else {
        return Err(("body", "The body must be a JSON object.".into()));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "factor" | "block" | "seconds"))
    {
        return Err(("body", format!("Unknown field {unknown:?}.")));
    }
    let seconds = object
        .get("seconds")
        .and_then(Value::as_u64)
        .filter(|s| (1..=MAX_OVERRIDE_SECS).contains(s))
        .ok_or((
            "seconds",
            format!("How long the override lasts: whole seconds from 1 to {MAX_OVERRIDE_SECS}."),
        ))?;
    let until = SystemTime::now() + Duration::from_secs(seconds);
    match (object.get("factor"), object.get("block")) {
        (Some(factor), None) => {
            let factor = factor
                .as_f64()
                .ok_or(("factor", "The factor must be a number.".to_owned()))?;
            Override::scale(factor, until).map_err(|e| ("factor", format!("{e}.")))
        }
        (None, Some(Value::Bool(true))) => Ok(Override::block(until)),
        (None, Some(_)) => Err(("block", "`block` can only be true.".into())),
        _ => Err(("body", "Set exactly one of `factor` and `block`.".into())),
    }
}

async fn clear_override(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    Path((policy, key)): Path<(String, String)>,
) -> Response {
    if !(api.authorize)(&headers) {
        return unauthorized();
    }
    match api.layer.clear_override(&policy, &key).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => failed(error),
    }
}

async fn list_overrides(State(api): State<AdminApi>, headers: HeaderMap) -> Response {
    if !(api.authorize)(&headers) {
        return unauthorized();
    }
    let all = match api.layer.overrides().await {
        Ok(all) => all,
        Err(error) => return failed(error),
    };
    let now = SystemTime::now();
    let listed: Vec<Value> = all
        .iter()
        .map(|(policy, key, o)| {
            let mut entry = json!({
                "policy": policy,
                "key": key,
                "seconds_left": crate::headers::ceil_secs(o.remaining(now)),
            });
            match o.adjustment() {
                Adjustment::Scale(factor) => entry["factor"] = json!(factor),
                _ => entry["block"] = json!(true),
            }
            entry
        })
        .collect();
    Json(json!({ "overrides": listed })).into_response()
}

async fn over_limit(State(api): State<AdminApi>, headers: HeaderMap) -> Response {
    if !(api.authorize)(&headers) {
        return unauthorized();
    }
    let listed: Vec<Value> = api
        .layer
        .over_limit()
        .into_iter()
        .map(|(policy, key, retry)| {
            json!({
                "policy": &*policy,
                "key": &*key,
                "retry_after_secs": crate::headers::ceil_secs(retry),
            })
        })
        .collect();
    Json(json!({ "keys": listed })).into_response()
}

/// The key's windows, in the policy's order.
fn usage_body(api: &AdminApi, policy: &str, key: &str, decision: &Decision) -> Value {
    let rules = api.layer.rules();
    let limits = rules
        .policies()
        .find(|p| p.name() == policy)
        .map(|p| p.limits().to_vec())
        .unwrap_or_default();
    let windows = usage_windows(&limits, decision);
    let mut body = json!({ "policy": policy, "key": key, "windows": windows });
    if let Some(left) = api.layer.penalty_left(policy, key) {
        body["penalty_secs"] = json!(crate::headers::ceil_secs(left));
    }
    body
}

/// A decision's windows as the admin and quota routes show them, named by `limits`.
pub(crate) fn usage_windows(limits: &[limiter_core::Limit], decision: &Decision) -> Vec<Value> {
    decision
        .windows()
        .iter()
        .zip(limits)
        .map(|(window, limit)| {
            json!({
                "name": limit.name(),
                "unit": limit.unit(),
                "limit": window.limit(),
                "remaining": window.remaining(),
                "reset_after_secs": crate::headers::ceil_secs(window.reset_after()),
            })
        })
        .collect()
}

pub(crate) fn failed(error: UsageError) -> Response {
    match error {
        UsageError::UnknownPolicy(name) => with_field(
            StatusCode::NOT_FOUND,
            "Unknown policy",
            &format!("No policy in force is named {name:?}."),
            "policy",
        ),
        UsageError::Store(StoreFailure::EmptyKey) => with_field(
            StatusCode::BAD_REQUEST,
            "Invalid key",
            "The key must not be empty.",
            "key",
        ),
        UsageError::BadOverride(why) => with_field(
            StatusCode::BAD_REQUEST,
            "Invalid override",
            &format!("{why}."),
            "factor",
        ),
        UsageError::Store(other) => {
            let status = StatusCode::SERVICE_UNAVAILABLE;
            let body = problem::plain(status.as_u16(), "Store unavailable", &other.to_string());
            problem::response(status, body).map(axum::body::Body::from)
        }
    }
}

/// A problem body naming the request's `field` at fault.
pub(crate) fn with_field(status: StatusCode, title: &str, detail: &str, field: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "field": field,
    });
    problem::response(status, Bytes::from(body.to_string())).map(axum::body::Body::from)
}

fn unauthorized() -> Response {
    let status = StatusCode::UNAUTHORIZED;
    let body = problem::plain(
        status.as_u16(),
        "Unauthorized",
        "The admin routes answer only the callers this application authorizes.",
    );
    problem::response(status, body).map(axum::body::Body::from)
}
