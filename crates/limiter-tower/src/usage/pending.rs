//! [`Pending`]: an admitted reservation waiting for its actual cost.

use std::sync::Arc;

use limiter_core::{Cost, Error, Reservation};

use super::{SettleRule, Usage};
use crate::rules::EndpointRule;
use crate::shared::Shared;

/// A reservation the layer settles once the response says what the request cost.
/// Dropped unsettled (the body ended or the client went away), it settles for what the
/// [`Usage`] handle holds, or keeps the estimate if nothing was reported; dropped while
/// a panic unwinds (a handler or a stream that panicked), it keeps the estimate.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    rule: Arc<EndpointRule>,
    key: Box<str>,
    /// Taken by the settlement, or by `keep`.
    reservation: Option<Reservation>,
    usage: Option<Usage>,
}

impl Pending {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rule: Arc<EndpointRule>,
        key: Box<str>,
        reservation: Reservation,
        usage: Option<Usage>,
    ) -> Self {
        Pending {
            shared,
            rule,
            key,
            reservation: Some(reservation),
            usage,
        }
    }

    /// The policy's settlement rule.
    pub(crate) fn rule(&self) -> Option<&SettleRule> {
        self.rule.settle.as_ref()
    }

    /// Settles for `actual`.
    pub(crate) fn settle(mut self, actual: Cost) {
        self.send(actual);
    }

    /// Settles for `units` of the policy's cost.
    pub(crate) fn settle_units(self, units: u64) {
        let actual = self.rule.charge(units);
        self.settle(actual);
    }

    /// Leaves the estimate charged: the actual cost is the estimate.
    pub(crate) fn keep(mut self) {
        self.reservation = None;
    }

    /// Hands the settlement to the store: at once on the in-memory store, to the next
    /// batch on Redis (the response never waits for it).
    fn send(&mut self, actual: Cost) {
        let Some(reservation) = self.reservation.take() else {
            return;
        };
        let reserved = reservation.reserved();
        if !reservation.is_allowed() || actual == reserved {
            return;
        }
        let charged = actual.requests() > reserved.requests() || actual.units() > reserved.units();
        let rule = Arc::clone(&self.rule);
        let done = move |result| record(&rule, charged, result);
        let store = &self.shared.store;
        store.settle_detached(&self.rule.policy, &self.key, reservation, actual, done);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.reservation.is_none() || std::thread::panicking() {
            return;
        }
        if let Some(units) = self.usage.as_ref().and_then(Usage::get) {
            self.send(self.rule.charge(units));
        }
    }
}

/// Counts a settlement, and logs one the store did not make: its reservation stays
/// charged at the estimate.
fn record(rule: &EndpointRule, charged: bool, result: Result<(), Error>) {
    let outcome = match (&result, charged) {
        (Err(_), _) => "failed",
        (Ok(()), true) => "charged",
        (Ok(()), false) => "refunded",
    };
    metrics::counter!(
        crate::metric_names::SETTLEMENTS_TOTAL,
        "policy" => metrics::SharedString::from(Arc::clone(&rule.name)),
        "result" => outcome
    )
    .increment(1);
    if let Err(error) = result {
        tracing::warn!(policy = rule.policy.name(), %error, "settling a reservation failed; its estimate stays charged");
    }
}
