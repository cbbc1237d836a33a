//! Why telemetry could not be set up.

/// A log format name other than `text` or `json`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("log format {0:?}: expected text or json")]
pub struct UnknownLogFormat(pub String);

/// Setting up logs or traces failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A global `tracing` subscriber was already installed (by this process or a library).
    #[error("logs: a global subscriber is already installed: {0}")]
    SubscriberInstalled(#[from] tracing_subscriber::util::TryInitError),
    /// The OTLP span exporter could not be built (its environment variables name an
    /// unusable endpoint or protocol).
    #[cfg(feature = "otel")]
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The decision exporter's HTTP client could not be built (no TLS backend, ...).
    #[cfg(feature = "otel")]
    #[error("OTLP decision exporter: HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The decision exporter's collector URL is not a URL.
    #[cfg(feature = "otel")]
    #[error("OTLP decision exporter: endpoint {url:?}: {source}")]
    Endpoint {
        /// The URL as given.
        url: String,
        /// Why it is not one.
        source: url::ParseError,
    },
    /// The decision exporter's thread could not be started.
    #[cfg(feature = "otel")]
    #[error("OTLP decision exporter: thread: {0}")]
    Thread(#[source] std::io::Error),
}
