//! [`Usage`]: the handle a handler reports its actual cost through, and
//! [`UsageReport`], the same figure carried by a response.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;

/// What a request actually cost, reported by its handler while it runs (or while its
/// body streams) for a policy whose actual cost is [`Actual::Reported`](crate::Actual).
///
/// The layer puts one in the request's extensions; the handler takes it as an extractor
/// (or with `Extension<Usage>`), and may keep a clone in the body it streams. The layer
/// settles the request when its response body ends, or is dropped because the client
/// went away, for what was reported by then. A request whose handler reported nothing
/// keeps its estimate. Outside such a policy the handle is detached: reports go nowhere.
///
/// ```
/// use axum::{routing::post, Router};
/// use limiter_tower::Usage;
///
/// async fn complete(usage: Usage) -> &'static str {
///     let answer = "four";
///     usage.add(1); // a token...
///     usage.add(2); // ...and two more
///     answer
/// }
/// let app: Router = Router::new().route("/complete", post(complete));
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct Usage(Arc<AtomicU64>);

impl Default for Usage {
    /// A detached handle, holding nothing.
    fn default() -> Self {
        Usage::new()
    }
}

/// The handle's value while nothing is reported: no count reaches it (at most
/// `u64::MAX - 1` units are kept).
const NOTHING: u64 = u64::MAX;

impl Usage {
    pub(crate) fn new() -> Self {
        Usage(Arc::new(AtomicU64::new(NOTHING)))
    }

    /// Reports `units` as the request's whole cost so far.
    pub fn set(&self, units: u64) {
        self.0.store(units.min(NOTHING - 1), Ordering::Release);
    }

    /// Adds `units` to what was reported (nothing counts as 0).
    pub fn add(&self, units: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let held = if held == NOTHING { 0 } else { held };
                Some(held.saturating_add(units).min(NOTHING - 1))
            });
    }

    /// What was reported, if anything.
    pub fn get(&self) -> Option<u64> {
        let held = self.0.load(Ordering::Acquire);
        (held != NOTHING).then_some(held)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Usage {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts.extensions.get::<Usage>().cloned().unwrap_or_default())
    }
}

/// A response's actual cost, for a handler that knows it when it answers: put it in the
/// response's extensions. It takes precedence over what a [`Usage`] handle holds.
///
/// ```
/// use axum::{http::StatusCode, Extension};
/// use limiter_tower::UsageReport;
///
/// async fn search() -> (StatusCode, Extension<UsageReport>, &'static str) {
///     (StatusCode::OK, Extension(UsageReport(12)), "12 documents scanned")
/// }
/// # let _ = search;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageReport(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_nothing_until_set_and_adds_from_zero() {
        let usage = Usage::new();
        assert_eq!(usage.get(), None);
        usage.add(3);
        usage.clone().add(4);
        assert_eq!(usage.get(), Some(7));
        usage.set(2);
        assert_eq!(usage.get(), Some(2));
        usage.add(u64::MAX);
        assert_eq!(usage.get(), Some(u64::MAX - 1));
    }
}
