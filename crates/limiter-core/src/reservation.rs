//! Two-phase decisions: [`Reservation`], a decision whose cost is settled later.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::cost::Cost;
use crate::decision::Decision;

/// A decision made on an estimate, to be settled with the actual cost once it is known
/// ([`Store::settle`](crate::Store::settle)): tokens a model answered with, bytes a
/// stream sent, or nothing at all for a response that should not count.
///
/// - **Exact**: the estimate was counted in every window before anything was admitted.
/// - **Settling** gives back what was reserved and not used, to the window it was
///   counted in while that window still counts it, and charges what was used beyond
///   the estimate in the window the settlement meets, whatever its room (a debt that
///   delays later requests; it is never lost).
/// - **Once**: a reservation settles at most once, however often it is retried (the
///   store remembers its [`id`](Self::id) for the policy's longest window).
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
/// let reservation = store.reserve(&chat, "user-1", 4_000).await.unwrap();
/// assert!(reservation.is_allowed());
/// // The answer used 2,500 tokens: 1,500 come back.
/// store.settle(&chat, "user-1", &reservation, 2_500).await.unwrap();
/// // Settling again changes nothing.
/// store.settle(&chat, "user-1", &reservation, 2_500).await.unwrap();
/// let now = store.check(&chat, "user-1", Cost::ZERO).await.unwrap();
/// assert_eq!(now.windows()[0].remaining(), 7_500);
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    decision: Decision,
    reserved: Cost,
    at_us: i64,
    id: u64,
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
            id: next_id(),
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

    /// What makes a settlement happen once: random unless set with
    /// [`with_id`](Self::with_id).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Uses `id` (a request id the caller derives, unique per reservation) instead of a
    /// random one, so that a settlement retried from elsewhere is recognized.
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = id;
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
            marker: Some(self.id),
        })
    }
}

/// What a settlement changes: `reserved` taken at store time `at`, now `actual`. The
/// marker (a reservation's id) makes a retried settlement a no-op; a lease's refund has
/// none.
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

/// A keyed hash of a process-wide sequence, keyed at random per process: two ids, of one
/// process or of two, collide with the odds of two random 64-bit numbers.
fn next_id() -> u64 {
    static SEED: OnceLock<RandomState> = OnceLock::new();
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    SEED.get_or_init(RandomState::new).hash_one(sequence)
}
