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
//! those facts into one OTLP request (see `encode.rs`: no message structs) and posts
//! it.
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
use std::time::{Duration, SystemTime};

use limiter_tower::{DecisionRecord, DecisionSink, TraceParent};

use self::encode::Encoder;
use super::TelemetryError;

mod encode;

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

/// One decision, owned, as queued: as it was recorded, the ids and the time's encoding
/// left to the exporter's thread.
struct Finished {
    /// The caller's span, sampled; `None`: a trace of its own.
    parent: Option<TraceParent>,
    end: SystemTime,
    duration: Duration,
    policy: Arc<str>,
    scopes: Arc<str>,
    store: &'static str,
    key_hash: u64,
    result: &'static str,
    degraded: bool,
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
        let endpoint =
            reqwest::Url::parse(&self.endpoint).map_err(|source| TelemetryError::Endpoint {
                url: self.endpoint.clone(),
                source,
            })?;
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
                    endpoint,
                    encoder: Encoder::new(&self.service_name),
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
    /// Copies the facts into the queue; ids, times and the encoding are the exporter's
    /// thread's work.
    fn record(&self, decision: &DecisionRecord<'_>) {
        if decision.parent.is_some_and(|parent| !parent.sampled) {
            return;
        }
        let finished = Finished {
            parent: decision.parent,
            end: decision.end,
            duration: decision.duration,
            policy: Arc::clone(decision.policy),
            scopes: Arc::clone(decision.scopes),
            store: decision.store,
            key_hash: decision.key_hash,
            result: decision.result,
            degraded: decision.degraded,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(finished)
        {
            dropped("queue_full", 1);
        }
    }
}

fn dropped(reason: &'static str, spans: usize) {
    metrics::counter!(limiter_tower::metric_names::DECISION_SPANS_DROPPED_TOTAL, "reason" => reason)
        .increment(spans as u64);
}

/// The exporter's thread: what it sends, where, and how.
struct Sender {
    client: reqwest::blocking::Client,
    endpoint: reqwest::Url,
    encoder: Encoder,
    batch: usize,
}

impl Sender {
    /// Every `interval` (or when stopped), sends what is queued, a batch per request.
    /// It sleeps rather than waiting on the queue: a receiver waiting on a channel is
    /// woken by every send, a system call per decision on the request's thread.
    fn run(mut self, queue: &Receiver<Finished>, interval: Duration, stop: &AtomicBool) {
        let mut spans = Vec::with_capacity(self.batch);
        let (mut scratch, mut body) = (Vec::new(), Vec::new());
        loop {
            let stopping = stop.load(Ordering::Acquire);
            loop {
                spans.clear();
                spans.extend(queue.try_iter().take(self.batch));
                if spans.is_empty() {
                    break;
                }
                self.send(&spans, &mut scratch, &mut body);
            }
            if stopping {
                return;
            }
            std::thread::park_timeout(interval);
        }
    }

    fn send(&mut self, spans: &[Finished], scratch: &mut Vec<u8>, body: &mut Vec<u8>) {
        body.clear();
        self.encoder.encode(spans, scratch, body);
        let sent = self
            .client
            .post(self.endpoint.clone())
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
