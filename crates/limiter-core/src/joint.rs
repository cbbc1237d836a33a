//! Several policies for one request, all or nothing: [`Check`] and [`Joint`].

use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::Error;
use crate::policy::Policy;
use crate::reservation::Reservation;
use crate::store::Store;

/// One policy's part of a [joint decision](crate::Store::check_all): `cost` for `key`
/// under `policy`.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The key under it (per user, per team, ...).
    pub key: &'a str,
    /// What the request costs under it.
    pub cost: Cost,
}

impl<'a> Check<'a> {
    /// `cost` for `key` under `policy`.
    pub fn new(policy: &'a Policy, key: &'a str, cost: impl Into<Cost>) -> Self {
        Check {
            policy,
            key,
            cost: cost.into(),
        }
    }
}

/// The answer to a joint decision: admitted only if every policy admitted, and then
/// charged in every one; denied, charged in none.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Check, Limit, MemoryStore, Policy, Store};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let user = Policy::new("user", vec![Limit::new(10, Duration::from_secs(60))]).unwrap();
/// let team = Policy::new("team", vec![Limit::new(1, Duration::from_secs(60))]).unwrap();
/// let store = MemoryStore::new();
/// let request = |u| [Check::new(&user, u, 1), Check::new(&team, "red", 1)];
/// assert!(store.check_all(&request("ann")).await.unwrap().is_allowed());
/// let denied = store.check_all(&request("bob")).await.unwrap();
/// assert_eq!(denied.denied_by(), Some(1)); // the team's budget
/// // Nothing was charged to bob.
/// let bob = store.peek(&user, "bob").await.unwrap();
/// assert_eq!(bob.windows()[0].remaining(), 10);
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joint {
    decisions: Vec<Decision>,
}

impl Joint {
    /// The decisions made, in the checks' order: every check's when admitted; when
    /// denied, the checks' up to the one that denied, which is last (the others' were
    /// given back, or never taken).
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// Whether every policy admitted the request.
    pub fn is_allowed(&self) -> bool {
        self.denied_by().is_none()
    }

    /// The check that denied the request, by position.
    pub fn denied_by(&self) -> Option<usize> {
        match self.decisions.last() {
            Some(last) if !last.is_allowed() => Some(self.decisions.len() - 1),
            _ => None,
        }
    }

    pub(crate) fn new(decisions: Vec<Decision>) -> Self {
        Joint { decisions }
    }
}

/// A joint decision made of reservations, in order: what any store can do. A denial
/// (or an error) gives back what the checks before it reserved, so that no partial
/// charge is left; until then others may see those units taken. Checking the narrowest
/// policy first (per user before per team) keeps that from refusing anyone wrongly: a
/// unit reserved in a narrow window is only given back when a wider one is full.
pub(crate) async fn in_order<S: Store + ?Sized>(
    store: &S,
    checks: &[Check<'_>],
) -> Result<Joint, Error> {
    let mut taken: Vec<(usize, Reservation)> = Vec::with_capacity(checks.len());
    let mut decisions = Vec::with_capacity(checks.len());
    for (i, check) in checks.iter().enumerate() {
        let result = store.reserve(check.policy, check.key, check.cost).await;
        let reservation = match result {
            Ok(reservation) => reservation,
            Err(error) => {
                give_back(store, checks, taken).await;
                return Err(error);
            }
        };
        decisions.push(reservation.decision().clone());
        if !reservation.is_allowed() {
            give_back(store, checks, taken).await;
            return Ok(Joint::new(decisions));
        }
        taken.push((i, reservation));
    }
    Ok(Joint::new(decisions))
}

/// Gives back every reservation in `taken` (by check position), latest first.
async fn give_back<S: Store + ?Sized>(
    store: &S,
    checks: &[Check<'_>],
    taken: Vec<(usize, Reservation)>,
) {
    for (i, reservation) in taken.into_iter().rev() {
        let check = &checks[i];
        if let Err(error) = store
            .settle(check.policy, check.key, reservation, Cost::ZERO)
            .await
        {
            tracing::warn!(policy = check.policy.name(), %error, "a joint decision could not give back a reservation; it stays charged");
        }
    }
}
