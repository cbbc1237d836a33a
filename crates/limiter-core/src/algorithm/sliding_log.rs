//! Sliding-window log: every admitted request is kept with its time and cost until it
//! leaves the window. Exact; memory grows with the requests in a window.

use std::collections::VecDeque;

use super::{non_negative, View};
use crate::decision::{Verdict, WindowState};

/// The admitted requests still inside the window, oldest first.
#[derive(Clone, Debug, Default)]
pub(crate) struct Log {
    entries: VecDeque<(i64, u64)>,
    sum: u64,
}

impl Log {
    /// Drops entries that have left the window ending at `now` (an entry at `t` counts
    /// while `t > now - window`).
    fn prune(&mut self, window: i64, now: i64) {
        while let Some(&(t, cost)) = self.entries.front() {
            if t > now - window {
                break;
            }
            self.sum -= cost;
            self.entries.pop_front();
        }
    }

    /// Evaluates `cost` at `now` (pruning expired entries, which changes nothing visible).
    pub(crate) fn evaluate(
        &mut self,
        max: u64,
        window: i64,
        now: i64,
        cost: u64,
        view: View,
    ) -> WindowState {
        self.prune(window, now);
        let used = self.sum;
        let verdict = if cost > max {
            Verdict::Never
        } else if used + cost <= max {
            Verdict::Fits
        } else {
            Verdict::RetryAfterUs(self.retry_after(max, window, now, cost))
        };
        let (used, newest, admitted) = if view.taken(verdict) && cost > 0 {
            (used + cost, Some(now), Some((now, cost)))
        } else {
            (used, self.entries.back().map(|&(t, _)| t), None)
        };
        let remaining = max.saturating_sub(used);
        WindowState {
            limit: max,
            remaining,
            reset_after_us: newest.map_or(0, |t| non_negative(t + window - now)),
            // One unit more than `remaining` is free once the oldest entries holding it
            // have left (`used + remaining + 1 - max` units: one, unless over `max`).
            next_unit_us: if remaining < max {
                self.freed_after(used + remaining + 1 - max, window, now, admitted)
            } else {
                0
            },
            verdict: verdict.into(),
        }
    }

    /// When enough of the oldest entries will have left for `cost` to fit.
    fn retry_after(&self, max: u64, window: i64, now: i64, cost: u64) -> u64 {
        self.freed_after(self.sum + cost - max, window, now, None)
    }

    /// When the oldest entries, then `admitted` (a request being admitted, not yet
    /// recorded), will have freed `need` units.
    fn freed_after(&self, need: u64, window: i64, now: i64, admitted: Option<(i64, u64)>) -> u64 {
        let mut freed = 0;
        for &(t, c) in self.entries.iter().chain(admitted.iter()) {
            freed += c;
            if freed >= need {
                return non_negative(t + window - now).max(1);
            }
        }
        // Unreachable while `need` is at most what the log holds; a full window is the
        // safe answer.
        non_negative(window)
    }

    /// Gives back `unused` of the `taken` units recorded at `at` (a reservation settled
    /// for less), if that entry is still in the log.
    pub(crate) fn give_back(&mut self, at: i64, taken: u64, unused: u64) {
        let first = self.entries.partition_point(|&(t, _)| t < at);
        let found = (first..self.entries.len())
            .take_while(|&i| self.entries[i].0 == at)
            .find(|&i| self.entries[i].1 == taken);
        if let Some(i) = found {
            let back = unused.min(taken);
            self.sum -= back;
            if back == taken {
                self.entries.remove(i);
            } else {
                self.entries[i].1 = taken - back;
            }
        }
    }

    /// Records an admitted request.
    pub(crate) fn consume(&mut self, now: i64, cost: u64) {
        if cost > 0 {
            self.entries.push_back((now, cost));
            self.sum += cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_over_the_sliding_window() {
        let mut log = Log::default();
        for t in [0, 100, 200] {
            assert_eq!(
                log.evaluate(3, 1000, t, 1, View::Held).verdict,
                Verdict::Fits
            );
            log.consume(t, 1);
        }
        let verdict =
            |log: &mut Log, now, cost| log.evaluate(3, 1000, now, cost, View::Held).verdict.get();
        assert_eq!(verdict(&mut log, 999, 1), Verdict::RetryAfterUs(1));
        assert_eq!(verdict(&mut log, 1000, 1), Verdict::Fits);
        // Weighted: needs two entries to leave.
        assert_eq!(verdict(&mut log, 1000, 3), Verdict::RetryAfterUs(200));
        assert_eq!(verdict(&mut log, 1000, 4), Verdict::Never);
    }
}
