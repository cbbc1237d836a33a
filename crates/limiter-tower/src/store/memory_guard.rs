//! A Redis store's `memory_guard` section (limiter-core's `MemoryGuard`): on unless
//! `off`, written `off`/`on` or as a map of settings like `batch`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::de;
use serde::{Deserialize, Deserializer};

use limiter_core::config_serde::{duration, no_default, DurationText};

/// Refuses new keys while Redis memory is high (limiter-core's `MemoryGuard`): every
/// `interval` this process reads Redis `INFO memory` on a connection of its own; while
/// `used_memory` is above `max_fraction` of `maxmemory`, a request whose key Redis does
/// not hold yet is decided by the failure mode (and not written), while keys Redis holds
/// keep being decided as usual. With `maxmemory` 0 (no limit) it never trips. A setting
/// left out keeps limiter-core's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryGuardConfig {
    /// The share of `maxmemory` above which new keys are refused (default 0.8; above 0,
    /// at most 1).
    #[serde(default, deserialize_with = "max_fraction")]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1, "default" = 0.8))]
    pub max_fraction: Option<f64>,
    /// How often Redis memory is read (default 1s; at least 1ms).
    #[serde(default, deserialize_with = "interval")]
    #[schemars(with = "Option<DurationText>", transform = no_default)]
    pub interval: Option<Duration>,
}

impl MemoryGuardConfig {
    /// limiter-core's guard with these settings.
    pub fn guard(&self) -> limiter_core::MemoryGuard {
        let mut guard = limiter_core::MemoryGuard::default();
        if let Some(fraction) = self.max_fraction {
            guard = guard.max_fraction(fraction);
        }
        if let Some(interval) = self.interval {
            guard = guard.interval(interval);
        }
        guard
    }
}

fn max_fraction<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let fraction = f64::deserialize(deserializer)
        .map_err(|e| de::Error::custom(format!("memory_guard.max_fraction: {e}")))?;
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(de::Error::custom(format!(
            "memory_guard.max_fraction must be above 0 and at most 1, not {fraction}"
        )));
    }
    Ok(Some(fraction))
}

fn interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let interval = duration(deserializer)
        .map_err(|e| de::Error::custom(format!("memory_guard.interval: {e}")))?;
    if interval < Duration::from_millis(1) {
        return Err(de::Error::custom(
            "memory_guard.interval must be at least 1ms",
        ));
    }
    Ok(Some(interval))
}

/// `memory_guard:` as written; absent means on.
pub(super) fn memory_guard<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<MemoryGuardConfig>, D::Error> {
    super::throughput::switch(deserializer, "memory_guard")
}

/// The default of a Redis store's `memory_guard`: on, every setting at limiter-core's
/// default.
pub(super) fn memory_guard_on() -> Option<MemoryGuardConfig> {
    Some(MemoryGuardConfig::default())
}
