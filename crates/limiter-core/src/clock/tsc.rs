//! The process's monotonic time in nanoseconds: the OS clock, read through the CPU's
//! timestamp counter (TSC) where that is safe.
//!
//! An in-memory decision takes about 25 ns; `clock_gettime` takes about as long again on
//! a virtual machine, while reading the TSC takes a third of that. TSC clocks that
//! calibrate a cycles-to-time ratio once at start (`quanta`) are fast but wrong when
//! that calibration is disturbed: a busy machine made one run fast enough for a
//! day-long window to admit 501 of 500. This reader never trusts the ratio far:
//!
//! - **Short extrapolations.** A read is an OS reading (the *base*) plus the cycles since
//!   it times the ratio, and only while fewer than about 1 ms of cycles have passed.
//!   Past that, or if the counter went backwards, the read asks the OS and publishes a
//!   new base. A hot loop pays the OS price about once per millisecond.
//! - **A measured ratio, biased low.** The ratio is measured against the OS clock over
//!   10 ms to 2 s spans (so it follows NTP's slewing of the OS clock), accepted only when
//!   the error of the readings it comes from is under 0.005%, then lowered by 0.1%. An
//!   extrapolation therefore lags the OS clock by at most about 1.5 µs and never leads
//!   it; a new base, taken from the OS, is never earlier than a read before it.
//! - **Only where the kernel trusts the TSC.** Used only on x86-64 when the kernel's own
//!   clocksource is `tsc` (the kernel checks the counter is invariant and synchronised
//!   across CPUs before choosing it). Everywhere else every read asks the OS.
//!
//! Until the first 10 ms span is measured, reads ask the OS.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use parking_lot::Mutex;

/// Nanoseconds since a process-wide origin, never ahead of [`Instant`] (the OS monotonic
/// clock). An extrapolated read lags by up to the ratio's bias over a base's reach (about
/// 1 µs), an OS read does not: so a read may fall up to about 1 µs behind one made just
/// before it (on another thread, or through the OS on this one). Callers that need strict
/// monotonicity keep the latest value they used (the in-memory store does, per shard;
/// [`Stopwatch`](super::Stopwatch) saturates at zero).
#[inline]
pub(super) fn monotonic_ns() -> u64 {
    let time = time();
    match &time.tsc {
        Some(tsc) => tsc.now_ns(&time.origin),
        None => os_ns(&time.origin),
    }
}

struct Time {
    origin: Instant,
    tsc: Option<TscTime>,
}

fn time() -> &'static Time {
    static TIME: OnceLock<Time> = OnceLock::new();
    TIME.get_or_init(|| Time {
        origin: Instant::now(),
        tsc: TscTime::detect(),
    })
}

fn os_ns(origin: &Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A ratio is measured over at least this span of OS time...
const MIN_SPAN_NS: u64 = 10_000_000;
/// ...and over at most about twice this one: then a new span starts.
const MAX_SPAN_NS: u64 = 1_000_000_000;
/// How far past an OS reading a read may extrapolate.
const EXTRAPOLATE_NS: u64 = 1_000_000;
/// A measurement's error (the counter ticks spent reading the OS clock, at both ends)
/// must be under 1/ACCURACY of the span measured.
const ACCURACY: u64 = 20_000;
/// The longest OS read that may become a base.
const MAX_BASE_LAG_NS: u64 = 2_000;

/// The published base and ratio, read under a sequence lock: readers never wait, and a
/// read that races a publication asks the OS instead.
struct TscTime {
    /// Even when stable, odd while a writer publishes.
    seq: AtomicU64,
    base_tsc: AtomicU64,
    base_ns: AtomicU64,
    /// Nanoseconds per tick in 32.32 fixed point, biased low.
    mult: AtomicU64,
    /// Ticks a read may extrapolate past the base; 0 until a ratio is known.
    reach: AtomicU64,
    /// The writer's state; `try_lock`ed, so reads never block on it.
    calibration: Mutex<Calibration>,
}

/// The start of the span the ratio is measured over.
#[derive(Default)]
struct Calibration {
    start: Option<Reading>,
}

#[derive(Clone, Copy)]
struct Reading {
    /// The counter just after the OS clock was read: the OS reading is not later.
    tsc: u64,
    ns: u64,
    /// Ticks the OS read took (the reading's uncertainty).
    width: u64,
}

impl TscTime {
    fn detect() -> Option<TscTime> {
        if !cfg!(target_arch = "x86_64") {
            return None;
        }
        let source = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .ok()?;
        (source.trim() == "tsc").then(|| TscTime {
            seq: AtomicU64::new(0),
            base_tsc: AtomicU64::new(0),
            base_ns: AtomicU64::new(0),
            mult: AtomicU64::new(0),
            reach: AtomicU64::new(0),
            calibration: Mutex::new(Calibration::default()),
        })
    }

    #[inline]
    fn now_ns(&self, origin: &Instant) -> u64 {
        let seq = self.seq.load(Ordering::Acquire);
        let base_tsc = self.base_tsc.load(Ordering::Relaxed);
        let base_ns = self.base_ns.load(Ordering::Relaxed);
        let mult = self.mult.load(Ordering::Relaxed);
        let reach = self.reach.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let stable = seq & 1 == 0 && self.seq.load(Ordering::Relaxed) == seq;
        // Wraps to a huge value if the counter is behind the base: then the OS answers.
        let ticks = counter().wrapping_sub(base_tsc);
        if stable && ticks < reach {
            // ticks * mult < 2^64: `reach` is about 1 ms of ticks, so the product is
            // about 1e6 * 2^32.
            base_ns + (ticks.wrapping_mul(mult) >> 32)
        } else {
            self.rebase(origin)
        }
    }

    /// Reads the OS clock, and publishes it as the new base when no other thread is.
    #[cold]
    fn rebase(&self, origin: &Instant) -> u64 {
        let Some(mut calibration) = self.calibration.try_lock() else {
            return os_ns(origin);
        };
        let before = counter();
        let ns = os_ns(origin);
        let tsc = counter();
        let now = Reading {
            tsc,
            ns,
            width: tsc.wrapping_sub(before),
        };
        let Some(start) = calibration.start else {
            calibration.start = Some(now);
            return ns;
        };
        let (span_ticks, span_ns) = (now.tsc.wrapping_sub(start.tsc), now.ns - start.ns);
        let accurate =
            now.tsc > start.tsc && (start.width + now.width).saturating_mul(ACCURACY) <= span_ticks;
        let mut mult = self.mult.load(Ordering::Relaxed);
        if accurate && span_ns >= MIN_SPAN_NS {
            let exact = ((u128::from(span_ns) << 32) / u128::from(span_ticks)) as u64;
            mult = exact - (exact >> 10);
            if span_ns >= MAX_SPAN_NS {
                calibration.start = Some(now);
            }
        } else if !accurate && span_ns >= MAX_SPAN_NS {
            // The span's start was a poor reading: begin again from this one.
            calibration.start = Some(now);
        }
        // A base lags real time by the ticks its OS read took: a slow read (the thread
        // was preempted) is returned, not published.
        if mult == 0 || (now.width.saturating_mul(mult) >> 32) > MAX_BASE_LAG_NS {
            return ns;
        }
        // Other threads may have read the current base at these very ticks, and the OS
        // reading lags them by its width: the new base starts from the later of the two,
        // so reads after it do not fall behind reads before it. Both are at most real
        // time, so the base never leads.
        let base_ns = ns.max(self.extrapolated(now.tsc).unwrap_or(0));
        let reach = ((u128::from(EXTRAPOLATE_NS) << 32) / u128::from(mult)) as u64;
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.base_tsc.store(now.tsc, Ordering::Relaxed);
        self.base_ns.store(base_ns, Ordering::Relaxed);
        self.mult.store(mult, Ordering::Relaxed);
        self.reach.store(reach, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
        base_ns
    }

    /// The time the published base gives `tsc`, if `tsc` is within its reach. Called by
    /// the writer only (under `calibration`), so the base cannot change meanwhile.
    fn extrapolated(&self, tsc: u64) -> Option<u64> {
        let ticks = tsc.wrapping_sub(self.base_tsc.load(Ordering::Relaxed));
        (ticks < self.reach.load(Ordering::Relaxed)).then(|| {
            let mult = self.mult.load(Ordering::Relaxed);
            self.base_ns.load(Ordering::Relaxed) + (ticks.wrapping_mul(mult) >> 32)
        })
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn counter() -> u64 {
    // SAFETY: RDTSC is available on every x86-64 CPU and has no preconditions.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn counter() -> u64 {
    // Never called: `TscTime::detect` declines other architectures.
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound a read keeps to: not ahead of an OS reading taken after it, and not
    /// more than the bias over a base's reach (about 1 µs) behind `earlier`, a read made
    /// before it. Returns the read.
    fn checked_read(earlier: u64) -> u64 {
        let read = monotonic_ns();
        let after = os_ns(&time().origin);
        assert!(
            read <= after,
            "read {read} ns leads the OS clock ({after} ns)"
        );
        assert!(
            read + 2_000 >= earlier,
            "read {read} ns is more than 2 µs behind an earlier read ({earlier} ns)"
        );
        read
    }

    /// Reads through the TSC (when this machine offers it) keep to the bound across
    /// many re-bases, and the ratio gets measured.
    #[test]
    fn reads_never_lead_the_os_clock_nor_go_back() {
        let mut last = 0;
        let mut reads = 0u64;
        let start = Instant::now();
        let calibrated = || {
            time()
                .tsc
                .as_ref()
                .is_none_or(|tsc| tsc.reach.load(Ordering::Relaxed) > 0)
        };
        // Reads for 300 ms, and on until the ratio is calibrated: on a loaded machine
        // measuring it within its tolerance can take longer (bounded at 20 s).
        loop {
            last = last.max(checked_read(last));
            reads += 1;
            let elapsed = start.elapsed();
            if elapsed >= std::time::Duration::from_millis(300)
                && (calibrated() || elapsed >= std::time::Duration::from_secs(20))
            {
                break;
            }
        }
        assert!(reads > 1_000);
        assert!(calibrated(), "calibrated within 20 s of reads");
    }

    /// With several threads re-basing, every read keeps to the bound against the latest
    /// read of any thread before it.
    #[test]
    fn threads_see_time_within_microseconds_of_each_other() {
        use std::sync::atomic::AtomicU64;
        let latest = AtomicU64::new(0);
        let deadline = Instant::now() + std::time::Duration::from_millis(300);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    while Instant::now() < deadline {
                        let read = checked_read(latest.load(Ordering::SeqCst));
                        latest.fetch_max(read, Ordering::SeqCst);
                    }
                });
            }
        });
    }

    #[test]
    fn the_tsc_is_used_only_where_the_kernel_uses_it() {
        let source = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .unwrap_or_default();
        let expected = cfg!(target_arch = "x86_64") && source.trim() == "tsc";
        assert_eq!(time().tsc.is_some(), expected);
    }
}
