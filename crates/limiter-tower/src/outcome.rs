//! The second half of a request: from the store's answer (or failure) to either the
//! headers an admitted response gets, or the 429 that replaces it.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use limiter_core::{Decision, Error, FailureMode};

use crate::headers::{Fields, Figures, RATELIMIT_DEGRADED};
use crate::observe::Judgement;
use crate::problem::{self, PROBLEM_JSON};
use crate::rules::EndpointRule;

/// What an admitted response carries: the policy's fields for its decision, and
/// `RateLimit-Degraded` when a failure mode made it.
pub(crate) struct Stamp {
    fields: Option<Fields>,
    degraded: bool,
}

impl Stamp {
    /// The store returned an error and the failure mode admitted the request.
    const DEGRADED: Stamp = Stamp {
        fields: None,
        degraded: true,
    };

    pub(crate) fn write(self, headers: &mut HeaderMap) {
        if let Some(fields) = self.fields {
            fields.write(headers);
        }
        if self.degraded {
            headers.insert(RATELIMIT_DEGRADED, HeaderValue::from_static("true"));
        }
    }
}

pub(crate) enum Outcome {
    Allow(Stamp),
    Deny(Response<Bytes>),
}

/// The response side of a decision, and how it is counted.
pub(crate) fn outcome(
    rule: &EndpointRule,
    failure_mode: &FailureMode,
    result: &Result<Decision, Error>,
) -> (Outcome, Judgement) {
    match result {
        Ok(decision) => {
            let degraded = decision.is_degraded();
            if decision.is_allowed() {
                let stamp = Stamp {
                    fields: Figures::of(decision).map(|f| rule.headers.render(&f)),
                    degraded,
                };
                (Outcome::Allow(stamp), Judgement::allowed(degraded))
            } else if degraded && *failure_mode == FailureMode::Closed {
                // Fail closed says nothing about the policy's windows: the generic
                // "limiter unavailable" 429, retry at the next health check.
                let retry = decision.retry_after().unwrap_or(Duration::from_secs(1));
                (
                    Outcome::Deny(degraded_denial(retry)),
                    Judgement::DegradedDenied,
                )
            } else {
                let mut response = denied(rule, decision);
                if degraded {
                    // The local stand-in denied: its own figures, marked as such.
                    response
                        .headers_mut()
                        .insert(RATELIMIT_DEGRADED, HeaderValue::from_static("true"));
                }
                (Outcome::Deny(response), Judgement::denied(degraded))
            }
        }
        Err(err) => {
            // Only an unguarded store gets here (the in-memory store when full): the
            // failure mode decides as the guard would, without a local stand-in.
            tracing::warn!(policy = rule.policy.name(), error = %err, failure_mode = failure_mode.name(), "rate-limit store failed; decided by the failure mode");
            metrics::counter!("ratelimit_fallback_decisions_total", "mode" => failure_mode.name())
                .increment(1);
            match failure_mode {
                FailureMode::Open => (Outcome::Allow(Stamp::DEGRADED), Judgement::DegradedAllowed),
                FailureMode::Closed | FailureMode::Local { .. } => (
                    Outcome::Deny(degraded_denial(Duration::from_secs(1))),
                    Judgement::DegradedDenied,
                ),
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

fn degraded_denial(retry: Duration) -> Response<Bytes> {
    let mut response = problem_response(problem::plain(
        429,
        "Rate limiter unavailable",
        "The rate-limit store did not answer and this service refuses requests it cannot count.",
    ));
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_DEGRADED, HeaderValue::from_static("true"));
    // Whole seconds, rounded up: a client retrying earlier would only be refused again.
    let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
    headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
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
