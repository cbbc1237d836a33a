//! Generic cell rate algorithm (GCRA), with redis-cell's conventions for reporting.
//!
//! State: the theoretical arrival time `tat` (µs) and the emission interval `t` it was
//! written under. Each unit of cost moves `tat` forward by `t`; a request fits when the
//! new `tat` is at most `tau = t * capacity` ahead of now.
//!
//! The backlog `tat - now` is time, but what it means is units: `(tat - now) / t` units
//! used and not yet drained. A policy reload that changes the rate (`max` or the window)
//! changes `t`, and the same backlog read under the new `t` would be a different usage
//! (max 5 -> 8 per minute: 5 used would read as 8, leaving no room at all). So the stored
//! `t` travels with `tat`, and a state written under another `t` is first re-expressed
//! under the current one by [`Gcra::rebase`].

use super::{non_negative, View};
use crate::decision::{Verdict, WindowState};

/// The parameters of one GCRA window, in microseconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gcra {
    pub emission_us: i64,
    pub capacity: u64,
}

/// The longest backlog a rebase produces: about 142 years, beyond any window (400 days at
/// most), yet `now + backlog` stays below 2^53, exact in the Lua script's doubles.
const MAX_BACKLOG_US: i64 = 1 << 52;

impl Gcra {
    fn tau(&self) -> i64 {
        self.emission_us * self.capacity as i64
    }

    #[inline]
    fn state(&self, backlog: i64, verdict: Verdict) -> WindowState {
        let room = self.tau() - backlog;
        let remaining = if room > 0 {
            (room / self.emission_us) as u64
        } else {
            0
        };
        // One unit more than `remaining` fits once the backlog has drained to
        // `tau - (remaining + 1) * t`: what a request of that cost would be told to wait.
        let missing = self.capacity.saturating_sub(remaining + 1) as i64;
        let next_unit_us = if remaining < self.capacity {
            non_negative(backlog.saturating_sub(missing.saturating_mul(self.emission_us)))
        } else {
            0
        };
        WindowState {
            limit: self.capacity,
            remaining,
            reset_after_us: non_negative(backlog),
            next_unit_us,
            verdict: verdict.into(),
        }
    }

    /// Re-expresses a `tat` written under the emission interval `stored_emission_us` under
    /// this window's, keeping the units used: a backlog of `u` units (`u * stored`
    /// microseconds) becomes `u * emission_us` microseconds.
    ///
    /// Units, not time nor the share of `tau`, are what must survive a reload: a request
    /// fits when `units used + cost <= capacity`, so with units kept a raised limit has its
    /// headroom at once (5 of 5 used, now 8: 3 more) and a lowered one keeps what was used
    /// (5 of 8 used, now 6: 1 more; now 4: none, until 2 units have drained at the new
    /// rate). The capacity plays no part: it bounds the units, it does not weigh them. A
    /// changed `burst` alone keeps `t`, and the backlog as it is.
    ///
    /// Whole units convert exactly; the fraction of one is scaled in doubles and rounded
    /// up (never less usage than there was), in the operations `decide.lua` performs, so
    /// both stores compute the same microsecond. The result is capped at
    /// [`MAX_BACKLOG_US`] ahead of now. Called only when the two intervals differ: an
    /// unchanged policy never divides.
    pub(crate) fn rebase(&self, tat: i64, stored_emission_us: i64, now: i64) -> i64 {
        let backlog = tat.saturating_sub(now);
        if backlog <= 0 || stored_emission_us <= 0 || stored_emission_us == self.emission_us {
            // Nothing owed (a drained backlog reads the same under any rate), or nothing
            // to convert.
            return tat;
        }
        let whole = backlog / stored_emission_us;
        let part = backlog % stored_emission_us;
        let part_us = if part == 0 {
            0
        } else {
            // Below `emission_us + 1`: `part < stored_emission_us`.
            (part as f64 * self.emission_us as f64 / stored_emission_us as f64).ceil() as i64
        };
        let backlog = whole
            .saturating_mul(self.emission_us)
            .saturating_add(part_us)
            .min(MAX_BACKLOG_US);
        now.saturating_add(backlog)
    }

    /// Evaluates `cost` against the stored `tat` (`None` when the key is new), which must
    /// be expressed under this window's emission interval (see [`rebase`](Self::rebase)).
    /// Returns the window as `view` asks and the `tat` to store if the cost is consumed.
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

    /// The window of a decision of `cost` that found `backlog` µs owed (its `tat - now`
    /// before the cost, expressed under this window's emission interval), as a
    /// single-window policy reports it: what `decide.lua` replies on its one-GCRA-window
    /// path, turned into the figures [`evaluate`](Self::evaluate) reports for the same
    /// state, by the same arithmetic.
    pub(crate) fn replay(&self, backlog: i64, cost: u64) -> WindowState {
        self.evaluate(Some(backlog), 0, cost, View::Shown).0
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

    /// How many cost-1 requests fit, one after the other at `now`.
    fn admitted(g: &Gcra, mut tat: Option<i64>, now: i64) -> u64 {
        let mut n = 0;
        loop {
            let (state, new_tat) = g.evaluate(tat, now, 1, View::Shown);
            if state.verdict != Verdict::Fits {
                return n;
            }
            tat = Some(new_tat);
            n += 1;
        }
    }

    #[test]
    fn rebase_keeps_the_units_used() {
        let now = 1_700_000_000 * S;
        let per_minute = |max: i64| Gcra {
            emission_us: 60 * S / max,
            capacity: max as u64,
        };
        let (five, six, four, eight) = (per_minute(5), per_minute(6), per_minute(4), per_minute(8));
        // 5 of 5 used: the backlog is the whole minute.
        let tat = now + 60 * S;
        assert_eq!(admitted(&five, Some(tat), now), 0);
        let raised = eight.rebase(tat, five.emission_us, now);
        assert_eq!(raised - now, 5 * eight.emission_us);
        assert_eq!(admitted(&eight, Some(raised), now), 3);
        // 5 of 8 used, lowered to 6 then to 4.
        let tat = now + 5 * eight.emission_us;
        assert_eq!(
            admitted(&six, Some(six.rebase(tat, eight.emission_us, now)), now),
            1
        );
        let lowered = four.rebase(tat, eight.emission_us, now);
        assert_eq!(lowered - now, 5 * four.emission_us, "75 s: 5 units owed");
        let (state, _) = four.evaluate(Some(lowered), now, 1, View::Shown);
        assert_eq!(
            state.verdict(),
            Verdict::RetryAfterUs(30 * S as u64),
            "two units to drain at 15 s each"
        );
        // A fraction of a unit scales and rounds up: 1.5 units of 12 s -> 1.5 of 7.5 s.
        let tat = now + 18 * S;
        assert_eq!(eight.rebase(tat, five.emission_us, now) - now, 11_250_000);
        let tat = now + 18 * S + 1;
        assert_eq!(eight.rebase(tat, five.emission_us, now) - now, 11_250_001);
    }

    #[test]
    fn rebase_leaves_what_needs_no_conversion() {
        let now = 1_700_000_000 * S;
        let g = Gcra {
            emission_us: 7,
            capacity: 3,
        };
        // Same interval, a drained backlog, an invalid stored interval: unchanged.
        assert_eq!(g.rebase(now + 50, 7, now), now + 50);
        assert_eq!(g.rebase(now - 50, 3, now), now - 50);
        assert_eq!(g.rebase(now, 3, now), now);
        assert_eq!(g.rebase(now + 50, 0, now), now + 50);
        // A backlog stays owed however small: at least one microsecond.
        let slow = Gcra {
            emission_us: 1,
            capacity: 1,
        };
        assert_eq!(slow.rebase(now + 1, 1_000_000, now), now + 1);
        // An extreme slow-down is capped, exact in a double.
        let glacial = Gcra {
            emission_us: 400 * 86_400 * S,
            capacity: 1,
        };
        let capped = glacial.rebase(now + 60 * S, 1, now);
        assert_eq!(capped - now, MAX_BACKLOG_US);
        assert!(capped < 1 << 53);
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
