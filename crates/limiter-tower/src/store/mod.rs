//! [`AnyStore`]: the configured store as one concrete type. The core's `Store` trait
//! returns `impl Future` and so cannot be a trait object; a type over the stores a
//! configuration can name keeps the layer a single type without generics leaking into
//! every user's signatures.

use std::time::Duration;

use limiter_core::{
    Batched, BreakerState, Check, Cost, Decision, DenialCache, Error, FailureMode, Guarded,
    InvalidFailureMode, Joint, LeaseStats, Leased, MemoryStore, Policy, RedisDistinct,
    RedisOverrides, RedisStore, Reservation, Store, StoreError, Unavailable,
};

mod memory_guard;
mod overload;
mod settings;
mod setup;
mod throughput;

pub use self::memory_guard::MemoryGuardConfig;
pub use self::overload::OverloadConfig;
pub use self::settings::{LocalCacheConfig, StoreConfig};
pub use self::setup::StoreSetup;
pub use self::throughput::{BatchConfig, ByteSize, LeasesConfig, PolicyLeases};

/// The store a configuration names. A Redis store (standalone or cluster) is one stack
/// of limiter-core wrappers, outermost first, whatever its sections say (a section left
/// out turns its wrapper into a pass-through):
///
/// - [`Guarded`]: the failure mode (the policy's, else the file's) decides what Redis
///   could not (such decisions are [degraded](Decision::is_degraded));
/// - [`DenialCache`], with `local_cache`: a remembered denial is answered without Redis
///   (such decisions are [cached](Decision::is_cached));
/// - [`Leased`], with `leases`: hot keys are admitted in process from units reserved in
///   Redis first ([leased](Decision::is_leased) decisions);
/// - [`Batched`]: the bounded queue in front of Redis (`overload`), batching concurrent
///   decisions into one script call unless `batch: off`;
/// - the [`RedisStore`], whose calls have the store `timeout` and the circuit breaker.
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
    /// The operators' overrides, on the same Redis (`None` in memory).
    overrides: Option<RedisOverrides>,
    /// The penalty box, beside them.
    penalties: Option<RedisOverrides>,
}

#[derive(Clone)]
enum Backend {
    Memory(MemoryStore),
    Redis(RedisStack),
}

/// A Redis store as the layer runs it: [`Guarded`] over [`DenialCache`] over [`Leased`]
/// over [`Batched`] over the [`RedisStore`], with the sections that were configured.
#[derive(Clone)]
pub struct RedisStack {
    top: Guarded<DenialCache<Leased<Batched>>>,
    local_cache: bool,
    leases: bool,
    batched: bool,
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyStore")
            .field("kind", &self.kind)
            .field("failure_mode", &self.failure_mode)
            .field("redis", &self.redis())
            .finish()
    }
}

impl std::fmt::Debug for RedisStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStack")
            .field("local_cache", &self.local_cache)
            .field("leases", &self.leases)
            .field("batched", &self.batched)
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
        let (backend, kind, distinct, (overrides, penalties)) = match setup.store.clone() {
            StoreConfig::Memory { max_keys } => (memory(max_keys), "memory", None, (None, None)),
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
                let overrides = RedisOverrides::connect(&url, distinct_prefix(&key_prefix));
                let overrides = with_penalties(bounded(overrides).await?)?;
                let redis = configured(setup, key_prefix, timeout, memory_guard);
                let store = bounded(redis.connect(&url)).await?;
                let sections = Sections {
                    local_cache,
                    batch,
                    leases,
                    overload: setup.overload,
                };
                let stack = RedisStack::new(store, sections, failure_mode)?;
                (Backend::Redis(stack), "redis", distinct, overrides)
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
                let overrides =
                    RedisOverrides::connect_cluster(&nodes, distinct_prefix(&key_prefix));
                let overrides = with_penalties(bounded(overrides).await?)?;
                let redis = configured(setup, key_prefix, timeout, memory_guard);
                let store = bounded(redis.connect_cluster(&nodes)).await?;
                let sections = Sections {
                    local_cache,
                    batch,
                    leases,
                    overload: setup.overload,
                };
                let stack = RedisStack::new(store, sections, failure_mode)?;
                (Backend::Redis(stack), "redis_cluster", distinct, overrides)
            }
        };
        Ok(AnyStore {
            backend,
            kind,
            failure_mode,
            distinct,
            overrides,
            penalties,
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
                overrides: None,
                penalties: None,
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

    /// Where the overrides are shared, for a Redis store.
    pub(crate) fn overrides(&self) -> Option<&RedisOverrides> {
        self.overrides.as_ref()
    }

    /// Where penalties are shared, for a Redis store.
    pub(crate) fn penalties(&self) -> Option<&RedisOverrides> {
        self.penalties.as_ref()
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
        }
    }

    /// The circuit breaker's state (Redis stores only).
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.redis().map(RedisStack::breaker_state)
    }

    /// Whether decisions reach Redis in batches (Redis stores without `batch: off`).
    pub fn is_batched(&self) -> bool {
        self.redis().is_some_and(|stack| stack.batched)
    }

    /// What the quota leases have done so far, when `leases` is configured.
    pub fn lease_stats(&self) -> Option<LeaseStats> {
        self.redis().and_then(RedisStack::lease_stats)
    }

    /// The local cache of denials, when `local_cache` is configured.
    pub fn local_cache(&self) -> Option<&DenialCache<Leased<Batched>>> {
        self.redis()
            .filter(|stack| stack.local_cache)
            .map(|stack| stack.top.inner())
    }

    /// Whether [`AnyStore::check_now`] can answer at all: false for a Redis store without
    /// a local cache, whose every decision is awaited.
    pub(crate) fn may_answer_now(&self) -> bool {
        match &self.backend {
            Backend::Memory(_) => true,
            Backend::Redis(stack) => stack.local_cache,
        }
    }

    /// Decides at once when the store needs no I/O (the in-memory store, or a denial the
    /// local cache remembers); `None` means [`Store::check`] must be awaited.
    pub fn check_now(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost>,
    ) -> Option<Result<Decision, Error>> {
        let cost = cost.into();
        match &self.backend {
            Backend::Memory(store) => Some(store.check_now(policy, key, cost)),
            Backend::Redis(stack) if stack.local_cache => {
                // The cache remembers denials of one figure per window.
                let units = cost.uniform(policy)?;
                stack.top.inner().lookup(policy, key, units).map(Ok)
            }
            Backend::Redis(_) => None,
        }
    }

    /// Decides several policies at once when the store needs no I/O (the in-memory
    /// store, atomically); `None` means [`Store::check_all`] must be awaited.
    pub(crate) fn check_all_now(&self, checks: &[Check<'_>]) -> Option<Result<Joint, Error>> {
        match &self.backend {
            Backend::Memory(store) => Some(store.check_all_now(checks)),
            Backend::Redis(_) => None,
        }
    }

    /// Reserves at once on the in-memory store; `None` means [`Store::reserve`] must be
    /// awaited.
    pub(crate) fn reserve_now(
        &self,
        policy: &Policy,
        key: &str,
        estimate: Cost,
    ) -> Option<Result<Reservation, Error>> {
        match &self.backend {
            Backend::Memory(store) => Some(store.reserve_now(policy, key, estimate)),
            Backend::Redis(_) => None,
        }
    }

    /// Settles `reservation` without waiting: at once on the in-memory store, in the
    /// next batch on Redis; `done` gets the outcome.
    pub(crate) fn settle_detached(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: Cost,
        done: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) {
        match &self.backend {
            Backend::Memory(store) => done(store.settle_now(policy, key, reservation, actual)),
            Backend::Redis(stack) => stack.settle_detached(policy, key, reservation, actual, done),
        }
    }
}

/// The sections of a Redis store that shape its stack.
struct Sections {
    local_cache: Option<LocalCacheConfig>,
    batch: Option<BatchConfig>,
    leases: Option<LeasesConfig>,
    overload: OverloadConfig,
}

impl RedisStack {
    fn new(
        store: RedisStore,
        sections: Sections,
        failure_mode: FailureMode,
    ) -> Result<RedisStack, ConnectError> {
        let retry = store.probe_interval();
        let queue = batched(store, sections.batch, sections.overload);
        let leased = leased(queue, sections.leases);
        let max_keys = sections.local_cache.map_or(0, |c| c.max_keys.get());
        let cache = DenialCache::builder(leased).max_keys(max_keys).build();
        let top = Guarded::builder(cache)
            .failure_mode(failure_mode)
            .retry_after(retry)
            .build()?;
        Ok(RedisStack {
            top,
            local_cache: sections.local_cache.is_some(),
            leases: sections.leases.is_some(),
            batched: sections.batch.is_some(),
        })
    }

    fn leased(&self) -> &Leased<Batched> {
        self.top.inner().inner()
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.leased().inner().inner().breaker_state()
    }

    /// What the quota leases have done so far, when `leases` is configured.
    pub fn lease_stats(&self) -> Option<LeaseStats> {
        self.leases.then(|| self.leased().stats())
    }

    /// Settles as [`Store::settle`] does, without waiting for Redis: a reservation the
    /// store made goes straight to the batch queue (the cache forgets the key's denial;
    /// leases never hold reservations), one a failure mode made to its stand-in.
    fn settle_detached(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: Cost,
        done: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) {
        if reservation.decision().is_degraded() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::warn!(
                    policy = policy.name(),
                    "no tokio runtime to settle in; the estimate stays"
                );
                return;
            };
            let (top, policy, key) = (self.top.clone(), policy.clone(), key.to_owned());
            runtime
                .spawn(async move { done(top.settle(&policy, &key, reservation, actual).await) });
            return;
        }
        self.top.inner().forget(policy, key);
        self.leased()
            .inner()
            .settle_detached(policy, key, reservation, actual, done);
    }
}

impl Store for RedisStack {
    async fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        self.top.check(policy, key, cost).await
    }

    async fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        self.top.reserve(policy, key, estimate).await
    }

    async fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        self.top.settle(policy, key, reservation, actual).await
    }

    async fn reset(&self, policy: &Policy, key: &str) -> Result<(), Error> {
        self.top.reset(policy, key).await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.top.ping().await
    }
}

/// `batch: off` is one decision per call, several calls out at once, through the same
/// bounded queue. Settings left out keep limiter-core's defaults.
fn batched(store: RedisStore, config: Option<BatchConfig>, overload: OverloadConfig) -> Batched {
    let mut builder = Batched::builder(store)
        .max_queued(overload.max_queued.get())
        .max_wait(overload.max_wait);
    let Some(config) = config else {
        return builder
            .max_batch(1)
            .max_in_flight(UNBATCHED_IN_FLIGHT)
            .build();
    };
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

/// Calls out at once with `batch: off`: enough to keep a pipelined connection busy.
const UNBATCHED_IN_FLIGHT: usize = 64;

/// Without `leases`, a pass-through. Settings left out keep limiter-core's defaults.
fn leased(store: Batched, config: Option<LeasesConfig>) -> Leased<Batched> {
    let mut builder = Leased::builder(store).enabled(config.is_some());
    let Some(config) = config else {
        return builder.build();
    };
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

/// The overrides, and the penalty box's penalties beside them on the same connection
/// (`<prefix>penalty:{overrides}`).
type Overridden = (Option<RedisOverrides>, Option<RedisOverrides>);

fn with_penalties(overrides: RedisOverrides) -> Result<Overridden, StoreError> {
    let penalties = overrides.sibling("penalty:")?;
    Ok((Some(overrides), Some(penalties)))
}

/// The enumeration counts and the overrides live beside the counters, under the same
/// prefix.
fn distinct_prefix(prefix: &Option<String>) -> &str {
    prefix.as_deref().unwrap_or("rl:")
}

fn configured(
    setup: &StoreSetup,
    prefix: Option<String>,
    timeout: Duration,
    memory_guard: Option<MemoryGuardConfig>,
) -> limiter_core::RedisStoreBuilder {
    let mut builder = RedisStore::builder()
        .timeout(timeout)
        .breaker(setup.breaker.clone());
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
    async fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        match &self.backend {
            Backend::Memory(store) => store.check_now(policy, key, cost),
            Backend::Redis(stack) => stack.check(policy, key, cost).await,
        }
    }

    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        match &self.backend {
            Backend::Memory(store) => store.check_all_now(checks),
            Backend::Redis(stack) => stack.top.check_all(checks).await,
        }
    }

    async fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        match &self.backend {
            Backend::Memory(store) => store.reserve_now(policy, key, estimate),
            Backend::Redis(stack) => stack.reserve(policy, key, estimate).await,
        }
    }

    async fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        match &self.backend {
            Backend::Memory(store) => store.settle_now(policy, key, reservation, actual),
            Backend::Redis(stack) => stack.settle(policy, key, reservation, actual).await,
        }
    }

    async fn reset(&self, policy: &Policy, key: &str) -> Result<(), Error> {
        match &self.backend {
            Backend::Memory(store) => store.reset_now(policy, key),
            Backend::Redis(stack) => stack.reset(policy, key).await,
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(stack) => stack.ping().await,
        }
    }
}
