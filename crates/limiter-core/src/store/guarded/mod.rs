//! [`Guarded`]: a store wrapper whose failures are decided by a failure mode, so that
//! requests keep flowing under a chosen policy when the store is slow, down or failing
//! over.

mod fallback;

use std::sync::Arc;
use std::time::Duration;

pub use self::fallback::FailureMode;
use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::{Error, InvalidFailureMode};
use crate::joint::{Check, Joint};
use crate::policy::Policy;
use crate::reservation::Reservation;
use crate::store::{BreakerConfig, Store};

/// A store whose failures are decided by a [`FailureMode`]: the policy's own
/// ([`Policy::with_failure_mode`]), else the guard's.
///
/// - A store failure ([`Error::Store`]: Redis down, a call past its timeout, the circuit
///   breaker open, a new key refused under memory pressure) is answered by the failure
///   mode, and its decisions say so ([`Decision::is_degraded`]); they are counted in
///   `ratelimit_fallback_decisions_total{mode}`.
/// - A shed decision ([`Error::Overloaded`]) is not a store failure and passes through:
///   this process is overloaded, and admitting what nothing counted would turn a flood
///   into no limit at all. Bad input ([`Error::EmptyKey`]) passes through too.
/// - The timeout and the circuit breaker belong to the store that makes the calls
///   ([`RedisStore`](crate::RedisStore)): they judge Redis, one outcome per call, and
///   while the breaker is open calls fail at once, so the failure mode answers without
///   waiting.
///
/// Put it outermost, around [`DenialCache`](crate::DenialCache) and
/// [`Leased`](crate::Leased): they then only ever see what the store decided.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{FailureMode, Guarded, Limit, Limiter, MemoryStore, Policy};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // In production the primary is a (batched) RedisStore; any Store can be guarded.
/// let store = Guarded::builder(MemoryStore::new())
///     .failure_mode(FailureMode::Local { share: 0.5 })
///     .build()
///     .unwrap();
/// let policy = Policy::new("api", vec![Limit::new(10, Duration::from_secs(1))]).unwrap();
/// let payments = policy.clone().with_failure_mode(FailureMode::Closed).unwrap();
/// let decision = Limiter::new(policy, store.clone()).check("user:1", 1).await.unwrap();
/// assert!(decision.is_allowed() && !decision.is_degraded());
/// assert!(Limiter::new(payments, store).check("card:1", 1).await.unwrap().is_allowed());
/// # });
/// ```
pub struct Guarded<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Guarded<S> {
    fn clone(&self) -> Self {
        Guarded {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Guarded<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("primary", &self.inner.primary)
            .field("mode", &self.inner.mode)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

struct Inner<S> {
    primary: S,
    mode: FailureMode,
    retry: Duration,
    local: fallback::Local,
}

/// Configures a [`Guarded`] store.
#[derive(Debug)]
pub struct GuardedBuilder<S> {
    primary: S,
    mode: FailureMode,
    retry: Duration,
}

impl<S: Store> Guarded<S> {
    /// Starts configuring a guard around `primary`: fail open, a retry time of the
    /// breaker's default probe interval.
    pub fn builder(primary: S) -> GuardedBuilder<S> {
        GuardedBuilder {
            primary,
            mode: FailureMode::Open,
            retry: BreakerConfig::default().probe_interval,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner.primary
    }

    /// The failure mode of policies that name none.
    pub fn failure_mode(&self) -> FailureMode {
        self.inner.mode
    }

    /// The failure mode that decides for `policy`, counted as deciding once.
    fn mode(&self, policy: &Policy) -> FailureMode {
        let mode = policy.failure_mode().unwrap_or(self.inner.mode);
        metrics::counter!(crate::metric_names::FALLBACK_DECISIONS_TOTAL, "mode" => mode.name())
            .increment(1);
        mode
    }

    fn fallback(&self, policy: &Policy, key: &str, cost: Cost) -> Decision {
        let inner = &self.inner;
        match self.mode(policy) {
            FailureMode::Open => fallback::allow(policy),
            FailureMode::Closed => fallback::deny(policy, inner.retry),
            FailureMode::Local { share } => {
                inner.local.decide(policy, share, key, cost, inner.retry)
            }
        }
    }
}

impl<S: Store> GuardedBuilder<S> {
    /// What decides while the store is unavailable, for policies that name no failure
    /// mode of their own (default [`FailureMode::Open`]).
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.mode = mode;
        self
    }

    /// When a request refused by [`FailureMode::Closed`] (or by a full local stand-in)
    /// may retry: the store's health-check interval (default the breaker's default
    /// `probe_interval`).
    pub fn retry_after(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// Builds the guard; fails for a local share outside (0, 1].
    pub fn build(self) -> Result<Guarded<S>, InvalidFailureMode> {
        self.mode.validate()?;
        Ok(Guarded {
            inner: Arc::new(Inner {
                primary: self.primary,
                mode: self.mode,
                retry: self.retry,
                local: fallback::Local::default(),
            }),
        })
    }
}

impl<S: Store> Store for Guarded<S> {
    /// Decided by the store, all or nothing; while it fails, each policy's failure mode
    /// decides in order until one refuses (a local stand-in keeps what the checks before
    /// that one counted: it is best effort).
    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        if checks.iter().any(|c| c.key.is_empty()) {
            return Err(Error::EmptyKey);
        }
        match self.inner.primary.check_all(checks).await {
            Err(Error::Store(_)) => {
                let mut decisions = Vec::with_capacity(checks.len());
                for check in checks {
                    let decision = self.fallback(check.policy, check.key, check.cost);
                    let refused = !decision.is_allowed();
                    decisions.push(decision);
                    if refused {
                        break;
                    }
                }
                Ok(Joint::new(decisions))
            }
            other => other,
        }
    }

    async fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        if key.is_empty() {
            // Bad input is the caller's error, not a store failure.
            return Err(Error::EmptyKey);
        }
        let cost = cost.into();
        match self.inner.primary.check(policy, key, cost).await {
            Err(Error::Store(_)) => Ok(self.fallback(policy, key, cost)),
            other => other,
        }
    }

    /// Reserves in the store; while it fails, the failure mode decides, and the
    /// reservation is [degraded](Decision::is_degraded): settled by the local stand-in
    /// that made it, or not at all (open and closed count nothing).
    async fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let estimate = estimate.into();
        match self.inner.primary.reserve(policy, key, estimate).await {
            Err(Error::Store(_)) => {
                let inner = &self.inner;
                Ok(match self.mode(policy) {
                    FailureMode::Open => Reservation::new(fallback::allow(policy), estimate, 0),
                    FailureMode::Closed => {
                        Reservation::new(fallback::deny(policy, inner.retry), estimate, 0)
                    }
                    FailureMode::Local { share } => {
                        inner
                            .local
                            .reserve(policy, share, key, estimate, inner.retry)
                    }
                })
            }
            other => other,
        }
    }

    /// Settles where the reservation was made. A store that fails now returns its
    /// error: the caller may retry (a settlement happens once however often it is sent).
    async fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        if !reservation.decision().is_degraded() {
            return self
                .inner
                .primary
                .settle(policy, key, reservation, actual)
                .await;
        }
        match policy.failure_mode().unwrap_or(self.inner.mode) {
            FailureMode::Local { share } => {
                let local = &self.inner.local;
                local.settle(policy, share, key, reservation, actual.into())
            }
            FailureMode::Open | FailureMode::Closed => Ok(()),
        }
    }

    /// Resets in the store, and in the local stand-in of a failure mode: what either
    /// counted for the key is forgotten. A store that fails returns its error.
    async fn reset(&self, policy: &Policy, key: &str) -> Result<(), Error> {
        if let FailureMode::Local { share } = policy.failure_mode().unwrap_or(self.inner.mode) {
            self.inner.local.reset(policy, share, key)?;
        }
        self.inner.primary.reset(policy, key).await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.inner.primary.ping().await
    }
}
