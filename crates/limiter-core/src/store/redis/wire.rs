//! [`Wire`]: every call a Redis store makes to one shard (the whole of a standalone
//! Redis), under its timeout and circuit breaker, one outcome per call (a batch of
//! decisions is one call).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::breaker::{Breaker, CallResult};
use super::{BreakerConfig, BreakerState};
use crate::error::{Error, StoreError, Unavailable};

/// The default timeout of one call to Redis carrying one decision: past it the call
/// has failed, and the failure mode decides its requests. 250 ms: it bounds how long
/// requests wait on a Redis that stopped answering (a pause, a partition) until the
/// breaker opens; a dead Redis refuses connections at once. A healthy Redis answers in
/// well under a millisecond, but a machine short of CPU can hold a call up for tens of
/// milliseconds, and failing a call fails every decision in it. Slowness short of the
/// timeout is the breaker's to judge (`slow_call`: 10 ms at the p99).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// What a call is allowed beyond the timeout and the breaker's slow-call bound for each
/// decision it shares the connection with (its own after the first, and those of calls
/// out at the same time): Redis's own work on a decision is tens of microseconds (a few
/// for GCRA, more for several windows or a long sliding log), and a batch of 256, or a
/// call among 256 others, would otherwise look slow to a breaker set for one.
pub const PER_DECISION_ALLOWANCE: Duration = Duration::from_micros(100);

/// The timeout and the breaker of one shard of a store (shared by its clones).
pub(super) struct Wire {
    timeout: Duration,
    breaker: Breaker,
    /// Decisions in calls out now: a call's allowance counts those ahead of it.
    in_flight: AtomicUsize,
    /// Whether the last call that ended failed: Redis, not this process, is then why
    /// decisions wait.
    failing: AtomicBool,
    /// When (us from `epoch`) a call last succeeded.
    last_reply_us: AtomicU64,
    epoch: Instant,
}

impl Wire {
    /// A wire with its own breaker; `slots` labels the breaker's metrics with the
    /// Cluster shard it guards.
    pub(super) fn new(timeout: Duration, breaker: BreakerConfig, slots: Option<String>) -> Wire {
        Wire {
            timeout,
            breaker: Breaker::new(breaker, slots),
            in_flight: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            last_reply_us: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(super) fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Whether the last call that ended failed (an error, a timeout).
    pub(super) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// The timeout of a call carrying one decision.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `call`, a round trip to Redis carrying `decisions` decisions (at least 1),
    /// under the timeout and the breaker: not attempted while the breaker is open,
    /// failed past the timeout, and its outcome recorded. Returns whether the breaker
    /// opened with it (the caller then starts the health check).
    ///
    /// Must run on the store's I/O thread, where its clock measures Redis only.
    pub(super) async fn call<T>(
        &self,
        decisions: usize,
        call: impl Future<Output = Result<T, Error>>,
    ) -> (Result<T, Error>, bool) {
        if self.breaker.state() == BreakerState::Open {
            return (
                Err(StoreError::Unavailable(Unavailable::BreakerOpen).into()),
                false,
            );
        }
        let ahead = self.in_flight.fetch_add(decisions, Ordering::Relaxed);
        let out = OutNow {
            wire: self,
            decisions,
        };
        let timeout = self.timeout + batch_allowance(ahead + decisions);
        let start = Instant::now();
        let outcome = tokio::time::timeout(timeout, call).await;
        let elapsed = start.elapsed();
        // Calls that went out after this one and are still out shared the connection
        // and this thread with it: on a pipelined connection Redis may not have reached
        // them, but writing them held this call's reply up.
        let beside = self.in_flight.load(Ordering::Relaxed);
        drop(out);
        let allowance = batch_allowance(ahead.max(beside.saturating_sub(decisions)) + decisions);
        metrics::histogram!(crate::metric_names::STORE_DURATION_SECONDS)
            .record(elapsed.as_secs_f64());
        let (result, failure) = match outcome {
            Ok(Ok(value)) => {
                self.failing.store(false, Ordering::Relaxed);
                // Slow only if Redis also went that long without answering anything: a
                // call that waited while replies to the calls ahead of it kept coming
                // waited on this process's queue (a debug build, a busy I/O thread),
                // not on Redis. A slow Redis spaces its replies; one at a time, the gap
                // is the call's own time.
                let since = self.since_last_reply(start);
                let bound = self.breaker.config().slow_call;
                let slow = elapsed > bound + allowance && since > bound;
                let result = if slow {
                    CallResult::Slow
                } else {
                    CallResult::Fast
                };
                return (Ok(value), self.breaker.record(result));
            }
            Ok(Err(Error::Store(err))) => {
                let kind = failure_kind(&err);
                (Err(err.into()), kind)
            }
            Ok(Err(other)) => return (Err(other), false),
            Err(_) => (
                Err(StoreError::Unavailable(Unavailable::Deadline(timeout)).into()),
                "timeout",
            ),
        };
        self.failing.store(true, Ordering::Relaxed);
        metrics::counter!(crate::metric_names::STORE_ERRORS_TOTAL, "kind" => failure).increment(1);
        tracing::warn!(kind = failure, decisions, "rate-limit store call failed");
        (result, self.breaker.record(CallResult::Failure))
    }
}

impl Wire {
    /// How long before now the last reply came, counted from `start` at the most (this
    /// call's own start); records now as the last reply.
    fn since_last_reply(&self, start: Instant) -> Duration {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let now = micros(self.epoch.elapsed());
        let start = micros(start.saturating_duration_since(self.epoch));
        let last = self.last_reply_us.fetch_max(now, Ordering::Relaxed);
        Duration::from_micros(now.saturating_sub(last.max(start)))
    }
}

/// A call out now; its decisions stop counting as in flight however it ends.
struct OutNow<'a> {
    wire: &'a Wire,
    decisions: usize,
}

impl Drop for OutNow<'_> {
    fn drop(&mut self) {
        self.wire
            .in_flight
            .fetch_sub(self.decisions, Ordering::Relaxed);
    }
}

/// The allowance for a call with `decisions` to work through, its own included.
fn batch_allowance(decisions: usize) -> Duration {
    let extra = u32::try_from(decisions.saturating_sub(1)).unwrap_or(u32::MAX);
    PER_DECISION_ALLOWANCE.saturating_mul(extra)
}

fn failure_kind(err: &StoreError) -> &'static str {
    match err {
        StoreError::Redis(_) | StoreError::Unavailable(_) => "unavailable",
        StoreError::Protocol(_) => "protocol",
        StoreError::Full(_) => "full",
        StoreError::MemoryPressure => "memory_pressure",
        StoreError::Config(_) => "config",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_allowed_redis_time_for_each_decision_after_the_first() {
        assert_eq!(batch_allowance(0), Duration::ZERO);
        assert_eq!(batch_allowance(1), Duration::ZERO);
        assert_eq!(batch_allowance(257), Duration::from_micros(25_600));
    }
}
