//! The counting algorithms as pure functions of (state, now, cost).
//!
//! Each algorithm reports a window's state twice: as it stands (`held`, reported when the
//! request is denied by any window) and as it would stand after consuming the cost
//! (`taken`, reported when every window fits and the cost is consumed). Nothing here
//! reads a clock or a store: the in-memory store calls these functions under a lock, and
//! `scripts/decide.lua` is a line-by-line translation that the differential tests hold
//! to the same answers.

pub(crate) mod fixed_window;
pub(crate) mod gcra;
pub(crate) mod sliding_counter;
pub(crate) mod sliding_log;

use crate::decision::WindowState;

/// A window's state before and after consuming a request's cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Evaluation {
    /// The window as it stands; its verdict says whether the cost fits.
    pub held: WindowState,
    /// The window after consuming the cost (equal to `held` when the cost is 0).
    pub taken: WindowState,
}

impl Evaluation {
    pub(crate) fn fits(&self) -> bool {
        self.held.verdict == crate::decision::Verdict::Fits
    }
}

/// Microseconds as the unsigned figure reported in decisions.
#[inline]
pub(crate) fn non_negative(us: i64) -> u64 {
    us.max(0) as u64
}
