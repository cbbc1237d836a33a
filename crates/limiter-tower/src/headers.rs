//! The rate-limit response fields: draft-ietf-httpapi-ratelimit-headers (draft 11)
//! `RateLimit-Policy` / `RateLimit`, the legacy `X-RateLimit-*` trio, and `Retry-After`.
//!
//! `RateLimit-Policy` never changes for a policy, so it is rendered once when the
//! configuration loads; only the numbers of `RateLimit` are written per response.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::HeaderMap;
use limiter_core::{Decision, Policy};

use crate::config::{HeaderStyle, QuotaUnit};

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Degraded: true`: the store failed and the failure mode decided.
pub const RATELIMIT_DEGRADED: HeaderName = HeaderName::from_static("ratelimit-degraded");
/// `X-RateLimit-Limit`.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (seconds from now).
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// A window name that cannot be written as a Structured Field string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window name {0:?} must be printable ASCII without '\"' or '\\'")]
pub struct BadWindowName(pub String);

/// The parts of a policy's headers that never change.
#[derive(Debug, Clone)]
pub struct PreparedHeaders {
    style: HeaderStyle,
    policy: HeaderValue,
    /// Each window's name as an sf-string, quotes included.
    labels: Box<[String]>,
}

impl PreparedHeaders {
    /// Renders `RateLimit-Policy` for `policy`, e.g.
    /// `"burst";q=100;w=60, "daily";q=1000;w=86400`.
    pub fn new(
        policy: &Policy,
        unit: Option<QuotaUnit>,
        style: HeaderStyle,
    ) -> Result<Self, BadWindowName> {
        let mut labels = Vec::with_capacity(policy.limits().len());
        let mut field = String::new();
        for limit in policy.limits() {
            let name = limit.name();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
            {
                return Err(BadWindowName(name.to_owned()));
            }
            let label = format!("\"{name}\"");
            if !field.is_empty() {
                field.push_str(", ");
            }
            let _ = write!(
                field,
                "{label};q={};w={}",
                limit.max(),
                ceil_secs(limit.window())
            );
            if let Some(unit) = unit.filter(|u| *u != QuotaUnit::Requests) {
                let _ = write!(field, ";qu=\"{}\"", unit.as_str());
            }
            labels.push(label);
        }
        if HeaderValue::from_str(&field).is_err() {
            return Err(BadWindowName(policy.name().to_owned()));
        }
        let policy = HeaderValue::from_static(interned(field));
        Ok(PreparedHeaders {
            style,
            policy,
            labels: labels.into(),
        })
    }

    /// Writes the fields for `decision` into `headers`.
    pub fn write(&self, decision: &Decision, headers: &mut HeaderMap) {
        if let Some(figures) = Figures::of(decision) {
            self.write_figures(&figures, headers);
        }
    }

    /// Writes the fields for a decision's [`Figures`] into `headers`.
    pub(crate) fn write_figures(&self, figures: &Figures, headers: &mut HeaderMap) {
        self.render(figures).write(headers);
        if let Some(retry) = figures.retry {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry));
        }
    }

    /// Renders the fields for a decision's [`Figures`], but `Retry-After`.
    pub(crate) fn render(&self, figures: &Figures) -> Fields {
        let draft = matches!(self.style, HeaderStyle::Draft | HeaderStyle::Both).then(|| {
            // Written with `itoa` rather than `format!`: this runs on every response. The
            // vector is allocated at its exact length, so that `Bytes` takes it over as
            // it is (a vector with spare capacity costs `Bytes` a second allocation).
            let label = &self.labels[usize::from(figures.window)];
            let (mut remaining, mut reset) = (itoa::Buffer::new(), itoa::Buffer::new());
            let (remaining, reset) = (
                remaining.format(figures.remaining),
                reset.format(figures.reset),
            );
            let mut field = Vec::with_capacity(label.len() + 6 + remaining.len() + reset.len());
            field.extend_from_slice(label.as_bytes());
            field.extend_from_slice(b";r=");
            field.extend_from_slice(remaining.as_bytes());
            field.extend_from_slice(b";t=");
            field.extend_from_slice(reset.as_bytes());
            (
                self.policy.clone(),
                HeaderValue::from_maybe_shared(Bytes::from(field)).ok(),
            )
        });
        let legacy = matches!(self.style, HeaderStyle::Legacy | HeaderStyle::Both).then_some([
            figures.limit,
            figures.remaining,
            figures.reset,
        ]);
        Fields { draft, legacy }
    }
}

/// A response's rate-limit fields, rendered: what an admitted request's future carries
/// until the response exists. It holds no counted reference to the rules, for the reason
/// in [`interned`].
pub(crate) struct Fields {
    /// `RateLimit-Policy` and `RateLimit` (valid by construction: `None` is never
    /// expected).
    draft: Option<(HeaderValue, Option<HeaderValue>)>,
    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset`, written as numbers.
    legacy: Option<[u64; 3]>,
}

impl Fields {
    /// Inserts the fields into `headers`.
    pub(crate) fn write(self, headers: &mut HeaderMap) {
        if let Some((policy, ratelimit)) = self.draft {
            headers.insert(RATELIMIT_POLICY, policy);
            if let Some(ratelimit) = ratelimit {
                headers.insert(RATELIMIT, ratelimit);
            }
        }
        if let Some([limit, remaining, reset]) = self.legacy {
            headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(limit));
            headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(remaining));
            headers.insert(X_RATELIMIT_RESET, HeaderValue::from(reset));
        }
    }
}

/// `field` for the rest of the process, kept once however many times it is asked for.
///
/// `RateLimit-Policy` goes on every response, so its value is cloned per request. A
/// clone of a heap-backed [`HeaderValue`] counts a reference, a cache line that every
/// request writes twice, traded between cores when two threads serve requests; a
/// `'static` one costs nothing to clone. With two threads through one server the
/// layer's added cost went from 1.15–1.26x tower_governor's (four runs) to 1.00–1.06x
/// (two runs, `THREADS=2 layer_overhead 15`, together with rendering the fields at the
/// decision, which takes the rules' `Arc` out of the response future); a copy per
/// response instead (an allocation) made the one-thread case 1.10–1.21x. The price:
/// each distinct value is kept until the process exits, a few dozen bytes per window;
/// reloading a file whose policies did not change adds nothing.
fn interned(field: String) -> &'static str {
    static FIELDS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    // A poisoned set is still a set of valid strings: keep using it.
    let mut fields = FIELDS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(kept) = fields.get(field.as_str()) {
        return kept;
    }
    let kept: &'static str = Box::leak(field.into_boxed_str());
    fields.insert(kept);
    kept
}

/// What a response's fields say about a decision: its effective window's figures, in
/// the whole seconds the fields use. A few words, taken from the decision so that the
/// fields are rendered from these rather than from the whole decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Figures {
    /// The [`effective_window`]'s index in the policy.
    window: u8,
    limit: u64,
    remaining: u64,
    /// Seconds until the window resets (or, when denied, until the retry if later).
    reset: u64,
    /// Seconds to wait before retrying, at least 1, when denied with a retry time.
    retry: Option<u64>,
}

impl Figures {
    /// The figures of `decision`; `None` when it reports no window.
    pub(crate) fn of(decision: &Decision) -> Option<Self> {
        let index = effective_window(decision)?;
        let window = decision.windows()[index];
        let retry = decision.retry_after().map(ceil_secs);
        Some(Figures {
            window: u8::try_from(index).ok()?,
            limit: window.limit(),
            remaining: window.remaining(),
            reset: ceil_secs(window.reset_after()).max(retry.unwrap_or(0)),
            retry: retry.map(|secs| secs.max(1)),
        })
    }
}

/// The window a client should watch: the one that denied the request, otherwise the one
/// with the fewest units left (the later reset among equals).
pub fn effective_window(decision: &Decision) -> Option<usize> {
    if let Some(index) = decision.denied_by() {
        return Some(index);
    }
    decision
        .windows()
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| {
            a.remaining()
                .cmp(&b.remaining())
                .then(b.reset_after().cmp(&a.reset_after()))
        })
        .map(|(i, _)| i)
}

/// Whole seconds, rounded up, so that a client waiting this long is never early.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use limiter_core::{Limit, MemoryStore, Store};

    fn policy() -> Policy {
        Policy::new(
            "p",
            vec![
                Limit::new(2, Duration::from_secs(60)).with_name("burst"),
                Limit::new(1000, Duration::from_secs(86_400)).with_name("daily"),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_policy_field_is_kept_once_however_often_it_is_rendered() {
        let first = PreparedHeaders::new(&policy(), None, HeaderStyle::Draft).unwrap();
        let again = PreparedHeaders::new(&policy(), None, HeaderStyle::Both).unwrap();
        assert_eq!(
            first.policy.as_bytes().as_ptr(),
            again.policy.as_bytes().as_ptr()
        );
        let other =
            PreparedHeaders::new(&policy(), Some(QuotaUnit::ContentBytes), HeaderStyle::Draft)
                .unwrap();
        assert_ne!(
            first.policy.as_bytes().as_ptr(),
            other.policy.as_bytes().as_ptr()
        );
    }

    #[test]
    fn policy_field_lists_every_window() {
        let h = PreparedHeaders::new(&policy(), None, HeaderStyle::Draft).unwrap();
        assert_eq!(h.policy, "\"burst\";q=2;w=60, \"daily\";q=1000;w=86400");
        let h = PreparedHeaders::new(&policy(), Some(QuotaUnit::ContentBytes), HeaderStyle::Draft)
            .unwrap();
        assert!(h.policy.to_str().unwrap().contains(";qu=\"content-bytes\""));
        let bad = Policy::new(
            "p",
            vec![Limit::new(1, Duration::from_secs(1)).with_name("a\"b")],
        )
        .unwrap();
        assert!(PreparedHeaders::new(&bad, None, HeaderStyle::Draft).is_err());
    }

    #[tokio::test]
    async fn ratelimit_field_names_the_window_closest_to_exhaustion() {
        let store = MemoryStore::new();
        let p = policy();
        let h = PreparedHeaders::new(&p, None, HeaderStyle::Both).unwrap();
        let mut headers = HeaderMap::new();
        h.write(&store.check(&p, "k", 1).await.unwrap(), &mut headers);
        assert_eq!(headers[RATELIMIT], "\"burst\";r=1;t=30");
        assert_eq!(headers[X_RATELIMIT_REMAINING], "1");
        assert!(headers.get(RETRY_AFTER).is_none());
        store.check(&p, "k", 1).await.unwrap();
        let denied = store.check(&p, "k", 1).await.unwrap();
        let mut headers = HeaderMap::new();
        h.write(&denied, &mut headers);
        let retry: u64 = headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        assert!(headers[RATELIMIT]
            .to_str()
            .unwrap()
            .starts_with("\"burst\";r=0;t="));
    }
}
