//! The process's monotonic time in nanoseconds: `quanta`'s TSC clock where the kernel
//! itself keeps time with the TSC, the OS clock ([`Instant`]) everywhere else.
//!
//! A `clock_gettime` call is a large share of an in-memory decision on a virtual machine;
//! reading the TSC costs a fraction of it. `quanta` reads the TSC wherever the
//! CPU reports it invariant, but a virtual machine may report that and still give vCPUs
//! counters that disagree; the kernel checks the counter is invariant and synchronised
//! across CPUs before it chooses `tsc` as its clocksource, so the TSC is used only then.

use std::sync::OnceLock;
use std::time::Instant;

/// Nanoseconds since a process-wide origin.
#[inline]
pub(super) fn monotonic_ns() -> u64 {
    source().now_ns()
}

/// The process's time source, chosen once.
#[derive(Debug)]
pub(super) enum Source {
    Tsc { clock: quanta::Clock, origin: u64 },
    Os(Instant),
}

impl Source {
    /// Nanoseconds since the process-wide origin.
    #[inline]
    pub(super) fn now_ns(&self) -> u64 {
        match self {
            Source::Tsc { clock, origin } => clock.delta_as_nanos(*origin, clock.raw()),
            Source::Os(origin) => u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }
}

/// The source, chosen on the first call. A clock that reads often keeps the reference
/// (see `MonotonicClock`): each call checks that the choice was made.
pub(super) fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        if kernel_uses_tsc() {
            let clock = quanta::Clock::new();
            let origin = clock.raw();
            Source::Tsc { clock, origin }
        } else {
            Source::Os(Instant::now())
        }
    })
}

fn kernel_uses_tsc() -> bool {
    cfg!(target_arch = "x86_64")
        && std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|source| source.trim() == "tsc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsc_is_used_only_where_the_kernel_uses_it() {
        assert_eq!(matches!(source(), Source::Tsc { .. }), kernel_uses_tsc(),);
    }

    /// A clock running fast would make a limiter admit too much. Our span is read inside
    /// the OS clock's span, so a preempted thread only widens the OS span.
    #[test]
    fn never_runs_ahead_of_the_os_clock_nor_goes_back() {
        let start = Instant::now();
        let start_ns = monotonic_ns();
        let mut last = start_ns;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            let now = monotonic_ns();
            assert!(now >= last, "went back from {last} to {now}");
            last = now;
        }
        let ours = monotonic_ns() - start_ns;
        let os = start.elapsed().as_nanos() as u64;
        assert!(
            ours <= os + os / 1_000,
            "{ours} ns within {os} ns of the OS clock"
        );
    }
}
