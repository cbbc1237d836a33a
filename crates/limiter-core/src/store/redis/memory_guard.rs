//! The memory guard: a task reads Redis `INFO memory` every interval on its own
//! connection and raises a flag while `used_memory` is above a fraction of `maxmemory`;
//! while it is raised, a decision for a key Redis does not hold yet is refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::error::{Error, StoreConfigError, StoreError};

/// When a [`RedisStore`](crate::RedisStore) stops creating keys: while Redis
/// `used_memory` is above `max_fraction` of its `maxmemory`, read every `interval`
/// (never per request), a decision for a (policy, key) whose windows Redis does not hold
/// yet fails with [`StoreError::MemoryPressure`] (behind [`Guarded`](crate::Guarded), its
/// failure mode decides), while keys Redis holds keep being decided as usual. With
/// `maxmemory` 0 (no limit) the guard never trips.
///
/// Refusing new keys keeps memory for the keys already counted: at `maxmemory` Redis
/// would otherwise fail every write (`noeviction`) or evict counters (any eviction
/// policy), and either hits every client, not just the flood of new ones.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::MemoryGuard;
///
/// let guard = MemoryGuard::default().max_fraction(0.9).interval(Duration::from_millis(500));
/// assert_eq!(guard.fraction(), 0.9);
/// assert!(MemoryGuard::default().max_fraction(1.5).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryGuard {
    max_fraction: f64,
    interval: Duration,
}

impl Default for MemoryGuard {
    /// 80% of `maxmemory`, read every second.
    fn default() -> Self {
        MemoryGuard {
            max_fraction: 0.8,
            interval: Duration::from_secs(1),
        }
    }
}

impl MemoryGuard {
    /// The fraction of `maxmemory` above which new keys are refused (0 < f <= 1;
    /// default 0.8).
    pub fn max_fraction(mut self, fraction: f64) -> Self {
        self.max_fraction = fraction;
        self
    }

    /// How often `INFO memory` is read (default 1 s; at least 1 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The configured fraction.
    pub fn fraction(&self) -> f64 {
        self.max_fraction
    }

    /// Whether the guard can be applied: a fraction in (0, 1] and an interval of at
    /// least 1 ms.
    pub fn validate(&self) -> Result<(), StoreConfigError> {
        if !(self.max_fraction > 0.0 && self.max_fraction <= 1.0) {
            return Err(StoreConfigError::MemoryGuard(
                "max_fraction must be above 0 and at most 1",
            ));
        }
        if self.interval < Duration::from_millis(1) {
            return Err(StoreConfigError::MemoryGuard(
                "interval must be at least 1ms",
            ));
        }
        Ok(())
    }
}

/// What a store's guard has last read, shared by the store's clones and its task.
#[derive(Debug, Default)]
pub(super) struct MemoryState {
    over: AtomicBool,
}

impl MemoryState {
    pub(super) fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Starts the task reading `nodes` (every node of a Cluster the store was given;
    /// over when any is). It holds only a weak reference between reads, so dropping the
    /// last clone of the store ends it.
    pub(super) fn watch(guard: MemoryGuard, nodes: Vec<redis::Client>) -> Arc<MemoryState> {
        let state = Arc::new(MemoryState::default());
        metrics::gauge!(crate::metric_names::MEMORY_GUARD_OVER).set(0.0);
        tokio::spawn(run(guard, nodes, Arc::downgrade(&state)));
        state
    }
}

/// A node the guard reads, connected when it first answers: a node down when the store
/// starts (a Cluster decides without it) must not keep the store from starting.
enum Node {
    Waiting(redis::Client),
    Ready(ConnectionManager),
}

/// The longest the guard waits on one node, to connect or for its `INFO`: a stalled node
/// must not stop it reading the others.
const NODE_WAIT: Duration = Duration::from_secs(1);

impl Node {
    /// The node's `INFO memory`, connecting first if it never answered; `None` when it
    /// does not answer within [`NODE_WAIT`].
    async fn info(&mut self) -> Option<String> {
        if let Node::Waiting(client) = self {
            let connect = ConnectionManager::new(client.clone());
            *self = Node::Ready(tokio::time::timeout(NODE_WAIT, connect).await.ok()?.ok()?);
        }
        let Node::Ready(conn) = self else {
            return None;
        };
        let mut info = redis::cmd("INFO");
        info.arg("memory");
        let query = info.query_async::<String>(conn);
        tokio::time::timeout(NODE_WAIT, query).await.ok()?.ok()
    }
}

async fn run(guard: MemoryGuard, nodes: Vec<redis::Client>, state: Weak<MemoryState>) {
    let mut nodes: Vec<Node> = nodes.into_iter().map(Node::Waiting).collect();
    let mut ticks = tokio::time::interval(guard.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut over = false;
        let mut read = false;
        for node in &mut nodes {
            // An unreadable node leaves the flag as it was: a failing Redis is the
            // breaker's business, not the memory guard's.
            if let Some(info) = node.info().await {
                read = true;
                over |= is_over(&info, guard.max_fraction);
            }
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        if read && state.over.swap(over, Ordering::Relaxed) != over {
            metrics::gauge!(crate::metric_names::MEMORY_GUARD_OVER).set(f64::from(over));
            if over {
                tracing::warn!(
                    max_fraction = guard.max_fraction,
                    "Redis memory above the guard's threshold: new rate-limit keys refused"
                );
            } else {
                tracing::info!("Redis memory back under the guard's threshold");
            }
        }
    }
}

/// Whether an `INFO memory` reply shows `used_memory` above `fraction` of a set
/// `maxmemory`.
fn is_over(info: &str, fraction: f64) -> bool {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    match (field("used_memory"), field("maxmemory")) {
        (Some(used), Some(max)) if max > 0 => used as f64 > fraction * max as f64,
        _ => false,
    }
}

/// The error of a refused new key.
pub(super) fn refused() -> Error {
    metrics::counter!(crate::metric_names::MEMORY_GUARD_REFUSALS_TOTAL).increment(1);
    Error::Store(StoreError::MemoryPressure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_used_and_max_memory() {
        let info = "# Memory\r\nused_memory:900\r\nused_memory_human:900B\r\nmaxmemory:1000\r\n";
        assert!(is_over(info, 0.8));
        assert!(!is_over(info, 0.95));
        // No maxmemory: never over.
        assert!(!is_over("used_memory:900\r\nmaxmemory:0\r\n", 0.8));
        assert!(!is_over("garbage", 0.8));
    }

    #[test]
    fn fractions_outside_zero_to_one_are_rejected() {
        for f in [0.0, -0.1, 1.01, f64::NAN] {
            assert!(MemoryGuard::default().max_fraction(f).validate().is_err());
        }
        assert!(MemoryGuard::default()
            .interval(Duration::ZERO)
            .validate()
            .is_err());
        assert!(MemoryGuard::default().validate().is_ok());
    }
}
