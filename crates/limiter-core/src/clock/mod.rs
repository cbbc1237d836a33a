//! Time sources. Stores count in integer microseconds since the Unix epoch.
//!
//! The Redis store never reads these: its only clock is Redis `TIME`, read inside the
//! script. The in-memory store reads a [`Clock`], monotonic by default and injectable in
//! tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod source;

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
    /// Microseconds since the Unix epoch. Should never go backwards; the in-memory store
    /// does not rely on it (time never goes back within a shard, whatever the clock says).
    fn now_us(&self) -> i64;
}

/// Wall-clock time read once at start, then advanced by the OS monotonic clock: it never
/// jumps when the system clock is stepped, and calendar windows still line up with UTC to
/// within the drift since start.
///
/// Where the kernel itself keeps time with the CPU's timestamp counter (x86-64 with the
/// `tsc` clocksource), the monotonic clock is read through the counter with `quanta`,
/// a fraction of a `clock_gettime` call; elsewhere every read asks the OS.
///
/// ```
/// use limiter_core::{Clock, MonotonicClock};
///
/// let clock = MonotonicClock::new();
/// let (a, b) = (clock.now_us(), clock.now_us());
/// assert!(b >= a && a > 1_600_000_000_000_000);
/// ```
#[derive(Clone, Debug)]
pub struct MonotonicClock {
    /// Microseconds since the Unix epoch at the process-wide monotonic origin.
    epoch_at_origin_us: i64,
    /// Kept, so that a read goes straight to it, not through the check that it was
    /// chosen (a function call per read).
    source: &'static source::Source,
}

impl MonotonicClock {
    /// Anchors the clock to the current system time.
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let wall_us = i64::try_from(since_epoch.as_micros()).unwrap_or(0);
        let source = source::source();
        MonotonicClock {
            epoch_at_origin_us: wall_us - (source.now_ns() / 1_000) as i64,
            source,
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
        self.epoch_at_origin_us + (self.source.now_ns() / 1_000) as i64
    }
}

/// Times an operation on the process's monotonic clock, read the way
/// [`MonotonicClock`] reads it (through the CPU's timestamp counter where the kernel
/// uses it). For timing hot paths (a decision's latency) many times a second.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::Stopwatch;
///
/// let watch = Stopwatch::start();
/// std::thread::sleep(Duration::from_millis(2));
/// assert!(watch.elapsed() >= Duration::from_millis(1));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch {
    start_ns: u64,
}

impl Stopwatch {
    /// Starts timing.
    #[inline]
    pub fn start() -> Self {
        Stopwatch {
            start_ns: source::monotonic_ns(),
        }
    }

    /// Time since [`start`](Stopwatch::start).
    #[inline]
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(source::monotonic_ns().saturating_sub(self.start_ns))
    }
}

/// A clock read from memory: a background thread stores the [`MonotonicClock`]'s time
/// every `tick`, and reading it is one atomic load instead of a clock read (see
/// `BENCHMARKS.md` for what that saves per decision).
///
/// It lags real time by up to one tick and never runs ahead of it, so a limiter on it
/// errs only towards admitting less: refills, window ends and log expiries are seen up to
/// one tick late. Suited to hot in-memory limiters with windows far longer than the tick;
/// the thread wakes every tick (about 1,000 wake-ups a second at the default 1 ms) and
/// ends when the last clone is dropped.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Clock, CoarseClock, MemoryStore};
///
/// let clock = CoarseClock::new(Duration::from_millis(1));
/// let store = MemoryStore::builder().clock(clock.clone()).build();
/// assert!(clock.now_us() > 0);
/// ```
#[derive(Clone, Debug)]
pub struct CoarseClock {
    now: Arc<AtomicI64>,
}

impl CoarseClock {
    /// Starts the ticking thread.
    pub fn new(tick: Duration) -> Self {
        let source = MonotonicClock::new();
        let now = Arc::new(AtomicI64::new(source.now_us()));
        let weak = Arc::downgrade(&now);
        std::thread::Builder::new()
            .name("limiter-coarse-clock".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(now) => now.store(source.now_us(), Ordering::Release),
                    None => return,
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| panic!("cannot start the coarse clock's thread: {e}"));
        CoarseClock { now }
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now_us(&self) -> i64 {
        self.now.load(Ordering::Acquire)
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
    fn coarse_clock_lags_but_never_leads_and_stops_with_its_last_clone() {
        let reference = MonotonicClock::new();
        let clock = CoarseClock::new(Duration::from_millis(1));
        let first = clock.now_us();
        // Bounded wait for the thread to tick at least once.
        let mut ticked = false;
        for _ in 0..2_000 {
            std::thread::sleep(Duration::from_millis(1));
            if clock.now_us() > first {
                ticked = true;
                break;
            }
        }
        assert!(ticked, "the clock advances");
        // Read the reference after the coarse clock: it must not be behind it (both are
        // anchored to the system clock at creation, the reference first).
        let coarse = clock.now_us();
        assert!(
            reference.now_us() >= coarse - 1_000,
            "never ahead of real time"
        );
        let weak = Arc::downgrade(&clock.now);
        drop(clock);
        // The thread holds a strong reference for the moment of each tick's store, so
        // the count can be 1 just after the drop: wait (bounded) for it to reach 0. A
        // thread that kept a strong reference would keep it there.
        let mut released = false;
        for _ in 0..2_000 {
            if weak.strong_count() == 0 {
                released = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(released, "only the thread's weak reference remains");
    }

    #[test]
    fn manual_clock_never_goes_back() {
        let clock = ManualClock::new(10);
        clock.set(5);
        assert_eq!(clock.now_us(), 10);
    }
}
