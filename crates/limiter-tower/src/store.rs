//! [`AnyStore`]: the configured store as one concrete type. The core's `Store` trait
//! returns `impl Future` and so cannot be a trait object; an enum over the two stores a
//! configuration can name keeps the layer a single type without generics leaking into
//! every user's signatures.

use std::time::Duration;

use limiter_core::{Decision, Error, MemoryStore, Policy, RedisStore, Store, StoreError};

use crate::config::StoreConfig;

/// The store a configuration names.
#[derive(Clone)]
pub enum AnyStore {
    /// In-process.
    Memory(MemoryStore),
    /// Redis (standalone or cluster); each decision is bounded by `timeout`.
    Redis {
        /// The connection.
        store: RedisStore,
        /// The longest one decision may take.
        timeout: Duration,
    },
}

impl AnyStore {
    /// Connects to the store `config` describes (as compiled: `${VAR}` already expanded,
    /// see [`Rules::store`](crate::Rules::store)).
    pub async fn connect(config: &StoreConfig) -> Result<AnyStore, StoreError> {
        match config.clone() {
            StoreConfig::Memory { max_keys } => {
                let mut builder = MemoryStore::builder();
                if let Some(max_keys) = max_keys {
                    builder = builder.max_keys(max_keys);
                }
                Ok(AnyStore::Memory(builder.build()))
            }
            StoreConfig::Redis {
                url,
                key_prefix,
                timeout,
            } => {
                let builder = prefixed(key_prefix);
                let store = bounded(timeout.0, builder.connect(&url)).await?;
                Ok(AnyStore::Redis {
                    store,
                    timeout: timeout.0,
                })
            }
            StoreConfig::RedisCluster {
                nodes,
                key_prefix,
                timeout,
            } => {
                let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
                let store = bounded(
                    timeout.0.max(Duration::from_secs(5)),
                    prefixed(key_prefix).connect_cluster(&nodes),
                )
                .await?;
                Ok(AnyStore::Redis {
                    store,
                    timeout: timeout.0,
                })
            }
        }
    }

    /// Decides at once when the store needs no I/O (the in-memory store); `None` means
    /// [`Store::check`] must be awaited.
    pub fn check_now(
        &self,
        policy: &Policy,
        key: &str,
        cost: u64,
    ) -> Option<Result<Decision, Error>> {
        match self {
            AnyStore::Memory(store) => Some(store.check_now(policy, key, cost)),
            AnyStore::Redis { .. } => None,
        }
    }
}

fn prefixed(prefix: Option<String>) -> limiter_core::RedisStoreBuilder {
    let builder = RedisStore::builder();
    match prefix {
        Some(prefix) => builder.prefix(&prefix),
        None => builder,
    }
}

/// Connecting at start-up gets a generous bound of its own: a first connection is slower
/// than a decision, but an unreachable Redis must not hang start-up forever.
async fn bounded<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout.max(Duration::from_secs(5)), fut)
        .await
        .map_err(|_| StoreError::Unavailable("timed out connecting".into()))?
}

impl Store for AnyStore {
    async fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        match self {
            AnyStore::Memory(store) => store.check_now(policy, key, cost),
            AnyStore::Redis { store, timeout } => {
                match tokio::time::timeout(*timeout, store.check(policy, key, cost)).await {
                    Ok(result) => result,
                    Err(_) => Err(Error::Store(StoreError::Unavailable(format!(
                        "no answer within {timeout:?}"
                    )))),
                }
            }
        }
    }
}
