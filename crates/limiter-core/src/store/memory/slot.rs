//! One window's state inside the in-memory store, and the dispatch from a [`Limit`] to
//! its algorithm.

use crate::algorithm::sliding_log::Log;
use crate::algorithm::{fixed_window, gcra::Gcra, sliding_counter, View};
use crate::decision::WindowState;
use crate::policy::{Algorithm, Limit};

/// A window's stored state. `Vacant` is a window never written (or written by another
/// algorithm before a policy reload changed it).
#[derive(Clone, Debug, Default)]
pub(super) enum Slot {
    #[default]
    Vacant,
    /// The theoretical arrival time and the emission interval it was written under: a
    /// reload that changes the rate re-expresses it in units (`Gcra::rebase`).
    Gcra {
        tat: i64,
        emission_us: i64,
    },
    Fixed {
        start: i64,
        count: u64,
    },
    Counter {
        start: i64,
        cur: u64,
        prev: u64,
    },
    /// Boxed: a log is the one large state, and slots sit inline in every entry.
    Log(Box<Log>),
}

/// What to write into a slot if the request is admitted. `Copy`, so that evaluating a
/// window never clones a log.
#[derive(Clone, Copy, Debug)]
pub(super) enum Commit {
    Gcra { tat: i64, emission_us: i64 },
    Fixed { start: i64, count: u64 },
    Counter { start: i64, cur: u64, prev: u64 },
    AppendLog,
}

impl Slot {
    /// Evaluates `cost` for this window at `now` without consuming anything; reports the
    /// window as `view` asks and what to commit if the request is admitted.
    #[inline(always)]
    pub(super) fn evaluate(
        &mut self,
        limit: &Limit,
        now: i64,
        cost: u64,
        view: View,
    ) -> (WindowState, Commit) {
        match limit.algorithm() {
            Algorithm::Gcra { burst } => {
                let gcra = Gcra {
                    emission_us: limit.emission_us(),
                    // `limit.capacity()`, without matching the algorithm again.
                    capacity: burst.unwrap_or(limit.max()),
                };
                let tat = match self {
                    Slot::Gcra { tat, emission_us } => {
                        if *emission_us != gcra.emission_us {
                            // Written under another rate (a reload): converted once, in
                            // place, whatever the verdict, as decide.lua writes it back.
                            // From then on the new rate drains it, and later decisions
                            // compare two equal intervals and convert nothing.
                            *tat = gcra.rebase(*tat, *emission_us, now);
                            *emission_us = gcra.emission_us;
                        }
                        Some(*tat)
                    }
                    _ => None,
                };
                let (eval, tat) = gcra.evaluate(tat, now, cost, view);
                (
                    eval,
                    Commit::Gcra {
                        tat,
                        emission_us: gcra.emission_us,
                    },
                )
            }
            Algorithm::FixedWindow | Algorithm::Calendar(_) => {
                let stored = match *self {
                    Slot::Fixed { start, count } => Some((start, count)),
                    _ => None,
                };
                let bounds = match limit.algorithm() {
                    Algorithm::Calendar(period) => period.bounds(now),
                    _ => fixed_window::epoch_bounds(
                        limit.window_us(),
                        now,
                        stored.map(|(start, _)| start),
                    ),
                };
                let (eval, count) =
                    fixed_window::evaluate(limit.max(), bounds, stored, now, cost, view);
                (
                    eval,
                    Commit::Fixed {
                        start: bounds.0,
                        count,
                    },
                )
            }
            Algorithm::SlidingWindow => {
                let stored = match *self {
                    Slot::Counter { start, cur, prev } => Some((start, cur, prev)),
                    _ => None,
                };
                let (eval, (start, cur, prev)) = sliding_counter::evaluate(
                    limit.max(),
                    limit.window_us(),
                    stored,
                    now,
                    cost,
                    view,
                );
                (eval, Commit::Counter { start, cur, prev })
            }
            Algorithm::SlidingLog => {
                if !matches!(self, Slot::Log(_)) {
                    *self = Slot::Log(Box::default());
                }
                let Slot::Log(log) = self else {
                    unreachable!("set to a log just above")
                };
                let eval = log.evaluate(limit.max(), limit.window_us(), now, cost, view);
                (eval, Commit::AppendLog)
            }
        }
    }

    /// Gives back `unused` of the `taken` units a decision at store time `at` consumed
    /// here, as far as this window can still tell them apart: a window that has moved on
    /// since gives nothing back (refund.lua's rules).
    pub(super) fn give_back(&mut self, limit: &Limit, at: i64, now: i64, taken: u64, unused: u64) {
        if unused == 0 {
            return;
        }
        let start = limit.start_at(at);
        match self {
            Slot::Gcra { tat, emission_us } => {
                let back = unused.min(taken) as i64;
                *tat = tat
                    .saturating_sub(back.saturating_mul(*emission_us))
                    .max(now);
            }
            Slot::Fixed { start: s, count } if *s == start => {
                *count = count.saturating_sub(unused);
            }
            Slot::Counter {
                start: s,
                cur,
                prev,
            } => {
                if *s == start {
                    *cur = cur.saturating_sub(unused);
                } else if *s == start + limit.window_us() {
                    *prev = prev.saturating_sub(unused);
                }
            }
            Slot::Log(log) => log.give_back(at, taken, unused),
            Slot::Fixed { .. } | Slot::Vacant => {}
        }
    }

    /// Applies an admitted request's commit.
    #[inline(always)]
    pub(super) fn commit(&mut self, commit: Commit, now: i64, cost: u64) {
        // A slot of the commit's kind is written field by field: assigning a whole slot
        // drops the old one first, a call (a slot may own a log).
        match (commit, self) {
            (
                Commit::Gcra { tat, emission_us },
                Slot::Gcra {
                    tat: t,
                    emission_us: e,
                },
            ) => {
                (*t, *e) = (tat, emission_us);
            }
            (Commit::Fixed { start, count }, Slot::Fixed { start: s, count: n }) => {
                (*s, *n) = (start, count);
            }
            (
                Commit::Counter { start, cur, prev },
                Slot::Counter {
                    start: s,
                    cur: c,
                    prev: p,
                },
            ) => {
                (*s, *c, *p) = (start, cur, prev);
            }
            (Commit::Gcra { tat, emission_us }, slot) => *slot = Slot::Gcra { tat, emission_us },
            (Commit::Fixed { start, count }, slot) => *slot = Slot::Fixed { start, count },
            (Commit::Counter { start, cur, prev }, slot) => {
                *slot = Slot::Counter { start, cur, prev }
            }
            (Commit::AppendLog, slot) => {
                if let Slot::Log(log) = slot {
                    log.consume(now, cost);
                }
            }
        }
    }
}
