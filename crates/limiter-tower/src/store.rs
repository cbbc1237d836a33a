//! [`AnyStore`]: the configured store as one concrete type. The core's `Store` trait
//! returns `impl Future` and so cannot be a trait object; a type over the stores a
//! configuration can name keeps the layer a single type without generics leaking into
//! every user's signatures.

use std::time::Duration;

use limiter_core::{
    Batched, BreakerState, Decision, DenialCache, Error, FailureMode, Guarded, InvalidFailureMode,
    LeaseStats, LeaseStore, Leased, MemoryStore, Policy, RedisDistinct, RedisStore, Store,
    StoreError, Unavailable,
};

use crate::config::{
    BatchConfig, LeasesConfig, LocalCacheConfig, MemoryGuardConfig, StoreConfig, StoreSetup,
};

/// The store a configuration names. A Redis store (standalone or cluster) is the stack
/// of limiter-core wrappers its sections ask for, outermost first:
///
/// - [`DenialCache`], with `local_cache`: a remembered denial is answered without Redis,
///   the breaker or the timeout (such decisions are [cached](Decision::is_cached));
/// - [`Leased`], with `leases`: hot keys are admitted in process from units reserved in
///   Redis first ([leased](Decision::is_leased) decisions);
/// - [`Guarded`], always: the store `timeout` bounds every call, a circuit breaker stops
///   calling a failing Redis, and the failure mode decides meanwhile (such decisions are
///   [degraded](Decision::is_degraded));
/// - [`Batched`], unless `batch: off`: concurrent decisions share one script call;
/// - the [`RedisStore`].
///
/// The in-memory store needs none of them; its one failure (full: a new key beyond
/// `max_keys`) is answered 429 by the layer, whatever the failure mode.
#[derive(Clone)]
pub struct AnyStore {
    backend: Backend,
    kind: &'static str,
    failure_mode: FailureMode,
    /// The enumeration defence's distinct counts, on the same Redis (`None` in memory).
    distinct: Option<RedisDistinct>,
}

#[derive(Clone)]
enum Backend {
    Memory(MemoryStore),
    Redis(RedisStack),
    CachedRedis(DenialCache<RedisStack>),
}

/// A Redis store as configured below its local cache of denials: [`Leased`] (with
/// `leases`) over [`Guarded`] over [`Batched`] (unless `batch: off`) over the
/// [`RedisStore`]. What [`AnyStore::local_cache`] wraps.
#[derive(Clone)]
pub struct RedisStack {
    top: Top,
}

#[derive(Clone)]
enum Top {
    Guarded(Guarded<Wire>),
    Leased(Leased<Guarded<Wire>>),
}

/// The Redis store, behind [`Batched`] or not: one type either way.
#[derive(Clone)]
enum Wire {
    Direct(RedisStore),
    Batched(Batched),
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyStore")
            .field("kind", &self.kind)
            .field("failure_mode", &self.failure_mode)
            .field("local_cache", &self.local_cache().is_some())
            .field("redis", &self.redis())
            .finish()
    }
}

impl std::fmt::Debug for RedisStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStack")
            .field("batched", &self.is_batched())
            .field("leased", &matches!(self.top, Top::Leased(_)))
            .field("breaker", &self.breaker_state())
            .finish()
    }
}

/// Why [`AnyStore::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The store cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The failure mode cannot be applied.
    #[error(transparent)]
    FailureMode(#[from] InvalidFailureMode),
    /// [`AnyStore::in_memory`] was given a Redis store, which must be connected to.
    #[error("the store is Redis: connect to it (`AnyStore::connect`, `LimiterBuilder::build`)")]
    NotInMemory,
}

fn memory(max_keys: Option<usize>) -> Backend {
    let mut builder = MemoryStore::builder();
    if let Some(max_keys) = max_keys {
        builder = builder.max_keys(max_keys);
    }
    Backend::Memory(builder.build())
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
    /// assert!(!store.is_batched() && store.lease_stats().is_none());
    /// # });
    /// ```
    pub async fn connect(setup: &StoreSetup) -> Result<AnyStore, ConnectError> {
        let failure_mode = setup.failure_mode;
        let stack = |store: RedisStore, redis: Layers| -> Result<Backend, ConnectError> {
            let wire = match redis.batch {
                Some(batch) => Wire::Batched(batched(store, batch)),
                None => Wire::Direct(store),
            };
            let guarded = Guarded::builder(wire)
                .deadline(redis.timeout)
                .failure_mode(failure_mode)
                .breaker(setup.breaker.clone())
                .build()?;
            let top = match redis.leases {
                Some(leases) => Top::Leased(leased(guarded, leases)),
                None => Top::Guarded(guarded),
            };
            let stack = RedisStack { top };
            Ok(match redis.local_cache {
                Some(config) => Backend::CachedRedis(
                    DenialCache::builder(stack)
                        .max_keys(config.max_keys.get())
                        .build(),
                ),
                None => Backend::Redis(stack),
            })
        };
        let (backend, kind, distinct) = match setup.store.clone() {
            StoreConfig::Memory { max_keys } => (memory(max_keys), "memory", None),
            StoreConfig::Redis {
                url,
                key_prefix,
                timeout,
                local_cache,
                batch,
                leases,
                memory_guard,
            } => {
                let distinct = bounded(RedisDistinct::connect(&url, distinct_prefix(&key_prefix)));
                let distinct = Some(distinct.await?);
                let store = bounded(configured(key_prefix, memory_guard).connect(&url)).await?;
                let layers = Layers {
                    timeout,
                    local_cache,
                    batch,
                    leases,
                };
                (stack(store, layers)?, "redis", distinct)
            }
            StoreConfig::RedisCluster {
                nodes,
                key_prefix,
                timeout,
                local_cache,
                batch,
                leases,
                memory_guard,
            } => {
                let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
                let distinct = RedisDistinct::connect_cluster(&nodes, distinct_prefix(&key_prefix));
                let distinct = Some(bounded(distinct).await?);
                let store =
                    bounded(configured(key_prefix, memory_guard).connect_cluster(&nodes)).await?;
                let layers = Layers {
                    timeout,
                    local_cache,
                    batch,
                    leases,
                };
                (stack(store, layers)?, "redis_cluster", distinct)
            }
        };
        Ok(AnyStore {
            backend,
            kind,
            failure_mode,
            distinct,
        })
    }

    /// The in-memory store `setup` describes, without a runtime; a Redis store is
    /// refused with [`ConnectError::NotInMemory`] (it needs [`connect`](Self::connect)).
    ///
    /// ```
    /// use limiter_tower::{AnyStore, LimiterBuilder};
    ///
    /// let rules = LimiterBuilder::new().rules().unwrap();
    /// let store = AnyStore::in_memory(rules.store()).unwrap();
    /// assert_eq!(store.kind(), "memory");
    /// ```
    pub fn in_memory(setup: &StoreSetup) -> Result<AnyStore, ConnectError> {
        match setup.store {
            StoreConfig::Memory { max_keys } => Ok(AnyStore {
                backend: memory(max_keys),
                kind: "memory",
                failure_mode: setup.failure_mode,
                distinct: None,
            }),
            StoreConfig::Redis { .. } | StoreConfig::RedisCluster { .. } => {
                Err(ConnectError::NotInMemory)
            }
        }
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

    /// The Redis counter of distinct identities, for a Redis store.
    pub(crate) fn distinct(&self) -> Option<&RedisDistinct> {
        self.distinct.as_ref()
    }

    /// What decides when the store fails.
    pub fn failure_mode(&self) -> FailureMode {
        self.failure_mode
    }

    fn redis(&self) -> Option<&RedisStack> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Redis(stack) => Some(stack),
            Backend::CachedRedis(cache) => Some(cache.inner()),
        }
    }

    /// The circuit breaker's state (Redis stores only).
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.redis().map(RedisStack::breaker_state)
    }

    /// Whether decisions reach Redis in batches (Redis stores without `batch: off`).
    pub fn is_batched(&self) -> bool {
        self.redis().is_some_and(RedisStack::is_batched)
    }

    /// What the quota leases have done so far, when `leases` is configured.
    pub fn lease_stats(&self) -> Option<LeaseStats> {
        self.redis().and_then(RedisStack::lease_stats)
    }

    /// The local cache of denials, when `local_cache` is configured.
    pub fn local_cache(&self) -> Option<&DenialCache<RedisStack>> {
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
            Backend::Redis(stack) => stack.check_with(policy, key, cost, mode).await,
            Backend::CachedRedis(cache) => {
                let miss = cache.inner().check_with(policy, key, cost, mode);
                cache.check_or(policy, key, cost, miss).await
            }
        }
    }
}

/// The sections of a Redis store that shape its stack.
struct Layers {
    timeout: Duration,
    local_cache: Option<LocalCacheConfig>,
    batch: Option<BatchConfig>,
    leases: Option<LeasesConfig>,
}

/// Settings left out keep limiter-core's defaults.
fn batched(store: RedisStore, config: BatchConfig) -> Batched {
    let mut builder = Batched::builder(store);
    if let Some(max_batch) = config.max_batch {
        builder = builder.max_batch(max_batch.get());
    }
    if let Some(linger) = config.linger {
        builder = builder.linger(linger);
    }
    if let Some(max_in_flight) = config.max_in_flight {
        builder = builder.max_in_flight(max_in_flight.get());
    }
    builder.build()
}

/// Settings left out keep limiter-core's defaults.
fn leased(store: Guarded<Wire>, config: LeasesConfig) -> Leased<Guarded<Wire>> {
    let mut builder = Leased::builder(store);
    if let Some(lifetime) = config.lifetime {
        builder = builder.lifetime(lifetime);
    }
    if let Some(reserve) = config.reserve {
        builder = builder.reserve(reserve);
    }
    if let Some(speculation) = config.speculation {
        builder = builder.speculation(speculation);
    }
    if let Some(min_demand) = config.min_demand {
        builder = builder.min_demand(min_demand);
    }
    if let Some(max_units) = config.max_units {
        builder = builder.max_units(max_units);
    }
    if let Some(max_memory) = config.max_memory {
        builder = builder.max_bytes(max_memory.0);
    }
    builder.build()
}

/// The enumeration counts live beside the counters, under the same prefix.
fn distinct_prefix(prefix: &Option<String>) -> &str {
    prefix.as_deref().unwrap_or("rl:")
}

fn configured(
    prefix: Option<String>,
    memory_guard: Option<MemoryGuardConfig>,
) -> limiter_core::RedisStoreBuilder {
    let mut builder = RedisStore::builder();
    if let Some(prefix) = prefix {
        builder = builder.prefix(&prefix);
    }
    if let Some(guard) = memory_guard {
        builder = builder.memory_guard(guard.guard());
    }
    builder
}

/// Connecting at start-up gets a generous bound of its own: a first connection (a
/// cluster's topology discovery above all) is slower than a decision, but an unreachable
/// Redis must not hang start-up forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| StoreError::Unavailable(Unavailable::ConnectTimeout(CONNECT_TIMEOUT)))?
}

impl Store for AnyStore {
    async fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        match &self.backend {
            Backend::Memory(store) => store.check_now(policy, key, cost),
            Backend::Redis(stack) => stack.check(policy, key, cost).await,
            Backend::CachedRedis(cache) => cache.check(policy, key, cost).await,
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(stack) => stack.ping().await,
            Backend::CachedRedis(cache) => cache.ping().await,
        }
    }
}

impl RedisStack {
    fn guard(&self) -> &Guarded<Wire> {
        match &self.top {
            Top::Guarded(guarded) => guarded,
            Top::Leased(leased) => leased.inner(),
        }
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.guard().breaker_state()
    }

    /// Whether decisions reach Redis in batches.
    pub fn is_batched(&self) -> bool {
        matches!(self.guard().inner(), Wire::Batched(_))
    }

    /// What the quota leases have done so far, when `leases` is configured.
    pub fn lease_stats(&self) -> Option<LeaseStats> {
        match &self.top {
            Top::Guarded(_) => None,
            Top::Leased(leased) => Some(leased.stats()),
        }
    }

    /// Decides like [`Store::check`], with `mode` deciding if Redis cannot, leased or not.
    pub async fn check_with(
        &self,
        policy: &Policy,
        key: &str,
        cost: u64,
        mode: &FailureMode,
    ) -> Result<Decision, Error> {
        match &self.top {
            Top::Guarded(guarded) => guarded.check_with(policy, key, cost, mode).await,
            Top::Leased(leased) => {
                // What leases leave to Redis is decided, when Redis cannot, by the
                // request's own failure mode, exactly as without leases.
                let miss = || leased.inner().check_with(policy, key, cost, mode);
                leased.check_or(policy, key, cost, miss).await
            }
        }
    }
}

impl Store for RedisStack {
    async fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        match &self.top {
            Top::Guarded(guarded) => guarded.check(policy, key, cost).await,
            Top::Leased(leased) => leased.check(policy, key, cost).await,
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        self.guard().ping().await
    }
}

impl Store for Wire {
    async fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        match self {
            Wire::Direct(store) => store.check(policy, key, cost).await,
            Wire::Batched(store) => store.check(policy, key, cost).await,
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        match self {
            Wire::Direct(store) => store.ping().await,
            Wire::Batched(store) => store.ping().await,
        }
    }
}

impl LeaseStore for Wire {
    async fn take(&self, policy: &Policy, key: &str, units: u64) -> Result<(Decision, i64), Error> {
        match self {
            Wire::Direct(store) => store.take(policy, key, units).await,
            Wire::Batched(store) => store.take(policy, key, units).await,
        }
    }

    async fn refund(
        &self,
        policy: &Policy,
        key: &str,
        taken: u64,
        unused: u64,
        taken_at_us: i64,
    ) -> Result<(), Error> {
        match self {
            Wire::Direct(store) => store.refund(policy, key, taken, unused, taken_at_us).await,
            Wire::Batched(store) => store.refund(policy, key, taken, unused, taken_at_us).await,
        }
    }
}
