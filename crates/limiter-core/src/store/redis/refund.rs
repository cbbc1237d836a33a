//! The arguments of a settlement, an entry of the batch script: a refund as `refund.lua`
//! makes it, then any excess charged by `decide.lua` in its forced form.

use super::{algorithm_code, protocol, push_cost, push_policy_args_forced};
use crate::policy::{Algorithm, Policy};
use crate::reservation::Settle;

/// How many arguments [`push_settle_args`] sends.
pub(super) fn settle_arg_count(policy: &Policy, settle: &Settle) -> usize {
    let excess = if settle.excess().is_zero() {
        0
    } else {
        super::policy_arg_count_forced(policy)
    };
    3 + refund_arg_count(policy) + 1 + excess
}

fn refund_arg_count(policy: &Policy) -> usize {
    2 + protocol::REFUND_ARGS_PER_WINDOW * policy.limits().len()
}

/// The settlement's arguments: the marker's flag and TTL (the policy's longest window:
/// once it has passed, nothing the settlement could change still counts), the refund's
/// arguments (refund.lua's ARGV: the store time of the take, then per window its
/// algorithm code, its span (GCRA: the emission interval), the start of the window the
/// take counted in, and the units taken and unused there), the excess and, unless none,
/// decide.lua's arguments in the forced form.
pub(super) fn push_settle_args(cmd: &mut redis::Cmd, policy: &Policy, settle: &Settle) {
    let limits = policy.limits();
    let longest_ms = limits.iter().map(|l| l.window().as_millis()).max();
    cmd.arg(if settle.marker.is_some() { "1" } else { "0" })
        .arg(longest_ms.unwrap_or(0).max(1) as u64)
        .arg(refund_arg_count(policy));
    let taken_at = settle.at;
    let unused = settle.unused();
    cmd.arg(taken_at).arg(limits.len());
    for limit in limits {
        let span = match limit.algorithm() {
            Algorithm::Gcra { .. } => limit.emission_us(),
            _ => limit.window_us(),
        };
        cmd.arg(algorithm_code(limit.algorithm()))
            .arg(span)
            .arg(limit.start_at(taken_at))
            .arg(settle.reserved.of(limit))
            .arg(unused.of(limit));
    }
    let excess = settle.excess();
    if excess.is_zero() {
        cmd.arg("0");
    } else {
        push_cost(cmd, policy, excess, true);
        push_policy_args_forced(cmd, policy);
    }
}
