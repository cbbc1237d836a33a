//! Reading the core's configuration types from files (the `serde` feature): how a
//! [`FailureMode`], a [`BreakerConfig`], a [`Period`](crate::Period) and durations are
//! written, and their JSON Schema. Durations are text (`90s`, `250ms`, `1h 30m`, `20us`)
//! or whole seconds.

use std::borrow::Cow;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

use crate::store::FailureMode;

/// Reads a duration written as text (`90s`, `15m`, `1h 30m`, `1d`, `250ms`, `20us`) or
/// as whole seconds: for `#[serde(deserialize_with = "...")]`.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Secs(secs) => Ok(Duration::from_secs(secs)),
        Raw::Text(text) => humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}"))),
    }
}

/// [`duration`], optional: for `Option<Duration>` fields (with `#[serde(default)]`).
pub fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// The JSON Schema of a duration as [`duration`] reads it: `#[schemars(with =
/// "DurationText")]`.
pub struct DurationText;

impl JsonSchema for DurationText {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: `90s`, `15m`, `1h 30m`, `1d`, `250ms`, `20us`, or whole seconds.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]" }
            ]
        })
    }
}

/// Drops the `default` a schema would show for a duration: serde would render it as
/// `{secs, nanos}`, which is not how a file writes it (`#[schemars(transform = ...)]`).
pub fn no_default(schema: &mut Schema) {
    schema.remove("default");
}

/// Written `open`, `closed` (`allow` and `deny` are accepted as their older names) or
/// `{ mode: local, share: 0.34 }`; the share is checked as [`FailureMode::validate`]
/// checks it.
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
        parse_failure_mode(&mode, share).map_err(serde::de::Error::custom)
    }
}

fn parse_failure_mode(mode: &str, share: Option<f64>) -> Result<FailureMode, String> {
    let parsed = match (mode, share) {
        ("open" | "allow", None) => FailureMode::Open,
        ("closed" | "deny", None) => FailureMode::Closed,
        ("local", Some(share)) => FailureMode::Local { share },
        ("local", None) => {
            return Err(
                "`local` needs this instance's share of each limit: { mode: local, share: 0.34 }"
                    .into(),
            )
        }
        ("open" | "allow" | "closed" | "deny", Some(_)) => {
            return Err("`share` applies to `local` only".into())
        }
        (other, _) => {
            return Err(format!(
                "unknown failure mode {other:?}: expected open, closed or {{ mode: local, share: ... }} (allow and deny mean open and closed)"
            ))
        }
    };
    parsed.validate().map_err(|e| e.to_string())?;
    Ok(parsed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_mode_names_aliases_and_shares() {
        assert_eq!(parse_failure_mode("allow", None), Ok(FailureMode::Open));
        assert_eq!(parse_failure_mode("deny", None), Ok(FailureMode::Closed));
        assert_eq!(
            parse_failure_mode("local", Some(0.5)),
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
            assert!(parse_failure_mode(mode, share).is_err(), "{mode} {share:?}");
        }
    }
}
