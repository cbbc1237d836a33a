//! Distinct counts per named set, for abuse detection: how many different items (user
//! ids, API keys, failed credentials) a set (a client address) has presented in its
//! current window. Estimates, in bounded memory per set; nothing here knows HTTP.
//!
//! A set's window starts with its first item and lasts `window`; the next item after it
//! starts a new, empty one. Both stores behave alike: [`MemoryDistinct`] in this process,
//! [`RedisDistinct`] shared by every instance (HyperLogLog, `PFADD` + `PFCOUNT`).

mod memory;
mod redis;

use std::future::Future;
use std::time::Duration;

pub use self::memory::MemoryDistinct;
pub use self::redis::RedisDistinct;
use crate::error::Error;

/// Counts distinct items per set.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{DistinctCounter, MemoryDistinct};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let counter = MemoryDistinct::new(1_000);
/// let minute = Duration::from_secs(60);
/// counter.insert("10.0.0.1", 7, minute).await?;
/// counter.insert("10.0.0.1", 7, minute).await?;
/// assert_eq!(counter.insert("10.0.0.1", 8, minute).await?, 2);
/// # Ok::<(), limiter_core::Error>(())
/// # }).unwrap();
/// ```
pub trait DistinctCounter: Send + Sync + 'static {
    /// Adds `item` (a uniformly distributed 64-bit hash of it) to `set`, whose window
    /// lasts `window` from its first item, and returns the estimated number of distinct
    /// items in the set's current window, this one included.
    fn insert(
        &self,
        set: &str,
        item: u64,
        window: Duration,
    ) -> impl Future<Output = Result<u64, Error>> + Send;
}
