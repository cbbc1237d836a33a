//! The process's log subscriber: human-readable text or one JSON object per line, with
//! `RUST_LOG` filtering (default `info`).

use std::str::FromStr;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::{TelemetryError, UnknownLogFormat};

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
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.to_owned())),
        }
    }
}

/// Installs the global subscriber: logs in `format`, plus `extra` (e.g. the OpenTelemetry
/// layer of [`otel`](crate::telemetry::otel)). Fails when one is already installed.
///
/// ```
/// use limiter::telemetry::{init_logs, LogFormat, TelemetryError};
/// use tracing_subscriber::layer::Identity;
///
/// init_logs(LogFormat::Json, Identity::new()).unwrap();
/// let again = init_logs(LogFormat::Text, Identity::new());
/// assert!(matches!(again, Err(TelemetryError::SubscriberInstalled(_))));
/// ```
pub fn init_logs<L>(format: LogFormat, extra: L) -> Result<(), TelemetryError>
where
    L: Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(extra)
        .with(log_layer(format, std::io::stdout).with_filter(filter))
        .try_init()
        .map_err(TelemetryError::from)
}

/// The log lines in `format`, written to `writer`.
fn log_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer, to read back what the layer wrote.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_logs_are_one_object_per_line_with_their_spans() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber =
            tracing_subscriber::registry().with(log_layer(LogFormat::Json, move || sink.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("ratelimit.decide", policy = "search");
            let _entered = span.enter();
            tracing::warn!(kind = "timeout", "rate-limit store call failed");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["kind"], "timeout");
        assert_eq!(line["fields"]["message"], "rate-limit store call failed");
        assert_eq!(line["span"]["name"], "ratelimit.decide");
        assert_eq!(line["span"]["policy"], "search");
    }

    #[test]
    fn log_formats_parse_and_reject_unknown_names() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!(
            "xml".parse::<LogFormat>(),
            Err(UnknownLogFormat("xml".into()))
        );
    }
}
