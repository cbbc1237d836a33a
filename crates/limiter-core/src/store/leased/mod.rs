//! [`Leased`]: a store wrapper that reserves quota for hot keys in the shared store and
//! admits from that reservation in process, so that a key under steady load costs a
//! store round trip per lease instead of per request, and nothing is ever admitted that
//! the shared store did not count first.

mod expiry;
mod lane;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use self::expiry::{give_back, Expiry};
use self::lane::{Lane, Lease};
use super::policy_key::{PolicyKey, PolicyKeyRef};
use super::{LeaseStore, Store};
use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::Error;
use crate::joint::{Check, Joint};
use crate::policy::{Leasing, Policy};
use crate::reservation::Reservation;

/// A [`LeaseStore`] wrapper that admits requests for hot keys from quota leased in the
/// shared store.
///
/// - **Leases**: when requests for a key wait for a store call already in flight for
///   it, or the key is in demand (at least [`min_demand`](LeasedBuilder::min_demand)
///   units per lease lifetime), a request reserves extra units with its own, in every
///   window of the policy in one atomic store call; the requests that follow are admitted
///   from them in process ([`Decision::is_leased`]). Over-admission is impossible by
///   construction: every unit admitted here was consumed in the shared store first.
/// - **Short-lived**: a lease is used at most its lifetime after it was asked for: the
///   configured [`lifetime`](LeasedBuilder::lifetime) (default 250 ms), and at most
///   1/20 of the policy's shortest window. Then its unused units are given back
///   ([`LeaseStore::refund`]): counters and GCRA take them back exactly, a sliding log
///   shrinks the lease's entry; a window that has moved on keeps nothing to return.
/// - **Sized to demand and headroom**: a lease covers the requests waiting for it, and
///   speculatively one lifetime of the key's recent demand, but at most a share of the
///   policy's capacity ([`speculation`](LeasedBuilder::speculation), default 0.5%: what
///   a lease can leave unused when traffic stops) and half of the room the store last
///   reported above a reserve (by default the last 10% of every window's capacity,
///   which is always decided by the store). Keys near their limit are decided by the
///   store as before.
/// - **No thundering herd**: while one request of a key takes a lease, the others wait
///   for it instead of all asking the store; those it does not cover then ask the store.
/// - **Bounded memory**: per-key state lives in a cache of at most
///   [`max_bytes`](LeasedBuilder::max_bytes) (default 100 MB). Evicting a key's state
///   never admits anything: a lease evicted early is still given back at its expiry, and
///   the key's next request asks the store.
/// - **Observable**: [`stats`](Leased::stats), and the counters `ratelimit_leases_total`,
///   `ratelimit_lease_refunded_units_total` and `ratelimit_lease_refund_failures_total`.
/// - **Store failures**: a take that fails fails its request (a [`Guarded`](crate::Guarded)
///   store around this one lets its failure mode decide); leases already held keep
///   admitting until they expire (their units were consumed), and a lease is given back
///   at most once.
///
/// Put it inside [`DenialCache`](crate::DenialCache) and [`Guarded`](crate::Guarded),
/// around [`Batched`](crate::Batched). The expiry task starts with the first lease and ends, giving back
/// what is still held, when the last clone is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use limiter_core::{Batched, Guarded, Leased, Limit, Limiter, Policy, RedisStore};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStore::builder().connect("redis://127.0.0.1:6379").await?;
/// let leased = Leased::builder(Batched::builder(redis).build())
///     .lifetime(Duration::from_millis(50))
///     .build();
/// let store = Guarded::builder(leased.clone()).build()?;
/// let policy = Policy::new("api", vec![Limit::new(10_000, Duration::from_secs(60))])?;
/// let limiter = Limiter::new(policy, store);
/// for _ in 0..100 {
///     limiter.check("hot-tenant", 1).await?; // most are admitted from a lease
/// }
/// println!("{:?}", leased.stats());
/// # Ok(()) }
/// ```
pub struct Leased<S: LeaseStore> {
    shared: Arc<Shared<S>>,
}

impl<S: LeaseStore> Clone for Leased<S> {
    fn clone(&self) -> Self {
        Leased {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: LeaseStore + std::fmt::Debug> std::fmt::Debug for Leased<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leased")
            .field("store", &self.shared.store)
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Shared<S> {
    store: Arc<S>,
    config: LeaseConfig,
    lanes: Cache<PolicyKey, Arc<Lane>, LaneWeight>,
    stats: Arc<Stats>,
    next_id: AtomicU64,
    /// Started by the first lease, inside the caller's runtime.
    expiries: OnceLock<mpsc::UnboundedSender<Expiry>>,
}

/// How leases are sized and how long they live.
#[derive(Clone, Debug)]
pub(crate) struct LeaseConfig {
    enabled: bool,
    lifetime: Duration,
    reserve: f64,
    speculation: f64,
    min_demand: u64,
    min_units: u64,
    max_units: u64,
    max_bytes: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            enabled: true,
            lifetime: Duration::from_millis(250),
            reserve: 0.1,
            speculation: 0.005,
            min_demand: 2,
            min_units: 1,
            max_units: 10_000,
            max_bytes: 100_000_000,
        }
    }
}

impl LeaseConfig {
    /// The most speculative units of a policy's leases (see `LaneState::lease_size`).
    fn speculative_cap(&self, policy: &Policy) -> u64 {
        let capacity = policy
            .limits()
            .iter()
            .map(|l| l.capacity())
            .min()
            .unwrap_or(0);
        (capacity as f64 * self.speculation) as u64
    }

    /// Whether `policy`'s keys are leased at all: a test on the hot path, cheaper than
    /// [`lifetime_for`](Self::lifetime_for).
    fn leases(&self, policy: &Policy) -> bool {
        self.enabled && policy.leasing() != Leasing::Off
    }

    /// The lifetime of a policy's leases: the configured one (or the policy's own), at
    /// most 1/20 of the shortest window, so that units consumed early stay a small part
    /// of any window; zero when the policy is never leased.
    fn lifetime_for(&self, policy: &Policy) -> Duration {
        if !self.leases(policy) {
            return Duration::ZERO;
        }
        let lifetime = match policy.leasing() {
            Leasing::Lifetime(lifetime) => lifetime,
            _ => self.lifetime,
        };
        policy
            .limits()
            .iter()
            .map(|l| l.window() / 20)
            .min()
            .map_or(lifetime, |w| w.min(lifetime))
    }
}

/// Configures a [`Leased`] store.
pub struct LeasedBuilder<S> {
    store: S,
    config: LeaseConfig,
}

/// Counts of what a [`Leased`] store did, for tests and dashboards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseStats {
    /// Requests admitted in process from a lease.
    pub local_admissions: u64,
    /// Leases taken.
    pub leases: u64,
    /// Leases taken and not yet ended (expired or replaced, and their refund done).
    pub outstanding: u64,
    /// Units given back to the store.
    pub refunded_units: u64,
    /// Refunds that failed (their units stay used until their windows pass).
    pub failed_refunds: u64,
    /// The oldest a lease was when it admitted a request, from the moment it was asked
    /// for: never more than its lifetime.
    pub oldest_use: Duration,
}

#[derive(Default)]
struct Stats {
    local_admissions: AtomicU64,
    leases: AtomicU64,
    outstanding: AtomicU64,
    refunded_units: AtomicU64,
    failed_refunds: AtomicU64,
    oldest_use_us: AtomicU64,
}

impl Stats {
    fn lease_ended(&self, refunded: u64, ok: bool) {
        if ok {
            metrics::counter!(crate::metric_names::LEASE_REFUNDED_UNITS_TOTAL).increment(refunded);
            self.refunded_units.fetch_add(refunded, Ordering::Relaxed);
        } else {
            metrics::counter!(crate::metric_names::LEASE_REFUND_FAILURES_TOTAL).increment(1);
            self.failed_refunds.fetch_add(1, Ordering::Relaxed);
        }
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Weighs a lane by the memory it holds, for the byte bound.
#[derive(Clone)]
struct LaneWeight;

impl Weighter<PolicyKey, Arc<Lane>> for LaneWeight {
    fn weight(&self, key: &PolicyKey, lane: &Arc<Lane>) -> u64 {
        // The map's key and value, the lane with its lease's decision, and the key copy
        // the lane holds for refunds.
        let bytes = std::mem::size_of::<PolicyKey>()
            + std::mem::size_of::<Arc<Lane>>()
            + std::mem::size_of::<Lane>()
            + std::mem::size_of::<Lease>()
            + 2 * key.heap_bytes()
            + lane.key.len().saturating_sub(24);
        bytes as u64
    }
}

impl<S: LeaseStore> Leased<S> {
    /// Starts configuring leases in front of `store`: 250 ms lifetime, 10% reserve,
    /// speculative units up to 0.5% of capacity for keys asking for at least 2 units per
    /// lifetime, leases of up to 10,000 units, 100 MB of key state.
    pub fn builder(store: S) -> LeasedBuilder<S> {
        LeasedBuilder {
            store,
            config: LeaseConfig::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.shared.store
    }

    /// What the store has done so far.
    pub fn stats(&self) -> LeaseStats {
        let s = &self.shared.stats;
        LeaseStats {
            local_admissions: s.local_admissions.load(Ordering::Relaxed),
            leases: s.leases.load(Ordering::Relaxed),
            outstanding: s.outstanding.load(Ordering::Acquire),
            refunded_units: s.refunded_units.load(Ordering::Relaxed),
            failed_refunds: s.failed_refunds.load(Ordering::Relaxed),
            oldest_use: Duration::from_micros(s.oldest_use_us.load(Ordering::Relaxed)),
        }
    }

    /// The lifetime of `policy`'s leases (see [`LeasedBuilder::lifetime`] and
    /// [`Policy::with_leasing`]); zero for a policy never leased.
    pub fn lifetime(&self, policy: &Policy) -> Duration {
        self.shared.config.lifetime_for(policy)
    }

    /// The bytes of key state held now (at most [`LeasedBuilder::max_bytes`]).
    pub fn held_bytes(&self) -> u64 {
        self.shared.lanes.weight()
    }

    fn lane(&self, policy: &Policy, key: &str, now: Instant) -> Arc<Lane> {
        let lanes = &self.shared.lanes;
        let probe = PolicyKeyRef::new(policy, key);
        if let Some(lane) = lanes.get(&probe) {
            if lane.policy == *policy {
                return lane;
            }
        }
        // New, or made under a policy since reloaded: the old lane's lease still ends and
        // is given back under the limits it was taken with.
        let lane = Arc::new(Lane::new(policy, key, &self.shared.config, now));
        lanes.insert(PolicyKey::new(policy, key), Arc::clone(&lane));
        lane
    }

    async fn decide(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        if cost == 0 || key.is_empty() || !self.shared.config.leases(policy) {
            // A peek reports the store's own figures; an empty key is the store's error;
            // a policy never leased needs no state here.
            return self.shared.store.check(policy, key, cost).await;
        }
        let now = Instant::now();
        let lane = self.lane(policy, key, now);
        {
            // The hot path: admitted from the lease held, under one lock.
            let mut state = lane.state.lock();
            state.count(now, cost, lane.lifetime);
            if let Some((decision, age)) = state.admit(now, cost) {
                drop(state);
                self.shared.record_local(age);
                return Ok(decision);
            }
        }
        let mut rounds = 0;
        loop {
            let mut notified = std::pin::pin!(lane.taken.notified());
            let step = {
                let mut state = lane.state.lock();
                let now = Instant::now();
                if let Some((decision, age)) = state.admit(now, cost) {
                    drop(state);
                    self.shared.record_local(age);
                    return Ok(decision);
                }
                if state.taking {
                    if rounds < MAX_WAITS {
                        state.waiting += cost;
                        notified.as_mut().enable();
                        Step::Wait
                    } else {
                        Step::Check
                    }
                } else {
                    match lane.lease_size(&state, cost, &self.shared.config) {
                        0 => Step::Check,
                        units => {
                            state.taking = true;
                            Step::Take(units)
                        }
                    }
                }
            };
            match step {
                Step::Wait => {
                    let waiting = Waiting { lane: &lane, cost };
                    notified.await;
                    drop(waiting);
                    rounds += 1;
                }
                Step::Take(units) => {
                    if let Some(decision) = self.take(&lane, cost, units).await? {
                        return Ok(decision);
                    }
                    return self.check_store(&lane, cost).await;
                }
                Step::Check => return self.check_store(&lane, cost).await,
            }
        }
    }

    /// Asks the store for `cost` plus `units` to lease. `None` when the store did not
    /// grant them (the request is then decided on its own).
    async fn take(
        &self,
        lane: &Arc<Lane>,
        cost: u64,
        units: u64,
    ) -> Result<Option<Decision>, Error> {
        let taking = Taking { lane };
        let asked_at = Instant::now();
        let taken = cost + units;
        let (decision, taken_at_us) =
            match self.shared.store.take(&lane.policy, &lane.key, taken).await {
                Ok(taken) => taken,
                Err(err) => {
                    // No more takes until the store has answered a request again. The
                    // failure is the request's answer: asking again would only wait for
                    // a second failing call (or be shed again).
                    lane.state.lock().forget_room();
                    return Err(err);
                }
            };
        let reserve = self.shared.config.reserve;
        if !decision.is_allowed() || decision.is_degraded() {
            lane.state.lock().observe(&decision, reserve);
            return Ok(None);
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let lease = Lease::new(
            id,
            units,
            taken,
            taken_at_us,
            asked_at,
            lane.lifetime,
            decision,
        );
        let (mine, replaced) = {
            let mut state = lane.state.lock();
            let mine = lease.view(asked_at);
            state.learn_room(&mine, reserve);
            (mine, state.install(lease))
        };
        drop(taking);
        let stats = &self.shared.stats;
        metrics::counter!(crate::metric_names::LEASES_TOTAL).increment(1);
        stats.leases.fetch_add(1, Ordering::Relaxed);
        stats.outstanding.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = replaced {
            give_back(&self.shared.store, stats, lane, old);
        }
        let expiries = self.shared.expiries.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(expiry::run(
                Arc::clone(&self.shared.store),
                Arc::clone(stats),
                rx,
            ));
            tx
        });
        let expiry = Expiry {
            at: asked_at + lane.lifetime,
            lane: Arc::clone(lane),
            id,
        };
        if let Err(unsent) = expiries.send(expiry) {
            // The expiry task is gone (its runtime is shutting down): end it here.
            let lease = lane.state.lock().end(unsent.0.id);
            if let Some(lease) = lease {
                give_back(&self.shared.store, stats, lane, lease);
            }
        }
        Ok(Some(mine))
    }

    /// Asks the store to decide the request on its own.
    async fn check_store(&self, lane: &Lane, cost: u64) -> Result<Decision, Error> {
        let decision = self
            .shared
            .store
            .check(&lane.policy, &lane.key, cost)
            .await?;
        lane.state
            .lock()
            .observe(&decision, self.shared.config.reserve);
        Ok(decision)
    }
}

enum Step {
    Wait,
    Take(u64),
    Check,
}

/// How many takes a request waits for before it asks the store itself: each wait is one
/// store round trip.
const MAX_WAITS: u32 = 2;

/// A request waiting for a take; it stops counting as waiting however the wait ends.
struct Waiting<'a> {
    lane: &'a Lane,
    cost: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.lane.state.lock();
        state.waiting = state.waiting.saturating_sub(self.cost);
    }
}

/// A take in flight for a lane; when it ends, however it ends (a dropped future
/// included), the lane takes no more and its waiters are woken.
struct Taking<'a> {
    lane: &'a Lane,
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        self.lane.state.lock().taking = false;
        self.lane.taken.notify_waiters();
    }
}

impl<S> Shared<S> {
    fn record_local(&self, age: Duration) {
        let stats = &self.stats;
        stats.local_admissions.fetch_add(1, Ordering::Relaxed);
        let age_us = u64::try_from(age.as_micros()).unwrap_or(u64::MAX);
        stats.oldest_use_us.fetch_max(age_us, Ordering::Relaxed);
    }
}

impl<S: LeaseStore> LeasedBuilder<S> {
    /// The longest a lease admits after it was asked for (default 250 ms); for each
    /// policy also at most 1/20 of its shortest window.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.config.lifetime = lifetime;
        self
    }

    /// Whether any policy is leased (default true). Off, every decision goes to the
    /// wrapped store as if this wrapper were not there, and no state is kept: one stack
    /// of stores serves configurations with leases and without.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// The share of every window's capacity, its last part, that is never leased
    /// (default 0.1; clamped to [0, 1]): near the limit the store decides each request.
    pub fn reserve(mut self, reserve: f64) -> Self {
        self.config.reserve = if reserve.is_nan() {
            0.1
        } else {
            reserve.clamp(0.0, 1.0)
        };
        self
    }

    /// The share of a policy's smallest capacity that one lease may hold beyond the
    /// requests waiting for it (default 0.005; clamped to [0, 1]). Those units are what a
    /// lease can leave unused if its key's traffic stops: with `n` instances, at most
    /// `n` times this share of the limit goes unused until the leases end.
    pub fn speculation(mut self, share: f64) -> Self {
        self.config.speculation = if share.is_nan() {
            0.005
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    /// The units a key must be asked for within one lease lifetime before a lease holds
    /// units speculatively (default 2; at least 1).
    pub fn min_demand(mut self, units: u64) -> Self {
        self.config.min_demand = units.max(1);
        self
    }

    /// The largest lease (default 10,000 units; at least 1).
    pub fn max_units(mut self, units: u64) -> Self {
        self.config.max_units = units.max(1);
        self.config.min_units = self.config.min_units.min(self.config.max_units);
        self
    }

    /// The most memory held for per-key state (default 100 MB).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.config.max_bytes = bytes.max(1);
        self
    }

    /// Builds the store. Its expiry task starts with the first lease.
    pub fn build(self) -> Leased<S> {
        let per_lane = 256;
        let lanes = Cache::with_weighter(
            usize::try_from(self.config.max_bytes / per_lane)
                .unwrap_or(usize::MAX)
                .max(16),
            self.config.max_bytes,
            LaneWeight,
        );
        Leased {
            shared: Arc::new(Shared {
                store: Arc::new(self.store),
                config: self.config,
                lanes,
                stats: Arc::default(),
                next_id: AtomicU64::new(0),
                expiries: OnceLock::new(),
            }),
        }
    }
}

impl<S: LeaseStore> Store for Leased<S> {
    /// Decided by the store, all or nothing, never from a lease: a lease holds one key's
    /// units, a joint decision spans several keys. The units leases hold stay taken in
    /// the store, so this never admits what leases admit too.
    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        self.shared.store.check_all(checks).await
    }

    async fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        let cost = cost.into();
        match cost.uniform(policy) {
            Some(units) => self.decide(policy, key, units).await,
            // A lease holds one figure for every window: requests and units apart are
            // the store's to decide.
            None => self.shared.store.check(policy, key, cost).await,
        }
    }

    /// Reservations are the store's: a reserved estimate is settled against the window
    /// it was counted in, which a lease admitting in process would not know.
    fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> impl Future<Output = Result<Reservation, Error>> + Send {
        self.shared.store.reserve(policy, key, estimate)
    }

    fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.shared.store.settle(policy, key, reservation, actual)
    }

    /// Voids the key's lease (its units were counted before the reset and must not
    /// come back after it), then resets in the store. A take in flight meanwhile may
    /// still bring a lease counted before the reset.
    async fn reset(&self, policy: &Policy, key: &str) -> Result<(), Error> {
        if let Some(lane) = self.shared.lanes.get(&PolicyKeyRef::new(policy, key)) {
            if lane.state.lock().lease.take().is_some() {
                self.shared.stats.lease_ended(0, true);
            }
        }
        self.shared.store.reset(policy, key).await
    }

    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send {
        self.shared.store.ping()
    }
}
