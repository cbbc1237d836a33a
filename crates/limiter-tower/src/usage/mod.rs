//! Costs known after the response: a policy's [`Actual`] cost, the status rules that
//! decide whether a response counts at all, and the settlement that follows the
//! response to the end of its body.
//!
//! A request under such a policy reserves its estimate (the policy's
//! [`Cost`](crate::Cost)) before the handler runs, exactly as a plain decision would
//! charge it; the layer then settles it (see [`limiter_core::Reservation`]): at the
//! response's head for a status rule or a header, at the end of the body (or when the
//! client goes away) for a reported cost.

mod body;
mod handle;
mod pending;

use http::{HeaderMap, HeaderName, StatusCode};

pub(crate) use self::body::attach;
pub use self::handle::{Usage, UsageReport};
pub(crate) use self::pending::Pending;

/// Where a request's actual cost comes from, once the handler has answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Actual {
    /// The estimate is the cost: only the status rules settle anything.
    Estimate,
    /// The handler reports it: through the [`Usage`] handle in the request's extensions
    /// (until the body ends) or a [`UsageReport`] in the response's extensions.
    Reported,
    /// A response header, a whole number of units; `strip` removes it before the
    /// response leaves. A response without it (or with a malformed one) keeps the
    /// estimate.
    Header {
        /// The header.
        name: HeaderName,
        /// Whether the client never sees it.
        strip: bool,
    },
}

/// What a policy settles after the response: where the actual cost comes from, and
/// which responses count.
#[derive(Debug, Clone)]
pub(crate) struct SettleRule {
    pub(crate) actual: Actual,
    /// Only responses of these statuses are charged (all when empty); the others are
    /// refunded whole, the request included.
    pub(crate) statuses: Box<[StatusCode]>,
    /// 5xx responses are refunded whole, whatever `statuses` says.
    pub(crate) refund_server_errors: bool,
}

impl SettleRule {
    /// Whether a response of `status` is charged at all.
    pub(crate) fn charges(&self, status: StatusCode) -> bool {
        if self.refund_server_errors && status.is_server_error() {
            return false;
        }
        self.statuses.is_empty() || self.statuses.contains(&status)
    }

    /// The units `headers` report, when the actual cost is a header (removed if asked).
    pub(crate) fn header_units(&self, headers: &mut HeaderMap) -> Option<u64> {
        let Actual::Header { name, strip } = &self.actual else {
            return None;
        };
        let value = if *strip {
            headers.remove(name)
        } else {
            headers.get(name).cloned()
        }?;
        let units = value.to_str().ok()?.trim().parse().ok();
        if units.is_none() {
            tracing::debug!(header = %name, "actual-cost header is not a whole number; the estimate stays");
        }
        units
    }
}
