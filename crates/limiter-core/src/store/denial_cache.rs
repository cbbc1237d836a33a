//! [`DenialCache`]: a store wrapper that remembers denials still in force, so that a flood
//! of requests from a key that is over its limit is answered locally instead of each
//! making a store round trip (Envoy ratelimit's "local cache" of over-limit keys).
//!
//! # Why a hit is exact
//!
//! A cache hit only ever denies a request that the store itself would deny at that moment:
//!
//! - When the store denies cost `c` with `retry_after = r`, it decided at some moment at or
//!   after `t`, the cache's clock read *before* the call. The denial lasts at least until
//!   `t + r`: nothing but time gives quota back, and other clients can only consume more
//!   meanwhile. So the entry is valid until `t + r`, never later.
//! - A cost of at least `c` needs at least as much room, so it is denied too. A cost that
//!   can never fit, a peek (cost 0) and allowed decisions always go to the store; only
//!   denials that name a retry time and that the store made (not a failure mode standing
//!   in for it, see [`Decision::is_degraded`]) are remembered.
//! - Entries are keyed by policy name and key, and also hold the policy's limits: a policy
//!   reloaded under the same name with other (looser) limits never hits an entry made
//!   under the old ones.
//!
//! What the cache cannot see is quota given back behind the limiter's back: keys deleted
//! in Redis by hand, or a Redis that restarted empty. A remembered denial then stands
//! until it would have expired anyway.
//!
//! The cache counts time on its own [`Clock`] and Redis on `TIME`; both measure real
//! time, and the entry's validity is a duration measured from before the call, so the
//! two clocks' offset does not matter.

use std::future::Future;
use std::sync::Arc;

use quick_cache::sync::Cache;

use super::policy_key::{PolicyKey, PolicyKeyRef};
use super::Store;
use crate::clock::{Clock, MonotonicClock};
use crate::cost::Cost;
use crate::decision::{Decision, Verdict};
use crate::error::Error;
use crate::joint::{Check, Joint};
use crate::policy::Policy;
use crate::reservation::Reservation;

/// The default bound on remembered (policy, key) pairs.
const DEFAULT_MAX_KEYS: usize = 10_000;

/// A [`Store`] wrapper that answers requests from keys over their limit from a bounded
/// local memory of denials, without a store round trip.
///
/// - When the store denies a request (cost at least 1, with a retry time, not degraded),
///   the denial is remembered until its retry time has passed.
/// - Until then, the same policy and key with the same or a higher cost is denied from
///   memory: the remembered [`Decision`] with its retry and reset times moved on by the
///   time elapsed, marked [`is_cached`](Decision::is_cached). Such a hit only ever denies
///   what the store would deny (see the module documentation for why).
/// - Peeks (cost 0), allowed requests and degraded decisions always reach the store; an
///   allowed request forgets the key's denial.
/// - At most [`max_keys`](DenialCacheBuilder::max_keys) pairs are held (default 10,000),
///   the least useful evicted first.
///
/// It pays off in front of a remote store (Redis) under floods from over-limit keys.
/// Put it inside [`Guarded`](crate::Guarded): it then never sees a failure mode's
/// decisions.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{DenialCache, Limit, Limiter, MemoryStore, Policy};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // In production the inner store is a (guarded) RedisStore.
/// let store = DenialCache::builder(MemoryStore::new()).max_keys(1_000).build();
/// let policy = Policy::new("api", vec![Limit::new(1, Duration::from_secs(3600))]).unwrap();
/// let limiter = Limiter::new(policy, store);
/// assert!(limiter.check("user:1", 1).await.unwrap().is_allowed());
/// let first = limiter.check("user:1", 1).await.unwrap(); // the store denies
/// assert!(!first.is_allowed() && !first.is_cached());
/// let again = limiter.check("user:1", 1).await.unwrap(); // answered from memory
/// assert!(!again.is_allowed() && again.is_cached());
/// assert!(again.retry_after().unwrap() <= first.retry_after().unwrap());
/// # });
/// ```
pub struct DenialCache<S: Store, C: Clock = MonotonicClock> {
    inner: Arc<Inner<S, C>>,
}

impl<S: Store, C: Clock> Clone for DenialCache<S, C> {
    fn clone(&self) -> Self {
        DenialCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S, C> {
    store: S,
    clock: C,
    /// `None` with `max_keys(0)`: nothing remembered, every request asks the store.
    denials: Option<Cache<PolicyKey, Arc<Denial>>>,
}

/// A remembered denial.
struct Denial {
    /// The clock reading taken before the store was asked.
    since_us: i64,
    /// The denial holds before this time (`since_us + retry_after`).
    until_us: i64,
    /// The cost denied: any cost at least this large is denied too.
    cost: u64,
    /// The policy the store decided under; its limits must match for a hit.
    policy: Policy,
    decision: Decision,
}

/// Configures a [`DenialCache`].
///
/// ```
/// use limiter_core::{DenialCache, ManualClock, MemoryStore};
///
/// let clock = ManualClock::new(0);
/// let store = MemoryStore::builder().clock(clock.clone()).build();
/// let cache = DenialCache::builder(store).max_keys(50_000).clock(clock).build();
/// assert!(cache.capacity() >= 50_000);
/// ```
pub struct DenialCacheBuilder<S, C = MonotonicClock> {
    store: S,
    clock: C,
    max_keys: usize,
}

impl<S: Store> DenialCache<S> {
    /// Starts configuring a cache in front of `store`: 10,000 keys, the monotonic clock.
    pub fn builder(store: S) -> DenialCacheBuilder<S> {
        DenialCacheBuilder {
            store,
            clock: MonotonicClock::new(),
            max_keys: DEFAULT_MAX_KEYS,
        }
    }

    /// A cache with the defaults in front of `store`.
    ///
    /// ```
    /// use limiter_core::{DenialCache, MemoryStore};
    ///
    /// let cache = DenialCache::new(MemoryStore::new());
    /// assert_eq!(cache.len(), 0);
    /// ```
    pub fn new(store: S) -> Self {
        Self::builder(store).build()
    }
}

impl<S: Store, C: Clock> DenialCacheBuilder<S, C> {
    /// The most (policy, key) denials remembered at once (default 10,000). 0 remembers
    /// nothing: every request goes to the store, as if the cache were not there, so one
    /// stack of stores serves configurations with a cache and without.
    /// The bound is split evenly over internal shards, each rounded up, so the cache
    /// may hold a few more: see [`DenialCache::capacity`].
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Uses another clock (a [`ManualClock`](crate::ManualClock) in tests). Only
    /// durations are read from it, so it need not agree with the store's clock.
    pub fn clock<D: Clock>(self, clock: D) -> DenialCacheBuilder<S, D> {
        DenialCacheBuilder {
            store: self.store,
            clock,
            max_keys: self.max_keys,
        }
    }

    /// Builds the cache.
    pub fn build(self) -> DenialCache<S, C> {
        DenialCache {
            inner: Arc::new(Inner {
                store: self.store,
                clock: self.clock,
                denials: (self.max_keys > 0).then(|| Cache::new(self.max_keys)),
            }),
        }
    }
}

impl<S: Store, C: Clock> DenialCache<S, C> {
    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner.store
    }

    /// Denials held now (expired ones included until they are next looked up or evicted).
    pub fn len(&self) -> usize {
        self.inner.denials.as_ref().map_or(0, Cache::len)
    }

    /// Whether no denial is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most denials the cache holds at once: `max_keys` rounded up to a whole number
    /// of entries per internal shard (less than `max_keys` plus the shard count).
    pub fn capacity(&self) -> usize {
        let capacity = self.inner.denials.as_ref().map_or(0, Cache::capacity);
        usize::try_from(capacity).unwrap_or(usize::MAX)
    }

    /// Forgets the denial remembered for `key` under `policy`: for a caller that gives
    /// units back around the cache (a settlement made on the store directly), since a
    /// denial is exact only while units come back with time alone.
    pub fn forget(&self, policy: &Policy, key: &str) {
        if let Some(denials) = &self.inner.denials {
            denials.remove(&PolicyKeyRef::new(policy, key));
        }
    }

    /// The remembered denial that answers `cost` for `key` under `policy` now, if there
    /// is one; `None` means the store must be asked. Never calls the store.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_core::{DenialCache, Limit, MemoryStore, Policy, Store};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = DenialCache::new(MemoryStore::new());
    /// let policy = Policy::new("p", vec![Limit::new(1, Duration::from_secs(60))]).unwrap();
    /// assert!(cache.lookup(&policy, "k", 1).is_none());
    /// cache.check(&policy, "k", 1).await.unwrap(); // allowed
    /// cache.check(&policy, "k", 1).await.unwrap(); // denied by the store, remembered
    /// assert!(cache.lookup(&policy, "k", 1).is_some_and(|d| d.is_cached()));
    /// assert!(cache.lookup(&policy, "k", 0).is_none(), "a peek always asks the store");
    /// # });
    /// ```
    pub fn lookup(&self, policy: &Policy, key: &str, cost: u64) -> Option<Decision> {
        self.answer(policy, key, cost, self.inner.clock.now_us())
    }

    fn answer(&self, policy: &Policy, key: &str, cost: u64, now: i64) -> Option<Decision> {
        if cost == 0 {
            // A peek reports the state and must see the store's own figures.
            return None;
        }
        let probe = PolicyKeyRef::new(policy, key);
        let denials = self.inner.denials.as_ref()?;
        let denial = denials.get(&probe)?;
        if now >= denial.until_us || denial.policy.limits() != policy.limits() {
            // Expired, or made under limits since reloaded: of no further use.
            denials.remove_if(&probe, |held| Arc::ptr_eq(held, &denial));
            return None;
        }
        if cost < denial.cost || policy.limits().iter().any(|l| cost > l.capacity()) {
            // A smaller cost may fit; one above a window's capacity is the store's to
            // deny as never fitting.
            return None;
        }
        Some(denial.at(now))
    }

    fn learn(&self, policy: &Policy, key: &str, cost: u64, before: i64, decision: &Decision) {
        let Some(denials) = &self.inner.denials else {
            return;
        };
        if cost == 0 || decision.is_degraded() || decision.is_cached() {
            // A peek always fits and says nothing about room; a failure mode's decision
            // says nothing about the store's state.
            return;
        }
        if decision.is_allowed() {
            // The key has room again (for some cost): a remembered denial is likely stale.
            // Dropping one that was still valid only costs a store call later.
            denials.remove(&PolicyKeyRef::new(policy, key));
            return;
        }
        let Some(retry) = decision.retry_after() else {
            return;
        };
        let retry_us = i64::try_from(retry.as_micros()).unwrap_or(i64::MAX);
        if retry_us <= 0 {
            return;
        }
        let denial = Denial {
            since_us: before,
            until_us: before.saturating_add(retry_us),
            cost,
            policy: policy.clone(),
            decision: decision.clone(),
        };
        denials.insert(PolicyKey::new(policy, key), Arc::new(denial));
    }
}

impl Denial {
    /// The remembered decision as of `now` (before `until_us`): every time shortened by
    /// the time elapsed since it was asked for.
    fn at(&self, now: i64) -> Decision {
        let elapsed = u64::try_from(now.saturating_sub(self.since_us)).unwrap_or(0);
        let mut decision = self.decision.clone();
        decision.cached = true;
        for window in decision.windows.iter_mut() {
            match window.verdict() {
                Verdict::RetryAfterUs(us) => {
                    // At least 1 µs: a denial never says "retry now". Before `until_us`
                    // the subtraction leaves at least that anyway.
                    window.verdict =
                        Verdict::RetryAfterUs(us.saturating_sub(elapsed).max(1)).into();
                    if window.reset_after_us > 0 {
                        window.reset_after_us =
                            window.reset_after_us.saturating_sub(elapsed).max(1);
                    }
                    if window.next_unit_us > 0 {
                        window.next_unit_us = window.next_unit_us.saturating_sub(elapsed).max(1);
                    }
                }
                Verdict::Fits | Verdict::Never => {
                    window.reset_after_us = window.reset_after_us.saturating_sub(elapsed);
                    if window.reset_after_us == 0 {
                        // Back to full capacity by definition of the reset time.
                        window.remaining = window.limit;
                        window.next_unit_us = 0;
                    } else if window.next_unit_us > 0 {
                        window.next_unit_us = window.next_unit_us.saturating_sub(elapsed).max(1);
                    }
                }
            }
        }
        decision
    }
}

impl<S: Store, C: Clock> Store for DenialCache<S, C> {
    /// Decided by the store; the denial of the check that refused is remembered, so
    /// that a single check of that key (another endpoint's) is answered from memory.
    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        let before = self.inner.clock.now_us();
        let joint = self.inner.store.check_all(checks).await?;
        if let Some(at) = joint.denied_by() {
            let (check, decision) = (&checks[at], &joint.decisions()[at]);
            if let Some(units) = check.cost.uniform(check.policy) {
                self.learn(check.policy, check.key, units, before, decision);
            }
        }
        Ok(joint)
    }

    async fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        let cost = cost.into();
        // A denial is remembered for one figure per window (all the same): requests and
        // units apart always reach the store.
        let Some(units) = cost.uniform(policy) else {
            return self.inner.store.check(policy, key, cost).await;
        };
        // Read before the store is asked: the store decides at this moment or later, so a
        // denial's retry time counted from here never outlasts the real one.
        let before = self.inner.clock.now_us();
        if let Some(hit) = self.answer(policy, key, units, before) {
            return Ok(hit);
        }
        let decision = self.inner.store.check(policy, key, cost).await?;
        self.learn(policy, key, units, before, &decision);
        Ok(decision)
    }

    async fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        let estimate = estimate.into();
        let Some(units) = estimate.uniform(policy) else {
            return self.inner.store.reserve(policy, key, estimate).await;
        };
        let before = self.inner.clock.now_us();
        if let Some(hit) = self.answer(policy, key, units, before) {
            return Ok(Reservation::new(hit, estimate, before));
        }
        let reservation = self.inner.store.reserve(policy, key, estimate).await?;
        self.learn(policy, key, units, before, reservation.decision());
        Ok(reservation)
    }

    /// Settles in the store, and forgets the key's remembered denial: a settlement may
    /// give units back, and a denial is exact only while units come back with time alone.
    async fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        let settled = self
            .inner
            .store
            .settle(policy, key, reservation, actual)
            .await;
        self.forget(policy, key);
        settled
    }

    /// Resets in the store and forgets the key's remembered denial.
    async fn reset(&self, policy: &Policy, key: &str) -> Result<(), Error> {
        let reset = self.inner.store.reset(policy, key).await;
        self.forget(policy, key);
        reset
    }

    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send {
        self.inner.store.ping()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::policy::Limit;
    use crate::store::MemoryStore;

    fn cache(clock: &ManualClock) -> DenialCache<MemoryStore<ManualClock>, ManualClock> {
        let store = MemoryStore::builder().clock(clock.clone()).build();
        DenialCache::builder(store).clock(clock.clone()).build()
    }

    #[tokio::test]
    async fn a_hit_moves_times_on_and_fills_windows_past_their_reset() {
        let clock = ManualClock::new(1_000_000_000);
        let cache = cache(&clock);
        let policy = Policy::new(
            "p",
            vec![
                Limit::new(1, Duration::from_secs(60)),
                Limit::new(10, Duration::from_secs(1)),
            ],
        )
        .unwrap();
        assert!(cache.check(&policy, "k", 1).await.unwrap().is_allowed());
        let denied = cache.check(&policy, "k", 1).await.unwrap();
        assert_eq!(denied.denied_by(), Some(0));
        assert_eq!(denied.windows()[1].remaining(), 9);

        clock.advance(Duration::from_secs(2));
        let hit = cache.check(&policy, "k", 1).await.unwrap();
        assert!(hit.is_cached() && !hit.is_allowed());
        assert_eq!(
            hit.retry_after(),
            denied.retry_after().map(|r| r - Duration::from_secs(2))
        );
        assert_eq!(hit.windows()[1].reset_after(), Duration::ZERO);
        assert_eq!(hit.windows()[1].remaining(), 10, "the 1 s window refilled");
    }

    #[tokio::test]
    async fn entries_expire_reloads_miss_and_allowed_requests_forget() {
        let clock = ManualClock::new(1_000_000_000);
        let cache = cache(&clock);
        let policy = Policy::new("p", vec![Limit::new(1, Duration::from_secs(10))]).unwrap();
        assert!(cache.check(&policy, "k", 1).await.unwrap().is_allowed());
        assert!(!cache.check(&policy, "k", 1).await.unwrap().is_cached());
        assert!(cache.lookup(&policy, "k", 1).is_some());
        assert!(
            cache.lookup(&policy, "k", 2).is_none(),
            "above capacity: never fits"
        );

        let looser = Policy::new("p", vec![Limit::new(5, Duration::from_secs(10))]).unwrap();
        assert!(cache.lookup(&looser, "k", 1).is_none(), "other limits");
        assert_eq!(cache.len(), 0, "the stale entry was dropped");

        assert!(!cache.check(&policy, "k", 1).await.unwrap().is_allowed());
        clock.advance(Duration::from_secs(10));
        assert!(cache.lookup(&policy, "k", 1).is_none(), "expired");
        assert_eq!(cache.len(), 0);

        // A denial of cost 1 remembered, then an allowed request forgets it.
        let two = Policy::new("q", vec![Limit::new(2, Duration::from_secs(10))]).unwrap();
        assert!(cache.check(&two, "k", 2).await.unwrap().is_allowed());
        assert!(!cache.check(&two, "k", 1).await.unwrap().is_allowed());
        assert!(cache.lookup(&two, "k", 1).is_some());
        clock.advance(Duration::from_secs(2));
        assert!(
            cache.check(&two, "k", 0).await.unwrap().is_allowed(),
            "a peek asks"
        );
        assert!(
            cache.lookup(&two, "k", 1).is_some(),
            "a peek forgets nothing"
        );
        clock.advance(Duration::from_secs(3));
        assert!(cache.check(&two, "k", 1).await.unwrap().is_allowed());
        assert!(cache.lookup(&two, "k", 1).is_none());
    }
}
