//! [`AnyStore`]: the configured store as one concrete type. The core's `Store` trait
//! returns `impl Future` and so cannot be a trait object; a type over the stores a
//! configuration can name keeps the layer a single type without generics leaking into
//! every user's signatures.

use std::time::Duration;

use limiter_core::{
    BreakerState, Decision, DenialCache, Error, FailureMode, Guarded, InvalidFailureMode,
    MemoryStore, Policy, RedisStore, Store, StoreError,
};

use crate::config::{LocalCacheConfig, StoreConfig, StoreSetup};

/// The store a configuration names. A Redis store (standalone or cluster) is wrapped in
/// [`Guarded`]: the store `timeout` bounds every call, a circuit breaker stops calling a
/// failing Redis, and the failure mode decides meanwhile (such decisions are
/// [degraded](Decision::is_degraded)). With `local_cache` set, a [`DenialCache`] wraps
/// the guard: a remembered denial is answered without Redis, the breaker or the timeout
/// (such decisions are [cached](Decision::is_cached)). The in-memory store needs neither;
/// its one failure (full) is decided by the failure mode in the layer.
#[derive(Clone)]
pub struct AnyStore {
    backend: Backend,
    kind: &'static str,
    failure_mode: FailureMode,
}

#[derive(Clone)]
enum Backend {
    Memory(MemoryStore),
    Redis(Guarded<RedisStore>),
    CachedRedis(DenialCache<Guarded<RedisStore>>),
}

/// Why [`AnyStore::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The store cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The failure mode cannot be applied.
    #[error(transparent)]
    FailureMode(#[from] InvalidFailureMode),
}

impl AnyStore {
    /// Connects to the store `setup` describes (as compiled: `${VAR}` already expanded,
    /// see [`Rules::store`](crate::Rules::store)).
    ///
    /// ```
    /// use std::path::Path;
    /// use limiter_tower::{config::load_str, AnyStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let loaded = load_str("failure_mode: { mode: local, share: 0.5 }\n", Path::new("p.yaml")).unwrap();
    /// let store = AnyStore::connect(loaded.rules.store()).await.unwrap();
    /// assert_eq!(store.kind(), "memory");
    /// assert_eq!(store.failure_mode().name(), "local");
    /// # });
    /// ```
    pub async fn connect(setup: &StoreSetup) -> Result<AnyStore, ConnectError> {
        let failure_mode = setup.failure_mode.to_core();
        let guard = |store: RedisStore, timeout: Duration| {
            Guarded::builder(store)
                .deadline(timeout)
                .failure_mode(failure_mode)
                .breaker(setup.breaker.to_core())
                .build()
        };
        let (backend, kind) = match setup.store.clone() {
            StoreConfig::Memory { max_keys } => {
                let mut builder = MemoryStore::builder();
                if let Some(max_keys) = max_keys {
                    builder = builder.max_keys(max_keys);
                }
                (Backend::Memory(builder.build()), "memory")
            }
            StoreConfig::Redis {
                url,
                key_prefix,
                timeout,
                local_cache,
            } => {
                let store = bounded(prefixed(key_prefix).connect(&url)).await?;
                (redis(guard(store, timeout.0)?, local_cache), "redis")
            }
            StoreConfig::RedisCluster {
                nodes,
                key_prefix,
                timeout,
                local_cache,
            } => {
                let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
                let store = bounded(prefixed(key_prefix).connect_cluster(&nodes)).await?;
                (
                    redis(guard(store, timeout.0)?, local_cache),
                    "redis_cluster",
                )
            }
        };
        Ok(AnyStore {
            backend,
            kind,
            failure_mode,
        })
    }

    /// `memory`, `redis` or `redis_cluster`: the `store` label of the layer's metrics.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Whether every decision is made in this process (the in-memory store), in tens
    /// of nanoseconds.
    pub(crate) fn is_in_process(&self) -> bool {
        matches!(self.backend, Backend::Memory(_))
    }

    /// What decides when the store fails.
    pub fn failure_mode(&self) -> FailureMode {
        self.failure_mode
    }

    /// The circuit breaker's state (Redis stores only).
    pub fn breaker_state(&self) -> Option<BreakerState> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Redis(guarded) => Some(guarded.breaker_state()),
            Backend::CachedRedis(cache) => Some(cache.inner().breaker_state()),
        }
    }

    /// The local cache of denials, when `local_cache` is configured.
    pub fn local_cache(&self) -> Option<&DenialCache<Guarded<RedisStore>>> {
        match &self.backend {
            Backend::CachedRedis(cache) => Some(cache),
            Backend::Memory(_) | Backend::Redis(_) => None,
        }
    }

    /// Decides at once when the store needs no I/O (the in-memory store, or a denial the
    /// local cache remembers); `None` means [`Store::check`] must be awaited.
    pub fn check_now(
        &self,
        policy: &Policy,
        key: &str,
        cost: u64,
    ) -> Option<Result<Decision, Error>> {
        match &self.backend {
            Backend::Memory(store) => Some(store.check_now(policy, key, cost)),
            Backend::Redis(_) => None,
            Backend::CachedRedis(cache) => cache.lookup(policy, key, cost).map(Ok),
        }
    }

    /// Decides like [`Store::check`], with `mode` deciding if the store cannot (each
    /// policy may name its own; the breaker stays shared).
    pub async fn check_with(
        &self,
        policy: &Policy,
        key: &str,
        cost: u64,
        mode: &FailureMode,
    ) -> Result<Decision, Error> {
        match &self.backend {
            Backend::Memory(store) => store.check_now(policy, key, cost),
            Backend::Redis(guarded) => guarded.check_with(policy, key, cost, mode).await,
            Backend::CachedRedis(cache) => {
                let miss = cache.inner().check_with(policy, key, cost, mode);
                cache.check_or(policy, key, cost, miss).await
            }
        }
    }
}

/// The guarded Redis store, behind a local cache of denials when one is configured.
fn redis(guarded: Guarded<RedisStore>, local_cache: Option<LocalCacheConfig>) -> Backend {
    match local_cache {
        Some(config) => Backend::CachedRedis(
            DenialCache::builder(guarded)
                .max_keys(config.max_keys.get())
                .build(),
        ),
        None => Backend::Redis(guarded),
    }
}

fn prefixed(prefix: Option<String>) -> limiter_core::RedisStoreBuilder {
    let builder = RedisStore::builder();
    match prefix {
        Some(prefix) => builder.prefix(&prefix),
        None => builder,
    }
}

/// Connecting at start-up gets a generous bound of its own: a first connection (a
/// cluster's topology discovery above all) is slower than a decision, but an unreachable
/// Redis must not hang start-up forever.
async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| StoreError::Unavailable("timed out connecting".into()))?
}

impl Store for AnyStore {
    async fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        match &self.backend {
            Backend::Memory(store) => store.check_now(policy, key, cost),
            Backend::Redis(guarded) => guarded.check(policy, key, cost).await,
            Backend::CachedRedis(cache) => cache.check(policy, key, cost).await,
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(guarded) => guarded.ping().await,
            Backend::CachedRedis(cache) => cache.ping().await,
        }
    }
}
