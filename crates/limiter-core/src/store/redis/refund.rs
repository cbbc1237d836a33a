//! The arguments of a lease refund, an entry of the batch script that `refund.lua` runs.

use super::{algorithm_code, protocol};
use crate::policy::{Algorithm, Policy};

/// How many arguments [`push_refund_args`] sends.
pub(super) fn refund_arg_count(policy: &Policy) -> usize {
    4 + protocol::REFUND_ARGS_PER_WINDOW * policy.limits().len()
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
        let (span, start) = match limit.algorithm() {
            Algorithm::Gcra { .. } => (limit.emission_us(), 0),
            Algorithm::FixedWindow | Algorithm::SlidingWindow => (window, aligned),
            Algorithm::Calendar(period) => (window, period.bounds(taken_at).0),
            Algorithm::SlidingLog => (window, 0),
        };
        cmd.arg(algorithm_code(limit.algorithm()))
            .arg(span)
            .arg(start);
    }
}
