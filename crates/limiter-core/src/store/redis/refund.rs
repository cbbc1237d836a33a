//! The arguments of a lease refund, an entry of the batch script that `refund.lua` runs.

use crate::policy::{Algorithm, Policy};

/// How many arguments [`push_refund_args`] sends.
pub(super) fn refund_arg_count(policy: &Policy) -> usize {
    4 + 3 * policy.limits().len()
}

/// refund.lua's arguments: the units taken and unused, the store time of the take, and
/// per window its algorithm code, its span (GCRA: the emission interval) and the start
/// of the window the take counted in, which the script compares with the stored one.
pub(super) fn push_refund_args(
    cmd: &mut redis::Cmd,
    policy: &Policy,
    taken: u64,
    unused: u64,
    taken_at: i64,
) {
    let limits = policy.limits();
    cmd.arg(taken).arg(unused).arg(taken_at).arg(limits.len());
    for limit in limits {
        let window = limit.window_us();
        let aligned = taken_at - taken_at.rem_euclid(window);
        let (code, span, start) = match limit.algorithm() {
            Algorithm::Gcra { .. } => (1, limit.emission_us(), 0),
            Algorithm::FixedWindow => (2, window, aligned),
            Algorithm::Calendar(period) => (3, window, period.bounds(taken_at).0),
            Algorithm::SlidingWindow => (4, window, aligned),
            Algorithm::SlidingLog => (5, window, 0),
        };
        cmd.arg(code).arg(span).arg(start);
    }
}
