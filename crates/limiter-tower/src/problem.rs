//! RFC 9457 problem details for the responses the layer writes itself. Bodies depend
//! only on the policy, so they are serialized once when the configuration loads.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

/// `Content-Type` of every body here.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The problem type the ratelimit-headers draft registers for exhausted quota.
pub(crate) const QUOTA_EXCEEDED: &str =
    "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// The body of a 429 for `window` of `policy`; `never` when the request's cost exceeds
/// the window's capacity and no retry can succeed.
pub(crate) fn quota_exceeded(policy: &str, window: &str, capacity: u64, never: bool) -> Bytes {
    let detail = if never {
        format!("The request costs more than window \"{window}\" of policy \"{policy}\" can ever hold ({capacity} units); retrying will not help.")
    } else {
        format!("Window \"{window}\" of policy \"{policy}\" is exhausted; retry after the time given in Retry-After.")
    };
    body(json!({
        "type": QUOTA_EXCEEDED,
        "title": "Request cannot be satisfied as assigned quota has been exceeded",
        "status": 429,
        "detail": detail,
        "violated-policies": [window],
        "policy": policy,
    }))
}

/// The problem type the ratelimit-headers draft registers for traffic that looks
/// unintentional or malicious.
pub(crate) const ABNORMAL_USAGE: &str =
    "https://iana.org/assignments/http-problem-types#abnormal-usage-detected";

/// The body of a 429 for a client blocked by the enumeration defence.
pub(crate) fn abnormal_usage() -> Bytes {
    body(json!({
        "type": ABNORMAL_USAGE,
        "title": "Request not satisfied due to detection of abnormal request pattern",
        "status": 429,
        "detail": "This client presented too many different identities or failed credentials, or one that no client should have; retry after the time given in Retry-After.",
    }))
}

/// This project's problem type for a request shed because the service is overloaded.
pub(crate) const OVERLOADED: &str = "tag:limiter-rs,2026:problems/overloaded";

/// The 503 of a request shed because this process had more rate-limit decisions waiting
/// for the store than it may hold: `Retry-After: 1`, nothing counted.
pub(crate) fn overloaded() -> Response<Bytes> {
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let body = BODY.get_or_init(|| {
        body(json!({
            "type": OVERLOADED,
            "title": "Service overloaded",
            "status": 503,
            "detail": "This service has more requests waiting for its rate limiter than it can hold; retry after the time given in Retry-After.",
        }))
    });
    let mut response = response(StatusCode::SERVICE_UNAVAILABLE, body.clone());
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A problem with the given status, title and detail (`type` is `about:blank`).
pub(crate) fn plain(status: u16, title: &str, detail: &str) -> Bytes {
    body(json!({
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }))
}

/// A response of `status` carrying the problem `body` (from [`quota_exceeded`] or
/// [`plain`]).
pub(crate) fn response(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

fn body(value: serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}
