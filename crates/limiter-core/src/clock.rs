//! Time sources. Stores count in integer microseconds since the Unix epoch.
//!
//! The Redis store never reads these: its only clock is Redis `TIME`, read inside the
//! script. The in-memory store reads a [`Clock`], monotonic by default and injectable in
//! tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of "now" in microseconds since the Unix epoch.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000_000);
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now_us(), 2_500_000);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch. Must never go backwards.
    fn now_us(&self) -> i64;
}

/// Wall-clock time read once at start, then advanced by the OS monotonic clock
/// ([`Instant`]): it never jumps when the system clock is stepped, and calendar windows
/// still line up with UTC to within the drift since start.
///
/// Deliberately not a TSC-based clock (such as `quanta`): those convert cycles to time
/// with a ratio calibrated at start, and a calibration disturbed by a busy machine skews
/// every later reading, which a limiter turns into wrong admissions. The OS clock costs a
/// vDSO call per decision and is right.
#[derive(Clone, Debug)]
pub struct MonotonicClock {
    anchor_us: i64,
    start: Instant,
}

impl MonotonicClock {
    /// Anchors the clock to the current system time.
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        MonotonicClock {
            anchor_us: i64::try_from(since_epoch.as_micros()).unwrap_or(0),
            start: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now_us(&self) -> i64 {
        self.anchor_us + self.start.elapsed().as_micros() as i64
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// Starts at `now_us` microseconds since the Unix epoch.
    pub fn new(now_us: i64) -> Self {
        ManualClock {
            now: Arc::new(AtomicI64::new(now_us)),
        }
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(
            i64::try_from(by.as_micros()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Sets the time; must not be earlier than the current one.
    pub fn set(&self, now_us: i64) {
        self.now.fetch_max(now_us, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now_us(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn now_us(&self) -> i64 {
        (**self).now_us()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_is_near_system_time_and_never_goes_back() {
        let clock = MonotonicClock::new();
        let a = clock.now_us();
        let b = clock.now_us();
        assert!(b >= a);
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        assert!((sys - a).abs() < 60_000_000);
    }

    #[test]
    fn manual_clock_never_goes_back() {
        let clock = ManualClock::new(10);
        clock.set(5);
        assert_eq!(clock.now_us(), 10);
    }
}
