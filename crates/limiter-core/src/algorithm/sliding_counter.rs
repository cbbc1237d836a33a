//! Sliding-window counter: the current fixed window's count plus the previous window's
//! count weighted by how much of it the sliding window still overlaps (Cloudflare's
//! estimate). O(1) state per key.
//!
//! State: `(start, current, previous)`. The weighted term is rounded up, so the estimate
//! never admits more than `max` in any window under its assumption of evenly spread
//! traffic. The arithmetic is IEEE double precision, exactly as Lua computes it.

use super::{non_negative, View};
use crate::decision::{Verdict, WindowState};

/// Evaluates `cost`. Returns the window as `view` asks and the `(start, current,
/// previous)` state to store if the cost is consumed.
#[inline]
pub(crate) fn evaluate(
    max: u64,
    window: i64,
    stored: Option<(i64, u64, u64)>,
    now: i64,
    cost: u64,
    view: View,
) -> (WindowState, (i64, u64, u64)) {
    let start = super::fixed_window::epoch_bounds(window, now, stored.map(|(s, _, _)| s)).0;
    let (cur, prev) = match stored {
        Some((s, c, p)) if s == start => (c, p),
        Some((s, c, _)) if s == start - window => (0, c),
        _ => (0, 0),
    };
    let elapsed = now - start;
    let weighted = weigh(prev, window, window - elapsed);
    let used = weighted + cur;
    let verdict = if cost > max {
        Verdict::Never
    } else if used + cost <= max {
        Verdict::Fits
    } else {
        Verdict::RetryAfterUs(retry_after(max, window, cur, prev, elapsed, cost))
    };
    let (shown_cur, shown_used) = if view.taken(verdict) {
        (cur + cost, used + cost)
    } else {
        (cur, used)
    };
    let remaining = max.saturating_sub(shown_used);
    let state = WindowState {
        limit: max,
        remaining,
        reset_after_us: if shown_cur > 0 {
            non_negative(start + 2 * window - now)
        } else if prev > 0 {
            non_negative(start + window - now)
        } else {
            0
        },
        // When one unit more than `remaining` fits: a request of that cost's wait.
        next_unit_us: if remaining < max {
            retry_after(max, window, shown_cur, prev, elapsed, remaining + 1)
        } else {
            0
        },
        verdict: verdict.into(),
    };
    (state, (start, cur + cost, prev))
}

/// `ceil(count * overlap / window)`, in doubles as Lua computes it.
#[inline]
fn weigh(count: u64, window: i64, overlap: i64) -> u64 {
    if count == 0 {
        return 0;
    }
    let exact = double(count) * overlap as f64 / window as f64;
    // `f64::ceil` is a libm call on baseline x86-64 (no SSE4.1 `roundsd`); for the
    // non-negative values here, truncating and stepping up is the same number.
    let truncated = exact as i64;
    if (truncated as f64) < exact {
        truncated as u64 + 1
    } else {
        truncated as u64
    }
}

/// The first offset into a window at which `ceil(count * (window - offset) / window)`
/// is at most `room`.
fn offset_where_fits(window: i64, count: u64, room: u64) -> i64 {
    // Truncated: the floor of a non-negative number, without `f64::floor` (a libm call,
    // as `ceil` is).
    window - (double(room) * window as f64 / double(count)) as i64
}

/// A count as a double, through `i64`: one instruction, where converting a `u64` takes a
/// branch and several (on x86-64 before AVX-512). The same number: counts stay below
/// 2^63 (units are at most 2^50).
#[inline]
fn double(count: u64) -> f64 {
    count as i64 as f64
}

/// How long until `cost` fits: within the current window while the previous one fades,
/// or else in the next window while the current one fades.
fn retry_after(max: u64, window: i64, cur: u64, prev: u64, elapsed: i64, cost: u64) -> u64 {
    if cur + cost <= max {
        // Denied, so prev > 0: wait for its weighted share to shrink to the room left.
        let offset = offset_where_fits(window, prev, max - cur - cost);
        non_negative(offset - elapsed).max(1)
    } else {
        let offset = offset_where_fits(window, cur, max - cost);
        non_negative(window - elapsed + offset).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 1_000_000;

    #[test]
    fn weighing_rounds_up_exactly_as_ceil_does() {
        for count in [1u64, 3, 7, 10, 1000, 999_999_937, 1 << 52, u64::MAX / 3] {
            for overlap in [0i64, 1, W / 3, W / 2, W - 1, W] {
                let exact = count as f64 * overlap as f64 / W as f64;
                assert_eq!(
                    weigh(count, W, overlap),
                    exact.ceil() as u64,
                    "{count}, {overlap}"
                );
            }
        }
    }

    #[test]
    fn weighs_the_previous_window() {
        // Previous window had 10 of max 10; a quarter into the current one, 7.5 -> 8 count.
        let (e, _) = evaluate(10, W, Some((0, 10, 0)), W + W / 4, 1, View::Held);
        assert_eq!((e.remaining, e.verdict()), (2, Verdict::Fits));
        let (e, _) = evaluate(10, W, Some((W, 2, 10)), W + W / 4, 1, View::Held);
        assert_eq!(e.remaining, 0);
        // 8 + 2 + 1 > 10: needs prev weight <= 7, i.e. offset >= 0.3 W.
        assert_eq!(e.verdict, Verdict::RetryAfterUs(50_000));
    }

    #[test]
    fn retry_after_is_when_the_cost_fits() {
        for (cur, prev, elapsed, cost) in [
            (3u64, 9u64, 100_000i64, 2u64),
            (9, 0, 5, 2),
            (10, 4, 999_999, 1),
        ] {
            let (e, _) = evaluate(10, W, Some((W, cur, prev)), W + elapsed, cost, View::Held);
            let Verdict::RetryAfterUs(wait) = e.verdict.get() else {
                panic!("expected a denial for {cur}/{prev}");
            };
            let at = |t: i64| {
                evaluate(10, W, Some((W, cur, prev)), t, cost, View::Held)
                    .0
                    .verdict
            };
            let retry_at = W + elapsed + wait as i64;
            assert_eq!(
                at(retry_at),
                Verdict::Fits,
                "fits after waiting {wait} for {cur}/{prev}"
            );
            assert_ne!(
                at(retry_at - 1),
                Verdict::Fits,
                "not one microsecond earlier"
            );
        }
    }
}
