//! The second half of a request: from the store's answer (or failure) to either the
//! headers an admitted response gets, or the 429 that replaces it.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use limiter_core::{Decision, Error};

use crate::config::FailureMode;
use crate::headers::RATELIMIT_DEGRADED;
use crate::problem::{self, PROBLEM_JSON};
use crate::rules::EndpointRule;

/// What an admitted response carries.
pub(crate) enum Stamp {
    /// The store decided: the policy's fields for this decision.
    Decided {
        rule: Arc<EndpointRule>,
        decision: Decision,
    },
    /// The store failed and the failure mode admitted the request.
    Degraded,
}

impl Stamp {
    pub(crate) fn write(&self, headers: &mut HeaderMap) {
        match self {
            Stamp::Decided { rule, decision } => rule.headers.write(decision, headers),
            Stamp::Degraded => {
                headers.insert(RATELIMIT_DEGRADED, HeaderValue::from_static("true"));
            }
        }
    }
}

pub(crate) enum Outcome {
    Allow(Stamp),
    Deny(Response<Bytes>),
}

pub(crate) fn outcome(
    rule: &Arc<EndpointRule>,
    failure_mode: FailureMode,
    result: Result<Decision, Error>,
) -> Outcome {
    match result {
        Ok(decision) if decision.is_allowed() => {
            metrics::counter!("ratelimit_requests_total", "outcome" => "allowed").increment(1);
            Outcome::Allow(Stamp::Decided {
                rule: Arc::clone(rule),
                decision,
            })
        }
        Ok(decision) => {
            metrics::counter!("ratelimit_requests_total", "outcome" => "denied").increment(1);
            Outcome::Deny(denied(rule, &decision))
        }
        Err(err) => {
            let mode = match failure_mode {
                FailureMode::Allow => "allow",
                FailureMode::Deny => "deny",
            };
            tracing::warn!(policy = rule.policy.name(), error = %err, failure_mode = mode, "rate-limit store failed; decided by the failure mode");
            metrics::counter!("ratelimit_degraded_total", "failure_mode" => mode).increment(1);
            match failure_mode {
                FailureMode::Allow => Outcome::Allow(Stamp::Degraded),
                FailureMode::Deny => Outcome::Deny(degraded_denial()),
            }
        }
    }
}

fn denied(rule: &EndpointRule, decision: &Decision) -> Response<Bytes> {
    let index = decision.denied_by().unwrap_or(0);
    let body = match rule.denials.get(index) {
        Some(d) if decision.never_fits() => d.never.clone(),
        Some(d) => d.retry.clone(),
        None => Bytes::new(),
    };
    let mut response = problem_response(body);
    rule.headers.write(decision, response.headers_mut());
    response
}

fn degraded_denial() -> Response<Bytes> {
    let mut response = problem_response(problem::plain(
        429,
        "Rate limiter unavailable",
        "The rate-limit store did not answer and this service refuses requests it cannot count.",
    ));
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_DEGRADED, HeaderValue::from_static("true"));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn problem_response(body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}
