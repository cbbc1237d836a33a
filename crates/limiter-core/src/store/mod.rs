//! Where window state lives. One [`Store::check`] call decides every window of a policy
//! atomically: one critical section in memory, one script round trip on Redis.

mod denial_cache;
mod guarded;
mod leased;
mod memory;
mod policy_key;
mod redis;

use std::future::Future;

pub use self::denial_cache::{DenialCache, DenialCacheBuilder};
pub use self::guarded::{FailureMode, Guarded, GuardedBuilder};
pub use self::leased::{LeaseStats, Leased, LeasedBuilder};
pub use self::memory::{MemoryStore, MemoryStoreBuilder, DEFAULT_MAX_KEYS};
pub use self::redis::{
    Batched, BatchedBuilder, BreakerConfig, BreakerState, MemoryGuard, RedisStore,
    RedisStoreBuilder, DEFAULT_MAX_QUEUED, DEFAULT_MAX_WAIT, DEFAULT_TIMEOUT,
    PER_DECISION_ALLOWANCE,
};
use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::Error;
use crate::joint::{Check, Joint};
use crate::policy::Policy;
use crate::reservation::Reservation;

/// A place that keeps rate-limit state and decides requests against it.
///
/// Implementations decide all windows of `policy` for `key` in one atomic step: the cost
/// is consumed from every window or from none. A `cost` of 0 reports the state and
/// consumes nothing. A cost known only later is [reserved](Store::reserve) and then
/// [settled](Store::settle). Wrappers (deadlines, circuit breakers, caches) implement
/// `Store` themselves, so callers never change.
///
/// Nothing happens until the returned future is polled.
pub trait Store: Send + Sync + 'static {
    /// Decides `cost` for `key` under every window of `policy` (a number: that many
    /// units in every window; a [`Cost`]: requests and units apart).
    fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> impl Future<Output = Result<Decision, Error>> + Send;

    /// Decides `estimate` as [`check`](Store::check) does, to be
    /// [settled](Store::settle) once the actual cost is known (see [`Reservation`]).
    fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> impl Future<Output = Result<Reservation, Error>> + Send;

    /// Settles `reservation` (made by `reserve(policy, key, ..)` on this store) for
    /// `actual`: gives back what it held and `actual` did not use, charges what `actual`
    /// used beyond it. It takes the reservation: each settles once; a copy of one given
    /// an id ([`Reservation::with_id`]) settles nothing more, however often it is
    /// retried. A denied reservation settles nothing.
    fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Decides `checks` (several policies for one request) all or nothing: admitted only
    /// if every check admits, then charged in every one; denied, charged in none (see
    /// [`Joint`]). The default reserves in order and gives back on a denial: never a
    /// partial charge, though until the give-back others may see those units taken
    /// (check the narrowest policy first). [`MemoryStore`] decides atomically, and so
    /// does [`RedisStore`] on a standalone Redis, in one script call ([`Batched`]: one
    /// entry of a batch).
    fn check_all(&self, checks: &[Check<'_>]) -> impl Future<Output = Result<Joint, Error>> + Send {
        crate::joint::in_order(self, checks)
    }

    /// Forgets what `key` has used under `policy`: every window whole again (an
    /// operator's reset). A reservation made before and settled after gives back nothing
    /// the reset already gave back.
    fn reset(&self, policy: &Policy, key: &str) -> impl Future<Output = Result<(), Error>> + Send;

    /// What `key`'s windows hold under `policy` now, charging nothing: a
    /// [`check`](Store::check) of [`Cost::ZERO`].
    fn peek(
        &self,
        policy: &Policy,
        key: &str,
    ) -> impl Future<Output = Result<Decision, Error>> + Send {
        self.check(policy, key, Cost::ZERO)
    }

    /// Checks that the store answers, for health checks; the default has nothing to ask.
    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send {
        async { Ok(()) }
    }
}

impl<S: Store> Store for std::sync::Arc<S> {
    fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> impl Future<Output = Result<Decision, Error>> + Send {
        (**self).check(policy, key, cost)
    }

    fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> impl Future<Output = Result<Reservation, Error>> + Send {
        (**self).reserve(policy, key, estimate)
    }

    fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        (**self).settle(policy, key, reservation, actual)
    }

    fn reset(&self, policy: &Policy, key: &str) -> impl Future<Output = Result<(), Error>> + Send {
        (**self).reset(policy, key)
    }

    fn check_all(&self, checks: &[Check<'_>]) -> impl Future<Output = Result<Joint, Error>> + Send {
        (**self).check_all(checks)
    }

    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send {
        (**self).ping()
    }
}

/// A store that can reserve units for admission elsewhere and take back what was not
/// used: what [`Leased`] needs of the store it wraps. Implemented by [`RedisStore`] and
/// [`Batched`].
pub trait LeaseStore: Store {
    /// Decides `units` for `key` like [`Store::check`], and also returns the store's
    /// clock (µs) at the decision, which a later [`refund`](LeaseStore::refund) names.
    fn take(
        &self,
        policy: &Policy,
        key: &str,
        units: u64,
    ) -> impl Future<Output = Result<(Decision, i64), Error>> + Send;

    /// Gives back `unused` of the `taken` units that an admitted [`take`](LeaseStore::take)
    /// at store time `taken_at_us` consumed, in each window where the algorithm can tell
    /// them apart from later usage (never more than was taken).
    fn refund(
        &self,
        policy: &Policy,
        key: &str,
        taken: u64,
        unused: u64,
        taken_at_us: i64,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

impl<S: LeaseStore> LeaseStore for std::sync::Arc<S> {
    fn take(
        &self,
        policy: &Policy,
        key: &str,
        units: u64,
    ) -> impl Future<Output = Result<(Decision, i64), Error>> + Send {
        (**self).take(policy, key, units)
    }

    fn refund(
        &self,
        policy: &Policy,
        key: &str,
        taken: u64,
        unused: u64,
        taken_at_us: i64,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        (**self).refund(policy, key, taken, unused, taken_at_us)
    }
}
