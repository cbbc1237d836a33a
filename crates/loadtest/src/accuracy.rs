//! Accuracy per key: what the generator saw admitted against what the policy allows.
//!
//! Every limit is `max` per hour (GCRA, the default algorithm): a key starts with `max`
//! and earns `max` more per hour, so over a run of `T` seconds it may be admitted at most
//! `max + ceil(max * T / 3600)` times (`allowance`). Requests decided by the failure mode
//! (`RateLimit-Degraded`) are left out of what was decided, and so are lost ones, whose
//! fate is unknown. A degraded answer may still have been counted by Redis: a call that
//! timed out at the client can have run there (a call refused by an open breaker was not
//! sent). A key is
//! - `over` when its admitted count exceeds the allowance (never acceptable outside the
//!   failure mode's own windows, which are already left out);
//! - `short_by_degraded` when fewer were admitted than `min(decided, max)`, but by no more
//!   than the key's degraded answers: Redis may have counted those, the failure mode's
//!   own effect, on the safe side;
//! - `under` when short by more: leases hold units in other instances (bounded; the
//!   issue allows 1% with leases on, 0 with them off);
//! - `exact` otherwise.

use std::collections::{BTreeMap, HashMap};

use crate::policy::{Endpoint, WINDOW_S};
use crate::record::KeyTally;

/// One endpoint's keys, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Accuracy {
    pub keys: u64,
    /// Keys that were sent more than their limit.
    pub limited: u64,
    pub exact: u64,
    /// Keys short by no more than their own degraded answers.
    pub short_by_degraded: u64,
    /// Admissions missing on `short_by_degraded` keys, summed.
    pub shortfall_by_degraded: u64,
    pub under: u64,
    pub over: u64,
    /// Admissions missing on `under` keys, summed.
    pub shortfall: u64,
    /// Admissions past the allowance on `over` keys, summed.
    pub excess: u64,
    /// `min(decided, max)` summed over every key: the base of the shortfall share.
    pub expected: u64,
    /// Answers decided by the failure mode.
    pub degraded: u64,
}

impl Accuracy {
    /// The shortfall as a share of what was due, in percent.
    pub fn shortfall_pct(&self) -> f64 {
        percent(self.shortfall, self.expected)
    }

    /// The shortfall that degraded answers account for, as a share of what was due.
    pub fn shortfall_by_degraded_pct(&self) -> f64 {
        percent(self.shortfall_by_degraded, self.expected)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// At most this many admissions of a key limited to `max` per hour over `run_s` seconds.
pub fn allowance(max: u64, run_s: f64) -> u64 {
    max + (max as f64 * run_s / WINDOW_S as f64).ceil() as u64
}

/// Checks every key; `flood_limit` is the flood policy's `max`.
pub fn check(
    keys: &HashMap<(Endpoint, u32), KeyTally>,
    flood_limit: u64,
    run_s: f64,
) -> BTreeMap<Endpoint, Accuracy> {
    let mut by_endpoint: BTreeMap<Endpoint, Accuracy> = BTreeMap::new();
    for (&(endpoint, _), tally) in keys {
        let max = endpoint.limit(flood_limit);
        let a = by_endpoint.entry(endpoint).or_default();
        a.keys += 1;
        a.degraded += tally.degraded;
        let decided = tally.sent.saturating_sub(tally.lost + tally.degraded);
        if decided > max {
            a.limited += 1;
        }
        let due = decided.min(max);
        a.expected += due;
        let allowed = allowance(max, run_s);
        if tally.admitted > allowed {
            a.over += 1;
            a.excess += tally.admitted - allowed;
        } else if tally.admitted + tally.degraded < due {
            a.under += 1;
            a.shortfall += due - tally.admitted;
        } else if tally.admitted < due {
            a.short_by_degraded += 1;
            a.shortfall_by_degraded += due - tally.admitted;
        } else {
            a.exact += 1;
        }
    }
    by_endpoint
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(sent: u64, admitted: u64) -> KeyTally {
        KeyTally {
            sent,
            admitted,
            ..KeyTally::default()
        }
    }

    #[test]
    fn allowance_adds_what_the_bucket_refills_over_the_run() {
        assert_eq!(allowance(40, 0.0), 40);
        assert_eq!(allowance(40, 90.0), 41); // 40 * 90 / 3600 = 1
        assert_eq!(allowance(3600, 90.5), 3691);
    }

    #[test]
    fn keys_are_exact_under_or_over() {
        let max = Endpoint::Users.limit(0); // 40
        let keys = HashMap::from([
            ((Endpoint::Users, 1), tally(10, 10)), // below the limit, all admitted
            ((Endpoint::Users, 2), tally(100, max)), // limited, exactly max
            ((Endpoint::Users, 3), tally(100, max - 3)), // 3 short
            ((Endpoint::Users, 4), tally(100, max + 5)), // 4 past the allowance of 41
            (
                (Endpoint::Me, 1),
                KeyTally {
                    sent: 30,
                    admitted: 10,
                    degraded: 20,
                    lost: 0,
                },
            ),
            // Limited (20 of 100 decided), 2 short with 2 degraded answers: Redis may
            // have counted those.
            (
                (Endpoint::Catalog, 1),
                KeyTally {
                    sent: 102,
                    admitted: 58,
                    degraded: 2,
                    lost: 0,
                },
            ),
            // 3 short with 2 degraded: short by more than the failure mode explains.
            (
                (Endpoint::Catalog, 2),
                KeyTally {
                    sent: 102,
                    admitted: 57,
                    degraded: 2,
                    lost: 0,
                },
            ),
        ]);
        let checked = check(&keys, 1000, 90.0);
        let users = &checked[&Endpoint::Users];
        assert_eq!((users.keys, users.limited), (4, 3));
        assert_eq!((users.exact, users.under, users.over), (2, 1, 1));
        assert_eq!((users.shortfall, users.excess), (3, 4));
        assert_eq!(users.expected, 10 + 3 * max);
        // Degraded answers were not Redis's to count: 10 decided, 10 admitted.
        let me = &checked[&Endpoint::Me];
        assert_eq!((me.exact, me.degraded), (1, 20));
        let catalog = &checked[&Endpoint::Catalog];
        assert_eq!((catalog.short_by_degraded, catalog.under), (1, 1));
        assert_eq!((catalog.shortfall_by_degraded, catalog.shortfall), (2, 3));
    }

    #[test]
    fn shortfall_share_is_of_what_was_due() {
        let a = Accuracy {
            shortfall: 5,
            expected: 1000,
            ..Accuracy::default()
        };
        assert_eq!(a.shortfall_pct(), 0.5);
        assert_eq!(Accuracy::default().shortfall_pct(), 0.0);
    }
}
