//! Typed errors: invalid policies, invalid requests, store failures, waiting failures.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A policy that cannot be enforced as written. [`field`](PolicyError::field) names
/// the part of the policy at fault.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Limit, LimitField, LimitProblem, Policy, PolicyError};
///
/// let err = Policy::new("api", vec![
///     Limit::new(5, Duration::from_secs(1)),
///     Limit::new(0, Duration::from_secs(60)),
/// ]).unwrap_err();
/// assert_eq!(err.field(), "limits[1].max");
/// assert!(matches!(err, PolicyError::InvalidLimit { index: 1, problem: LimitProblem::ZeroMax, .. }));
/// assert_eq!(LimitProblem::ZeroMax.field(), LimitField::Max);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy name is empty.
    #[error("policy name must not be empty")]
    EmptyName,
    /// The policy name contains `{` or `}`, which would break Redis Cluster hash tags.
    #[error("policy name {0:?} must not contain '{{' or '}}'")]
    BadName(String),
    /// The policy has no windows.
    #[error("policy {0:?} has no limits")]
    NoLimits(String),
    /// The policy has more windows than [`MAX_WINDOWS`](crate::MAX_WINDOWS).
    #[error("policy {policy:?} has {count} limits; at most 8 are allowed")]
    TooManyLimits {
        /// The policy's name.
        policy: String,
        /// How many windows it had.
        count: usize,
    },
    /// One window is invalid.
    #[error("policy {policy:?}, limit #{index}: {problem}")]
    InvalidLimit {
        /// The policy's name.
        policy: String,
        /// The window's position in the policy.
        index: usize,
        /// What is wrong with it.
        problem: LimitProblem,
    },
    /// The windows count more than one unit besides requests (one cost per decision can
    /// only say how many requests and how many of one other unit).
    #[error("policy {policy:?}, limit #{index}: counts {unit:?}, but an earlier limit counts {first:?}; a policy counts requests and at most one other unit")]
    MixedUnits {
        /// The policy's name.
        policy: String,
        /// The window counting a second unit.
        index: usize,
        /// The unit counted first.
        first: String,
        /// The second unit.
        unit: String,
    },
}

impl PolicyError {
    /// The part of the policy at fault, as a path: `name`, `limits`, or a window's
    /// field such as `limits[1].max`.
    pub fn field(&self) -> String {
        match self {
            PolicyError::EmptyName | PolicyError::BadName(_) => "name".to_owned(),
            PolicyError::NoLimits(_) | PolicyError::TooManyLimits { .. } => "limits".to_owned(),
            PolicyError::InvalidLimit { index, problem, .. } => {
                format!("limits[{index}].{}", problem.field())
            }
            PolicyError::MixedUnits { index, .. } => format!("limits[{index}].unit"),
        }
    }
}

/// What is wrong with one [`Limit`](crate::Limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum LimitProblem {
    /// `max` is 0.
    #[error("max must be at least 1")]
    ZeroMax,
    /// `max` is above 2^50 (sums of costs must stay exact in a Lua double).
    #[error("max must be at most 2^50")]
    MaxTooLarge,
    /// `window` is zero.
    #[error("window must be longer than zero")]
    ZeroWindow,
    /// `window` is longer than 400 days.
    #[error("window must be at most 400 days")]
    WindowTooLong,
    /// A GCRA `burst` of 0.
    #[error("burst must be at least 1")]
    ZeroBurst,
    /// A GCRA `burst` above 2^50.
    #[error("burst must be at most 2^50")]
    BurstTooLarge,
    /// GCRA with `max` per `window` above one per microsecond, its resolution.
    #[error("GCRA resolution is one request per microsecond: max/window is too high")]
    BeyondResolution,
}

impl LimitProblem {
    /// The field to change: for a rate beyond GCRA's resolution, `max` (a longer window
    /// would do as well).
    pub fn field(self) -> LimitField {
        match self {
            LimitProblem::ZeroMax | LimitProblem::MaxTooLarge | LimitProblem::BeyondResolution => {
                LimitField::Max
            }
            LimitProblem::ZeroWindow | LimitProblem::WindowTooLong => LimitField::Window,
            LimitProblem::ZeroBurst | LimitProblem::BurstTooLarge => LimitField::Burst,
        }
    }
}

/// A field of a [`Limit`](crate::Limit); displays as its name (`max`, `window`, `burst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitField {
    /// Units per window.
    Max,
    /// The window's length.
    Window,
    /// GCRA's burst.
    Burst,
}

impl LimitField {
    /// The field's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitField::Max => "max",
            LimitField::Window => "window",
            LimitField::Burst => "burst",
        }
    }
}

impl fmt::Display for LimitField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure mode that cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidFailureMode {
    /// [`FailureMode::Local`](crate::FailureMode::Local) with a share outside (0, 1].
    #[error("invalid failure mode: local share must be above 0 and at most 1")]
    LocalShare,
}

/// A failure of the store behind a limiter.
///
/// The store's own failures ([`Redis`](StoreError::Redis) with the client's error as
/// its [`source`](std::error::Error::source), [`Unavailable`](StoreError::Unavailable),
/// [`Protocol`](StoreError::Protocol), [`Full`](StoreError::Full),
/// [`MemoryPressure`](StoreError::MemoryPressure)) are apart from the
/// caller's configuration mistakes ([`Config`](StoreError::Config)).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Redis could not be reached or answered with an error.
    #[error("store unavailable: redis: {0}")]
    Redis(#[source] Arc<redis::RedisError>),
    /// The store was not asked, or gave no answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(Unavailable),
    /// The store answered something the limiter cannot read.
    #[error("store protocol error: {0}")]
    Protocol(String),
    /// The in-memory store holds its configured maximum of keys and none has expired.
    #[error("in-memory store is full ({0} keys)")]
    Full(usize),
    /// Redis memory is above the [`MemoryGuard`](crate::MemoryGuard)'s threshold and the
    /// key is new: it was refused without being written. Keys Redis holds are decided.
    #[error("redis memory above the guard's threshold: new key refused")]
    MemoryPressure,
    /// The caller's configuration of the store cannot be applied.
    #[error("invalid store configuration: {0}")]
    Config(#[from] StoreConfigError),
}

impl From<redis::RedisError> for StoreError {
    fn from(err: redis::RedisError) -> Self {
        StoreError::Redis(Arc::new(err))
    }
}

impl From<InvalidFailureMode> for StoreError {
    fn from(err: InvalidFailureMode) -> Self {
        StoreError::Config(StoreConfigError::FailureMode(err))
    }
}

/// Why a store was unavailable without an error of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Deadline(Duration),
    /// No connection within the time allowed for connecting.
    #[error("not connected within {0:?}")]
    ConnectTimeout(Duration),
    /// The circuit breaker is open: the store was not asked.
    #[error("circuit breaker open")]
    BreakerOpen,
    /// The store's I/O thread has stopped (or could not be started).
    #[error("the store's I/O thread has stopped")]
    IoStopped,
}

/// Why a decision was shed: this process had more decisions waiting for the store than
/// it is configured to hold. The store was not asked, nothing was counted and nothing
/// may be admitted; a server answers `503 Service Unavailable` with `Retry-After`.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Error, Overload};
///
/// let err = Error::Overloaded(Overload::Waited(Duration::from_millis(500)));
/// assert_eq!(err.to_string(), "overloaded: a decision waited 500ms for the store and was shed");
/// assert_eq!(Overload::Queued(16_384).reason(), "queue_full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Overload {
    /// This many decisions were already waiting to be sent: the bound on queued
    /// decisions.
    #[error("{0} decisions were already waiting for the store")]
    Queued(usize),
    /// The decision waited this long (the bound on time queued) without being sent.
    #[error("a decision waited {0:?} for the store and was shed")]
    Waited(Duration),
}

impl Overload {
    /// The `reason` label of `ratelimit_shed_decisions_total`: `queue_full` or
    /// `queue_time`.
    pub fn reason(&self) -> &'static str {
        match self {
            Overload::Queued(_) => "queue_full",
            Overload::Waited(_) => "queue_time",
        }
    }
}

/// A store configuration that cannot be applied: the caller's mistake, not the store's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreConfigError {
    /// A key prefix containing `{` or `}`, which would break Redis Cluster hash tags.
    #[error("key prefix {0:?} must not contain '{{' or '}}'")]
    KeyPrefix(String),
    /// A failure mode that cannot be applied.
    #[error(transparent)]
    FailureMode(InvalidFailureMode),
    /// A [`MemoryGuard`](crate::MemoryGuard) that cannot be applied.
    #[error("invalid memory guard: {0}")]
    MemoryGuard(&'static str),
    /// A store timeout of zero: every call would fail.
    #[error("invalid store timeout: must be longer than zero")]
    Timeout,
    /// A [`BreakerConfig`](crate::BreakerConfig) field that cannot work, and why.
    #[error("invalid breaker: {field} {problem}")]
    Breaker {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// A rate-limit check that could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key is empty.
    #[error("rate-limit key must not be empty")]
    EmptyKey,
    /// The store failed; the caller's failure mode decides what happens.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This process is overloaded: the decision was shed without asking the store. Not
    /// a failure of the store, so no failure mode decides it: the request must be
    /// refused (nothing counted it).
    #[error("overloaded: {0}")]
    Overloaded(Overload),
}

/// Why [`Limiter::acquire`](crate::Limiter::acquire) gave up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// The cost is larger than a window's capacity: it can never be admitted.
    #[error("cost exceeds the capacity of window #{window}: it can never be admitted")]
    NeverFits {
        /// The window that can never hold the cost.
        window: usize,
    },
    /// Admission would come later than the configured maximum wait allows.
    #[error("not admitted within the maximum wait of {max_wait:?}")]
    WaitTooLong {
        /// The configured maximum wait.
        max_wait: Duration,
        /// When known, how long after giving up the request would have fit.
        retry_after: Option<Duration>,
    },
    /// The check itself failed.
    #[error(transparent)]
    Check(#[from] Error),
}
