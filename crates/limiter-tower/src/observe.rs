//! What every decision leaves behind: a `ratelimit.decide` span, one count in
//! `ratelimit_decisions_total{policy, result}` and its latency in
//! `ratelimit_decision_duration_seconds{store}`; a denial answered by the local cache of
//! denials also counts in `ratelimit_local_cache_hits_total{policy}`.
//!
//! In-process decisions (the in-memory store) take tens of nanoseconds, about what
//! timing one costs (two clock reads): their latency is recorded for one decision in
//! [`TIMED_ONE_IN`] on each thread (and for every decision whose span is recorded), so
//! the histogram keeps their distribution while its count is not theirs; the decision
//! counter counts them all.
//!
//! Label values come from the configuration (policy names) or fixed sets (results, store
//! kinds), never from a request; the span carries the key only as a hash.

use std::cell::Cell;

use limiter_core::Stopwatch;
use sha2::{Digest, Sha256};
use tracing::field::{Empty, Field, Value};
use tracing::Span;

use crate::rules::EndpointRule;

/// How a decision went, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Judgement {
    Allowed,
    Denied,
    /// A failure mode admitted the request.
    DegradedAllowed,
    /// A failure mode refused the request.
    DegradedDenied,
    /// This process was overloaded: the decision was shed (503), nothing counted it.
    Shed,
}

impl Judgement {
    pub(crate) fn allowed(degraded: bool) -> Self {
        if degraded {
            Judgement::DegradedAllowed
        } else {
            Judgement::Allowed
        }
    }

    pub(crate) fn denied(degraded: bool) -> Self {
        if degraded {
            Judgement::DegradedDenied
        } else {
            Judgement::Denied
        }
    }

    /// The `result` label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Judgement::Allowed => "allowed",
            Judgement::Denied => "denied",
            Judgement::DegradedAllowed => "degraded_allowed",
            Judgement::DegradedDenied => "degraded_denied",
            Judgement::Shed => "shed",
        }
    }

    fn degraded(self) -> bool {
        matches!(self, Judgement::DegradedAllowed | Judgement::DegradedDenied)
    }
}

/// Of in-process decisions, the share whose latency is recorded: one in this many.
pub(crate) const TIMED_ONE_IN: u32 = 64;

/// Whether this thread's next in-process decision is one to time.
fn time_this_one() -> bool {
    thread_local!(static DECISIONS: Cell<u32> = const { Cell::new(0) });
    DECISIONS.with(|n| {
        let next = n.get().wrapping_add(1);
        n.set(next);
        next % TIMED_ONE_IN == 0
    })
}

/// One decision being observed: its span (entered around the store call) and, when it is
/// timed, its clock.
pub(crate) struct Observation {
    span: Span,
    start: Option<Stopwatch>,
}

impl Observation {
    pub(crate) fn start(
        rule: &EndpointRule,
        store: &'static str,
        in_process: bool,
        key: &str,
    ) -> Self {
        // DEBUG, as tower-http's per-request spans: a service logging at INFO does not
        // build a span per decision it never prints, while the OpenTelemetry layer
        // (`telemetry::otel::layer`) enables this target at DEBUG and exports every one.
        // `KeyHash` hashes when formatted, so only when a subscriber records the span.
        // Asked first: with `tracing`'s `log` feature on (axum's default `tower-log`
        // turns it on) and no subscriber set, a disabled `debug_span!` still formats its
        // fields for the `log` crate, and entering, leaving and recording it log too.
        // `Span::none()` does none of that (and `finish` finds no fields to record).
        let span = if tracing::span_enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!(
                "ratelimit.decide",
                policy = rule.policy.name(),
                scopes = rule.key.kinds(),
                store,
                key_hash = %KeyHash(key),
                result = Empty,
                latency_us = Empty,
                degraded = Empty,
            )
        } else {
            Span::none()
        };
        let timed = !in_process || !span.is_disabled() || time_this_one();
        Observation {
            span,
            start: timed.then(Stopwatch::start),
        }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records the decision: `cached` when the local cache of denials answered it.
    pub(crate) fn finish(
        self,
        rule: &EndpointRule,
        store: &'static str,
        judgement: Judgement,
        cached: bool,
    ) {
        let elapsed = self.start.map(|start| start.elapsed());
        rule.metrics.decisions[judgement as usize]
            .get_or_init(|| {
                metrics::counter!(
                    crate::metric_names::DECISIONS_TOTAL,
                    "policy" => metrics::SharedString::from(std::sync::Arc::clone(&rule.name)),
                    "result" => judgement.as_str()
                )
            })
            .increment(1);
        if cached {
            rule.metrics
                .local_cache_hits
                .get_or_init(|| {
                    metrics::counter!(
                        crate::metric_names::LOCAL_CACHE_HITS_TOTAL,
                        "policy" => metrics::SharedString::from(std::sync::Arc::clone(&rule.name))
                    )
                })
                .increment(1);
        }
        let Some(elapsed) = elapsed else {
            return;
        };
        rule.metrics
            .latency
            .get_or_init(
                || metrics::histogram!(crate::metric_names::DECISION_DURATION_SECONDS, "store" => store),
            )
            .record(elapsed.as_secs_f64());
        // One call for the three outcome fields: a subscriber may re-encode the span's
        // fields on every record (the JSON formatter does).
        let Some(metadata) = self.span.metadata() else {
            return;
        };
        let fields = metadata.fields();
        let (Some(result), Some(latency), Some(degraded)) = (
            fields.field("result"),
            fields.field("latency_us"),
            fields.field("degraded"),
        ) else {
            return;
        };
        // Signed: OpenTelemetry has no unsigned integers and would record a u64 as text.
        let latency_us = i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX);
        let values: [(&Field, Option<&dyn Value>); 3] = [
            (&result, Some(&judgement.as_str())),
            (&latency, Some(&latency_us)),
            (&degraded, Some(&judgement.degraded())),
        ];
        self.span.record_all(&fields.value_set(&values));
    }
}

/// Displays as [`key_hash`] of the key, computed only when displayed.
struct KeyHash<'a>(&'a str);

impl std::fmt::Display for KeyHash<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&key_hash(self.0))
    }
}

/// The first 8 bytes of the key's SHA-256, in hex: enough to tell keys apart in traces
/// and to find one whose value is known, while the trace never holds a user id, address
/// or API key.
pub(crate) fn key_hash(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_in_process_decision_in_64_is_timed_on_each_thread() {
        let timed = || (0..TIMED_ONE_IN * 10).filter(|_| time_this_one()).count();
        assert_eq!(timed(), 10);
        assert_eq!(std::thread::spawn(timed).join().unwrap(), 10);
    }

    #[test]
    fn key_hash_is_short_stable_hex_without_the_key() {
        let h = key_hash("user:alice:endpoint:GET%20/a");
        assert_eq!(h.len(), 16);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(h, key_hash("user:alice:endpoint:GET%20/a"));
        assert_ne!(h, key_hash("user:bob:endpoint:GET%20/a"));
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(key_hash("abc"), "ba7816bf8f01cfea");
    }
}
