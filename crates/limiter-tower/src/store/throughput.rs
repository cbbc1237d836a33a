//! How a Redis store is spared per-request round trips: the store's `batch` and `leases`
//! sections (limiter-core's `Batched` and `Leased`), and a policy's own `leases`.
//!
//! `batch` and `leases` are each written `off` (or `false`), `on` (or `true`: every
//! setting at its default) or as a map of settings. Inside `store`, errors are located at
//! the section only (serde buffers the `kind`-tagged enum before reading its fields), so
//! every message here names the value at fault.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use limiter_core::config_serde::{duration, no_default, DurationText};

/// Batching (limiter-core's `Batched`): the decisions this process has waiting for Redis
/// go in one script call, concurrent requests for the same key as one entry.
///
/// With no call out, a decision is sent at once (an idle process adds no latency). Behind
/// a call already out, a batch closes when `max_batch` decisions wait or `linger` after
/// its first, and while all `max_in_flight` calls are out it grows until one returns: a
/// busy process sends fewer, larger calls. A setting left out keeps limiter-core's
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// The most decisions one call carries (default 256).
    #[serde(default, deserialize_with = "max_batch")]
    #[schemars(extend("default" = 256))]
    pub max_batch: Option<NonZeroUsize>,
    /// How long a batch waits for more decisions after its first while another call is
    /// out (default 20us; at most 1ms: the wait yields in a loop rather than sleeping).
    /// `0s` sends what is queued at once.
    #[serde(default, deserialize_with = "linger")]
    #[schemars(with = "Option<DurationText>", transform = no_default)]
    pub linger: Option<Duration>,
    /// Batch calls out at once (default 1); while all are out the next batch grows. With
    /// one, every key's requests are decided in arrival order; with more, calls (and two
    /// requests of one key in them) may overtake each other.
    #[serde(default, deserialize_with = "max_in_flight")]
    #[schemars(extend("default" = 1))]
    pub max_in_flight: Option<NonZeroUsize>,
}

/// The longest `linger` accepted: the collector yields in a loop for that long, and a
/// decision waits for it under the store `timeout`.
const MAX_LINGER: Duration = Duration::from_millis(1);

fn at_least_one<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &str,
) -> Result<Option<NonZeroUsize>, D::Error> {
    let value = usize::deserialize(deserializer)
        .map_err(|e| de::Error::custom(format!("batch.{field}: {e}")))?;
    NonZeroUsize::new(value).map(Some).ok_or_else(|| {
        de::Error::custom(format!(
            "batch.{field} must be at least 1 (write `batch: off` to turn batching off)"
        ))
    })
}

fn max_batch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<NonZeroUsize>, D::Error> {
    at_least_one(deserializer, "max_batch")
}

fn max_in_flight<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<NonZeroUsize>, D::Error> {
    at_least_one(deserializer, "max_in_flight")
}

fn linger<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let linger =
        duration(deserializer).map_err(|e| de::Error::custom(format!("batch.linger: {e}")))?;
    if linger > MAX_LINGER {
        return Err(de::Error::custom(format!(
            "batch.linger must be at most 1ms, not {:?}: the wait yields in a loop rather than sleeping",
            linger
        )));
    }
    Ok(Some(linger))
}

/// Quota leases for hot keys (limiter-core's `Leased`): a key in demand reserves units in
/// Redis with one request and admits the requests that follow from them in this process.
/// A setting left out keeps limiter-core's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeasesConfig {
    /// The longest a lease admits after it was asked for (default 250ms; for each policy
    /// also at most 1/20 of its shortest window). Its unused units are then given back.
    #[serde(default, deserialize_with = "store_lifetime")]
    #[schemars(with = "Option<DurationText>", transform = no_default)]
    pub lifetime: Option<Duration>,
    /// The last share of every window's capacity that is never leased, decided by Redis
    /// request by request (default 0.1; at least 0, below 1).
    #[serde(default, deserialize_with = "reserve")]
    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1, "default" = 0.1))]
    pub reserve: Option<f64>,
    /// The share of a policy's smallest capacity one lease may hold beyond the requests
    /// waiting for it (default 0.005; 0 to 1): what a lease can leave unused when its
    /// key's traffic stops, until it expires and is refunded.
    #[serde(default, deserialize_with = "speculation")]
    #[schemars(range(min = 0.0, max = 1.0), extend("default" = 0.005))]
    pub speculation: Option<f64>,
    /// The units a key must be asked for within one lifetime before a lease holds units
    /// speculatively (default 2).
    #[serde(default, deserialize_with = "min_demand")]
    #[schemars(range(min = 1), extend("default" = 2))]
    pub min_demand: Option<u64>,
    /// The largest lease, in units (default 10000).
    #[serde(default, deserialize_with = "max_units")]
    #[schemars(range(min = 1), extend("default" = 10000))]
    pub max_units: Option<u64>,
    /// The most memory held for per-key lease state (default 100MB): `64MiB`, `100MB`,
    /// `512kB`, or a number of bytes. Least used keys are forgotten first; that never
    /// admits anything.
    #[serde(default, deserialize_with = "max_memory")]
    pub max_memory: Option<ByteSize>,
}

fn store_lifetime<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let lifetime =
        duration(deserializer).map_err(|e| de::Error::custom(format!("leases.lifetime: {e}")))?;
    if lifetime.is_zero() {
        return Err(de::Error::custom(
            "leases.lifetime must be longer than zero (write `leases: off` to turn leases off)",
        ));
    }
    Ok(Some(lifetime))
}

fn share<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &str,
    ok: impl Fn(f64) -> bool,
    range: &str,
) -> Result<Option<f64>, D::Error> {
    let share = f64::deserialize(deserializer)
        .map_err(|e| de::Error::custom(format!("leases.{field}: {e}")))?;
    if !ok(share) {
        return Err(de::Error::custom(format!(
            "leases.{field} must be {range}, not {share}"
        )));
    }
    Ok(Some(share))
}

fn reserve<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    share(
        deserializer,
        "reserve",
        |r| (0.0..1.0).contains(&r),
        "at least 0 and below 1",
    )
}

fn speculation<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    share(
        deserializer,
        "speculation",
        |s| (0.0..=1.0).contains(&s),
        "from 0 to 1",
    )
}

fn positive<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &str,
) -> Result<Option<u64>, D::Error> {
    let value = u64::deserialize(deserializer)
        .map_err(|e| de::Error::custom(format!("leases.{field}: {e}")))?;
    if value == 0 {
        return Err(de::Error::custom(format!(
            "leases.{field} must be at least 1"
        )));
    }
    Ok(Some(value))
}

fn min_demand<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    positive(deserializer, "min_demand")
}

fn max_units<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    positive(deserializer, "max_units")
}

fn max_memory<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ByteSize>, D::Error> {
    let size = ByteSize::deserialize(deserializer)
        .map_err(|e| de::Error::custom(format!("leases.max_memory: {e}")))?;
    if size.0 == 0 {
        return Err(de::Error::custom("leases.max_memory must be above zero"));
    }
    Ok(Some(size))
}

/// An amount of memory: `100MB`, `64MiB`, `512kB`, `1GB`, or a number of bytes. `kB`,
/// `MB` and `GB` are powers of 1000, `KiB`, `MiB` and `GiB` powers of 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `text` as a whole number followed by an optional unit.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid size {text:?}: expected e.g. 100MB, 64MiB or bytes"))?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "invalid size {text:?}: unknown unit {other:?} (B, kB, MB, GB, KiB, MiB, GiB)"
                ))
            }
        };
        number
            .checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {text:?}: too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(bytes) => Ok(ByteSize(bytes)),
            Raw::Text(text) => ByteSize::parse(&text).map_err(de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An amount of memory: `100MB`, `64MiB`, `512kB`, `1GB` (kB/MB/GB: powers of 1000; KiB/MiB/GiB: of 1024), or a number of bytes.",
            "oneOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": "^\\s*[0-9]+\\s*(B|kB|KB|MB|GB|KiB|MiB|GiB)?\\s*$" }
            ]
        })
    }
}

/// Deserializes a section written `off`/`false` (`None`), `on`/`true` (`Some` of its
/// defaults) or as a map of its fields, keeping the fields' own errors.
struct Switch<T> {
    section: &'static str,
    kind: PhantomData<fn() -> T>,
}

impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for Switch<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`off`, `on` or a map of {} settings", self.section)
    }

    fn visit_bool<E: de::Error>(self, on: bool) -> Result<Self::Value, E> {
        Ok(on.then(T::default))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        match text {
            "on" | "true" => Ok(Some(T::default())),
            "off" | "false" => Ok(None),
            other => Err(E::custom(format!(
                "{}: expected `off`, `on` or a map of settings, found {other:?}",
                self.section
            ))),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
    }
}

pub(super) fn switch<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    deserializer: D,
    section: &'static str,
) -> Result<Option<T>, D::Error> {
    deserializer.deserialize_any(Switch {
        section,
        kind: PhantomData,
    })
}

/// `batch:` as written; absent means on.
pub(super) fn batch<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BatchConfig>, D::Error> {
    switch(deserializer, "batch")
}

/// The default of a Redis store's `batch`: on, every setting at limiter-core's default.
pub(super) fn batch_on() -> Option<BatchConfig> {
    Some(BatchConfig::default())
}

/// `leases:` as written; absent means off.
pub(super) fn leases<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<LeasesConfig>, D::Error> {
    switch(deserializer, "leases")
}

/// The schema of a section that may also be written `off`/`on`/`false`/`true`.
pub(super) struct Switchable<T>(PhantomData<T>);

impl<T: JsonSchema> JsonSchema for Switchable<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("Switchable{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let section = generator.subschema_for::<T>();
        json_schema!({
            "description": "`off` (or `false`), `on` (or `true`: every setting at its default), or the settings.",
            "oneOf": [
                { "type": "boolean" },
                { "type": "string", "enum": ["on", "off"] },
                section
            ]
        })
    }
}

/// A policy's own `leases`, over the store's: written `off` (never leased: Redis decides
/// every request), `on` (the store's settings, as when unset) or `{ lifetime: 50ms }`.
/// Ignored when the store has no `leases` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyLeases {
    /// As the store's `leases` section says.
    On,
    /// Never leased.
    Off,
    /// Leased with this lifetime instead of the store's (still at most 1/20 of the
    /// policy's shortest window).
    Lifetime(Duration),
}

impl PolicyLeases {
    /// The core's setting.
    pub fn to_core(self) -> limiter_core::Leasing {
        match self {
            PolicyLeases::On => limiter_core::Leasing::Store,
            PolicyLeases::Off => limiter_core::Leasing::Off,
            PolicyLeases::Lifetime(lifetime) => limiter_core::Leasing::Lifetime(lifetime),
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyLeasesMap {
    #[serde(default, deserialize_with = "policy_lifetime")]
    lifetime: Option<Duration>,
}

fn policy_lifetime<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let lifetime = duration(deserializer)?;
    if lifetime.is_zero() {
        return Err(de::Error::custom(
            "must be longer than zero (write `leases: off` to never lease this policy)",
        ));
    }
    Ok(Some(lifetime))
}

impl<'de> Deserialize<'de> for PolicyLeases {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map: Option<PolicyLeasesMap> = switch(deserializer, "leases")?;
        Ok(match map {
            None => PolicyLeases::Off,
            Some(PolicyLeasesMap {
                lifetime: Some(lifetime),
            }) => PolicyLeases::Lifetime(lifetime),
            Some(PolicyLeasesMap { lifetime: None }) => PolicyLeases::On,
        })
    }
}

impl JsonSchema for PolicyLeases {
    fn schema_name() -> Cow<'static, str> {
        "PolicyLeases".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let lifetime = generator.subschema_for::<DurationText>();
        json_schema!({
            "description": "This policy's leases, over the store's `leases` section (ignored without one): `off` (never leased: Redis decides every request), `on` (the store's settings, as when unset), or `{ lifetime: 50ms }` (its own lease lifetime).",
            "oneOf": [
                { "type": "boolean" },
                { "type": "string", "enum": ["on", "off"] },
                {
                    "type": "object",
                    "properties": {
                        "lifetime": lifetime
                    },
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
    fn sizes_in_decimal_and_binary_units() {
        assert_eq!(ByteSize::parse("100MB"), Ok(ByteSize(100_000_000)));
        assert_eq!(ByteSize::parse(" 64 MiB "), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("512kB"), Ok(ByteSize(512_000)));
        assert_eq!(ByteSize::parse("2GiB"), Ok(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        for bad in ["", "MB", "1.5GB", "10 mb", "-1MB", "99999999999999999999GB"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?}");
        }
    }
}
