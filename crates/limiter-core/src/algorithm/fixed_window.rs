//! Fixed window: a count per window `[start, end)`; windows either repeat every
//! `window` since the Unix epoch or follow UTC calendar periods.
//!
//! State: `(start, count)` of the window last written.

use super::{non_negative, View};
use crate::decision::{Verdict, WindowState};

/// Evaluates `cost` in the window `[start, end)` holding `now`, given the stored
/// `(start, count)`. Returns the window as `view` asks and the count to store if the cost
/// is consumed.
#[inline]
pub(crate) fn evaluate(
    max: u64,
    (start, end): (i64, i64),
    stored: Option<(i64, u64)>,
    now: i64,
    cost: u64,
    view: View,
) -> (WindowState, u64) {
    let count = match stored {
        Some((s, n)) if s == start => n,
        _ => 0,
    };
    let until_end = non_negative(end - now);
    let verdict = if cost > max {
        Verdict::Never
    } else if count + cost <= max {
        Verdict::Fits
    } else {
        Verdict::RetryAfterUs(until_end)
    };
    let taken = count + cost;
    let used = if view.taken(verdict) { taken } else { count };
    let state = WindowState {
        limit: max,
        remaining: max.saturating_sub(used),
        reset_after_us: if used > 0 { until_end } else { 0 },
        // Whatever is used comes back all at once, at the end of the window.
        next_unit_us: if used > 0 { until_end } else { 0 },
        verdict: verdict.into(),
    };
    (state, taken)
}

/// The epoch-aligned window `[start, end)` of length `window_us` holding `now`. `known`
/// is the start of a window stored earlier: when it still holds `now` it is the answer,
/// which spares a 64-bit division on most decisions.
#[inline]
pub(crate) fn epoch_bounds(window_us: i64, now: i64, known: Option<i64>) -> (i64, i64) {
    let start = match known {
        Some(s) if s <= now && now - s < window_us => s,
        _ => now.div_euclid(window_us) * window_us,
    };
    (start, start + window_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_a_window_and_resets_at_its_end() {
        let b = epoch_bounds(1_000_000, 5_500_000, None);
        assert_eq!(epoch_bounds(1_000_000, 5_500_000, Some(5_000_000)), b);
        assert_eq!(epoch_bounds(1_000_000, 5_500_000, Some(4_000_000)), b);
        assert_eq!(b, (5_000_000, 6_000_000));
        let (e, n) = evaluate(2, b, Some((5_000_000, 1)), 5_500_000, 1, View::Taken);
        assert_eq!((e.verdict(), e.remaining, n), (Verdict::Fits, 0, 2));
        let (e, _) = evaluate(2, b, Some((5_000_000, 2)), 5_500_000, 1, View::Held);
        assert_eq!(e.verdict, Verdict::RetryAfterUs(500_000));
        // A stale window counts as empty.
        let (e, _) = evaluate(2, b, Some((4_000_000, 2)), 5_500_000, 1, View::Held);
        assert_eq!((e.verdict(), e.remaining), (Verdict::Fits, 2));
        let (e, _) = evaluate(2, b, None, 5_500_000, 3, View::Held);
        assert_eq!(e.verdict, Verdict::Never);
    }
}
