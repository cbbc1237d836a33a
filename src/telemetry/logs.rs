//! The process's log subscriber: human-readable text or one JSON object per line, with
//! `RUST_LOG` filtering (default `info`).

use std::str::FromStr;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2025-01-01T00:00:00Z  INFO demo listening addr=...`
    #[default]
    Text,
    /// `{"timestamp":"...","level":"INFO","fields":{...},"target":"...","spans":[...]}`
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?}: expected text or json")),
        }
    }
}

/// Installs the global subscriber: logs in `format`, plus `extra` (e.g. the OpenTelemetry
/// layer of [`otel`](crate::telemetry::otel)). Fails when one is already installed.
pub fn init_logs<L>(format: LogFormat, extra: L) -> Result<(), String>
where
    L: Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(extra)
        .with(fmt.with_filter(filter))
        .try_init()
        .map_err(|e| e.to_string())
}
