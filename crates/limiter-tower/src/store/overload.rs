//! The `overload` section: how many decisions this process holds waiting for Redis, and
//! for how long, before it sheds requests (limiter-core's `Batched` queue).

use std::num::NonZeroUsize;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de;
use serde::{Deserialize, Deserializer};

use limiter_core::config_serde::{duration, no_default, DurationText};

/// The bounds of the queue in front of a Redis store. When requests arrive faster than
/// Redis answers, their decisions wait their turn; a decision beyond `max_queued`, or
/// one that has waited `max_wait` without being sent, is shed: the request is answered
/// `503 Service Unavailable` with `Retry-After: 1` (problem type `.../overloaded`),
/// counted in `ratelimit_shed_decisions_total{reason}` and never admitted. Shedding is
/// this process protecting itself, not a failure of Redis: the failure mode and the
/// circuit breaker are not involved (a decision that waited `max_wait` behind calls to
/// Redis that failed waited for Redis: the failure mode decides it). Read at start-up,
/// like `store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadConfig {
    /// The most decisions waiting to be sent to one Redis master (default 16384; at
    /// least 1): a Cluster has a queue per master, so that one stalled master's backlog
    /// sheds only its own keys' decisions.
    #[schemars(extend("default" = 16384))]
    pub max_queued: NonZeroUsize,
    /// The longest a decision waits to be sent to Redis (default 500ms; at least 1ms).
    #[serde(deserialize_with = "max_wait")]
    #[schemars(with = "DurationText", transform = no_default)]
    pub max_wait: Duration,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            max_queued: NonZeroUsize::new(limiter_core::DEFAULT_MAX_QUEUED)
                .unwrap_or(NonZeroUsize::MIN),
            max_wait: limiter_core::DEFAULT_MAX_WAIT,
        }
    }
}

fn max_wait<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let wait = duration(deserializer)?;
    if wait < Duration::from_millis(1) {
        return Err(de::Error::custom(
            "must be at least 1ms: a shorter wait sheds requests a healthy Redis would answer",
        ));
    }
    Ok(wait)
}
