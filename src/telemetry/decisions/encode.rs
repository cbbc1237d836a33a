//! The OTLP/protobuf encoding of a batch of decisions: an `ExportTraceServiceRequest`
//! written straight from the queued facts, with the parts spans share encoded once.
//!
//! Why by hand: protobuf's wire format needs only varints, fixed 64-bit integers and
//! length-prefixed bytes, and the messages here are a handful of fields. The generated
//! messages (`opentelemetry-proto`) would mean a struct, seven attribute structs and their
//! strings allocated per span; prost's own `encode_varint` writes byte by byte through
//! `BufMut` without being inlined, about 1,000 instructions a span here (callgrind), as
//! much as the rest of the encoding. The tests decode the output with
//! `opentelemetry-proto`.

use std::collections::HashMap;

use foldhash::fast::FixedState;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::Finished;

/// Field numbers and wire types of the OTLP messages written here (opentelemetry-proto,
/// `collector/trace/v1` and `trace/v1`).
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
    pub(super) const VARINT: u32 = 0;
    pub(super) const FIXED64: u32 = 1;
    pub(super) const BYTES: u32 = 2;
}

/// The attributes every decision of one kind shares (policy, scopes, store, result,
/// degraded), encoded once per kind; then the two that vary.
const SHARED_ATTRIBUTES: [&str; 5] = ["policy", "scopes", "store", "result", "degraded"];
const KEY_HASH: &str = "key_hash";
const LATENCY_US: &str = "latency_us";

/// Kinds of decision whose shared attributes are kept encoded: beyond it the cache
/// starts again (policies times scopes times results: a few dozen in practice).
const MAX_KINDS: usize = 1_024;

/// Encodes batches of decisions for one exporter: what every request and span share is
/// encoded once (the resource, `service.name`; the instrumentation scope, `limiter`; a
/// span's name and kind; the shared attributes of each kind of decision), and it draws
/// the ids of the spans (and of the traces they start).
pub(super) struct Encoder {
    resource: Vec<u8>,
    scope: Vec<u8>,
    name_and_kind: Vec<u8>,
    key_hash: Vec<u8>,
    latency_us: Vec<u8>,
    /// The shared attributes of each kind of decision, encoded.
    kinds: HashMap<Kind, Encoded, FixedState>,
    ids: fastrand::Rng,
}

/// A kind of decision, for [`Encoder::kinds`]: where its policy's name, scopes, store
/// and result are (the names are held in [`Encoded`], so their addresses are not reused
/// while they are keys), and whether it was degraded. Addresses, not text: hashing a
/// few words per span, not its strings.
#[derive(PartialEq, Eq, Hash)]
struct Kind {
    policy: usize,
    scopes: usize,
    store: usize,
    result: usize,
    degraded: bool,
}

/// A kind's shared attributes, encoded, and the names its key points at.
struct Encoded {
    attributes: Vec<u8>,
    _names: (Arc<str>, Arc<str>),
}

/// An attribute's value (`AnyValue`).
#[derive(Clone, Copy)]
enum Any<'a> {
    Str(&'a [u8]),
    Bool(bool),
    Int(i64),
}

impl Encoder {
    pub(super) fn new(service_name: &str) -> Encoder {
        let mut resource = Vec::new();
        attribute(
            &mut resource,
            field::RESOURCE_ATTRIBUTES,
            &key_field("service.name"),
            Any::Str(service_name.as_bytes()),
        );
        let mut scope = Vec::new();
        bytes(&mut scope, field::SCOPE_NAME, b"limiter");
        bytes(
            &mut scope,
            field::SCOPE_VERSION,
            env!("CARGO_PKG_VERSION").as_bytes(),
        );
        let mut name_and_kind = Vec::new();
        bytes(&mut name_and_kind, field::SPAN_NAME, b"ratelimit.decide");
        key(&mut name_and_kind, field::SPAN_KIND, field::VARINT);
        varint(&mut name_and_kind, field::KIND_INTERNAL);
        Encoder {
            resource,
            scope,
            name_and_kind,
            key_hash: key_field(KEY_HASH),
            latency_us: key_field(LATENCY_US),
            kinds: HashMap::default(),
            ids: fastrand::Rng::new(),
        }
    }

    /// `ExportTraceServiceRequest { resource_spans: [{ resource, scope_spans: [{ scope,
    /// spans }] }] }` into `out`; `scratch` holds the spans meanwhile.
    pub(super) fn encode(&mut self, spans: &[Finished], scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
        scratch.clear();
        for span in spans {
            self.span(span, scratch);
        }
        let scope_spans_len =
            tagged_len(field::SCOPE_SPANS_SCOPE, self.scope.len()) + scratch.len();
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
        out.extend_from_slice(scratch);
    }

    /// One `Span` as a field of `ScopeSpans` into `out`.
    fn span(&mut self, span: &Finished, out: &mut Vec<u8>) {
        let (trace_id, parent) = match span.parent {
            Some(parent) => (parent.trace_id, Some(parent.span_id)),
            None => (self.ids.u128(..).max(1).to_be_bytes(), None),
        };
        let span_id = self.ids.u64(..).max(1).to_be_bytes();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let end = nanos(span.end.duration_since(UNIX_EPOCH).unwrap_or_default());
        let start = end.saturating_sub(nanos(span.duration));
        let latency = i64::try_from(span.duration.as_micros()).unwrap_or(i64::MAX);
        let mut hash = [0u8; 16];
        // Cannot fail: 8 bytes fill 16 digits.
        let _ = hex::encode_to_slice(span.key_hash.to_be_bytes(), &mut hash);
        let shared = shared_attributes(&mut self.kinds, span);
        let hash_len = key_value_len(&self.key_hash, Any::Str(&hash));
        let latency_len = key_value_len(&self.latency_us, Any::Int(latency));
        let mut len = tagged_len(field::SPAN_TRACE_ID, 16)
            + tagged_len(field::SPAN_SPAN_ID, 8)
            + self.name_and_kind.len()
            + 2 * 9
            + shared.len()
            + tagged_len(field::SPAN_ATTRIBUTES, hash_len)
            + tagged_len(field::SPAN_ATTRIBUTES, latency_len);
        if parent.is_some() {
            len += tagged_len(field::SPAN_PARENT_SPAN_ID, 8);
        }
        out.reserve(len + 3);
        header(out, field::SCOPE_SPANS_SPANS, len);
        bytes(out, field::SPAN_TRACE_ID, &trace_id);
        bytes(out, field::SPAN_SPAN_ID, &span_id);
        if let Some(parent) = &parent {
            bytes(out, field::SPAN_PARENT_SPAN_ID, parent);
        }
        out.extend_from_slice(&self.name_and_kind);
        fixed64(out, field::SPAN_START, start);
        fixed64(out, field::SPAN_END, end);
        out.extend_from_slice(shared);
        attribute(out, field::SPAN_ATTRIBUTES, &self.key_hash, Any::Str(&hash));
        attribute(
            out,
            field::SPAN_ATTRIBUTES,
            &self.latency_us,
            Any::Int(latency),
        );
    }
}

/// The encoded shared attributes of `span`'s kind, encoded now if new.
fn shared_attributes<'a>(
    kinds: &'a mut HashMap<Kind, Encoded, FixedState>,
    span: &Finished,
) -> &'a [u8] {
    let kind = Kind {
        policy: Arc::as_ptr(&span.policy).cast::<u8>() as usize,
        scopes: Arc::as_ptr(&span.scopes).cast::<u8>() as usize,
        store: span.store.as_ptr() as usize,
        result: span.result.as_ptr() as usize,
        degraded: span.degraded,
    };
    if kinds.len() >= MAX_KINDS && !kinds.contains_key(&kind) {
        kinds.clear();
    }
    let encoded = kinds.entry(kind).or_insert_with(|| {
        let values = [
            Any::Str(span.policy.as_bytes()),
            Any::Str(span.scopes.as_bytes()),
            Any::Str(span.store.as_bytes()),
            Any::Str(span.result.as_bytes()),
            Any::Bool(span.degraded),
        ];
        let mut encoded = Vec::new();
        for (name, value) in SHARED_ATTRIBUTES.iter().zip(values) {
            attribute(
                &mut encoded,
                field::SPAN_ATTRIBUTES,
                &key_field(name),
                value,
            );
        }
        Encoded {
            attributes: encoded,
            _names: (Arc::clone(&span.policy), Arc::clone(&span.scopes)),
        }
    });
    &encoded.attributes
}

/// A `KeyValue`'s key field.
fn key_field(name: &str) -> Vec<u8> {
    let mut encoded = Vec::new();
    bytes(&mut encoded, field::KEY_VALUE_KEY, name.as_bytes());
    encoded
}

impl Any<'_> {
    fn len(self) -> usize {
        match self {
            Any::Str(s) => tagged_len(field::ANY_STRING, s.len()),
            Any::Bool(_) => 2,
            // int64 is the varint of its two's complement.
            Any::Int(i) => 1 + varint_len(i as u64),
        }
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Any::Str(s) => bytes(out, field::ANY_STRING, s),
            Any::Bool(b) => {
                key(out, field::ANY_BOOL, field::VARINT);
                out.push(u8::from(b));
            }
            Any::Int(i) => {
                key(out, field::ANY_INT, field::VARINT);
                varint(out, i as u64);
            }
        }
    }
}

fn key_value_len(key: &[u8], value: Any<'_>) -> usize {
    key.len() + tagged_len(field::KEY_VALUE_VALUE, value.len())
}

/// A `KeyValue` as field `tag`, its key field `key` already encoded.
fn attribute(out: &mut Vec<u8>, tag: u32, key: &[u8], value: Any<'_>) {
    header(out, tag, key_value_len(key, value));
    out.extend_from_slice(key);
    header(out, field::KEY_VALUE_VALUE, value.len());
    value.encode(out);
}

/// The length of a length-delimited field `tag` of `len` bytes, its key and length
/// included.
fn tagged_len(tag: u32, len: usize) -> usize {
    varint_len(u64::from(tag << 3)) + varint_len(len as u64) + len
}

fn key(out: &mut Vec<u8>, tag: u32, wire_type: u32) {
    varint(out, u64::from(tag << 3 | wire_type));
}

/// The key and length of a length-delimited field `tag` of `len` bytes.
fn header(out: &mut Vec<u8>, tag: u32, len: usize) {
    key(out, tag, field::BYTES);
    varint(out, len as u64);
}

fn bytes(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    header(out, tag, value.len());
    out.extend_from_slice(value);
}

fn fixed64(out: &mut Vec<u8>, tag: u32, value: u64) {
    key(out, tag, field::FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

#[inline]
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;

    use limiter_tower::TraceParent;

    use super::*;

    #[test]
    fn varints_take_the_bytes_protobuf_gives_them() {
        for (value, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            let mut out = Vec::new();
            varint(&mut out, value);
            assert_eq!((out.len(), varint_len(value)), (len, len), "{value}");
            let decoded = prost::encoding::decode_varint(&mut out.as_slice()).unwrap();
            assert_eq!(decoded, value);
        }
    }

    #[test]
    fn a_batch_decodes_as_the_otlp_request_it_stands_for() {
        let (policy, scopes) = (
            Arc::<str>::from("search"),
            Arc::<str>::from("user,endpoint"),
        );
        let span = |parent, duration| Finished {
            parent,
            end: UNIX_EPOCH + Duration::from_nanos(3_000),
            duration,
            policy: Arc::clone(&policy),
            scopes: Arc::clone(&scopes),
            store: "redis",
            key_hash: 0x0123_4567_89ab_cdef,
            result: "denied",
            degraded: true,
        };
        let caller = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let (mut scratch, mut body) = (Vec::new(), Vec::new());
        let spans = [
            span(caller, Duration::from_nanos(2_000)),
            span(None, Duration::from_secs(1 << 20)),
        ];
        Encoder::new("svc").encode(&spans, &mut scratch, &mut body);
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let [resource] = request.resource_spans.as_slice() else {
            panic!("one resource: {request:?}");
        };
        let service = &resource.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        assert_eq!(
            service.value.clone().unwrap().value,
            Some(Value::StringValue("svc".into()))
        );
        let [scope] = resource.scope_spans.as_slice() else {
            panic!("one scope");
        };
        assert_eq!(scope.scope.as_ref().unwrap().name, "limiter");
        let [joined, root] = scope.spans.as_slice() else {
            panic!("two spans: {scope:?}");
        };
        assert_eq!(
            hex::encode(&joined.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(hex::encode(&joined.parent_span_id), "00f067aa0ba902b7");
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.trace_id.len(), 16);
        assert_ne!(root.trace_id, joined.trace_id);
        assert_eq!(root.span_id.len(), 8);
        assert_ne!(root.span_id, joined.span_id);
        assert_eq!(joined.name, "ratelimit.decide");
        assert_eq!(joined.kind, 1);
        assert_eq!(
            (joined.start_time_unix_nano, joined.end_time_unix_nano),
            (1_000, 3_000)
        );
        assert_eq!(root.start_time_unix_nano, 0, "a start before 1970 is 1970");
        let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
            span.attributes
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| a.value.clone()?.value)
                .unwrap_or_else(|| panic!("no {key}"))
        };
        let string = |s: &str| Value::StringValue(s.into());
        for span in [joined, root] {
            assert_eq!(span.attributes.len(), 7);
            assert_eq!(attribute(span, "policy"), string("search"));
            assert_eq!(attribute(span, "scopes"), string("user,endpoint"));
            assert_eq!(attribute(span, "store"), string("redis"));
            assert_eq!(attribute(span, "key_hash"), string("0123456789abcdef"));
            assert_eq!(attribute(span, "result"), string("denied"));
            assert_eq!(attribute(span, "degraded"), Value::BoolValue(true));
        }
        assert_eq!(attribute(joined, "latency_us"), Value::IntValue(2));
        assert_eq!(
            attribute(root, "latency_us"),
            Value::IntValue((1 << 20) * 1_000_000)
        );
    }
}
