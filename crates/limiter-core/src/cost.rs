//! What a decision charges: [`Cost`], requests and one other unit.

use crate::policy::{Limit, Policy};

/// What one decision charges: `requests` in the windows that count requests, `units` in
/// the windows that count another unit ([`Limit::counting`]). A plain number is the same
/// figure in every window, which is all a policy of one unit needs.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Cost, Limit, Limiter, MemoryStore, Policy};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let chat = Policy::new("chat", vec![
///     Limit::new(60, Duration::from_secs(60)),
///     Limit::new(10_000, Duration::from_secs(60)).counting("tokens"),
/// ]).unwrap();
/// let limiter = Limiter::new(chat, MemoryStore::new());
/// let decision = limiter.check("user-1", Cost::new(1, 2_500)).await.unwrap();
/// assert_eq!(decision.windows()[0].remaining(), 59);
/// assert_eq!(decision.windows()[1].remaining(), 7_500);
/// assert_eq!(Cost::from(3), Cost::new(3, 3));
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cost {
    requests: u64,
    units: u64,
}

impl Cost {
    /// Nothing: a decision of this cost reports the windows and consumes nothing.
    pub const ZERO: Cost = Cost::new(0, 0);

    /// `requests` in windows counting requests, `units` in the others.
    pub const fn new(requests: u64, units: u64) -> Self {
        Cost { requests, units }
    }

    /// What windows counting requests are charged.
    pub const fn requests(&self) -> u64 {
        self.requests
    }

    /// What windows counting another unit are charged.
    pub const fn units(&self) -> u64 {
        self.units
    }

    /// Both costs together, each figure at most `u64::MAX`.
    pub(crate) const fn saturating_add(self, other: Cost) -> Cost {
        Cost::new(
            self.requests.saturating_add(other.requests),
            self.units.saturating_add(other.units),
        )
    }

    /// Whether it charges nothing anywhere.
    pub const fn is_zero(&self) -> bool {
        self.requests == 0 && self.units == 0
    }

    /// What `limit` is charged.
    #[inline]
    pub(crate) fn of(&self, limit: &Limit) -> u64 {
        if limit.counts_requests() {
            self.requests
        } else {
            self.units
        }
    }

    /// The one figure every window of `policy` is charged, if they are all charged the
    /// same: what a store that counts one number per decision (a lease) can carry.
    #[inline]
    pub fn uniform(&self, policy: &Policy) -> Option<u64> {
        if policy.unit().is_none() {
            Some(self.requests)
        } else if !policy.mixes_units() || self.requests == self.units {
            Some(self.units)
        } else {
            None
        }
    }
}

impl From<u64> for Cost {
    /// `cost` in every window.
    #[inline]
    fn from(cost: u64) -> Self {
        Cost::new(cost, cost)
    }
}
