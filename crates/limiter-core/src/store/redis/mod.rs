//! The Redis store: one Lua script decides every window of a policy in one round trip.
//!
//! Key layout (every key of one (policy, identity) shares the hash tag, so the script
//! runs unchanged on Redis Cluster):
//!
//! ```text
//! <prefix>{<policy>:<identity>}:<window index><algorithm tag>
//!   e.g. rl:{api:user-42}:0g   GCRA: string "<tat>:<emission>", e.g.
//!                              "1795445091905492:12000000"
//!        rl:{api:user-42}:1s   sliding counter: hash s (window start), c, p (counts)
//!        rl:{api:user-42}:2f   fixed / calendar window: hash s (window start), n (count)
//!        rl:{api:user-42}:3l   sliding log: zset, member "seq:cost" scored by time (us)
//!        rl:{api:user-42}:3m   its meta hash: n (sum of costs), q (member sequence)
//! ```
//!
//! The GCRA value is the theoretical arrival time and the emission interval it was
//! written under, both integer microseconds in decimal (exact below 2^53, the script's
//! doubles). The interval lets a policy reload that changes the rate keep the units used:
//! the script re-expresses the backlog `tat - now` under the new interval (`backlog /
//! old * new`, as `Gcra::rebase` does in memory) and writes it back. A value holding only
//! the arrival time (written before the interval was stored) reads under the current
//! interval. Every key has a TTL, set from when its state no longer matters: a window's
//! end (a sliding counter's: the next window's end), set by the write that starts the
//! window; a sliding log's window after its newest entry; a GCRA key's backlog. A key of
//! a one-window GCRA policy gets its backlog and one window more when written whole, and
//! then has its arrival time rewritten in place (keeping the TTL) for as long as that
//! TTL outlasts the backlog, so it outlives the backlog by at most one window.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
mod batch;
mod batched;
mod breaker;
mod io;
mod joint;
mod memory_guard;
mod refund;
mod reply;
mod scripts;
mod shards;
mod wire;

use self::batch::{Decided, OwnedOp};
pub use self::batched::{Batched, BatchedBuilder, DEFAULT_MAX_QUEUED, DEFAULT_MAX_WAIT};
pub use self::breaker::{BreakerConfig, BreakerState};
use self::io::IoThread;
pub use self::memory_guard::MemoryGuard;
use self::memory_guard::MemoryState;
use self::reply::{gcra_decision, parse_reply};
use self::scripts::{ScriptClock, Scripts};
use self::shards::Shards;
pub use self::wire::{DEFAULT_TIMEOUT, PER_DECISION_ALLOWANCE};
use super::{LeaseStore, Store};
use crate::connection::Connection;
use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::{Error, StoreConfigError, StoreError};
use crate::joint::{Check, Joint};
use crate::key;
use crate::policy::{Algorithm, Limit, Policy};
use crate::reservation::{Reservation, Settle};

/// A store on Redis (standalone or Cluster): exact across any number of instances.
///
/// - One `EVALSHA` per decision, whatever the number of windows; the script is loaded
///   again automatically after `NOSCRIPT` (a restarted or flushed Redis).
/// - Every call has a [`timeout`](RedisStoreBuilder::timeout) (default
///   [`DEFAULT_TIMEOUT`]) and goes through a circuit breaker
///   ([`BreakerConfig`]): errors, broken connections, timeouts and calls slower than
///   `slow_call` open it, and while it is open calls fail at once with
///   [`Unavailable::BreakerOpen`](crate::Unavailable::BreakerOpen) (a
///   [`Guarded`](crate::Guarded) store's failure mode then decides); a `PING` every
///   `probe_interval` half-opens it, and the next successful call closes it. Calls run
///   on a thread of the store's own and are timed there, from when they are written to
///   when their reply is read: this process's load never counts against Redis.
/// - On a Cluster, each shard (a master and its slots, read with `CLUSTER SLOTS` when
///   connecting) has a breaker of its own, labelled `slots` in the metrics: a master
///   that fails or stalls opens its own, and the keys of the other masters are still
///   decided by Redis.
/// - The only clock is Redis `TIME`, read inside the script: instances with skewed
///   clocks make identical decisions.
/// - Every key expires when its window no longer matters.
/// - With a [`MemoryGuard`] (see [`RedisStoreBuilder::memory_guard`]), new keys are
///   refused while Redis memory is above a fraction of `maxmemory`.
///
/// ```no_run
/// use std::time::Duration;
/// use limiter_core::{Limit, Limiter, Policy, RedisStore};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder().prefix("myapp:rl:").connect("redis://127.0.0.1:6379").await?;
/// let policy = Policy::new("api", vec![Limit::new(100, Duration::from_secs(60))])?;
/// let limiter = Limiter::new(policy, store);
/// let decision = limiter.check("user:42", 1).await?;
/// println!("allowed: {}", decision.is_allowed());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    prefix: Arc<str>,
    scripts: Arc<Scripts>,
    memory: Option<Arc<MemoryState>>,
    io: IoThread,
    shards: Arc<Shards>,
    #[cfg(feature = "test-clock")]
    script_clock: Option<Arc<dyn crate::Clock>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connection", &self.conn.kind())
            .field("memory_over", &self.memory_over())
            .field("breaker", &self.breaker_state())
            .finish_non_exhaustive()
    }
}

/// Configures and connects a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    prefix: String,
    memory_guard: Option<MemoryGuard>,
    timeout: Duration,
    breaker: BreakerConfig,
}

impl RedisStore {
    /// Starts configuring a store (key prefix `"rl:"`, [`DEFAULT_TIMEOUT`], the default
    /// [`BreakerConfig`]).
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder {
            prefix: "rl:".to_owned(),
            memory_guard: None,
            timeout: DEFAULT_TIMEOUT,
            breaker: BreakerConfig::default(),
        }
    }

    /// Loads the scripts (on a Cluster, `SCRIPT LOAD` reaches every primary), so that
    /// the first burst of decisions does not meet `NOSCRIPT`.
    async fn with_scripts_loaded(self) -> Result<RedisStore, StoreError> {
        let mut conn = self.conn.clone();
        self.scripts
            .load_once(0, &mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(self)
    }

    /// The circuit breaker's state; on a Cluster, the worst of its shards' breakers
    /// (open while one is).
    pub fn breaker_state(&self) -> BreakerState {
        self.shards.state()
    }

    /// How often an open breaker checks whether Redis answers again: when a request
    /// refused meanwhile may retry.
    pub fn probe_interval(&self) -> Duration {
        self.shards.wire(0).breaker().config().probe_interval
    }

    /// Runs `call`, a round trip to shard `shard` carrying `decisions` decisions, under
    /// the shard's timeout and breaker. On the I/O thread only.
    async fn on_wire<T>(
        &self,
        shard: usize,
        decisions: usize,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let (result, opened) = self.shards.wire(shard).call(decisions, call).await;
        if opened {
            self.start_health_check(shard);
        }
        result
    }

    /// Runs `call` with a clone of this store on the I/O thread, from any runtime.
    async fn on_io<T, F>(&self, call: impl FnOnce(RedisStore) -> F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        self.io.run(call(self.clone())).await
    }

    /// Probes shard `shard` (its master on a Cluster) every `probe_interval` until it
    /// answers, then half-opens its breaker; every [`RENEW_AFTER`] failed probes, a
    /// Cluster connection is made anew (see `Connection::renew`) and the slots are
    /// mapped to shards anew. The task holds only a weak reference to the breakers
    /// between probes, so dropping the store ends it.
    fn start_health_check(&self, shard: usize) {
        let shards = Arc::downgrade(&self.shards);
        let conn = self.conn.clone();
        let interval = self.probe_interval();
        let timeout = self.shards.wire(shard).timeout();
        self.io.spawn(async move {
            for failed in 1u64.. {
                tokio::time::sleep(interval).await;
                let Some(shards) = shards.upgrade() else {
                    return;
                };
                let wire = shards.wire(shard);
                if wire.breaker().state() != BreakerState::Open {
                    return;
                }
                let ping = conn.ping(shards.probe_slot(shard));
                if let Ok(Ok(())) = tokio::time::timeout(timeout, ping).await {
                    wire.breaker().half_open();
                    return;
                }
                if failed % RENEW_AFTER == 0 {
                    // Bounded: connecting asks the nodes one by one, each within the
                    // client's own connect timeout, and a probe must follow in time.
                    let renew = async {
                        conn.renew().await?;
                        shards::cluster_slots(&conn).await
                    };
                    match tokio::time::timeout(interval * 4, renew).await {
                        Ok(Ok(masters)) => shards.refresh(&masters),
                        Ok(Err(err)) => {
                            tracing::debug!(%err, "rate-limit store: cluster connection not renewed");
                        }
                        Err(_) => {}
                    }
                }
            }
        });
    }

    /// Whether the [`MemoryGuard`] last read Redis memory above its threshold (new keys
    /// refused); `None` without a guard.
    pub fn memory_over(&self) -> Option<bool> {
        self.memory.as_ref().map(|m| m.is_over())
    }

    /// While the memory guard is over its threshold, fails with
    /// [`StoreError::MemoryPressure`] if Redis holds none of `key`'s windows under
    /// `policy` (`key` normalized). Otherwise, the normal case, costs one atomic load.
    pub(crate) async fn refuse_new_under_pressure(
        &self,
        policy: &Policy,
        key: &str,
    ) -> Result<(), Error> {
        if !self.memory_over().unwrap_or(false) {
            return Ok(());
        }
        // One EXISTS round trip, only under pressure: the keys share a hash tag, so on a
        // Cluster they are one slot's. A key created or expiring between this and the
        // decision is decided as it then stands: at most a few keys either way.
        let mut cmd = ::redis::cmd("EXISTS");
        self.push_keys(&mut cmd, policy, key);
        let shard = self.shards.shard_of(policy, key);
        let held: u64 = self
            .on_io(move |store| async move {
                let mut conn = store.conn.clone();
                let exists = cmd.query_async(&mut conn);
                store
                    .on_wire(shard, 1, async { exists.await.map_err(store_error) })
                    .await
            })
            .await?;
        if held == 0 {
            return Err(memory_guard::refused());
        }
        Ok(())
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Makes the script read "now" from `clock` instead of Redis `TIME`.
    ///
    /// Only in builds with the `test-clock` feature, which the differential tests enable;
    /// no configuration of a production build can reach it.
    #[cfg(feature = "test-clock")]
    #[doc(hidden)]
    pub fn with_script_clock(mut self, clock: impl crate::Clock) -> Self {
        // Redis expires keys on its own clock, which the injected one outruns or lags:
        // under the test clock keys live ten minutes longer, so that only the script's
        // own arithmetic decides (key expiry is tested on the production script).
        self.scripts = Arc::new(Scripts::new(ScriptClock::Injected));
        self.script_clock = Some(Arc::new(clock));
        self
    }

    async fn decide(&self, policy: &Policy, key: &str, cost: Cost) -> Result<Decision, Error> {
        let key = key::normalize(key)?;
        self.refuse_new_under_pressure(policy, &key).await?;
        let cmd = self.evalsha(policy, &key, cost);
        let shard = self.shards.shard_of(policy, &key);
        if let Some(limit) = short_gcra(policy) {
            let backlog = self.call::<i64>(shard, cmd).await?;
            return gcra_decision(limit, cost.of(limit), backlog);
        }
        let reply = self.call::<Vec<i64>>(shard, cmd).await?;
        parse_reply(policy, cost, &reply)
    }

    /// One script call to shard `shard` on the I/O thread, timed and counted by its
    /// breaker.
    async fn call<T: ::redis::FromRedisValue + Send + 'static>(
        &self,
        shard: usize,
        cmd: ::redis::Cmd,
    ) -> Result<T, Error> {
        self.on_io(move |store| async move {
            let mut conn = store.conn.clone();
            let run = store.run(&cmd, &mut conn);
            store
                .on_wire(shard, 1, async { run.await.map_err(store_error) })
                .await
        })
        .await
    }

    /// `EVALSHA` built directly into one command buffer: a decision is the hot path, and
    /// a `redis::ScriptInvocation` would copy every key and argument into a vector of
    /// its own first.
    fn evalsha(&self, policy: &Policy, key: &str, cost: Cost) -> ::redis::Cmd {
        let limits = policy.limits();
        let keys = key_count(policy);
        let mut cmd = ::redis::Cmd::with_capacity(
            5 + keys + 4 * limits.len(),
            64 + keys * (self.prefix.len() + policy.name().len() + key.len() + 8),
        );
        cmd.arg("EVALSHA")
            .arg(self.scripts.decide.get_hash())
            .arg(keys);
        self.push_keys(&mut cmd, policy, key);
        push_cost(&mut cmd, policy, cost, false);
        push_policy_args(&mut cmd, policy);
        #[cfg(feature = "test-clock")]
        self.push_script_clock(&mut cmd);
        cmd
    }

    /// The keys of `key`'s windows under `policy`, in the scripts' order.
    fn push_keys(&self, cmd: &mut ::redis::Cmd, policy: &Policy, key: &str) {
        let mut name =
            String::with_capacity(self.prefix.len() + policy.name().len() + key.len() + 8);
        name.push_str(&self.prefix);
        name.push('{');
        name.push_str(policy.name());
        name.push(':');
        name.push_str(key);
        name.push_str("}:");
        let base = name.len();
        for (i, limit) in policy.limits().iter().enumerate() {
            name.truncate(base);
            let _ = write!(name, "{i}{}", limit.algorithm().tag());
            cmd.arg(&name);
            if matches!(limit.algorithm(), Algorithm::SlidingLog) {
                name.pop();
                name.push('m');
                cmd.arg(&name);
            }
        }
    }

    /// The key that marks a reservation as settled: beside the windows' keys, in their
    /// hash slot (`r` and the id in hex; a window's key starts with its index, a digit).
    fn push_marker(&self, cmd: &mut ::redis::Cmd, policy: &Policy, key: &str, marker: u64) {
        cmd.arg(format!(
            "{}{{{}:{}}}:r{marker:016x}",
            self.prefix,
            policy.name(),
            key
        ));
    }

    #[cfg(feature = "test-clock")]
    fn push_script_clock(&self, cmd: &mut ::redis::Cmd) {
        if let Some(clock) = &self.script_clock {
            cmd.arg(clock.now_us());
        }
    }

    /// Runs the script; after `NOSCRIPT` (a new, restarted or flushed Redis) loads it
    /// and runs it again. Concurrent calls that meet `NOSCRIPT` together load it once:
    /// a thousand loads of a script are tens of milliseconds of Redis's time.
    async fn run<T: ::redis::FromRedisValue, C: ConnectionLike>(
        &self,
        cmd: &::redis::Cmd,
        conn: &mut C,
    ) -> ::redis::RedisResult<T> {
        let loads = self.scripts.loads();
        match cmd.query_async(conn).await {
            Err(err)
                if err.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
            {
                self.scripts.load_once(loads, conn).await?;
                cmd.query_async(conn).await
            }
            result => result,
        }
    }
}

/// Failed health probes after which a Cluster connection is made anew (see
/// `Connection::renew`): two, a second of probing at the default interval.
const RENEW_AFTER: u64 = 2;

/// The scripts' algorithm codes, strides and verdicts: decide.lua and refund.lua define
/// the same under the same names (a test in `scripts` checks them).
pub(super) mod protocol {
    pub(crate) const ALGORITHM_GCRA: u8 = 1;
    pub(crate) const ALGORITHM_FIXED: u8 = 2;
    pub(crate) const ALGORITHM_CALENDAR: u8 = 3;
    pub(crate) const ALGORITHM_SLIDING_COUNTER: u8 = 4;
    pub(crate) const ALGORITHM_SLIDING_LOG: u8 = 5;
    /// decide.lua's arguments per window (after the cost and the window count).
    pub(crate) const ARGS_PER_WINDOW: usize = 4;
    /// Added to a window's algorithm code in decide.lua's arguments when the window is
    /// charged the units of a "requests:units" cost.
    pub(crate) const UNIT_WINDOW: u8 = 8;
    /// decide.lua's reply integers for a sliding log window: verdict, remaining, reset
    /// after us, next unit after us (other windows reply their state: see `reply.rs`).
    pub(crate) const REPLY_PER_LOG: usize = 4;
    /// refund.lua's arguments per window (after the four leading ones).
    pub(crate) const REFUND_ARGS_PER_WINDOW: usize = 5;
    /// A window's verdict in a reply: the cost fits.
    pub(crate) const FITS: i64 = -1;
    /// A window's verdict in a reply: the cost can never fit.
    pub(crate) const NEVER: i64 = -2;
}

/// Keys a decision of `policy` sends: one per window, two for a sliding log.
fn key_count(policy: &Policy) -> usize {
    policy.limits().len()
        + policy
            .limits()
            .iter()
            .filter(|l| matches!(l.algorithm(), Algorithm::SlidingLog))
            .count()
}

/// The one window of a policy decide.lua takes in its short form (one GCRA window): fewer
/// arguments to parse and one integer replied.
pub(super) fn short_gcra(policy: &Policy) -> Option<&Limit> {
    match policy.limits() {
        [limit] if matches!(limit.algorithm(), Algorithm::Gcra { .. }) => Some(limit),
        _ => None,
    }
}

/// decide.lua's cost: one figure when every window is charged the same (always, in the
/// short form, unless `forced`), else "requests:units".
fn push_cost(cmd: &mut ::redis::Cmd, policy: &Policy, cost: Cost, forced: bool) {
    match (short_gcra(policy), cost.uniform(policy)) {
        (Some(limit), _) if !forced => {
            cmd.arg(cost.of(limit));
        }
        (_, Some(cost)) => {
            cmd.arg(cost);
        }
        (_, None) => {
            cmd.arg(format!("{}:{}", cost.requests(), cost.units()));
        }
    }
}

/// decide.lua's arguments after the cost: the short form for one GCRA window, otherwise
/// the window count and four arguments per window.
fn push_policy_args(cmd: &mut ::redis::Cmd, policy: &Policy) {
    match short_gcra(policy) {
        Some(limit) => {
            cmd.arg("g").arg(limit.capacity()).arg(limit.emission_us());
        }
        None => push_windows(cmd, policy.limits().len() as i64, policy.limits()),
    }
}

/// decide.lua's arguments after the cost in the forced form (a negative window count):
/// every window charged whatever its verdict.
pub(super) fn push_policy_args_forced(cmd: &mut ::redis::Cmd, policy: &Policy) {
    let limits = policy.limits();
    push_windows(cmd, -(limits.len() as i64), limits);
}

fn push_windows(cmd: &mut ::redis::Cmd, count: i64, limits: &[Limit]) {
    cmd.arg(count);
    for limit in limits {
        let (code, max, window, period) = script_args(limit);
        let code = if limit.counts_requests() {
            code
        } else {
            code + protocol::UNIT_WINDOW
        };
        cmd.arg(code).arg(max).arg(window).arg(period);
    }
}

/// How many arguments [`push_policy_args_forced`] sends.
pub(super) fn policy_arg_count_forced(policy: &Policy) -> usize {
    1 + protocol::ARGS_PER_WINDOW * policy.limits().len()
}

/// How many arguments [`push_policy_args`] sends.
fn policy_arg_count(policy: &Policy) -> usize {
    match short_gcra(policy) {
        Some(_) => 3,
        None => 1 + protocol::ARGS_PER_WINDOW * policy.limits().len(),
    }
}

/// The script's four arguments for one window: algorithm code, max (GCRA: capacity),
/// window in us (GCRA: emission interval), calendar period code.
fn script_args(limit: &Limit) -> (u8, u64, i64, u8) {
    let code = algorithm_code(limit.algorithm());
    match limit.algorithm() {
        Algorithm::Gcra { .. } => (code, limit.capacity(), limit.emission_us(), 0),
        Algorithm::Calendar(period) => (code, limit.max(), limit.window_us(), period.code()),
        _ => (code, limit.max(), limit.window_us(), 0),
    }
}

/// The algorithm code of `algorithm` in the scripts' arguments.
pub(super) fn algorithm_code(algorithm: Algorithm) -> u8 {
    match algorithm {
        Algorithm::Gcra { .. } => protocol::ALGORITHM_GCRA,
        Algorithm::FixedWindow => protocol::ALGORITHM_FIXED,
        Algorithm::Calendar(_) => protocol::ALGORITHM_CALENDAR,
        Algorithm::SlidingWindow => protocol::ALGORITHM_SLIDING_COUNTER,
        Algorithm::SlidingLog => protocol::ALGORITHM_SLIDING_LOG,
    }
}

fn store_error(err: redis::RedisError) -> Error {
    Error::Store(err.into())
}

impl RedisStoreBuilder {
    /// Prefix for every key (default `"rl:"`); it must not contain `{` or `}`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// The longest a call to Redis carrying one decision may take before it has failed
    /// (default [`DEFAULT_TIMEOUT`]); a batch of `n` decisions gets `n - 1` times
    /// [`PER_DECISION_ALLOWANCE`] more. Counted from when the call is written, on the
    /// store's own thread: time queued in this process is not part of it. Connecting
    /// fails for zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// When the circuit breaker opens and how often it probes (default
    /// [`BreakerConfig::default`]); connecting fails for a field that cannot work (see
    /// [`BreakerConfig::invalid_field`]).
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// Refuses new keys while Redis memory is high (off by default): see [`MemoryGuard`].
    /// Connecting then also opens one connection per node given for its `INFO memory`
    /// reads (on a Cluster, give every primary: the guard trips when any is over).
    ///
    /// ```no_run
    /// use limiter_core::{MemoryGuard, RedisStore};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder()
    ///     .memory_guard(MemoryGuard::default())
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// assert_eq!(store.memory_over(), Some(false));
    /// # Ok(()) }
    /// ```
    pub fn memory_guard(mut self, guard: MemoryGuard) -> Self {
        self.memory_guard = Some(guard);
        self
    }

    /// Validates the guard and starts it reading `urls` on connections of its own (made
    /// when each node first answers).
    fn watch(&self, urls: &[&str]) -> Result<Option<Arc<MemoryState>>, StoreError> {
        let Some(guard) = self.memory_guard else {
            return Ok(None);
        };
        guard.validate()?;
        let nodes = urls
            .iter()
            .map(|url| redis::Client::open(*url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::from)?;
        Ok(Some(MemoryState::watch(guard, nodes)))
    }

    /// Checks the settings and starts the store's I/O thread, on which its connection
    /// is then made (the connection's own task lives there).
    fn prepare(&self) -> Result<IoThread, StoreError> {
        if self.prefix.contains(['{', '}']) {
            return Err(StoreConfigError::KeyPrefix(self.prefix.clone()).into());
        }
        if self.timeout.is_zero() {
            return Err(StoreConfigError::Timeout.into());
        }
        if let Some((field, problem)) = self.breaker.invalid_field() {
            return Err(StoreConfigError::Breaker { field, problem }.into());
        }
        IoThread::start()
    }

    fn build(
        self,
        io: IoThread,
        conn: Connection,
        memory: Option<Arc<MemoryState>>,
        shards: Shards,
    ) -> RedisStore {
        RedisStore {
            conn,
            prefix: self.prefix.into(),
            scripts: Arc::new(Scripts::new(ScriptClock::Redis)),
            memory,
            io,
            shards: Arc::new(shards),
            #[cfg(feature = "test-clock")]
            script_clock: None,
        }
    }

    /// Connects to a standalone Redis (`redis://host:port/db`), reconnecting by itself.
    pub async fn connect(self, url: &str) -> Result<RedisStore, StoreError> {
        let io = self.prepare()?;
        let client = redis::Client::open(url).map_err(StoreError::from)?;
        let conn = io
            .run(async move {
                let conn = ConnectionManager::new(client).await;
                conn.map_err(|e| Error::Store(e.into()))
            })
            .await
            .map_err(into_store_error)?;
        let memory = self.watch(&[url])?;
        let shards = Shards::single(self.timeout, self.breaker.clone());
        self.build(io, Connection::Single(conn), memory, shards)
            .with_scripts_loaded()
            .await
    }

    /// Connects to a Redis Cluster through any of its nodes, and reads which master
    /// serves which slots (`CLUSTER SLOTS`), for a breaker per shard. Where that cannot
    /// be read the whole Cluster has one breaker until the connection is next renewed.
    pub async fn connect_cluster(self, nodes: &[&str]) -> Result<RedisStore, StoreError> {
        let io = self.prepare()?;
        let owned: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        let (conn, masters) = io
            .run(async move {
                let nodes: Vec<&str> = owned.iter().map(String::as_str).collect();
                let conn = Connection::cluster(&nodes)
                    .await
                    .map_err(|e| Error::Store(e.into()))?;
                let masters = shards::cluster_slots(&conn).await.unwrap_or_else(|err| {
                    tracing::warn!(%err, "rate-limit store: CLUSTER SLOTS unread, one breaker for the cluster");
                    Vec::new()
                });
                Ok((conn, masters))
            })
            .await
            .map_err(into_store_error)?;
        let memory = self.watch(nodes)?;
        let shards = Shards::cluster(self.timeout, self.breaker.clone(), &masters);
        self.build(io, conn, memory, shards)
            .with_scripts_loaded()
            .await
    }
}

/// The store failure inside an [`Error`] returned on the I/O thread while connecting.
fn into_store_error(err: Error) -> StoreError {
    match err {
        Error::Store(err) => err,
        other => StoreError::Protocol(other.to_string()),
    }
}

impl Store for RedisStore {
    async fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        self.decide(policy, key, cost.into()).await
    }

    async fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        let estimate = estimate.into();
        self.refuse_new_under_pressure(policy, &key::normalize(key)?)
            .await?;
        let mut decided = self
            .decide_alone(policy, key, OwnedOp::Decide(estimate))
            .await?;
        let (decision, at) = decided
            .pop()
            .ok_or_else(|| StoreError::Protocol("batch script replied nothing".into()))?;
        Ok(Reservation::new(decision, estimate, at))
    }

    async fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        let Some(settle) = reservation.settlement(actual.into()) else {
            return Ok(());
        };
        self.decide_alone(policy, key, OwnedOp::Settle(settle))
            .await
            .map(drop)
    }

    /// One script call on a standalone Redis (see `joint.rs`); in order on a Cluster.
    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        self.check_all_joint(checks).await
    }

    /// Deletes the key's windows (one hash slot: one command on a Cluster too).
    async fn reset(&self, policy: &Policy, key: &str) -> Result<(), Error> {
        let key = key::normalize(key)?;
        let mut cmd = ::redis::cmd("DEL");
        self.push_keys(&mut cmd, policy, &key);
        let shard = self.shards.shard_of(policy, &key);
        self.on_io(move |store| async move {
            let mut conn = store.conn.clone();
            let del = cmd.query_async::<i64>(&mut conn);
            store
                .on_wire(shard, 1, async { del.await.map_err(store_error) })
                .await
        })
        .await
        .map(drop)
    }

    async fn ping(&self) -> Result<(), Error> {
        let ping = ::redis::cmd("PING");
        ping.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }
}

impl LeaseStore for RedisStore {
    async fn take(&self, policy: &Policy, key: &str, units: u64) -> Result<Decided, Error> {
        self.refuse_new_under_pressure(policy, &key::normalize(key)?)
            .await?;
        let op = OwnedOp::Decide(units.into());
        let mut decided = self.decide_alone(policy, key, op).await?;
        decided
            .pop()
            .ok_or_else(|| StoreError::Protocol("batch script replied nothing".into()).into())
    }

    async fn refund(
        &self,
        policy: &Policy,
        key: &str,
        taken: u64,
        unused: u64,
        taken_at_us: i64,
    ) -> Result<(), Error> {
        let op = OwnedOp::Settle(Settle {
            reserved: taken.into(),
            actual: taken.saturating_sub(unused).into(),
            at: taken_at_us,
            marker: None,
        });
        self.decide_alone(policy, key, op).await.map(drop)
    }
}
