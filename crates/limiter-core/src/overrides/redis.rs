//! [`RedisOverrides`]: overrides in one Redis hash that every instance reads.
//!
//! `<prefix>{overrides}` holds a field per (policy, key), `<policy length>:<policy><key>`
//! (no separator a key could forge), valued as [`Override::encode`] writes it, and the
//! field `~v`, the Redis time (us) of the last change: an instance asks for `~v` alone
//! and reads the whole hash only when it moved. The hash expires with its last override,
//! and holds at most [`MAX_OVERRIDES`] of them: expired ones make room first, then a new
//! one is refused.

use std::time::SystemTime;

use redis::Script;

use super::{millis, Override, MAX_OVERRIDES};
use crate::connection::Connection;
use crate::error::{Error, StoreConfigError, StoreError};

/// `KEYS[1]` the hash; `ARGV[1]` the field, `ARGV[2]` the value (empty: remove the
/// field), `ARGV[3]` its end (Unix ms), `ARGV[4]` the most fields. Returns 1, or 0 when
/// the hash is full.
const WRITE: &str = r"
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
      and redis.call('HLEN', KEYS[1]) > tonumber(ARGV[4]) then
    -- Full: drop what has expired, then look again.
    local all = redis.call('HGETALL', KEYS[1])
    for i = 1, #all, 2 do
      local until_ms = tonumber(string.match(all[i + 1], '(%d+)$'))
      if all[i] ~= '~v' and (not until_ms or until_ms <= now_ms) then
        redis.call('HDEL', KEYS[1], all[i])
      end
    end
    if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[4]) then return 0 end
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  local ttl = tonumber(ARGV[3]) - now_ms
  if ttl > redis.call('PTTL', KEYS[1]) then redis.call('PEXPIRE', KEYS[1], math.max(ttl, 1)) end
end
redis.call('HSET', KEYS[1], '~v', t[1] .. string.format('%06d', t[2]))
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], 1000) end
return 1
";

/// Overrides shared by every instance on one Redis (standalone or Cluster: one hash,
/// one slot).
///
/// ```no_run
/// use std::time::{Duration, SystemTime};
/// use limiter_core::{Override, RedisOverrides};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let overrides = RedisOverrides::connect("redis://127.0.0.1:6379", "rl:").await?;
/// let hour = SystemTime::now() + Duration::from_secs(3_600);
/// overrides.set("api", "user:mallory", Override::block(hour)).await?;
/// let (version, all) = overrides.load().await?;
/// assert_eq!(all.len(), 1);
/// assert_eq!(overrides.version().await?, version);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisOverrides {
    conn: Connection,
    hash: String,
    write: Script,
}

impl std::fmt::Debug for RedisOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOverrides")
            .field("hash", &self.hash)
            .field("connection", &self.conn.kind())
            .finish()
    }
}

/// The overrides in force: (policy, key, override).
pub type OverrideList = Vec<(String, String, Override)>;

impl RedisOverrides {
    /// Connects to a standalone Redis; the hash's name starts with `prefix` (no `{`/`}`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        RedisOverrides::new(Connection::single(url).await?, prefix)
    }

    /// Connects to a Redis Cluster through any of its nodes.
    pub async fn connect_cluster(nodes: &[&str], prefix: &str) -> Result<Self, StoreError> {
        RedisOverrides::new(Connection::cluster(nodes).await?, prefix)
    }

    /// Another set of overrides on the same connection, in the hash
    /// `<prefix><name>{overrides}` (the penalty box keeps its penalties so).
    ///
    /// ```no_run
    /// use limiter_core::RedisOverrides;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let overrides = RedisOverrides::connect("redis://127.0.0.1:6379", "rl:").await?;
    /// let penalties = overrides.sibling("penalty:")?; // rl:penalty:{overrides}
    /// # let _ = penalties;
    /// # Ok(()) }
    /// ```
    pub fn sibling(&self, name: &str) -> Result<Self, StoreError> {
        let prefix = self.hash.trim_end_matches("{overrides}");
        RedisOverrides::new(self.conn.clone(), &format!("{prefix}{name}"))
    }

    fn new(conn: Connection, prefix: &str) -> Result<Self, StoreError> {
        if prefix.contains(['{', '}']) {
            return Err(StoreConfigError::KeyPrefix(prefix.to_owned()).into());
        }
        Ok(RedisOverrides {
            conn,
            hash: format!("{prefix}{{overrides}}"),
            write: Script::new(WRITE),
        })
    }

    /// Sets (or replaces) the override of `key` under `policy`. Refused with
    /// [`StoreError::Protocol`] when [`MAX_OVERRIDES`] are in force.
    pub async fn set(&self, policy: &str, key: &str, adjustment: Override) -> Result<(), Error> {
        let until = millis(adjustment.until());
        let written = self
            .write(&field(policy, key), &adjustment.encode(), until)
            .await?;
        if !written {
            return Err(StoreError::Protocol(format!(
                "{MAX_OVERRIDES} overrides are in force; clear one first"
            ))
            .into());
        }
        Ok(())
    }

    /// Removes the override of `key` under `policy`, if any.
    pub async fn clear(&self, policy: &str, key: &str) -> Result<(), Error> {
        self.write(&field(policy, key), "", 0).await.map(|_| ())
    }

    /// The time of the last change, as Redis wrote it; `None` when there is none in
    /// force. Cheap: instances ask it often and [`load`](Self::load) when it moved.
    pub async fn version(&self) -> Result<Option<String>, Error> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&self.hash).arg("~v");
        let version: Option<String> = cmd
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from)?;
        Ok(version)
    }

    /// Every override not expired, with the version they were read at.
    pub async fn load(&self) -> Result<(Option<String>, OverrideList), Error> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&self.hash);
        let fields: Vec<(String, String)> = cmd
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from)?;
        let now = SystemTime::now();
        let mut version = None;
        let mut all = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            if name == "~v" {
                version = Some(value);
                continue;
            }
            let parsed = parse_field(&name).zip(Override::decode(&value));
            match parsed {
                Some(((policy, key), o)) if !o.is_expired(now) => {
                    all.push((policy.to_owned(), key.to_owned(), o));
                }
                Some(_) => {}
                None => tracing::warn!(field = name, "an unreadable override is ignored"),
            }
        }
        Ok((version, all))
    }

    async fn write(&self, field: &str, value: &str, until_ms: u64) -> Result<bool, Error> {
        let mut invocation = self.write.key(&self.hash);
        invocation
            .arg(field)
            .arg(value)
            .arg(until_ms)
            .arg(MAX_OVERRIDES);
        let written: i64 = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::from)?;
        Ok(written == 1)
    }
}

/// The hash field of (policy, key).
fn field(policy: &str, key: &str) -> String {
    format!("{}:{policy}{key}", policy.len())
}

/// (policy, key) from a field [`field`] wrote.
fn parse_field(field: &str) -> Option<(&str, &str)> {
    let (length, rest) = field.split_once(':')?;
    let length: usize = length.parse().ok()?;
    Some((rest.get(..length)?, rest.get(length..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_whatever_the_names_hold() {
        for (policy, key) in [("api", "user:1"), ("a:b", "3:x"), ("é", ""), ("p", "~v")] {
            assert_eq!(parse_field(&field(policy, key)), Some((policy, key)));
        }
        assert_eq!(parse_field("~v"), None);
        assert_eq!(parse_field("9:ab"), None);
    }
}
