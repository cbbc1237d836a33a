//! decide.lua's replies as decisions. The script decides whether a request fits and
//! replies each window's state as it found it; the figures a decision reports (remaining,
//! reset, next unit, how long to wait) are derived here by the algorithm functions the
//! in-memory store runs, so both stores report the same figures from the same state and
//! Redis neither computes nor sends them. A sliding log's state is its entries, too many
//! to send: the script replies its figures.

use super::{protocol, short_gcra};
use crate::algorithm::gcra::Gcra;
use crate::algorithm::{fixed_window, sliding_counter, View};
use crate::cost::Cost;
use crate::decision::{Decision, Verdict, WindowState};
use crate::error::{Error, StoreError};
use crate::policy::{Algorithm, Limit, Policy};

/// How many integers decide.lua replies for one decision of `policy`: one in the short
/// form (one GCRA window), otherwise the allowed flag, the time and every window's state.
pub(super) fn reply_len(policy: &Policy) -> usize {
    match short_gcra(policy) {
        Some(_) => 1,
        None => 2 + windows_len(policy),
    }
}

/// How many integers the windows of `policy` take in a reply of the general form.
pub(super) fn windows_len(policy: &Policy) -> usize {
    policy.limits().iter().map(window_len).sum()
}

/// How many integers one window takes: its state (a sliding counter's two counts, a GCRA
/// window's tat, a fixed window's count) or a sliding log's figures.
fn window_len(limit: &Limit) -> usize {
    match limit.algorithm() {
        Algorithm::SlidingWindow => 2,
        Algorithm::SlidingLog => protocol::REPLY_PER_LOG,
        _ => 1,
    }
}

/// One decision of `cost` from its [`reply_len`] integers of decide.lua's reply.
pub(super) fn parse_reply(policy: &Policy, cost: Cost, reply: &[i64]) -> Result<Decision, Error> {
    if let Some(limit) = short_gcra(policy) {
        return match reply {
            &[backlog] => gcra_decision(limit, cost.of(limit), backlog),
            _ => Err(protocol_error(reply.len(), 1)),
        };
    }
    let (allowed, now, mut windows) = header(reply, 2 + windows_len(policy))?;
    let decision = decision_of(policy, cost, allowed, now, &mut windows);
    if decision.is_allowed() != allowed {
        return Err(disagreement());
    }
    Ok(decision)
}

/// Each policy's decision from a joint reply (every policy's windows in order, all or
/// nothing): a protocol error when the script's answer disagrees with them.
pub(super) fn parse_parts<'p>(
    parts: impl Iterator<Item = (&'p Policy, Cost)> + Clone,
    reply: &[i64],
) -> Result<Vec<Decision>, Error> {
    let len = 2 + parts.clone().map(|(p, _)| windows_len(p)).sum::<usize>();
    let (allowed, now, mut windows) = header(reply, len)?;
    let decisions: Vec<Decision> = parts
        .map(|(policy, cost)| decision_of(policy, cost, allowed, now, &mut windows))
        .collect();
    if decisions.iter().all(Decision::is_allowed) != allowed {
        return Err(disagreement());
    }
    Ok(decisions)
}

/// A decision of one GCRA window from decide.lua's short reply: the backlog found before
/// the cost, or `-1 - backlog` when the script denied it.
pub(super) fn gcra_decision(limit: &Limit, cost: u64, reply: i64) -> Result<Decision, Error> {
    let (admitted, backlog) = if reply >= 0 {
        (true, reply)
    } else {
        (false, -1 - reply)
    };
    let gcra = Gcra {
        emission_us: limit.emission_us(),
        capacity: limit.capacity(),
    };
    let mut decision = Decision::new();
    decision.push(gcra.replay(backlog, cost));
    if decision.is_allowed() != admitted {
        return Err(disagreement());
    }
    Ok(decision)
}

/// The allowed flag and the time of a general reply of `len` integers, and its windows.
fn header(reply: &[i64], len: usize) -> Result<(bool, i64, &[i64]), Error> {
    match reply {
        [allowed, now, windows @ ..] if reply.len() == len => Ok((*allowed == 1, *now, windows)),
        _ => Err(protocol_error(reply.len(), len)),
    }
}

/// The decision of `policy` at `cost` from its windows' integers at the front of
/// `windows` (consumed; [`header`] checked there are enough), the script having found
/// at `now` that the request is `allowed` (in a joint decision: by every policy).
/// Admitted, every window reports what it took; denied, what it found.
fn decision_of(
    policy: &Policy,
    cost: Cost,
    allowed: bool,
    now: i64,
    windows: &mut &[i64],
) -> Decision {
    let view = if allowed { View::Taken } else { View::Held };
    let mut decision = Decision::new();
    for limit in policy.limits() {
        let (state, rest) = windows.split_at(window_len(limit));
        *windows = rest;
        decision.push(window_of(limit, cost.of(limit), view, now, state));
    }
    decision
}

/// One window, from the state the script found (or a sliding log's figures), evaluated
/// as the in-memory store evaluates its slot.
fn window_of(limit: &Limit, cost: u64, view: View, now: i64, state: &[i64]) -> WindowState {
    let count = |i: usize| state[i].max(0) as u64;
    match limit.algorithm() {
        Algorithm::Gcra { .. } => {
            let gcra = Gcra {
                emission_us: limit.emission_us(),
                capacity: limit.capacity(),
            };
            gcra.evaluate(Some(state[0]), now, cost, view).0
        }
        Algorithm::FixedWindow | Algorithm::Calendar(_) => {
            let bounds = match limit.algorithm() {
                Algorithm::Calendar(period) => period.bounds(now),
                _ => fixed_window::epoch_bounds(limit.window_us(), now, None),
            };
            let found = Some((bounds.0, count(0)));
            fixed_window::evaluate(limit.max(), bounds, found, now, cost, view).0
        }
        Algorithm::SlidingWindow => {
            let window = limit.window_us();
            let start = fixed_window::epoch_bounds(window, now, None).0;
            let found = Some((start, count(0), count(1)));
            sliding_counter::evaluate(limit.max(), window, found, now, cost, view).0
        }
        Algorithm::SlidingLog => log_window(limit, state),
    }
}

/// A sliding log's figures: verdict, remaining, reset after us, next unit after us.
fn log_window(limit: &Limit, figures: &[i64]) -> WindowState {
    WindowState {
        limit: limit.capacity(),
        remaining: figures[1].max(0) as u64,
        reset_after_us: figures[2].max(0) as u64,
        next_unit_us: figures[3].max(0) as u64,
        verdict: match figures[0] {
            protocol::FITS => Verdict::Fits,
            protocol::NEVER => Verdict::Never,
            us => Verdict::RetryAfterUs(us.max(1) as u64),
        }
        .into(),
    }
}

fn protocol_error(got: usize, expected: usize) -> Error {
    StoreError::Protocol(format!(
        "script replied {got} integers where {expected} were due"
    ))
    .into()
}

fn disagreement() -> Error {
    StoreError::Protocol("script verdict disagrees with the state it replied".into()).into()
}
