//! The penalty box: a policy's `penalty` keeps a key it denied denied for that long
//! (Cloudflare's mitigation timeout). The instance that sees the denial remembers the
//! penalty at once and answers the key's next requests itself, without the store; on
//! Redis it also writes the penalty beside the overrides (`<prefix>penalty:{overrides}`),
//! where every other instance reads it within about a second, as it reads overrides.
//!
//! Remembered in a bounded cache per process (the least useful evicted first: a key let
//! out early is still limited by the policy) and at most
//! [`MAX_OVERRIDES`](limiter_core::MAX_OVERRIDES) in Redis at
//! once; beyond that a penalty is kept where it was decided only.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use limiter_core::{Override, RedisOverrides};
use parking_lot::Mutex;
use quick_cache::sync::Cache;

use crate::overrides::Polled;

/// The most penalties one process remembers.
const MAX_REMEMBERED: usize = 100_000;

/// The penalties in force, by (policy, key).
pub(crate) struct Penalties {
    /// Until when each (policy, key), by its hash under `hasher`, is penalized.
    local: Cache<u64, SystemTime>,
    /// Keyed at random per process: nobody can make two keys share a penalty.
    hasher: RandomState,
    any: AtomicBool,
    redis: Option<RedisOverrides>,
    /// The Redis version last read.
    version: Mutex<Option<String>>,
    polled: Polled,
}

impl Penalties {
    pub(crate) fn new(redis: Option<RedisOverrides>) -> Arc<Self> {
        Arc::new(Penalties {
            local: Cache::new(MAX_REMEMBERED),
            hasher: RandomState::new(),
            any: AtomicBool::new(false),
            redis,
            version: Mutex::new(None),
            polled: Polled::new(),
        })
    }

    /// How much longer `key` is penalized under `policy`, if it is.
    pub(crate) fn left(self: &Arc<Self>, policy: &str, key: &str) -> Option<Duration> {
        self.refresh_if_due();
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let until = self.local.get(&self.hasher.hash_one((policy, key)))?;
        until.duration_since(SystemTime::now()).ok()
    }

    /// Penalizes `key` under `policy` for `penalty` from now: here at once, and in Redis
    /// in the background.
    pub(crate) fn penalize(self: &Arc<Self>, policy: &str, key: &str, penalty: Duration) {
        let until = SystemTime::now() + penalty;
        self.local
            .insert(self.hasher.hash_one((policy, key)), until);
        self.any.store(true, Ordering::Relaxed);
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (policy, key) = (policy.to_owned(), key.to_owned());
        runtime.spawn(async move {
            if let Err(error) = redis.set(&policy, &key, Override::block(until)).await {
                tracing::debug!(%error, policy, "a penalty is kept in this instance only");
            }
        });
    }

    /// Ends `key`'s penalty under `policy` (an operator's reset), here and in Redis.
    pub(crate) async fn clear(&self, policy: &str, key: &str) -> Result<(), limiter_core::Error> {
        self.local.remove(&self.hasher.hash_one((policy, key)));
        if let Some(redis) = &self.redis {
            redis.clear(policy, key).await?;
        }
        Ok(())
    }

    fn refresh_if_due(self: &Arc<Self>) {
        if self.redis.is_none() {
            return;
        }
        let Some(runtime) = self.polled.due() else {
            return;
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            if let Err(error) = this.refresh().await {
                tracing::warn!(%error, "could not read the penalties from Redis; this instance's stay in force");
            }
            this.polled.done();
        });
    }

    /// Reads every penalty in Redis when its version moved.
    async fn refresh(&self) -> Result<(), limiter_core::Error> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let version = redis.version().await?;
        if version == *self.version.lock() {
            return Ok(());
        }
        let (version, all) = redis.load().await?;
        for (policy, key, penalty) in all {
            let hash = self.hasher.hash_one((policy.as_str(), key.as_str()));
            let until = penalty.until();
            if self.local.get(&hash).is_none_or(|known| known < until) {
                self.local.insert(hash, until);
                self.any.store(true, Ordering::Relaxed);
            }
        }
        *self.version.lock() = version;
        Ok(())
    }
}

impl std::fmt::Debug for Penalties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Penalties")
            .field("remembered", &self.local.len())
            .field("redis", &self.redis)
            .finish()
    }
}
