//! Every rate-limit decision exported as an OpenTelemetry span over OTLP/HTTP (protobuf),
//! without the OpenTelemetry SDK (feature `otel`): [`OtlpDecisions`] is a
//! [`DecisionSink`] for [`LimiterLayer::set_decision_sink`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use limiter::telemetry::decisions::OtlpDecisions;
//! use limiter_tower::LimiterLayer;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = LimiterLayer::from_file("policies.yaml").await?;
//! // OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318) names the collector.
//! let spans = Arc::new(OtlpDecisions::builder("my-service").build()?);
//! layer.set_decision_sink(Some(Box::new(Arc::clone(&spans))));
//! // ... serve ...
//! spans.shutdown(); // flushes at exit
//! # Ok(()) }
//! ```
//!
//! Why not the SDK: a decision's span recorded through `tracing` and exported by the
//! OpenTelemetry SDK cost about 1.3x the CPU of an untraced request (BENCHMARKS.md
//! section 4): the `tracing` registry, `tracing-opentelemetry`'s span builder (each field
//! copied into a `String`), the SDK's span, then per batch a copy of every span into
//! `opentelemetry-proto`'s messages, grouped by scope through a hash map, then encoded.
//! Here the request's task copies the decision's facts (no allocation: the policy's name
//! and scopes are shared) into a bounded queue that no thread waits on (so no wake-up
//! per decision), and a thread of the exporter's own encodes each batch straight from
//! those facts into one OTLP request (prost's wire primitives, no message structs) and
//! posts it.
//!
//! Each decision is a span `ratelimit.decide` (kind internal) with the attributes of the
//! `tracing` span: `policy`, `scopes`, `store`, `key_hash`, `result`, `degraded`,
//! `latency_us`. Its parent is the caller's `traceparent` (with none, it starts a trace);
//! a trace the caller does not sample is not exported, as the SDK's default
//! (parent-based) sampler would not. A decision that finds the queue full, or whose batch
//! the collector refuses, is dropped and counted in
//! `ratelimit_decision_spans_dropped_total{reason}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use limiter_tower::metric_names::DECISION_SPANS_DROPPED_TOTAL;
use limiter_tower::{DecisionRecord, DecisionSink};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use super::TelemetryError;

/// Decisions waiting to be sent, by default: at 50,000 decisions a second, a few
/// intervals' worth.
pub const DEFAULT_QUEUE: usize = 32_768;
/// Spans per OTLP request, by default (as the SDK's batch processor).
pub const DEFAULT_BATCH: usize = 512;
/// How often the exporter's thread sends what is queued, by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);

/// Exports every decision it receives as a span, in batches, over OTLP/HTTP protobuf.
/// See the [module](self) documentation.
pub struct OtlpDecisions {
    queue: SyncSender<Finished>,
    worker: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
}

/// Configures an [`OtlpDecisions`] exporter.
#[derive(Debug, Clone)]
pub struct OtlpDecisionsBuilder {
    service_name: String,
    endpoint: String,
    queue: usize,
    batch: usize,
    interval: Duration,
}

/// One decision, owned, as queued.
struct Finished {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start_ns: u64,
    end_ns: u64,
    policy: Arc<str>,
    scopes: Arc<str>,
    store: &'static str,
    key_hash: u64,
    result: &'static str,
    degraded: bool,
    latency_us: i64,
}

impl OtlpDecisions {
    /// Starts configuring an exporter for service `service_name`, sending to
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` +
    /// `/v1/traces`, else `http://localhost:4318/v1/traces` (as the SDK's exporter).
    pub fn builder(service_name: &str) -> OtlpDecisionsBuilder {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .ok()
            .or_else(|| {
                std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .ok()
                    .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
            })
            .unwrap_or_else(|| "http://localhost:4318/v1/traces".to_owned());
        OtlpDecisionsBuilder {
            service_name: service_name.to_owned(),
            endpoint,
            queue: DEFAULT_QUEUE,
            batch: DEFAULT_BATCH,
            interval: DEFAULT_INTERVAL,
        }
    }

    /// Sends what is queued and stops the exporter's thread (waiting for it). Decisions
    /// recorded afterwards are dropped (`queue_full`). Also done on drop.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        let worker = self.worker.lock().map(|mut w| w.take()).unwrap_or_default();
        if let Some(worker) = worker {
            worker.thread().unpark();
            // A panic on the exporter's thread lost its batch; nothing more to do here.
            let _ = worker.join();
        }
    }
}

impl Drop for OtlpDecisions {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for OtlpDecisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpDecisions")
            .field("stopped", &self.stop.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl OtlpDecisionsBuilder {
    /// The collector's traces URL (default: see [`OtlpDecisions::builder`]).
    pub fn endpoint(mut self, url: &str) -> Self {
        self.endpoint = url.to_owned();
        self
    }

    /// The most decisions waiting to be sent (default [`DEFAULT_QUEUE`], at least 1).
    pub fn queue(mut self, decisions: usize) -> Self {
        self.queue = decisions.max(1);
        self
    }

    /// The most spans in one OTLP request (default [`DEFAULT_BATCH`], at least 1).
    pub fn batch(mut self, spans: usize) -> Self {
        self.batch = spans.max(1);
        self
    }

    /// How often queued decisions are sent (default [`DEFAULT_INTERVAL`]).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Starts the exporter's thread (`ratelimit-otlp`). Callable from async code: the
    /// blocking HTTP client (a runtime of its own) is made, used and dropped on that
    /// thread.
    pub fn build(self) -> Result<OtlpDecisions, TelemetryError> {
        let (queue, received) = mpsc::sync_channel(self.queue);
        let stop = Arc::new(AtomicBool::new(false));
        let (started, start) = mpsc::sync_channel(1);
        let (interval, stopping) = (self.interval, Arc::clone(&stop));
        let worker = std::thread::Builder::new()
            .name("ratelimit-otlp".into())
            .spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build();
                let client = match client {
                    Ok(client) => {
                        let _ = started.send(Ok(()));
                        client
                    }
                    Err(err) => {
                        let _ = started.send(Err(err));
                        return;
                    }
                };
                let sender = Sender {
                    client,
                    endpoint: self.endpoint,
                    head: Head::new(&self.service_name),
                    batch: self.batch,
                };
                sender.run(&received, interval, &stopping);
            })
            .map_err(TelemetryError::Thread)?;
        // The thread answers before anything else, or has ended (a panic) without.
        match start.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => {
                return Err(TelemetryError::Thread(std::io::Error::other(
                    "the exporter's thread ended while starting",
                )))
            }
        }
        Ok(OtlpDecisions {
            queue,
            worker: Mutex::new(Some(worker)),
            stop,
        })
    }
}

impl DecisionSink for OtlpDecisions {
    fn record(&self, decision: &DecisionRecord<'_>) {
        let (trace_id, parent) = match decision.parent {
            Some(parent) if !parent.sampled => return,
            Some(parent) => (parent.trace_id, Some(parent.span_id)),
            None => (fastrand::u128(1..).to_be_bytes(), None),
        };
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let end_ns = nanos(decision.end.duration_since(UNIX_EPOCH).unwrap_or_default());
        let finished = Finished {
            trace_id,
            span_id: fastrand::u64(1..).to_be_bytes(),
            parent,
            start_ns: end_ns.saturating_sub(nanos(decision.duration)),
            end_ns,
            policy: Arc::clone(decision.policy),
            scopes: Arc::clone(decision.scopes),
            store: decision.store,
            key_hash: decision.key_hash,
            result: decision.result,
            degraded: decision.degraded,
            latency_us: i64::try_from(decision.duration.as_micros()).unwrap_or(i64::MAX),
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(finished)
        {
            dropped("queue_full", 1);
        }
    }
}

fn dropped(reason: &'static str, spans: usize) {
    metrics::counter!(DECISION_SPANS_DROPPED_TOTAL, "reason" => reason).increment(spans as u64);
}

/// The exporter's thread: what it sends, where, and how.
struct Sender {
    client: reqwest::blocking::Client,
    endpoint: String,
    head: Head,
    batch: usize,
}

impl Sender {
    /// Every `interval` (or when stopped), sends what is queued, a batch per request.
    /// It sleeps rather than waiting on the queue: a receiver waiting on a channel is
    /// woken by every send, a system call per decision on the request's thread.
    fn run(self, queue: &Receiver<Finished>, interval: Duration, stop: &AtomicBool) {
        let mut spans = Vec::with_capacity(self.batch);
        let mut body = Vec::new();
        loop {
            let stopping = stop.load(Ordering::Acquire);
            loop {
                spans.clear();
                spans.extend(queue.try_iter().take(self.batch));
                if spans.is_empty() {
                    break;
                }
                self.send(&spans, &mut body);
            }
            if stopping {
                return;
            }
            std::thread::park_timeout(interval);
        }
    }

    fn send(&self, spans: &[Finished], body: &mut Vec<u8>) {
        body.clear();
        self.head.encode(spans, body);
        let sent = self
            .client
            .post(&self.endpoint)
            .header("content-type", "application/x-protobuf")
            .body(std::mem::take(body))
            .send();
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(status = %response.status(), spans = spans.len(), "decision spans refused by the collector");
                dropped("export_failed", spans.len());
            }
            Err(err) => {
                tracing::warn!(%err, spans = spans.len(), "decision spans not exported");
                dropped("export_failed", spans.len());
            }
        }
    }
}

/// The OTLP request around the spans, encoded once: the resource (`service.name`) and
/// the instrumentation scope (`limiter`).
struct Head {
    resource: Vec<u8>,
    scope: Vec<u8>,
}

/// Field numbers of the OTLP messages written here (opentelemetry-proto, trace/v1).
mod field {
    pub(super) const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub(super) const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub(super) const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub(super) const RESOURCE_ATTRIBUTES: u32 = 1;
    pub(super) const SCOPE_SPANS_SCOPE: u32 = 1;
    pub(super) const SCOPE_SPANS_SPANS: u32 = 2;
    pub(super) const SCOPE_NAME: u32 = 1;
    pub(super) const SCOPE_VERSION: u32 = 2;
    pub(super) const SPAN_TRACE_ID: u32 = 1;
    pub(super) const SPAN_SPAN_ID: u32 = 2;
    pub(super) const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub(super) const SPAN_NAME: u32 = 5;
    pub(super) const SPAN_KIND: u32 = 6;
    pub(super) const SPAN_START: u32 = 7;
    pub(super) const SPAN_END: u32 = 8;
    pub(super) const SPAN_ATTRIBUTES: u32 = 9;
    pub(super) const KEY_VALUE_KEY: u32 = 1;
    pub(super) const KEY_VALUE_VALUE: u32 = 2;
    pub(super) const ANY_STRING: u32 = 1;
    pub(super) const ANY_BOOL: u32 = 2;
    pub(super) const ANY_INT: u32 = 3;
    /// `SPAN_KIND_INTERNAL`.
    pub(super) const KIND_INTERNAL: u64 = 1;
}

impl Head {
    fn new(service_name: &str) -> Head {
        let mut resource = Vec::new();
        attribute(
            &mut resource,
            field::RESOURCE_ATTRIBUTES,
            "service.name",
            Any::Str(service_name),
        );
        let mut scope = Vec::new();
        bytes(&mut scope, field::SCOPE_NAME, b"limiter");
        bytes(
            &mut scope,
            field::SCOPE_VERSION,
            env!("CARGO_PKG_VERSION").as_bytes(),
        );
        Head { resource, scope }
    }

    /// `ExportTraceServiceRequest { resource_spans: [{ resource, scope_spans: [{ scope,
    /// spans }] }] }` into `out`.
    fn encode(&self, spans: &[Finished], out: &mut Vec<u8>) {
        let mut encoded = Vec::with_capacity(spans.len() * 256);
        let mut one = Vec::with_capacity(256);
        for span in spans {
            one.clear();
            span.encode(&mut one);
            bytes(&mut encoded, field::SCOPE_SPANS_SPANS, &one);
        }
        let scope_len = tagged_len(field::SCOPE_SPANS_SCOPE, self.scope.len());
        let scope_spans_len = scope_len + encoded.len();
        let resource_spans_len = tagged_len(field::RESOURCE_SPANS_RESOURCE, self.resource.len())
            + tagged_len(field::RESOURCE_SPANS_SCOPE_SPANS, scope_spans_len);
        out.reserve(tagged_len(
            field::REQUEST_RESOURCE_SPANS,
            resource_spans_len,
        ));
        header(out, field::REQUEST_RESOURCE_SPANS, resource_spans_len);
        bytes(out, field::RESOURCE_SPANS_RESOURCE, &self.resource);
        header(out, field::RESOURCE_SPANS_SCOPE_SPANS, scope_spans_len);
        bytes(out, field::SCOPE_SPANS_SCOPE, &self.scope);
        out.extend_from_slice(&encoded);
    }
}

impl Finished {
    /// The `Span` message's fields into `out`.
    fn encode(&self, out: &mut Vec<u8>) {
        bytes(out, field::SPAN_TRACE_ID, &self.trace_id);
        bytes(out, field::SPAN_SPAN_ID, &self.span_id);
        if let Some(parent) = &self.parent {
            bytes(out, field::SPAN_PARENT_SPAN_ID, parent);
        }
        bytes(out, field::SPAN_NAME, b"ratelimit.decide");
        encode_key(field::SPAN_KIND, WireType::Varint, out);
        encode_varint(field::KIND_INTERNAL, out);
        fixed64(out, field::SPAN_START, self.start_ns);
        fixed64(out, field::SPAN_END, self.end_ns);
        let mut hash = [0u8; 16];
        let hash = hex16(&mut hash, self.key_hash);
        let attributes = [
            ("policy", Any::Str(&self.policy)),
            ("scopes", Any::Str(&self.scopes)),
            ("store", Any::Str(self.store)),
            ("key_hash", Any::Str(hash)),
            ("result", Any::Str(self.result)),
            ("degraded", Any::Bool(self.degraded)),
            ("latency_us", Any::Int(self.latency_us)),
        ];
        for (key, value) in attributes {
            attribute(out, field::SPAN_ATTRIBUTES, key, value);
        }
    }
}

/// An attribute's value (`AnyValue`).
#[derive(Clone, Copy)]
enum Any<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
}

impl Any<'_> {
    fn len(self) -> usize {
        match self {
            Any::Str(s) => tagged_len(field::ANY_STRING, s.len()),
            Any::Bool(_) => 2,
            // int64 is a varint of the two's complement, as u64.
            Any::Int(i) => 1 + encoded_len_varint(i as u64),
        }
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Any::Str(s) => bytes(out, field::ANY_STRING, s.as_bytes()),
            Any::Bool(b) => {
                encode_key(field::ANY_BOOL, WireType::Varint, out);
                encode_varint(u64::from(b), out);
            }
            Any::Int(i) => {
                encode_key(field::ANY_INT, WireType::Varint, out);
                encode_varint(i as u64, out);
            }
        }
    }
}

/// A `KeyValue` as field `tag`.
fn attribute(out: &mut Vec<u8>, tag: u32, key: &str, value: Any<'_>) {
    let len = tagged_len(field::KEY_VALUE_KEY, key.len())
        + tagged_len(field::KEY_VALUE_VALUE, value.len());
    header(out, tag, len);
    bytes(out, field::KEY_VALUE_KEY, key.as_bytes());
    header(out, field::KEY_VALUE_VALUE, value.len());
    value.encode(out);
}

/// The length of a length-delimited field `tag` of `len` bytes, its key and length
/// included.
fn tagged_len(tag: u32, len: usize) -> usize {
    encoded_len_varint(u64::from(tag << 3)) + encoded_len_varint(len as u64) + len
}

/// The key and length of a length-delimited field `tag` of `len` bytes.
fn header(out: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn bytes(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    header(out, tag, value.len());
    out.extend_from_slice(value);
}

fn fixed64(out: &mut Vec<u8>, tag: u32, value: u64) {
    encode_key(tag, WireType::SixtyFourBit, out);
    out.extend_from_slice(&value.to_le_bytes());
}

/// `value` as 16 lowercase hex digits (the `tracing` span's `key_hash`).
fn hex16(buf: &mut [u8; 16], value: u64) -> &str {
    // Cannot fail: 8 bytes fill 16 digits.
    let _ = hex::encode_to_slice(value.to_be_bytes(), buf);
    std::str::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;

    use super::*;

    #[test]
    fn a_batch_decodes_as_the_otlp_request_it_stands_for() {
        let span = |parent| Finished {
            trace_id: [7; 16],
            span_id: [9; 8],
            parent,
            start_ns: 1_000,
            end_ns: 3_000,
            policy: Arc::from("search"),
            scopes: Arc::from("user,endpoint"),
            store: "redis",
            key_hash: 0x0123_4567_89ab_cdef,
            result: "denied",
            degraded: true,
            latency_us: -1,
        };
        let mut body = Vec::new();
        Head::new("svc").encode(&[span(Some([5; 8])), span(None)], &mut body);
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let [resource] = request.resource_spans.as_slice() else {
            panic!("one resource: {request:?}");
        };
        let service = &resource.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let [scope] = resource.scope_spans.as_slice() else {
            panic!("one scope");
        };
        assert_eq!(scope.scope.as_ref().unwrap().name, "limiter");
        let [with_parent, root] = scope.spans.as_slice() else {
            panic!("two spans: {scope:?}");
        };
        assert_eq!(with_parent.parent_span_id, vec![5; 8]);
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.trace_id, vec![7; 16]);
        assert_eq!(root.span_id, vec![9; 8]);
        assert_eq!(root.name, "ratelimit.decide");
        assert_eq!(root.kind, 1);
        assert_eq!(
            (root.start_time_unix_nano, root.end_time_unix_nano),
            (1_000, 3_000)
        );
        let attribute = |key: &str| {
            root.attributes
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| a.value.clone()?.value)
                .unwrap_or_else(|| panic!("no {key}"))
        };
        assert_eq!(attribute("policy"), Value::StringValue("search".into()));
        assert_eq!(
            attribute("scopes"),
            Value::StringValue("user,endpoint".into())
        );
        assert_eq!(attribute("store"), Value::StringValue("redis".into()));
        assert_eq!(
            attribute("key_hash"),
            Value::StringValue("0123456789abcdef".into())
        );
        assert_eq!(attribute("result"), Value::StringValue("denied".into()));
        assert_eq!(attribute("degraded"), Value::BoolValue(true));
        assert_eq!(attribute("latency_us"), Value::IntValue(-1));
    }
}
