//! [`RedisDistinct`]: distinct counts shared by every instance, as Redis HyperLogLogs.
//!
//! One key per set, `<prefix>{distinct:<set>}`: hash-tagged, so it works on Cluster.
//! A tiny script adds the item, gives a new key its TTL (the window, from the first
//! item) and counts, in one round trip: `PEXPIRE ... NX` would need Redis 7.

use std::time::Duration;

use redis::Script;

use super::DistinctCounter;
use crate::connection::Connection;
use crate::error::{Error, StoreConfigError, StoreError};

/// `KEYS[1]` the set, `ARGV[1]` the item, `ARGV[2]` the window in ms.
const INSERT: &str = r"
redis.call('PFADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('PFCOUNT', KEYS[1])
";

/// Distinct counts in Redis (standalone or Cluster): a HyperLogLog per set (at most
/// 12 KiB, sparse and far smaller for small sets), expiring with its window.
///
/// ```no_run
/// use std::time::Duration;
/// use limiter_core::{DistinctCounter, RedisDistinct};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let counter = RedisDistinct::connect("redis://127.0.0.1:6379", "rl:").await?;
/// let seen = counter.insert("203.0.113.9", 42, Duration::from_secs(60)).await?;
/// println!("{seen} distinct identities this minute");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisDistinct {
    conn: Connection,
    prefix: String,
    script: Script,
}

impl std::fmt::Debug for RedisDistinct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDistinct")
            .field("prefix", &self.prefix)
            .field("connection", &self.conn.kind())
            .finish()
    }
}

impl RedisDistinct {
    /// Connects to a standalone Redis; keys start with `prefix` (no `{` or `}`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        RedisDistinct::new(Connection::single(url).await?, prefix)
    }

    /// Connects to a Redis Cluster through any of its nodes.
    pub async fn connect_cluster(nodes: &[&str], prefix: &str) -> Result<Self, StoreError> {
        RedisDistinct::new(Connection::cluster(nodes).await?, prefix)
    }

    fn new(conn: Connection, prefix: &str) -> Result<Self, StoreError> {
        if prefix.contains(['{', '}']) {
            return Err(StoreConfigError::KeyPrefix(prefix.to_owned()).into());
        }
        Ok(RedisDistinct {
            conn,
            prefix: prefix.to_owned(),
            script: Script::new(INSERT),
        })
    }

    fn key(&self, set: &str) -> String {
        // Braces in the set would move the hash tag: they cannot come from an address.
        let set: String = set.chars().filter(|c| !matches!(c, '{' | '}')).collect();
        format!("{}{{distinct:{set}}}", self.prefix)
    }
}

impl DistinctCounter for RedisDistinct {
    async fn insert(&self, set: &str, item: u64, window: Duration) -> Result<u64, Error> {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.script.key(self.key(set));
        invocation.arg(&item.to_le_bytes()[..]).arg(ms);
        let count: u64 = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from)?;
        Ok(count)
    }
}
