//! Two-phase decisions: [`Reservation`], a decision whose cost is settled later.

use crate::cost::Cost;
use crate::decision::Decision;
use crate::policy::{Algorithm, Policy};

/// A decision made on an estimate, to be settled with the actual cost once it is known
/// ([`Store::settle`](crate::Store::settle)): tokens a model answered with, bytes a
/// stream sent, or nothing at all for a response that should not count.
///
/// - **Exact**: the estimate was counted in every window before anything was admitted.
/// - **Settling** gives back what was reserved and not used, to the window it was
///   counted in while that window still counts it, and charges what was used beyond
///   the estimate in the window the settlement meets, whatever its room (a debt that
///   delays later requests; it is never lost).
/// - **Once**: settling takes the reservation, so it settles once. To retry a settlement
///   that may or may not have landed (a timeout), or to settle from another instance,
///   give the reservation an id first ([`with_id`](Self::with_id), e.g. a hash of the
///   request id): a settlement of an id settles once however often it is retried (the
///   store remembers the id for the policy's longest window: on Redis, one small key per
///   settlement, which is why ids are opt-in).
/// - **Never settled** (dropped, a handler that panicked, a process that died): the
///   estimate stays charged, exactly as if the estimate had been the actual cost.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Cost, Limit, MemoryStore, Policy, Store};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let chat = Policy::new("chat", vec![
///     Limit::new(10_000, Duration::from_secs(60)).counting("tokens"),
/// ]).unwrap();
/// let store = MemoryStore::new();
/// let reservation = store.reserve(&chat, "user-1", 4_000).await.unwrap().with_id(7);
/// assert!(reservation.is_allowed());
/// // The answer used 2,500 tokens: 1,500 come back.
/// store.settle(&chat, "user-1", reservation.clone(), 2_500).await.unwrap();
/// // Retrying the settlement of id 7 changes nothing.
/// store.settle(&chat, "user-1", reservation, 2_500).await.unwrap();
/// let now = store.check(&chat, "user-1", Cost::ZERO).await.unwrap();
/// assert_eq!(now.windows()[0].remaining(), 7_500);
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    decision: Decision,
    reserved: Cost,
    at_us: i64,
    id: Option<u64>,
}

impl Reservation {
    /// A reservation of `estimate` decided at store time `at_us`: what was reserved
    /// when admitted, nothing when denied.
    pub(crate) fn new(decision: Decision, estimate: Cost, at_us: i64) -> Self {
        let reserved = if decision.is_allowed() {
            estimate
        } else {
            Cost::ZERO
        };
        Reservation {
            decision,
            reserved,
            at_us,
            id: None,
        }
    }

    /// The decision on the estimate.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Whether the estimate was admitted.
    pub fn is_allowed(&self) -> bool {
        self.decision.is_allowed()
    }

    /// What is held until the settlement: the estimate when admitted, nothing otherwise.
    pub fn reserved(&self) -> Cost {
        self.reserved
    }

    /// The id its settlement is remembered by, if it was given one.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Gives the reservation `id` (unique per reservation of a (policy, key): a hash of
    /// the request id), so that its settlement happens once however often, and from
    /// wherever, it is retried.
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }

    /// Marks the decision as made by a failure mode.
    pub(crate) fn degraded(mut self) -> Self {
        self.decision.degraded = true;
        self
    }

    /// What settling for `actual` changes; `None` when nothing (a denial reserved
    /// nothing, and an actual equal to the estimate leaves the windows as they are).
    pub(crate) fn settlement(&self, actual: Cost) -> Option<Settle> {
        (self.decision.is_allowed() && actual != self.reserved).then_some(Settle {
            reserved: self.reserved,
            actual,
            at: self.at_us,
            marker: self.id,
        })
    }
}

/// What a settlement changes: `reserved` taken at store time `at`, now `actual`. The
/// marker (a reservation's id, if it has one) makes a retried settlement a no-op.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settle {
    pub(crate) reserved: Cost,
    pub(crate) actual: Cost,
    pub(crate) at: i64,
    pub(crate) marker: Option<u64>,
}

impl Settle {
    /// What is given back: the reserved units not used, per unit.
    pub(crate) fn unused(&self) -> Cost {
        Cost::new(
            self.reserved
                .requests()
                .saturating_sub(self.actual.requests()),
            self.reserved.units().saturating_sub(self.actual.units()),
        )
    }

    /// This settlement and `other` (of the same policy and key) as one, when applying
    /// them together is applying them one after the other: both give back and charge
    /// nothing, neither must be remembered (a marker), and every window of `policy`
    /// gives back to the same place for both (the same aligned window, or a GCRA's
    /// arrival time, which takes sums; a sliding log gives back to one entry each).
    pub(crate) fn merged(&self, other: &Settle, policy: &Policy) -> Option<Settle> {
        let refund = |s: &Settle| s.marker.is_none() && s.excess().is_zero();
        let same_windows = policy.limits().iter().all(|limit| {
            limit.algorithm() != Algorithm::SlidingLog
                && limit.start_at(self.at) == limit.start_at(other.at)
        });
        (refund(self) && refund(other) && same_windows).then(|| Settle {
            reserved: self.reserved.saturating_add(other.reserved),
            actual: self.actual.saturating_add(other.actual),
            at: self.at,
            marker: None,
        })
    }

    /// What is charged on top: the units used beyond the reservation, per unit.
    pub(crate) fn excess(&self) -> Cost {
        Cost::new(
            self.actual
                .requests()
                .saturating_sub(self.reserved.requests()),
            self.actual.units().saturating_sub(self.reserved.units()),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::Limit;

    fn refund(reserved: u64, actual: u64, at: i64) -> Settle {
        Settle {
            reserved: Cost::from(reserved),
            actual: Cost::from(actual),
            at,
            marker: None,
        }
    }

    #[test]
    fn merges_only_refunds_to_the_same_windows() {
        let minute = Duration::from_secs(60);
        let fixed = Policy::new(
            "p",
            vec![Limit::new(10, minute).with_algorithm(Algorithm::FixedWindow)],
        )
        .unwrap();
        let merged = refund(5, 2, 1_000)
            .merged(&refund(4, 1, 2_000), &fixed)
            .unwrap();
        assert_eq!(merged.unused(), Cost::from(6));
        assert!(merged.excess().is_zero());
        // Another window, an excess, a marker: applied one by one.
        assert!(refund(5, 2, 1_000)
            .merged(&refund(4, 1, 61_000_000), &fixed)
            .is_none());
        assert!(refund(5, 2, 1_000)
            .merged(&refund(1, 4, 2_000), &fixed)
            .is_none());
        let marked = Settle {
            marker: Some(1),
            ..refund(4, 1, 2_000)
        };
        assert!(refund(5, 2, 1_000).merged(&marked, &fixed).is_none());
        // A GCRA takes sums whenever; a sliding log never does.
        let gcra = Policy::new("g", vec![Limit::new(10, minute)]).unwrap();
        assert!(refund(5, 2, 1_000)
            .merged(&refund(4, 1, 90_000_000), &gcra)
            .is_some());
        let log = Policy::new(
            "l",
            vec![Limit::new(10, minute).with_algorithm(Algorithm::SlidingLog)],
        )
        .unwrap();
        assert!(refund(5, 2, 1_000)
            .merged(&refund(4, 1, 1_000), &log)
            .is_none());
    }
}
