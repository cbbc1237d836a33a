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
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use limiter_core::Stopwatch;
use tracing::field::{Empty, Field, Value};
use tracing::Span;

use crate::decision_sink::{DecisionRecord, DecisionSink, TraceParent};
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
    /// A shadow policy would have denied the request, and let it through.
    ShadowDenied,
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
            Judgement::ShadowDenied => "shadow_denied",
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

/// One decision being observed: its span (entered around the store call), when it is
/// timed its clock, and where it is exported besides.
pub(crate) struct Observation {
    span: Span,
    start: Option<Stopwatch>,
    export: Option<Export>,
}

/// Where a decision goes besides its span: the layer's [`DecisionSink`], with the caller's
/// trace.
pub(crate) struct Export {
    pub(crate) sink: Arc<Box<dyn DecisionSink>>,
    pub(crate) parent: Option<TraceParent>,
    key_hash: u64,
}

impl Export {
    pub(crate) fn new(sink: Arc<Box<dyn DecisionSink>>, parent: Option<TraceParent>) -> Self {
        Export {
            sink,
            parent,
            key_hash: 0,
        }
    }
}

impl Observation {
    pub(crate) fn start(
        rule: &EndpointRule,
        store: &'static str,
        in_process: bool,
        key: &str,
        export: Option<Export>,
    ) -> Self {
        // DEBUG, as tower-http's per-request spans: a service logging at INFO does not
        // build a span per decision it never prints, while the OpenTelemetry layer
        // (`telemetry::otel::layer`) enables this target at DEBUG and exports every one.
        // Fields cost nothing until a subscriber visits them: the strings are borrowed
        // (the policy's name and scopes live in the rule, `store` is static) and
        // `KeyHash` hashes only when formatted.
        // Asked first: with `tracing`'s `log` feature on (axum's default `tower-log`
        // turns it on) and no subscriber set, a disabled `debug_span!` still formats its
        // fields for the `log` crate, and entering, leaving and recording it log too.
        // `Span::none()` does none of that (and `finish` finds no fields to record).
        let span = if tracing::span_enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!(
                "ratelimit.decide",
                policy = rule.policy.name(),
                scopes = &**rule.key.kinds(),
                store,
                key_hash = %KeyHash(key),
                result = Empty,
                latency_us = Empty,
                degraded = Empty,
            )
        } else {
            Span::none()
        };
        let export = export.map(|export| Export {
            key_hash: key_hash_u64(key),
            ..export
        });
        let timed = !in_process || !span.is_disabled() || export.is_some() || time_this_one();
        Observation {
            span,
            start: timed.then(Stopwatch::start),
            export,
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
        if let Some(export) = &self.export {
            export.sink.record(&DecisionRecord {
                policy: &rule.name,
                scopes: rule.key.kinds(),
                store,
                key_hash: export.key_hash,
                result: judgement.as_str(),
                degraded: judgement.degraded(),
                end: SystemTime::now(),
                duration: elapsed,
                parent: export.parent,
            });
        }
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

/// Displays as [`key_hash`] of the key, computed only when displayed, into a buffer on the
/// stack: the one allocation is the subscriber's, if it keeps the text.
struct KeyHash<'a>(&'a str);

impl std::fmt::Display for KeyHash<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(hex16(&mut [0; 16], key_hash_u64(self.0)))
    }
}

/// The keyed hash of every key in this process.
///
/// Why this keeps keys private: it is SipHash-1-3 (std's `RandomState`), a keyed
/// pseudo-random function, under a 128-bit key drawn at random once per process and never
/// written anywhere. A trace reader who guesses a key (a user id, an address, a leaked
/// API key) cannot compute its hash without that key, so cannot test guesses, and the same
/// key hashes differently in every process, so traces of different instances or
/// deployments (or one restarted) cannot be joined on it. Within one process a key keeps
/// its hash: enough to tell keys apart and follow one in that process's traces. Unlike the
/// former unkeyed SHA-256 prefix, an operator cannot look up a known key's hash either.
/// About 20 ns for a typical key, against about 300 ns for SHA-256.
fn key_hasher() -> &'static RandomState {
    static HASHER: OnceLock<RandomState> = OnceLock::new();
    HASHER.get_or_init(RandomState::new)
}

fn key_hash_u64(key: &str) -> u64 {
    key_hasher().hash_one(key.as_bytes())
}

/// `value` as 16 lowercase hex digits in `buf`.
fn hex16(buf: &mut [u8; 16], value: u64) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((value >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(buf).unwrap_or_default()
}

/// The key's keyed hash (see `key_hasher`), as 16 hex digits: tells keys apart in one
/// process's traces while the trace never holds a user id, address or API key.
#[cfg(test)]
fn key_hash(key: &str) -> String {
    KeyHash(key).to_string()
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
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(h, key_hash("user:alice:endpoint:GET%20/a"));
        assert_ne!(h, key_hash("user:bob:endpoint:GET%20/a"));
        assert_eq!(
            h,
            format!("{:016x}", key_hash_u64("user:alice:endpoint:GET%20/a"))
        );
        assert_eq!(
            hex16(&mut [0; 16], 0x0123_4567_89ab_cdef),
            "0123456789abcdef"
        );
    }

    #[test]
    fn key_hash_is_keyed_not_a_public_digest() {
        // Not SHA-256 ("abc" would start ba7816bf8f01cfea), nor unkeyed SipHash: a reader
        // of traces cannot compute it from a guessed key.
        assert_ne!(key_hash("abc"), "ba7816bf8f01cfea");
        let unkeyed = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default()
            .hash_one("abc".as_bytes());
        assert_ne!(key_hash_u64("abc"), unkeyed);
    }
}
