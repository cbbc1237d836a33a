//! Generic cell rate algorithm (GCRA), with redis-cell's conventions for reporting.
//!
//! State: the theoretical arrival time `tat` (µs). Each unit of cost moves it forward by
//! the emission interval `t`; a request fits when the new `tat` is at most `tau = t *
//! capacity` ahead of now.

use super::{non_negative, View};
use crate::decision::{Verdict, WindowState};

/// The parameters of one GCRA window, in microseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gcra {
    pub emission_us: i64,
    pub capacity: u64,
}

impl Gcra {
    fn tau(&self) -> i64 {
        self.emission_us * self.capacity as i64
    }

    #[inline]
    fn state(&self, backlog: i64, verdict: Verdict) -> WindowState {
        let room = self.tau() - backlog;
        WindowState {
            limit: self.capacity,
            remaining: if room > 0 {
                (room / self.emission_us) as u64
            } else {
                0
            },
            reset_after_us: non_negative(backlog),
            verdict: verdict.into(),
        }
    }

    /// Evaluates `cost` against the stored `tat` (`None` when the key is new). Returns the
    /// window as `view` asks and the `tat` to store if the cost is consumed.
    #[inline]
    pub(crate) fn evaluate(
        &self,
        tat: Option<i64>,
        now: i64,
        cost: u64,
        view: View,
    ) -> (WindowState, i64) {
        let start = tat.unwrap_or(now).max(now);
        let increment = self.emission_us.saturating_mul(cost as i64);
        let new_tat = start.saturating_add(increment);
        let allow_at = new_tat - self.tau();
        let verdict = if allow_at <= now {
            Verdict::Fits
        } else if increment > self.tau() {
            Verdict::Never
        } else {
            Verdict::RetryAfterUs((allow_at - now) as u64)
        };
        let backlog = if view.taken(verdict) { new_tat } else { start } - now;
        (self.state(backlog, verdict), new_tat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    /// redis-cell's published conformance table (`it_rate_limits` in src/cell/mod.rs):
    /// max_burst 4 (our capacity 5), 1 per second. Columns: time (ms), cost, limited,
    /// remaining, reset_after (ms), retry_after (ms, -1 = none).
    #[test]
    fn reproduces_redis_cell_table() {
        let g = Gcra {
            emission_us: S,
            capacity: 5,
        };
        let cases: [(i64, u64, bool, u64, i64, i64); 15] = [
            (0, 6, true, 5, 0, -1),
            (0, 1, false, 4, 1000, -1),
            (0, 1, false, 3, 2000, -1),
            (0, 1, false, 2, 3000, -1),
            (0, 1, false, 1, 4000, -1),
            (0, 1, false, 0, 5000, -1),
            (0, 1, true, 0, 5000, 1000),
            (3000, 1, false, 2, 3000, -1),
            (3100, 1, false, 1, 3900, -1),
            (4000, 1, false, 1, 4000, -1),
            (8000, 1, false, 4, 1000, -1),
            (9500, 1, false, 4, 1000, -1),
            (9500, 0, false, 4, 1000, -1),
            (9500, 2, false, 2, 3000, -1),
            (9500, 5, true, 2, 3000, 3000),
        ];
        let start = 1_700_000_000 * S;
        let mut tat = None;
        for (i, &(ms, cost, limited, remaining, reset_ms, retry_ms)) in cases.iter().enumerate() {
            let now = start + ms * 1000;
            let (shown, new_tat) = g.evaluate(tat, now, cost, View::Shown);
            let fits = shown.verdict == Verdict::Fits;
            if fits && cost > 0 {
                tat = Some(new_tat);
            }
            assert_eq!(!fits, limited, "case {i}: limited");
            assert_eq!(shown.limit, 5, "case {i}: limit");
            assert_eq!(shown.remaining, remaining, "case {i}: remaining");
            assert_eq!(
                shown.reset_after_us as i64,
                reset_ms * 1000,
                "case {i}: reset"
            );
            let retry = match shown.verdict.get() {
                Verdict::RetryAfterUs(us) => us as i64 / 1000,
                Verdict::Fits | Verdict::Never => -1,
            };
            assert_eq!(retry, retry_ms, "case {i}: retry_after");
        }
    }

    #[test]
    fn sustains_high_rates_at_microsecond_resolution() {
        // 100k/s: emission 10 µs; 200k requests over two simulated seconds pass exactly.
        let g = Gcra {
            emission_us: 10,
            capacity: 1,
        };
        let mut tat = None;
        let mut allowed = 0;
        for step in 0..400_000i64 {
            let (state, new_tat) = g.evaluate(tat, step * 5, 1, View::Shown);
            if state.verdict == Verdict::Fits {
                tat = Some(new_tat);
                allowed += 1;
            }
        }
        assert_eq!(allowed, 200_000);
    }
}
