//! Observability for the demo and for applications: Prometheus metrics with a `/metrics`
//! route, logs as text or JSON, and (feature `otel`) OpenTelemetry traces over OTLP that
//! continue the caller's W3C `traceparent`.

#[cfg(feature = "otel")]
pub mod decisions;
mod error;
mod logs;
mod metrics;
#[cfg(feature = "otel")]
pub mod otel;

pub use self::error::{TelemetryError, UnknownLogFormat};
pub use self::logs::{init_logs, LogFormat};
pub use self::metrics::{
    install_prometheus, metrics_router, LATENCY_BUCKETS, METRIC_NAMES, UPKEEP_INTERVAL,
    UPKEEP_THREAD,
};
