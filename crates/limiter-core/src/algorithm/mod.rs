//! The counting algorithms as pure functions of (state, now, cost).
//!
//! Each algorithm reports a window either as it stands (held: reported when any window
//! denies the request) or as it would stand after consuming the cost (taken: reported
//! when every window fits). The caller says which with a [`View`], so that only the
//! figures it reports are computed. Nothing here reads a clock or a store: the in-memory
//! store calls these functions under a lock, and `store/redis/decide.lua` is a
//! line-by-line translation that the differential tests hold to the same answers.

pub(crate) mod fixed_window;
pub(crate) mod gcra;
pub(crate) mod sliding_counter;
pub(crate) mod sliding_log;

use crate::decision::{PackedVerdict, Verdict};

/// Which state of a window an evaluation reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// As it stands.
    Held,
    /// After consuming the cost.
    Taken,
    /// Taken if the cost fits, held otherwise: all a single-window policy needs.
    Shown,
}

impl View {
    #[inline]
    pub(crate) fn taken(self, verdict: impl Into<PackedVerdict>) -> bool {
        let fits = verdict.into() == Verdict::Fits;
        match self {
            View::Held => false,
            View::Taken => true,
            View::Shown => fits,
        }
    }
}

/// Microseconds as the unsigned figure reported in decisions.
#[inline]
pub(crate) fn non_negative(us: i64) -> u64 {
    us.max(0) as u64
}
