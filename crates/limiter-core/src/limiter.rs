//! [`Limiter`]: a policy bound to a store, with an answer-at-once API ([`check`]) and a
//! waiting one ([`acquire`]).
//!
//! [`check`]: Limiter::check
//! [`acquire`]: Limiter::acquire

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::{AcquireError, Error};
use crate::policy::Policy;
use crate::reservation::Reservation;
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

    /// Decides `cost` for `key` at once: consumed from every window if all have room,
    /// from none otherwise. A cost of 0 only reports the state. A number is that many
    /// units in every window; a [`Cost`] charges requests and another unit apart.
    pub async fn check(&self, key: &str, cost: impl Into<Cost> + Send) -> Result<Decision, Error> {
        self.inner.store.check(&self.inner.policy, key, cost).await
    }

    /// Decides `estimate` for `key` as [`check`](Self::check) does, holding it until
    /// [`settle`](Self::settle) says what was used (see [`Reservation`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_core::{Cost, Limit, Limiter, MemoryStore, Policy};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let policy = Policy::new("llm", vec![
    ///     Limit::new(60, Duration::from_secs(60)),
    ///     Limit::new(100_000, Duration::from_secs(60)).counting("tokens"),
    /// ]).unwrap();
    /// let limiter = Limiter::new(policy, MemoryStore::new());
    /// // One request, up to 4,000 tokens held while the model answers...
    /// let reservation = limiter.reserve("user-1", Cost::new(1, 4_000)).await.unwrap();
    /// assert!(reservation.is_allowed());
    /// // ...which used 6,000: the 2,000 beyond the estimate are charged too.
    /// limiter.settle("user-1", reservation, Cost::new(1, 6_000)).await.unwrap();
    /// let now = limiter.check("user-1", Cost::ZERO).await.unwrap();
    /// assert_eq!(now.windows()[1].remaining(), 94_000);
    /// # });
    /// ```
    pub async fn reserve(
        &self,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        self.inner
            .store
            .reserve(&self.inner.policy, key, estimate)
            .await
    }

    /// Settles `reservation` (made by [`reserve`](Self::reserve) for `key`) for
    /// `actual` (see [`Store::settle`]).
    pub async fn settle(
        &self,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        self.inner
            .store
            .settle(&self.inner.policy, key, reservation, actual)
            .await
    }

    /// What `key`'s windows hold now, charging nothing.
    pub async fn peek(&self, key: &str) -> Result<Decision, Error> {
        self.inner.store.peek(&self.inner.policy, key).await
    }

    /// Forgets what `key` has used: every window whole again.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_core::{Limit, Limiter, MemoryStore, Policy};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let policy = Policy::new("api", vec![Limit::new(2, Duration::from_secs(60))]).unwrap();
    /// let limiter = Limiter::new(policy, MemoryStore::new());
    /// limiter.check("user:42", 2).await.unwrap();
    /// assert_eq!(limiter.peek("user:42").await.unwrap().windows()[0].remaining(), 0);
    /// limiter.reset("user:42").await.unwrap();
    /// assert_eq!(limiter.peek("user:42").await.unwrap().windows()[0].remaining(), 2);
    /// # });
    /// ```
    pub async fn reset(&self, key: &str) -> Result<(), Error> {
        self.inner.store.reset(&self.inner.policy, key).await
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
