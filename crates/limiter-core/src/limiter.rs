//! [`Limiter`]: a policy bound to a store, with an answer-at-once API ([`check`]) and a
//! waiting one ([`acquire`]).
//!
//! [`check`]: Limiter::check
//! [`acquire`]: Limiter::acquire

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::decision::Decision;
use crate::error::{AcquireError, Error};
use crate::policy::Policy;
use crate::store::Store;

/// A policy enforced on a store.
///
/// Cheap to clone; clones share the store and the waiting queues.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Limit, Limiter, MemoryStore, Policy};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let policy = Policy::new("api", vec![
///     Limit::new(5, Duration::from_secs(1)).with_name("second"),
///     Limit::new(100, Duration::from_secs(60)).with_name("minute"),
/// ]).unwrap();
/// let limiter = Limiter::new(policy, MemoryStore::new());
///
/// for _ in 0..5 {
///     assert!(limiter.check("user:42", 1).await.unwrap().is_allowed());
/// }
/// let denied = limiter.check("user:42", 1).await.unwrap();
/// assert_eq!(denied.denied_by(), Some(0)); // the per-second window
/// # });
/// ```
pub struct Limiter<S> {
    inner: Arc<Inner<S>>,
    max_wait: Duration,
}

impl<S> Clone for Limiter<S> {
    fn clone(&self) -> Self {
        Limiter {
            inner: Arc::clone(&self.inner),
            max_wait: self.max_wait,
        }
    }
}

struct Inner<S> {
    policy: Policy,
    store: S,
    /// One FIFO queue per key with waiters; removed when its last waiter leaves.
    queues: Mutex<HashMap<Box<str>, Arc<tokio::sync::Mutex<()>>>>,
}

impl<S: Store> Limiter<S> {
    /// Enforces `policy` on `store`; [`acquire`](Self::acquire) waits at most 30 s.
    pub fn new(policy: Policy, store: S) -> Self {
        Limiter {
            inner: Arc::new(Inner {
                policy,
                store,
                queues: Mutex::new(HashMap::new()),
            }),
            max_wait: Duration::from_secs(30),
        }
    }

    /// Sets the longest [`acquire`](Self::acquire) may wait before it gives up.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The enforced policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// Decides `cost` units for `key` at once: consumed from every window if all have
    /// room, from none otherwise. A cost of 0 only reports the state.
    pub async fn check(&self, key: &str, cost: u64) -> Result<Decision, Error> {
        self.inner.store.check(&self.inner.policy, key, cost).await
    }

    /// Waits until `cost` units for `key` are admitted, then returns the decision.
    ///
    /// - **FIFO** among waiters of one key: only the head of the queue checks; it sleeps
    ///   exactly until the store says the cost fits, never polling in a loop.
    /// - **Cancellation-safe**: dropping the future leaves the queue and consumes nothing,
    ///   because cost is consumed only by the check that admits the request. (On Redis, a
    ///   check already sent when the future is dropped may still be decided there.)
    /// - Fails at once with [`AcquireError::NeverFits`] when the cost exceeds a window's
    ///   capacity, and with [`AcquireError::WaitTooLong`] as soon as admission is known
    ///   to come after the maximum wait.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_core::{Limit, Limiter, MemoryStore, Policy};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let policy = Policy::new("jobs", vec![Limit::new(100, Duration::from_secs(1))]).unwrap();
    /// let limiter = Limiter::new(policy, MemoryStore::new());
    /// let decision = limiter.acquire("queue-a", 1).await.unwrap();
    /// assert!(decision.is_allowed());
    /// # });
    /// ```
    pub async fn acquire(&self, key: &str, cost: u64) -> Result<Decision, AcquireError> {
        let max_wait = self.max_wait;
        let deadline = tokio::time::Instant::now() + max_wait;
        let ticket = Ticket::take(&self.inner, key);
        let _turn = tokio::time::timeout_at(deadline, ticket.queue.lock())
            .await
            .map_err(|_| AcquireError::WaitTooLong {
                max_wait,
                retry_after: None,
            })?;
        loop {
            let decision = self.check(key, cost).await?;
            if decision.is_allowed() {
                return Ok(decision);
            }
            let Some(wait) = decision.retry_after() else {
                return Err(AcquireError::NeverFits {
                    window: decision.denied_by().unwrap_or(0),
                });
            };
            if tokio::time::Instant::now() + wait > deadline {
                return Err(AcquireError::WaitTooLong {
                    max_wait,
                    retry_after: Some(wait),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// A place in a key's waiting queue; leaving it removes the queue when it was the last.
struct Ticket<'a, S> {
    inner: &'a Inner<S>,
    key: &'a str,
    queue: Arc<tokio::sync::Mutex<()>>,
}

impl<'a, S> Ticket<'a, S> {
    fn take(inner: &'a Inner<S>, key: &'a str) -> Self {
        let queue = Arc::clone(inner.queues.lock().entry(key.into()).or_default());
        Ticket { inner, key, queue }
    }
}

impl<S> Drop for Ticket<'_, S> {
    fn drop(&mut self) {
        let mut queues = self.inner.queues.lock();
        // Tickets are only cloned under this lock: two references are the map's and ours.
        if Arc::strong_count(&self.queue) == 2 {
            queues.remove(self.key);
        }
    }
}
