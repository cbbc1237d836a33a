//! How the store is guarded: the failure mode (`failure_mode`) and the circuit breaker
//! (`breaker`) sections of the policy file, and [`StoreSetup`], everything
//! [`AnyStore::connect`](crate::AnyStore::connect) needs.

use std::borrow::Cow;
use std::time::Duration;

use limiter_core::BreakerConfig;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

use super::model::{Seconds, StoreConfig};

/// What decides while the store is unavailable, slower than its `timeout`, or behind an
/// open circuit breaker. Written `open`, `closed` (`allow` and `deny` are accepted as
/// their older names) or `{ mode: local, share: 0.34 }`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum FailureMode {
    /// Admit every request (fail open), with `RateLimit-Degraded: true`.
    #[default]
    Open,
    /// Refuse every request with 429 and `Retry-After` (fail closed).
    Closed,
    /// An in-memory limiter stands in, this instance enforcing `share` of every limit
    /// (0 < share <= 1; e.g. 0.34 with three instances). Best effort: counts start at
    /// zero and unevenly spread traffic is limited unevenly.
    Local {
        /// This instance's share of each limit.
        share: f64,
    },
}

impl FailureMode {
    /// The core's failure mode.
    pub fn to_core(self) -> limiter_core::FailureMode {
        match self {
            FailureMode::Open => limiter_core::FailureMode::Open,
            FailureMode::Closed => limiter_core::FailureMode::Closed,
            FailureMode::Local { share } => limiter_core::FailureMode::Local { share },
        }
    }

    fn parse(mode: &str, share: Option<f64>) -> Result<Self, String> {
        match (mode, share) {
            ("open" | "allow", None) => Ok(FailureMode::Open),
            ("closed" | "deny", None) => Ok(FailureMode::Closed),
            ("local", Some(share)) if share > 0.0 && share <= 1.0 => {
                Ok(FailureMode::Local { share })
            }
            ("local", Some(share)) => Err(format!(
                "local share {share} must be above 0 and at most 1"
            )),
            ("local", None) => Err(
                "`local` needs this instance's share of each limit: { mode: local, share: 0.34 }"
                    .into(),
            ),
            ("open" | "allow" | "closed" | "deny", Some(_)) => {
                Err("`share` applies to `local` only".into())
            }
            (other, _) => Err(format!(
                "unknown failure mode {other:?}: expected open, closed or {{ mode: local, share: ... }} (allow and deny mean open and closed)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for FailureMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            mode: String,
            #[serde(default)]
            share: Option<f64>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Full(Full),
        }
        let (mode, share) = match Raw::deserialize(deserializer)? {
            Raw::Name(mode) => (mode, None),
            Raw::Full(full) => (full.mode, full.share),
        };
        FailureMode::parse(&mode, share).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for FailureMode {
    fn schema_name() -> Cow<'static, str> {
        "FailureMode".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "What decides while the store is unavailable: `open` (admit), `closed` (429 with Retry-After), or `{ mode: local, share: 0.34 }` (an in-memory limiter enforcing this share of every limit). `allow`/`deny` mean open/closed.",
            "oneOf": [
                { "type": "string", "enum": ["open", "closed", "allow", "deny"] },
                {
                    "type": "object",
                    "properties": {
                        "mode": { "type": "string", "enum": ["open", "closed", "local", "allow", "deny"] },
                        "share": { "type": "number", "exclusiveMinimum": 0, "maximum": 1 }
                    },
                    "required": ["mode"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// The circuit breaker in front of a Redis store: it opens after `failures` failed or
/// `slow_calls` slow calls within `window`; while open no call reaches Redis and the
/// failure mode decides; a health check every `probe_interval` half-opens it, and the
/// next successful call closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    /// Failed calls (errors, or no answer within the store's `timeout`) that open it.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// Successful calls slower than `slow_call` that open it.
    #[serde(default = "default_slow_calls")]
    pub slow_calls: u32,
    /// A call slower than this counts as slow. At or above the store's `timeout` it
    /// never counts: such calls are failures.
    #[serde(default = "default_slow_call")]
    pub slow_call: Seconds,
    /// The window over which failures and slow calls are counted.
    #[serde(default = "default_window")]
    pub window: Seconds,
    /// How often an open breaker checks whether Redis answers again.
    #[serde(default = "default_probe_interval")]
    pub probe_interval: Seconds,
}

impl Default for BreakerSection {
    fn default() -> Self {
        BreakerSection {
            failures: default_failures(),
            slow_calls: default_slow_calls(),
            slow_call: default_slow_call(),
            window: default_window(),
            probe_interval: default_probe_interval(),
        }
    }
}

impl BreakerSection {
    /// The core's breaker configuration.
    pub fn to_core(self) -> BreakerConfig {
        BreakerConfig {
            failures: self.failures,
            slow_calls: self.slow_calls,
            slow_call: self.slow_call.0,
            window: self.window.0,
            probe_interval: self.probe_interval.0,
        }
    }
}

fn default_failures() -> u32 {
    BreakerConfig::default().failures
}

fn default_slow_calls() -> u32 {
    BreakerConfig::default().slow_calls
}

/// Half the default store timeout, so that the slow-call rule can fire at all.
fn default_slow_call() -> Seconds {
    Seconds(Duration::from_millis(10))
}

fn default_window() -> Seconds {
    Seconds(BreakerConfig::default().window)
}

fn default_probe_interval() -> Seconds {
    Seconds(BreakerConfig::default().probe_interval)
}

/// The store and how it is guarded: read at start-up by
/// [`AnyStore::connect`](crate::AnyStore::connect); a reload cannot change it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSetup {
    /// The store (`${VAR}` references expanded).
    pub store: StoreConfig,
    /// What decides when it fails.
    pub failure_mode: limiter_core::FailureMode,
    /// The circuit breaker (Redis stores only).
    pub breaker: BreakerConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_shares() {
        assert_eq!(FailureMode::parse("allow", None), Ok(FailureMode::Open));
        assert_eq!(FailureMode::parse("deny", None), Ok(FailureMode::Closed));
        assert_eq!(
            FailureMode::parse("local", Some(0.5)),
            Ok(FailureMode::Local { share: 0.5 })
        );
        for (mode, share) in [
            ("local", None),
            ("local", Some(0.0)),
            ("local", Some(1.5)),
            ("local", Some(f64::NAN)),
            ("open", Some(0.5)),
            ("maybe", None),
        ] {
            assert!(FailureMode::parse(mode, share).is_err(), "{mode} {share:?}");
        }
    }
}
