//! What decides when the store cannot: allow everything, deny everything, or an
//! in-memory limiter enforcing this instance's share of each limit.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::cost::Cost;
use crate::decision::{Decision, Verdict, WindowState};
use crate::error::{Error, InvalidFailureMode};
use crate::policy::{Algorithm, Limit, Policy};
use crate::reservation::Reservation;
use crate::store::MemoryStore;

/// What a [`Guarded`](crate::Guarded) store does while its primary store is unavailable,
/// too slow, or behind an open circuit breaker. Decisions it makes say so
/// ([`Decision::is_degraded`]). A policy may carry its own
/// ([`Policy::with_failure_mode`]).
///
/// Two modes are equal when they are the same mode with the same share, bit for bit.
#[derive(Clone, Copy, Debug, Default)]
pub enum FailureMode {
    /// Fail open: allow every request (the default).
    #[default]
    Open,
    /// Fail closed: deny every request, with a retry time of one health-check interval.
    Closed,
    /// An in-memory limiter stands in, each instance enforcing `share` (0 < share <= 1) of
    /// every limit (e.g. 1/3 with three instances). Best effort: traffic spread unevenly
    /// over instances is limited unevenly, and counts start from zero.
    Local {
        /// This instance's share of each limit.
        share: f64,
    },
}

impl PartialEq for FailureMode {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for FailureMode {}

impl std::hash::Hash for FailureMode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl FailureMode {
    /// What equality and hashing compare: the mode, and a local share's bits.
    fn key(&self) -> (u8, u64) {
        match *self {
            FailureMode::Open => (0, 0),
            FailureMode::Closed => (1, 0),
            FailureMode::Local { share } => (2, share.to_bits()),
        }
    }

    /// The `mode` label of the `ratelimit_fallback_decisions_total` metric.
    pub fn name(&self) -> &'static str {
        match self {
            FailureMode::Open => "open",
            FailureMode::Closed => "closed",
            FailureMode::Local { .. } => "local",
        }
    }

    /// Whether the mode can be applied: a `Local` share must be above 0 and at most 1.
    pub fn validate(&self) -> Result<(), InvalidFailureMode> {
        match *self {
            FailureMode::Local { share } if !(share > 0.0 && share <= 1.0) => {
                Err(InvalidFailureMode::LocalShare)
            }
            _ => Ok(()),
        }
    }
}

fn windows(policy: &Policy, state: impl Fn(&Limit) -> WindowState) -> Decision {
    let windows: SmallVec<_> = policy.limits().iter().map(state).collect();
    let mut decision = Decision::from_windows(windows);
    decision.degraded = true;
    decision
}

/// Fail open: every window reported full, the request allowed.
pub(crate) fn allow(policy: &Policy) -> Decision {
    windows(policy, |l| WindowState {
        limit: l.capacity(),
        remaining: l.capacity(),
        reset_after_us: 0,
        next_unit_us: 0,
        verdict: Verdict::Fits.into(),
    })
}

/// Fail closed: every window reported empty until the next health check.
pub(crate) fn deny(policy: &Policy, retry: Duration) -> Decision {
    let retry_us = retry.as_micros().clamp(1, u128::from(u32::MAX)) as u64;
    windows(policy, |l| WindowState {
        limit: l.capacity(),
        remaining: 0,
        reset_after_us: retry_us,
        next_unit_us: retry_us,
        verdict: Verdict::RetryAfterUs(retry_us).into(),
    })
}

/// The in-memory stand-in, with each policy scaled to the share its failure mode names.
/// Its tables stay empty until a local failure mode first decides.
#[derive(Default)]
pub(crate) struct Local {
    store: MemoryStore,
    /// Scaled copies by (policy, share bits), built once each: policies are few and
    /// reloads add a handful.
    scaled: Mutex<HashMap<(Policy, u64), Policy>>,
}

impl Local {
    pub(crate) fn decide(
        &self,
        policy: &Policy,
        share: f64,
        key: &str,
        cost: Cost,
        retry: Duration,
    ) -> Decision {
        match self.store.check_now(&self.scaled(policy, share), key, cost) {
            Ok(mut decision) => {
                decision.degraded = true;
                decision
            }
            // The local store is full: deny, as fail-closed would.
            Err(_) => deny(policy, retry),
        }
    }

    /// Reserves as [`decide`](Self::decide) decides.
    pub(crate) fn reserve(
        &self,
        policy: &Policy,
        share: f64,
        key: &str,
        estimate: Cost,
        retry: Duration,
    ) -> Reservation {
        match self
            .store
            .reserve_now(&self.scaled(policy, share), key, estimate)
        {
            Ok(reservation) => reservation.degraded(),
            Err(_) => Reservation::new(deny(policy, retry), estimate, 0),
        }
    }

    /// Settles a reservation [`reserve`](Self::reserve) made.
    pub(crate) fn settle(
        &self,
        policy: &Policy,
        share: f64,
        key: &str,
        reservation: Reservation,
        actual: Cost,
    ) -> Result<(), Error> {
        self.store
            .settle_now(&self.scaled(policy, share), key, reservation, actual)
    }

    /// Forgets what the stand-in counted for `key`.
    pub(crate) fn reset(&self, policy: &Policy, share: f64, key: &str) -> Result<(), Error> {
        self.store.reset_now(&self.scaled(policy, share), key)
    }

    fn scaled(&self, policy: &Policy, share: f64) -> Policy {
        self.scaled
            .lock()
            .entry((policy.clone(), share.to_bits()))
            .or_insert_with(|| scale(policy, share))
            .clone()
    }
}

/// `policy` with every limit (and GCRA burst) multiplied by `share`, rounded up, at least 1.
fn scale(policy: &Policy, share: f64) -> Policy {
    let part = |n: u64| ((n as f64 * share).ceil() as u64).max(1);
    let limits = policy
        .limits()
        .iter()
        .map(|l| {
            let algorithm = match l.algorithm() {
                Algorithm::Gcra { burst } => Algorithm::Gcra {
                    burst: burst.map(part),
                },
                other => other,
            };
            Limit::new(part(l.max()), l.window())
                .with_name(l.name())
                .counting(l.unit())
                .with_algorithm(algorithm)
        })
        .collect();
    // Scaling down keeps every limit valid, except GCRA at the microsecond resolution
    // bound, where the unscaled policy is the safe fallback.
    Policy::new(policy.name(), limits).unwrap_or_else(|_| policy.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_limits_and_bursts_up_to_at_least_one() {
        let p = Policy::new(
            "p",
            vec![
                Limit::new(10, Duration::from_secs(1))
                    .with_algorithm(Algorithm::Gcra { burst: Some(4) }),
                Limit::new(2, Duration::from_secs(60)).with_algorithm(Algorithm::SlidingLog),
            ],
        )
        .unwrap();
        let s = scale(&p, 1.0 / 3.0);
        assert_eq!(s.limits()[0].max(), 4);
        assert_eq!(s.limits()[0].capacity(), 2);
        assert_eq!(s.limits()[1].max(), 1);
        assert_eq!(s.name(), "p");
    }

    #[test]
    fn shares_outside_zero_to_one_are_rejected() {
        for share in [0.0, -1.0, 1.5, f64::NAN] {
            assert!(FailureMode::Local { share }.validate().is_err(), "{share}");
        }
        assert!(FailureMode::Local { share: 1.0 }.validate().is_ok());
    }
}
