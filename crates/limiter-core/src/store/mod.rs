//! Where window state lives. One [`Store::check`] call decides every window of a policy
//! atomically: one critical section in memory, one script round trip on Redis.

mod denial_cache;
mod memory;
mod redis;

use std::future::Future;

pub use self::denial_cache::{DenialCache, DenialCacheBuilder};
pub use self::memory::{MemoryStore, MemoryStoreBuilder};
pub use self::redis::{RedisStore, RedisStoreBuilder};
use crate::decision::Decision;
use crate::error::Error;
use crate::policy::Policy;

/// A place that keeps rate-limit state and decides requests against it.
///
/// Implementations decide all windows of `policy` for `key` in one atomic step: the cost
/// is consumed from every window or from none. A `cost` of 0 reports the state and
/// consumes nothing. Wrappers (deadlines, circuit breakers, caches) implement `Store`
/// themselves, so callers never change.
///
/// Nothing happens until the returned future is polled.
pub trait Store: Send + Sync + 'static {
    /// Decides `cost` units for `key` under every window of `policy`.
    fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Error>> + Send;

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
        cost: u64,
    ) -> impl Future<Output = Result<Decision, Error>> + Send {
        (**self).check(policy, key, cost)
    }

    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send {
        (**self).ping()
    }
}
