//! The store's settings, as the `store` section of the policy file and
//! [`LimiterBuilder::store`](crate::LimiterBuilder::store) take them.

use std::num::NonZeroUsize;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use limiter_core::config_serde::{no_default, DurationText};

use super::memory_guard::MemoryGuardConfig;
use super::throughput::{BatchConfig, LeasesConfig, Switchable};

/// The store behind every policy.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StoreConfig {
    /// In this process only: each instance counts on its own.
    Memory {
        /// The most (policy, key) entries held at once (default 1,000,000). At the cap,
        /// once expired entries are swept, a request for a new key is answered 429
        /// whatever the failure mode (never admitted uncounted); tracked keys keep working.
        #[serde(default)]
        max_keys: Option<usize>,
    },
    /// One Redis server, shared by every instance.
    Redis {
        /// `redis://host:port/db`; `${VAR}` is replaced from the environment.
        url: String,
        /// Prefix of every key (default `rl:`).
        #[serde(default)]
        key_prefix: Option<String>,
        /// The longest one call to Redis may take before it has failed, the failure
        /// mode deciding its requests (default 100ms; a batch gets 100us more per
        /// decision after its first). Timed from when the call is written to when its
        /// reply is read, on a thread of its own: time queued in this process never
        /// counts (see `overload`). A miss counts as a failure for the circuit breaker.
        #[serde(
            default = "default_store_timeout",
            deserialize_with = "limiter_core::config_serde::duration"
        )]
        #[schemars(with = "DurationText", transform = no_default)]
        timeout: Duration,
        /// Remember denials in this process, so that requests from keys over their limit
        /// are answered 429 without a Redis call until their retry time (off when unset).
        #[serde(default)]
        local_cache: Option<LocalCacheConfig>,
        /// Send the concurrent decisions of this process to Redis together, one script
        /// call for many (on unless `off`): adds at most `linger` to a decision under
        /// load, nothing when idle.
        #[serde(
            default = "super::throughput::batch_on",
            deserialize_with = "super::throughput::batch"
        )]
        #[schemars(with = "Switchable<BatchConfig>")]
        batch: Option<BatchConfig>,
        /// Quota leases for hot keys (off unless set): units reserved in Redis first and
        /// admitted in this process, never more than Redis counted.
        #[serde(default, deserialize_with = "super::throughput::leases")]
        #[schemars(with = "Switchable<LeasesConfig>")]
        leases: Option<LeasesConfig>,
        /// Refuse new keys while Redis memory is above a share of `maxmemory` (on
        /// unless `off`): they are decided by the failure mode, while keys Redis holds
        /// keep being decided.
        #[serde(
            default = "super::memory_guard::memory_guard_on",
            deserialize_with = "super::memory_guard::memory_guard"
        )]
        #[schemars(with = "Switchable<MemoryGuardConfig>")]
        memory_guard: Option<MemoryGuardConfig>,
    },
    /// A Redis Cluster, reached through any of its nodes.
    RedisCluster {
        /// Node URLs; `${VAR}` is replaced from the environment.
        nodes: Vec<String>,
        /// Prefix of every key (default `rl:`).
        #[serde(default)]
        key_prefix: Option<String>,
        /// The longest one call to Redis may take before it has failed, the failure
        /// mode deciding its requests (default 100ms; a batch gets 100us more per
        /// decision after its first). Timed from when the call is written to when its
        /// reply is read, on a thread of its own: time queued in this process never
        /// counts (see `overload`). A miss counts as a failure for the circuit breaker.
        #[serde(
            default = "default_store_timeout",
            deserialize_with = "limiter_core::config_serde::duration"
        )]
        #[schemars(with = "DurationText", transform = no_default)]
        timeout: Duration,
        /// Remember denials in this process, so that requests from keys over their limit
        /// are answered 429 without a Redis call until their retry time (off when unset).
        #[serde(default)]
        local_cache: Option<LocalCacheConfig>,
        /// Send the concurrent decisions of this process to Redis together, one script
        /// call for many (on unless `off`): adds at most `linger` to a decision under
        /// load, nothing when idle.
        #[serde(
            default = "super::throughput::batch_on",
            deserialize_with = "super::throughput::batch"
        )]
        #[schemars(with = "Switchable<BatchConfig>")]
        batch: Option<BatchConfig>,
        /// Quota leases for hot keys (off unless set): units reserved in Redis first and
        /// admitted in this process, never more than Redis counted.
        #[serde(default, deserialize_with = "super::throughput::leases")]
        #[schemars(with = "Switchable<LeasesConfig>")]
        leases: Option<LeasesConfig>,
        /// Refuse new keys while Redis memory is above a share of `maxmemory` (on
        /// unless `off`): they are decided by the failure mode, while keys Redis holds
        /// keep being decided.
        #[serde(
            default = "super::memory_guard::memory_guard_on",
            deserialize_with = "super::memory_guard::memory_guard"
        )]
        #[schemars(with = "Switchable<MemoryGuardConfig>")]
        memory_guard: Option<MemoryGuardConfig>,
    },
}

/// The local cache of denials in front of a Redis store (limiter-core's `DenialCache`).
///
/// A request denied by Redis is remembered until its retry time; until then the same key
/// under the same policy (and limits) is denied from memory, without a Redis call, the
/// circuit breaker or the store timeout. Exact: it only denies what Redis would deny, as
/// other instances can only consume more meanwhile. Allowed requests and peeks always
/// reach Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalCacheConfig {
    /// The most (policy, key) denials remembered at once (default 10,000), the least
    /// used forgotten first.
    #[serde(
        default = "default_local_cache_keys",
        deserialize_with = "local_cache_keys"
    )]
    pub max_keys: NonZeroUsize,
}

/// Names the field in its message: errors inside `store` are located at the section only
/// (serde buffers a `kind`-tagged enum before reading its fields), so the message has to
/// say which value is wrong.
fn local_cache_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NonZeroUsize, D::Error> {
    let keys = usize::deserialize(deserializer)?;
    NonZeroUsize::new(keys).ok_or_else(|| {
        serde::de::Error::custom(
            "local_cache.max_keys must be at least 1 (leave local_cache out to turn it off)",
        )
    })
}

impl Default for LocalCacheConfig {
    fn default() -> Self {
        LocalCacheConfig {
            max_keys: default_local_cache_keys(),
        }
    }
}

fn default_local_cache_keys() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Memory { max_keys: None }
    }
}

impl StoreConfig {
    /// One Redis server at `url` (`redis://host:port/db`), as the file's defaults have
    /// it: keys under `rl:`, the default `timeout`, batches on, no local cache, no
    /// leases, the memory guard on.
    ///
    /// ```
    /// use limiter_tower::StoreConfig;
    ///
    /// let StoreConfig::Redis { timeout, batch, .. } = StoreConfig::redis("redis://127.0.0.1/") else {
    ///     unreachable!()
    /// };
    /// assert_eq!(timeout, std::time::Duration::from_millis(250));
    /// assert!(batch.is_some());
    /// ```
    pub fn redis(url: impl Into<String>) -> Self {
        StoreConfig::Redis {
            url: url.into(),
            key_prefix: None,
            timeout: default_store_timeout(),
            local_cache: None,
            batch: super::throughput::batch_on(),
            leases: None,
            memory_guard: super::memory_guard::memory_guard_on(),
        }
    }

    /// A Redis Cluster reached through any of `nodes`, with the defaults of
    /// [`redis`](Self::redis).
    pub fn redis_cluster<N: Into<String>>(nodes: impl IntoIterator<Item = N>) -> Self {
        StoreConfig::RedisCluster {
            nodes: nodes.into_iter().map(Into::into).collect(),
            key_prefix: None,
            timeout: default_store_timeout(),
            local_cache: None,
            batch: super::throughput::batch_on(),
            leases: None,
            memory_guard: super::memory_guard::memory_guard_on(),
        }
    }
}

fn default_store_timeout() -> Duration {
    limiter_core::DEFAULT_TIMEOUT
}
