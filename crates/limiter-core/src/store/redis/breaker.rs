//! The circuit breaker of a Redis store's calls: closed while Redis behaves, open after
//! too many failed or slow calls within a window (no call is attempted while open),
//! half-open once a health check succeeds, closed again after a successful call. It is
//! fed by [`Wire`](super::wire::Wire), one outcome per call to Redis.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The circuit breaker of a Redis store: it opens after `failures` failed calls to Redis
/// within `window`, or `slow_calls` slow ones that are also more than `slow_share` of
/// the window's calls (by default: Redis's p99 above 10 ms); while open no call reaches
/// Redis and the failure mode decides; a health check every `probe_interval` half-opens
/// it, and the next successful call closes it.
///
/// A call is one round trip to Redis (a batch of decisions is one call), timed from when
/// it is written to when its reply is read, on the store's own I/O thread: time that
/// decisions spend queued in this process, or that its runtime takes to poll them, never
/// counts. A batch of `n` decisions is allowed `n - 1` times
/// [`PER_DECISION`](crate::RedisStoreBuilder::PER_DECISION) more than `slow_call` (and
/// than the store's `timeout`) for Redis's own work on it.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize, schemars::JsonSchema),
    serde(default, deny_unknown_fields),
    schemars(rename = "BreakerSection")
)]
pub struct BreakerConfig {
    /// Failed calls (errors, broken connections, or no answer within the store's
    /// `timeout`) that open it.
    pub failures: u32,
    /// Successful calls slower than `slow_call` that open it, if they are also more than
    /// `slow_share` of the calls in the window.
    pub slow_calls: u32,
    /// The share of the window's calls that must be slow for slow calls to open it
    /// (default 0.01: a p99 above `slow_call`). A few calls delayed by a busy machine
    /// then never open it, a Redis slow on every call does.
    pub slow_share: f64,
    /// A call slower than this counts as slow. At or above the store's `timeout` it
    /// never counts: such calls are failures.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration"),
        schemars(
            with = "crate::config_serde::DurationText",
            transform = crate::config_serde::no_default
        )
    )]
    pub slow_call: Duration,
    /// The window over which failures and slow calls are counted.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration"),
        schemars(
            with = "crate::config_serde::DurationText",
            transform = crate::config_serde::no_default
        )
    )]
    pub window: Duration,
    /// How often an open breaker checks whether Redis answers again.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::config_serde::duration"),
        schemars(
            with = "crate::config_serde::DurationText",
            transform = crate::config_serde::no_default
        )
    )]
    pub probe_interval: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            slow_calls: 50,
            slow_share: 0.01,
            slow_call: Duration::from_millis(10),
            window: Duration::from_secs(10),
            probe_interval: Duration::from_millis(500),
        }
    }
}

impl BreakerConfig {
    /// The first field that cannot work, with why: `None` when the breaker can be used.
    ///
    /// ```
    /// use limiter_core::BreakerConfig;
    ///
    /// assert_eq!(BreakerConfig::default().invalid_field(), None);
    /// let never = BreakerConfig { failures: 0, ..BreakerConfig::default() };
    /// assert_eq!(never.invalid_field(), Some(("failures", "must be at least 1")));
    /// ```
    pub fn invalid_field(&self) -> Option<(&'static str, &'static str)> {
        if self.failures == 0 {
            Some(("failures", "must be at least 1"))
        } else if self.slow_calls == 0 {
            Some(("slow_calls", "must be at least 1"))
        } else if !(0.0..1.0).contains(&self.slow_share) {
            Some(("slow_share", "must be at least 0 and below 1"))
        } else if self.window.is_zero() {
            Some(("window", "must be longer than zero"))
        } else if self.probe_interval.is_zero() {
            // A zero interval would probe a dead Redis in a busy loop.
            Some(("probe_interval", "must be longer than zero"))
        } else {
            None
        }
    }
}

/// The breaker's state, as exported in the `ratelimit_breaker_state` gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    /// Calls go to the store (gauge 0).
    Closed = 0,
    /// A health check succeeded: calls go to the store; the first result decides (gauge 1).
    HalfOpen = 1,
    /// No call goes to the store; the failure mode decides (gauge 2).
    Open = 2,
}

impl BreakerState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => BreakerState::Closed,
            1 => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

/// What a finished call tells the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallResult {
    /// Answered within its slow-call bound.
    Fast,
    /// Answered, but slower than its slow-call bound.
    Slow,
    /// An error, a broken connection or no answer within the timeout.
    Failure,
}

pub(crate) struct Breaker {
    config: BreakerConfig,
    /// The slots of the Cluster shard it guards (`slots` label of its metrics); `None`
    /// for a standalone Redis, whose one breaker's metrics carry no label.
    slots: Option<String>,
    /// Read on every call without the lock.
    state: AtomicU8,
    counts: Mutex<Counts>,
}

struct Counts {
    window_start: Instant,
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig, slots: Option<String>) -> Self {
        Breaker {
            config,
            slots,
            state: AtomicU8::new(BreakerState::Closed as u8),
            counts: Mutex::new(Counts {
                window_start: Instant::now(),
                calls: 0,
                failures: 0,
                slow: 0,
            }),
        }
    }

    pub(crate) fn config(&self) -> &BreakerConfig {
        &self.config
    }

    pub(crate) fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Records a call's result; returns true when this result opened the breaker (the
    /// caller then starts the health check).
    pub(crate) fn record(&self, result: CallResult) -> bool {
        let state = self.state();
        match (state, result) {
            (BreakerState::Open, _) => false,
            (BreakerState::HalfOpen, CallResult::Failure) => self.transition(BreakerState::Open),
            (BreakerState::HalfOpen, CallResult::Fast | CallResult::Slow) => {
                self.reset_counts();
                self.transition(BreakerState::Closed);
                false
            }
            (BreakerState::Closed, result) => {
                let mut counts = self.counts.lock();
                let now = Instant::now();
                if now.duration_since(counts.window_start) >= self.config.window {
                    *counts = Counts {
                        window_start: now,
                        calls: 0,
                        failures: 0,
                        slow: 0,
                    };
                }
                counts.calls = counts.calls.saturating_add(1);
                match result {
                    CallResult::Failure => counts.failures += 1,
                    CallResult::Slow => counts.slow += 1,
                    CallResult::Fast => return false,
                }
                let slow = counts.slow >= self.config.slow_calls
                    && f64::from(counts.slow) > self.config.slow_share * f64::from(counts.calls);
                let trip = counts.failures >= self.config.failures || slow;
                drop(counts);
                trip && self.transition(BreakerState::Open)
            }
        }
    }

    /// A health check succeeded while open: let calls through again.
    pub(crate) fn half_open(&self) {
        self.transition(BreakerState::HalfOpen);
    }

    fn reset_counts(&self) {
        let mut counts = self.counts.lock();
        counts.calls = 0;
        counts.failures = 0;
        counts.slow = 0;
        counts.window_start = Instant::now();
    }

    /// Moves to `to`; returns whether the state changed (so only one caller acts on it).
    fn transition(&self, to: BreakerState) -> bool {
        let from = self.state.swap(to as u8, Ordering::AcqRel);
        if from == to as u8 {
            return false;
        }
        let from = BreakerState::from_u8(from);
        tracing::warn!(
            from = from.name(),
            to = to.name(),
            slots = self.slots.as_deref(),
            "rate-limit store circuit breaker"
        );
        let (state, transitions) = match &self.slots {
            None => (
                metrics::gauge!(crate::metric_names::BREAKER_STATE),
                metrics::counter!(crate::metric_names::BREAKER_TRANSITIONS_TOTAL, "to" => to.name()),
            ),
            Some(slots) => (
                metrics::gauge!(crate::metric_names::BREAKER_STATE, "slots" => slots.clone()),
                metrics::counter!(
                    crate::metric_names::BREAKER_TRANSITIONS_TOTAL,
                    "to" => to.name(),
                    "slots" => slots.clone()
                ),
            ),
        };
        state.set(f64::from(to as u8));
        transitions.increment(1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            slow_calls: 2,
            slow_share: 0.01,
            slow_call: Duration::from_millis(10),
            window: Duration::from_secs(1),
            probe_interval: Duration::from_millis(100),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_failures_within_the_window_only() {
        let b = Breaker::new(config(), None);
        assert!(!b.record(CallResult::Failure));
        assert!(!b.record(CallResult::Failure));
        tokio::time::advance(Duration::from_secs(1)).await;
        // The window rolled over: two old failures no longer count.
        assert!(!b.record(CallResult::Failure));
        assert!(!b.record(CallResult::Failure));
        assert!(
            b.record(CallResult::Failure),
            "third failure in one window opens"
        );
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.record(CallResult::Failure), "already open");
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_slow_calls_and_recovers_through_half_open() {
        let b = Breaker::new(config(), None);
        let (slow, fast) = (CallResult::Slow, CallResult::Fast);
        assert!(!b.record(fast));
        assert!(!b.record(slow));
        assert!(b.record(slow));
        assert_eq!(b.state(), BreakerState::Open);
        b.half_open();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.record(CallResult::Failure), "a failed trial reopens");
        b.half_open();
        assert!(!b.record(fast));
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(!b.record(slow), "counts were reset on closing");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_open_it_only_as_more_than_their_share_of_calls() {
        let b = Breaker::new(
            BreakerConfig {
                slow_calls: 2,
                slow_share: 0.1,
                ..config()
            },
            None,
        );
        // 2 slow of 30 calls: the count is reached, the share (10%) is not.
        for _ in 0..28 {
            assert!(!b.record(CallResult::Fast));
        }
        assert!(!b.record(CallResult::Slow));
        assert!(!b.record(CallResult::Slow));
        assert_eq!(b.state(), BreakerState::Closed);
        // 4 of 32: above 10%.
        assert!(!b.record(CallResult::Slow));
        assert!(b.record(CallResult::Slow));
        assert_eq!(b.state(), BreakerState::Open);
    }
}
