//! The `client_timestamp` section: refusing requests whose own timestamp is too far
//! from this process's clock.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use limiter_core::config_serde::{no_default, DurationText};

/// Refuses (400) requests whose timestamp header (e.g. of a signed request) is malformed
/// or further from this process's clock than `max_skew`. Rate-limit windows never read a
/// client's time, with or without this section.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientTimestampConfig {
    /// The header holding the time the request was made: Unix seconds (`1700000000`),
    /// RFC 3339 (`2023-11-14T22:13:20Z`) or an HTTP-date (`Tue, 14 Nov 2023 22:13:20 GMT`).
    pub header: String,
    /// How far from this process's clock the timestamp may be, past or future (default 5s).
    #[serde(
        default = "default_max_skew",
        deserialize_with = "limiter_core::config_serde::duration"
    )]
    #[schemars(with = "DurationText", transform = no_default)]
    pub max_skew: Duration,
    /// Whether a request without the header is refused (default false: it passes
    /// unchecked).
    #[serde(default)]
    pub required: bool,
}

fn default_max_skew() -> Duration {
    crate::client_timestamp::DEFAULT_MAX_SKEW
}
