//! Typed errors: invalid policies, invalid requests, store failures, waiting failures.

use std::time::Duration;

/// A policy that cannot be enforced as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("policy {policy:?}, limit #{index}: {reason}")]
    InvalidLimit {
        /// The policy's name.
        policy: String,
        /// The window's position in the policy.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A failure mode that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid failure mode: {0}")]
pub struct InvalidFailureMode(pub &'static str);

/// A failure of the store behind a limiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something the limiter cannot read.
    #[error("store protocol error: {0}")]
    Protocol(String),
    /// The in-memory store holds its configured maximum of keys and none has expired.
    #[error("in-memory store is full ({0} keys)")]
    Full(usize),
}

/// A rate-limit check that could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The key is empty.
    #[error("rate-limit key must not be empty")]
    EmptyKey,
    /// The store failed; the caller's failure mode decides what happens.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`Limiter::acquire`](crate::Limiter::acquire) gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
