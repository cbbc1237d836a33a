//! The second half of a request: from the store's answer (or failure) to either the
//! headers an admitted response gets, or the 429 that replaces it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use limiter_core::{Decision, Error, FailureMode, Overload, StoreError};

use crate::headers::{ceil_secs, Fields, RATELIMIT_DEGRADED};
use crate::observe::{Judgement, Observation};
use crate::problem;
use crate::rules::EndpointRule;
use crate::shadow::ShadowDenied;

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
    /// Call the service, its response to get `Stamp`, and its request the
    /// [`ShadowDenied`] of a shadow policy that would have denied it.
    Allow(Stamp, Option<ShadowDenied>),
    Deny(Response<Bytes>),
}

/// The response side of the store's answer for `rule`, with the decision recorded in
/// `observation` (for `store`, as [`Observation::finish`] names it).
pub(crate) fn conclude(
    rule: &EndpointRule,
    store: &'static str,
    observation: Observation,
    result: &Result<Decision, Error>,
) -> Outcome {
    let cached = result.as_ref().is_ok_and(Decision::is_cached);
    let failure_mode = rule.policy.failure_mode().unwrap_or_default();
    let (mut outcome, mut judgement) = outcome(rule, &failure_mode, result);
    if rule.shadow {
        match &mut outcome {
            Outcome::Deny(_) => (outcome, judgement) = shadowed(rule, judgement, result),
            // Clients see nothing of a policy being tried out unless asked.
            Outcome::Allow(stamp, _) if !rule.shadow_headers => stamp.fields = None,
            Outcome::Allow(..) => {}
        }
    }
    observation.finish(rule, store, judgement, cached);
    outcome
}

/// What a shadow policy does instead of denying: lets the request through, marked, and
/// counts what enforcing it would have done (a shed decision stays counted as shed).
fn shadowed(
    rule: &EndpointRule,
    judgement: Judgement,
    result: &Result<Decision, Error>,
) -> (Outcome, Judgement) {
    let decision = result.as_ref().ok();
    let window = decision
        .and_then(Decision::denied_by)
        .and_then(|i| rule.policy.limits().get(i))
        .map(|limit| Arc::from(limit.name()));
    let retry = decision.and_then(Decision::retry_after);
    let marked = ShadowDenied::new(Arc::clone(&rule.name), window, retry);
    once_a_second(&SHADOW_LOGGED, || {
        tracing::info!(policy = rule.policy.name(), window = ?marked.window(), "a shadow policy would have denied a request (at most one such line a second; ratelimit_decisions_total{{result=\"shadow_denied\"}} counts them)");
    });
    let fields = decision
        .filter(|_| rule.shadow_headers)
        .and_then(|d| rule.headers.figures(d))
        .map(|f| rule.headers.render(&f));
    let stamp = Stamp {
        fields,
        degraded: false,
    };
    let judgement = match judgement {
        Judgement::Shed => Judgement::Shed,
        _ => Judgement::ShadowDenied,
    };
    (Outcome::Allow(stamp, Some(marked)), judgement)
}

/// The response side of a decision, and how it is counted.
fn outcome(
    rule: &EndpointRule,
    failure_mode: &FailureMode,
    result: &Result<Decision, Error>,
) -> (Outcome, Judgement) {
    match result {
        Ok(decision) => {
            let degraded = decision.is_degraded();
            if decision.is_allowed() {
                let stamp = Stamp {
                    fields: rule
                        .headers
                        .figures(decision)
                        .map(|f| rule.headers.render(&f)),
                    degraded,
                };
                (Outcome::Allow(stamp, None), Judgement::allowed(degraded))
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
        Err(Error::Store(StoreError::Full(cap))) => {
            // The in-memory store holds its cap of keys: a new key is refused whatever the
            // failure mode, since admitting keys it cannot count would let a flood of
            // distinct keys bypass every limit. Tracked keys are still decided.
            tracing::warn!(
                policy = rule.policy.name(),
                max_keys = cap,
                "in-memory rate-limit store full; new key refused"
            );
            (
                Outcome::Deny(degraded_denial_with(
                    Duration::from_secs(1),
                    "The rate limiter tracks as many clients as it may and cannot count this one.",
                )),
                Judgement::DegradedDenied,
            )
        }
        Err(Error::Overloaded(overload)) => {
            shed_log(rule, overload);
            (Outcome::Deny(problem::overloaded()), Judgement::Shed)
        }
        Err(err) => {
            // Only an unguarded store's other failures get here: the failure mode
            // decides as the guard would, without a local stand-in.
            tracing::warn!(policy = rule.policy.name(), error = %err, failure_mode = failure_mode.name(), "rate-limit store failed; decided by the failure mode");
            metrics::counter!(limiter_core::metric_names::FALLBACK_DECISIONS_TOTAL, "mode" => failure_mode.name())
                .increment(1);
            match failure_mode {
                FailureMode::Open => (
                    Outcome::Allow(Stamp::DEGRADED, None),
                    Judgement::DegradedAllowed,
                ),
                FailureMode::Closed | FailureMode::Local { .. } => (
                    Outcome::Deny(degraded_denial(Duration::from_secs(1))),
                    Judgement::DegradedDenied,
                ),
            }
        }
    }
}

/// Logs a shed decision, at most once a second per process: a flood sheds thousands a
/// second, and the metric counts them all.
fn shed_log(rule: &EndpointRule, overload: &Overload) {
    once_a_second(&SHED_LOGGED, || {
        tracing::warn!(policy = rule.policy.name(), reason = overload.reason(), %overload, "overloaded: rate-limit decisions shed with 503 (at most one such line a second; ratelimit_shed_decisions_total counts them)");
    });
}

/// The second (from this process's first such line, plus one) of the last line of a kind.
static SHED_LOGGED: AtomicU64 = AtomicU64::new(0);
static SHADOW_LOGGED: AtomicU64 = AtomicU64::new(0);

/// Runs `log` unless a line of its kind (`last`) was written this second.
fn once_a_second(last: &AtomicU64, log: impl FnOnce()) {
    static START: OnceLock<Instant> = OnceLock::new();
    let now = START.get_or_init(Instant::now).elapsed().as_secs() + 1;
    let seen = last.load(Ordering::Relaxed);
    if now > seen
        && last
            .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        log();
    }
}

fn denied(rule: &EndpointRule, decision: &Decision) -> Response<Bytes> {
    let index = decision.denied_by().unwrap_or(0);
    let body = match rule.denials.get(index) {
        Some(d) if decision.never_fits() => d.never.clone(),
        Some(d) => d.retry.clone(),
        None => Bytes::new(),
    };
    let mut response = problem::response(StatusCode::TOO_MANY_REQUESTS, body);
    rule.headers.write(decision, response.headers_mut());
    response
}

fn degraded_denial(retry: Duration) -> Response<Bytes> {
    degraded_denial_with(
        retry,
        "The rate-limit store did not answer and this service refuses requests it cannot count.",
    )
}

fn degraded_denial_with(retry: Duration, detail: &str) -> Response<Bytes> {
    let status = StatusCode::TOO_MANY_REQUESTS;
    let mut response = problem::response(
        status,
        problem::plain(status.as_u16(), "Rate limiter unavailable", detail),
    );
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_DEGRADED, HeaderValue::from_static("true"));
    headers.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(retry).max(1)));
    response
}
