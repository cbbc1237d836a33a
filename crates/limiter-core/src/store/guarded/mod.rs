//! [`Guarded`]: a store wrapper with a per-call deadline, a circuit breaker and a
//! failure mode, so that requests keep flowing under a chosen policy when the store is
//! slow, down or failing over.

mod breaker;
mod fallback;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::breaker::{Breaker, CallResult};
pub use self::breaker::{BreakerConfig, BreakerState};
pub use self::fallback::FailureMode;
use crate::decision::Decision;
use crate::error::{Error, InvalidFailureMode, StoreError, Unavailable};
use crate::policy::Policy;
use crate::store::{LeaseStore, Store};

/// A store guarded by a deadline, a circuit breaker and a [`FailureMode`].
///
/// - Every call to the primary store gets `deadline` (default 5 ms); no request waits on
///   a dead Redis beyond it.
/// - Errors and deadline misses, or calls slower than the breaker's `slow_call`, counted
///   within its window, open the breaker: no call is attempted while it is open, and a
///   health check (`PING`) runs every `probe_interval`; when it answers the breaker
///   half-opens, and the next successful call closes it. State changes are logged and
///   exported (`ratelimit_breaker_state`, `ratelimit_breaker_transitions_total`).
/// - Meanwhile the failure mode decides, and its decisions say so
///   ([`Decision::is_degraded`]); they are counted in
///   `ratelimit_fallback_decisions_total{mode}`.
/// - A new key refused by a Redis store's [`MemoryGuard`](crate::MemoryGuard)
///   ([`StoreError::MemoryPressure`]) is decided by the failure mode too, but counts as
///   an answer, not a failure: the breaker stays closed for the keys Redis holds.
/// - Store latency goes to the `ratelimit_store_duration_seconds` histogram, failures to
///   `ratelimit_store_errors_total{kind}` (`timeout`, `unavailable`, `protocol`, `full`).
///
/// Recovery needs nothing from the application: the Redis store reconnects by itself and
/// reloads its script after a restart.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{FailureMode, Guarded, Limit, Limiter, MemoryStore, Policy};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // In production the primary is a RedisStore; any Store can be guarded.
/// let store = Guarded::builder(MemoryStore::new())
///     .deadline(Duration::from_millis(5))
///     .failure_mode(FailureMode::Local { share: 0.5 })
///     .build()
///     .unwrap();
/// let policy = Policy::new("api", vec![Limit::new(10, Duration::from_secs(1))]).unwrap();
/// let decision = Limiter::new(policy, store).check("user:1", 1).await.unwrap();
/// assert!(decision.is_allowed() && !decision.is_degraded());
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

struct Inner<S> {
    primary: S,
    deadline: Duration,
    mode: FailureMode,
    local: fallback::Local,
    breaker: Breaker,
}

/// Configures a [`Guarded`] store.
pub struct GuardedBuilder<S> {
    primary: S,
    deadline: Duration,
    mode: FailureMode,
    breaker: BreakerConfig,
}

/// The default per-call deadline of a [`Guarded`] store. 20 ms: a Redis round trip on a
/// loaded server, or with a batch ahead of it, takes a few milliseconds, and a tighter
/// deadline turns such calls into failures that trip the breaker. The layer's `timeout`
/// default is this value.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(20);

impl<S: Store> Guarded<S> {
    /// Starts configuring a guard around `primary`: [`DEFAULT_DEADLINE`], fail open,
    /// default breaker.
    pub fn builder(primary: S) -> GuardedBuilder<S> {
        GuardedBuilder {
            primary,
            deadline: DEFAULT_DEADLINE,
            mode: FailureMode::Open,
            breaker: BreakerConfig::default(),
        }
    }

    /// The breaker's current state.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner.primary
    }

    /// Like [`Store::check`], but with `mode` deciding instead of the guard's default
    /// failure mode if the store cannot: policies may each have their own. The breaker
    /// is shared, since it describes the store, not the policy.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_core::{FailureMode, Guarded, Limit, MemoryStore, Policy};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = Guarded::builder(MemoryStore::new()).build().unwrap();
    /// let payments = Policy::new("payments", vec![Limit::new(5, Duration::from_secs(1))]).unwrap();
    /// let d = store.check_with(&payments, "card-1", 1, &FailureMode::Closed).await.unwrap();
    /// assert!(d.is_allowed()); // the store answered: the mode did not have to decide
    /// # });
    /// ```
    pub async fn check_with(
        &self,
        policy: &Policy,
        key: &str,
        cost: u64,
        mode: &FailureMode,
    ) -> Result<Decision, Error> {
        mode.validate().map_err(|e| Error::Store(e.into()))?;
        self.decide(policy, key, cost, mode).await
    }

    async fn decide(
        &self,
        policy: &Policy,
        key: &str,
        cost: u64,
        mode: &FailureMode,
    ) -> Result<Decision, Error> {
        if key.is_empty() {
            // Bad input is the caller's error, not a store failure.
            return Err(Error::EmptyKey);
        }
        match self
            .call(policy, || self.inner.primary.check(policy, key, cost))
            .await
        {
            Ok(decision) => Ok(decision),
            Err(Error::Store(_)) => Ok(self.fallback(policy, key, cost, mode)),
            Err(other) => Err(other),
        }
    }

    /// Runs one call to the primary under the deadline and the breaker, recording its
    /// outcome: a store failure, a missed deadline or an open breaker is a
    /// [`StoreError`] (the caller's failure mode decides what follows); other errors
    /// (bad input) pass through.
    async fn call<T, F>(&self, policy: &Policy, call: impl FnOnce() -> F) -> Result<T, Error>
    where
        F: std::future::Future<Output = Result<T, Error>>,
    {
        let inner = &self.inner;
        if inner.breaker.state() == BreakerState::Open {
            return Err(StoreError::Unavailable(Unavailable::BreakerOpen).into());
        }
        let start = Instant::now();
        let outcome = tokio::time::timeout(inner.deadline, call()).await;
        let elapsed = start.elapsed();
        metrics::histogram!(crate::metric_names::STORE_DURATION_SECONDS)
            .record(elapsed.as_secs_f64());
        let (failure, err) = match outcome {
            Ok(Ok(value)) => {
                self.record(CallResult::Success { elapsed });
                return Ok(value);
            }
            Ok(Err(Error::Store(StoreError::MemoryPressure))) => {
                // The store answered, refusing a new key: not a failure of the store, so
                // the breaker stays closed and keys it holds keep reaching it.
                self.record(CallResult::Success { elapsed });
                return Err(StoreError::MemoryPressure.into());
            }
            Ok(Err(Error::Store(err))) => (store_error_kind(&err), err),
            Ok(Err(other)) => return Err(other),
            Err(_) => (
                "timeout",
                StoreError::Unavailable(Unavailable::Deadline(inner.deadline)),
            ),
        };
        metrics::counter!(crate::metric_names::STORE_ERRORS_TOTAL, "kind" => failure).increment(1);
        tracing::warn!(
            kind = failure,
            policy = policy.name(),
            "rate-limit store call failed"
        );
        self.record(CallResult::Failure);
        Err(err.into())
    }

    fn fallback(&self, policy: &Policy, key: &str, cost: u64, mode: &FailureMode) -> Decision {
        let inner = &self.inner;
        metrics::counter!(crate::metric_names::FALLBACK_DECISIONS_TOTAL, "mode" => mode.name())
            .increment(1);
        let retry = inner.breaker.config().probe_interval;
        match *mode {
            FailureMode::Open => fallback::allow(policy),
            FailureMode::Closed => fallback::deny(policy, retry),
            FailureMode::Local { share } => inner.local.decide(policy, share, key, cost, retry),
        }
    }

    fn record(&self, result: CallResult) {
        if self.inner.breaker.record(result) {
            self.start_health_check();
        }
    }

    /// Probes the store every `probe_interval` until it answers, then half-opens the
    /// breaker. The task holds only a weak reference between probes, so dropping the
    /// store ends it.
    fn start_health_check(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.breaker.config().probe_interval;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                if inner.breaker.state() != BreakerState::Open {
                    return;
                }
                if let Ok(Ok(())) = tokio::time::timeout(inner.deadline, inner.primary.ping()).await
                {
                    inner.breaker.half_open();
                    return;
                }
            }
        });
    }
}

fn store_error_kind(err: &StoreError) -> &'static str {
    match err {
        StoreError::Redis(_) | StoreError::Unavailable(_) => "unavailable",
        StoreError::Protocol(_) => "protocol",
        StoreError::Full(_) => "full",
        StoreError::MemoryPressure => "memory_pressure",
        StoreError::Config(_) => "config",
    }
}

impl<S: Store> GuardedBuilder<S> {
    /// The longest a store call may take before the failure mode decides
    /// ([`DEFAULT_DEADLINE`] by default).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// What decides while the store is unavailable (default [`FailureMode::Open`]).
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.mode = mode;
        self
    }

    /// When the breaker opens and how often it probes.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Builds the guard; fails for a local share outside (0, 1].
    pub fn build(self) -> Result<Guarded<S>, InvalidFailureMode> {
        self.mode.validate()?;
        let local = fallback::Local::default();
        Ok(Guarded {
            inner: Arc::new(Inner {
                primary: self.primary,
                deadline: self.deadline,
                mode: self.mode,
                local,
                breaker: Breaker::new(self.breaker),
            }),
        })
    }
}

impl<S: Store> Store for Guarded<S> {
    async fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        self.decide(policy, key, cost, &self.inner.mode).await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.inner.primary.ping().await
    }
}

/// Takes and refunds go through the deadline and the breaker like checks, but a failure
/// is returned, not decided by the failure mode: [`Leased`](crate::Leased) then decides
/// the request through [`Store::check`], where the failure mode applies.
impl<S: LeaseStore> LeaseStore for Guarded<S> {
    async fn take(&self, policy: &Policy, key: &str, units: u64) -> Result<(Decision, i64), Error> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        self.call(policy, || self.inner.primary.take(policy, key, units))
            .await
    }

    async fn refund(
        &self,
        policy: &Policy,
        key: &str,
        taken: u64,
        unused: u64,
        taken_at_us: i64,
    ) -> Result<(), Error> {
        self.call(policy, || {
            self.inner
                .primary
                .refund(policy, key, taken, unused, taken_at_us)
        })
        .await
    }
}
