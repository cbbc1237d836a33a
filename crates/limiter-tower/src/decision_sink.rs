//! [`DecisionSink`]: every decision the layer makes, handed to an exporter as plain facts,
//! for tracing every decision without a `tracing` span per decision.
//!
//! Why beside the `ratelimit.decide` span: a span recorded through `tracing` and exported
//! through the OpenTelemetry SDK costs about 1.3x the CPU of a request untraced
//! (BENCHMARKS.md section 4: the registry, `tracing-opentelemetry`'s span builder, the
//! SDK's span and its batch conversion). A sink receives one borrowed record, built from
//! what the layer has at hand, and an exporter queues it (see
//! `limiter::telemetry::decisions`, OTLP over HTTP).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Receives every decision the layer makes (see [`LimiterLayer::set_decision_sink`]).
///
/// Called on the request's task, after the decision and before the response: queue the
/// record and return, never block or wait on I/O.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use limiter_tower::{DecisionRecord, DecisionSink};
///
/// #[derive(Default)]
/// struct Count(Mutex<u64>);
///
/// impl DecisionSink for Count {
///     fn record(&self, _decision: &DecisionRecord<'_>) {
///         *self.0.lock().unwrap() += 1;
///     }
/// }
///
/// let sink: Arc<dyn DecisionSink> = Arc::new(Count::default());
/// # let _ = sink;
/// ```
///
/// [`LimiterLayer::set_decision_sink`]: crate::LimiterLayer::set_decision_sink
pub trait DecisionSink: Send + Sync + 'static {
    /// One decision, made just now.
    fn record(&self, decision: &DecisionRecord<'_>);
}

/// A shared sink is a sink: keep a handle to an exporter (to flush it at exit) and give
/// the layer a clone.
impl<T: DecisionSink> DecisionSink for Arc<T> {
    fn record(&self, decision: &DecisionRecord<'_>) {
        (**self).record(decision);
    }
}

/// One decision, as a [`DecisionSink`] receives it: the facts of the `ratelimit.decide`
/// span, and the caller's trace to join.
#[derive(Debug)]
#[non_exhaustive]
pub struct DecisionRecord<'a> {
    /// The policy's name.
    pub policy: &'a Arc<str>,
    /// What the key is made of, comma-separated (`user,endpoint`): never the key.
    pub scopes: &'a Arc<str>,
    /// The store's kind (`memory`, `redis`, `redis_cluster`).
    pub store: &'static str,
    /// The key's keyed hash, as the span's `key_hash` (16 hex digits of it): tells keys
    /// apart within this process, reveals nothing of them (see the span's docs).
    pub key_hash: u64,
    /// `allowed`, `denied`, `degraded_allowed`, `degraded_denied`, `shed` or
    /// `shadow_denied`, as the `ratelimit_decisions_total` label.
    pub result: &'static str,
    /// Whether a failure mode decided instead of the store.
    pub degraded: bool,
    /// When the decision was made (its end).
    pub end: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// The caller's trace context (the request's `traceparent`), if it sent a valid one.
    pub parent: Option<TraceParent>,
}

/// A W3C Trace Context `traceparent`: the caller's trace and span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace's id (not all zeros).
    pub trace_id: [u8; 16],
    /// The caller's span (not all zeros): the parent of the decision's span.
    pub span_id: [u8; 8],
    /// Whether the caller samples this trace (flag `01`).
    pub sampled: bool,
}

impl TraceParent {
    /// Parses a `traceparent` value: `00-<32 hex>-<16 hex>-<2 hex>` (a later version may
    /// append fields after a `-`). `None` for anything else, or all-zero ids.
    ///
    /// ```
    /// use limiter_tower::TraceParent;
    ///
    /// let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// assert_eq!(parent.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    /// assert!(parent.sampled);
    /// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
    /// ```
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.as_bytes();
        let version = value.get(..2)?;
        // Version ff is invalid; a known version must be exactly 55 bytes long.
        let sized = match version {
            b"00" => value.len() == 55,
            b"ff" => false,
            _ => value.len() == 55 || value.get(55) == Some(&b'-'),
        };
        if !sized || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0; 16];
        let mut span_id = [0; 8];
        let mut flags = [0; 1];
        hex::decode_to_slice(version, &mut [0; 1]).ok()?;
        hex::decode_to_slice(&value[3..35], &mut trace_id).ok()?;
        hex::decode_to_slice(&value[36..52], &mut span_id).ok()?;
        hex::decode_to_slice(&value[53..55], &mut flags).ok()?;
        // W3C: lowercase only.
        if value[..55].iter().any(u8::is_ascii_uppercase) {
            return None;
        }
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags[0] & 1 == 1,
        })
    }

    /// The `traceparent` header of `headers`, parsed; `None` when absent or invalid.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceParent> {
        TraceParent::parse(headers.get(TRACEPARENT)?.to_str().ok()?)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_a_panic(text in "\\PC{0,80}", tail in "[-0-9a-f]{0,60}") {
            let _ = TraceParent::parse(&text);
            let _ = TraceParent::parse(&format!("00-{tail}"));
        }

        #[test]
        fn a_formatted_traceparent_reads_back(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), flags in any::<u8>()) {
            prop_assume!(trace != [0; 16] && span != [0; 8]);
            let text = format!("00-{}-{}-{flags:02x}", hex::encode(trace), hex::encode(span));
            let read = TraceParent { trace_id: trace, span_id: span, sampled: flags & 1 == 1 };
            prop_assert_eq!(TraceParent::parse(&text), Some(read));
        }
    }

    #[test]
    fn reads_a_valid_traceparent_and_refuses_malformed_ones() {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert_eq!(parent.trace_id[0], 0x4b);
        assert!(!parent.sampled);
        // A later version may carry more fields.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{e9}",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }
}
