//! The rate-limit response fields: draft-ietf-httpapi-ratelimit-headers (draft 11)
//! `RateLimit-Policy` / `RateLimit`, the legacy `X-RateLimit-*` trio, and `Retry-After`.
//!
//! `RateLimit-Policy` never changes for a policy, so it is rendered once when the
//! configuration loads; only the numbers of `RateLimit` are written per response.
//!
//! `RateLimit`'s `t` is the draft's (since draft 10): the seconds until more quota than
//! `r` is available, not until the window is whole again. Draft 10 words it "the number
//! of seconds until additional quota [...] is made available", draft 11 "the number of
//! seconds within which the client can use no more than the available quota"; both name
//! the same instant, when the window holds `r + 1` units if nothing consumes meanwhile
//! ([`WindowState::next_unit_after`](limiter_core::WindowState::next_unit_after)). So on a denial of one unit `t` is `Retry-After`;
//! on an admitted response with `r > 0` it is when the window gains its next unit (a
//! GCRA's next drained unit, a sliding window's oldest request leaving, a fixed or
//! calendar window's end), not when it is full. Rounded up, as `Retry-After` is: a client
//! waiting `t` is never early. A window already holding its whole capacity gains nothing,
//! and its `t` is left out (the parameter is optional). `X-RateLimit-Reset` keeps its
//! legacy meaning: seconds until the window is whole again (when denied, at least
//! `Retry-After`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::HeaderMap;
use limiter_core::{Decision, Policy};

use schemars::JsonSchema;
use serde::Deserialize;

/// `RateLimit-Policy`.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Degraded: true`: the store failed and the failure mode decided.
pub(crate) const RATELIMIT_DEGRADED: HeaderName = HeaderName::from_static("ratelimit-degraded");
/// `X-RateLimit-Limit`.
pub(crate) const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub(crate) const X_RATELIMIT_REMAINING: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (seconds from now).
pub(crate) const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// A window name that cannot be written as a Structured Field string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("window name {0:?} must be printable ASCII without '\"' or '\\'")]
pub(crate) struct BadWindowName(pub String);

/// Whether `text` can be written as a Structured Field string as it is: printable ASCII
/// without `"` or `\`.
fn is_sf_string(text: &str) -> bool {
    text.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
}

/// The parts of a policy's headers that never change.
#[derive(Debug, Clone)]
pub(crate) struct PreparedHeaders {
    style: HeaderStyle,
    /// The policy's quota unit, when not one request.
    unit: Option<QuotaUnit>,
    policy: HeaderValue,
    /// Each window's name as an sf-string, quotes included.
    labels: Box<[String]>,
    /// Windows count different units (requests and tokens): compared by the share of
    /// their limit left, not by units left.
    by_share: bool,
}

impl PreparedHeaders {
    /// Renders `RateLimit-Policy` for `policy`, e.g.
    /// `"burst";q=100;w=60, "daily";q=1000;w=86400`.
    pub(crate) fn new(
        policy: &Policy,
        unit: Option<QuotaUnit>,
        style: HeaderStyle,
    ) -> Result<Self, BadWindowName> {
        PreparedHeaders::build(policy, unit, style, true)
    }

    fn new_uninterned(
        policy: &Policy,
        unit: Option<QuotaUnit>,
        style: HeaderStyle,
    ) -> Result<Self, BadWindowName> {
        PreparedHeaders::build(policy, unit, style, false)
    }

    fn build(
        policy: &Policy,
        unit: Option<QuotaUnit>,
        style: HeaderStyle,
        intern: bool,
    ) -> Result<Self, BadWindowName> {
        let by_share = policy.mixes_units();
        let mut labels = Vec::with_capacity(policy.limits().len());
        let mut field = String::new();
        for limit in policy.limits() {
            let name = limit.name();
            if name.is_empty() || !is_sf_string(name) {
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
            // A window counting its own unit announces it; windows of requests announce
            // the policy's quota unit, unless it is requests (the draft's default).
            let announced = if limit.unit() != "requests" {
                Some(limit.unit())
            } else {
                unit.filter(|u| *u != QuotaUnit::Requests)
                    .map(QuotaUnit::as_str)
            };
            if let Some(announced) = announced {
                if !is_sf_string(announced) {
                    return Err(BadWindowName(announced.to_owned()));
                }
                let _ = write!(field, ";qu=\"{announced}\"");
            }
            labels.push(label);
        }
        let Ok(value) = HeaderValue::from_str(&field) else {
            return Err(BadWindowName(policy.name().to_owned()));
        };
        let policy = if intern {
            HeaderValue::from_static(interned(field))
        } else {
            value
        };
        Ok(PreparedHeaders {
            by_share,
            style,
            unit,
            policy,
            labels: labels.into(),
        })
    }

    /// The same fields for `policy`, another form of this one (an override's scaled
    /// limits). Not interned: overrides come and go, and an interned field is kept for
    /// the life of the process.
    pub(crate) fn for_policy(&self, policy: &Policy) -> Result<Self, BadWindowName> {
        let mut headers = PreparedHeaders::new_uninterned(policy, self.unit, self.style)?;
        headers.by_share = self.by_share || headers.by_share;
        Ok(headers)
    }

    /// Writes the fields for `decision` into `headers`.
    pub(crate) fn write(&self, decision: &Decision, headers: &mut HeaderMap) {
        if let Some(figures) = self.figures(decision) {
            self.write_figures(&figures, headers);
        }
    }

    /// The figures of `decision`'s effective window; `None` when it reports no window.
    pub(crate) fn figures(&self, decision: &Decision) -> Option<Figures> {
        Figures::of(decision, self.by_share)
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
            let (mut remaining, mut next) = (itoa::Buffer::new(), itoa::Buffer::new());
            let remaining = remaining.format(figures.remaining);
            // `t`: seconds until more than `r` is available (see the module docs).
            let next = figures.next.map(|secs| next.format(secs));
            let t_len = next.map_or(0, |t| 3 + t.len());
            let mut field = Vec::with_capacity(label.len() + 3 + remaining.len() + t_len);
            field.extend_from_slice(label.as_bytes());
            field.extend_from_slice(b";r=");
            field.extend_from_slice(remaining.as_bytes());
            if let Some(next) = next {
                field.extend_from_slice(b";t=");
                field.extend_from_slice(next.as_bytes());
            }
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
/// request writes twice, traded between cores when several threads serve requests; a
/// `'static` one costs nothing to clone, and a copy per response would cost an
/// allocation (BENCHMARKS.md has the measurements). The price: each distinct value is
/// kept until the process exits, a few dozen bytes per window; reloading a file whose
/// policies did not change adds nothing.
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
    /// `X-RateLimit-Reset`: seconds until the window resets (or, when denied, until the
    /// retry if later).
    reset: u64,
    /// `RateLimit`'s `t`: seconds until the window holds more than `remaining`; `None`
    /// when it holds its whole capacity.
    next: Option<u64>,
    /// Seconds to wait before retrying, at least 1, when denied with a retry time.
    retry: Option<u64>,
}

impl Figures {
    /// The figures of `decision`, its windows compared `by_share` (see
    /// [`effective_window`]); `None` when it reports no window.
    fn of(decision: &Decision, by_share: bool) -> Option<Self> {
        let index = effective_window(decision, by_share)?;
        let window = decision.windows()[index];
        let retry = decision.retry_after().map(ceil_secs);
        Some(Figures {
            window: u8::try_from(index).ok()?,
            limit: window.limit(),
            remaining: window.remaining(),
            reset: ceil_secs(window.reset_after()).max(retry.unwrap_or(0)),
            next: window.next_unit_after().map(ceil_secs),
            retry: retry.map(|secs| secs.max(1)),
        })
    }
}

/// The window a client should watch: the one that denied the request, otherwise the one
/// with the fewest units left or, `by_share` (windows counting requests and tokens, whose
/// units do not compare), the smallest share of its limit left; the later reset among
/// equals.
pub(crate) fn effective_window(decision: &Decision, by_share: bool) -> Option<usize> {
    if let Some(index) = decision.denied_by() {
        return Some(index);
    }
    decision
        .windows()
        .iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| {
            let left = if by_share {
                // a.remaining / a.limit against b.remaining / b.limit, without dividing.
                let share = |w: &limiter_core::WindowState, of: u64| {
                    u128::from(w.remaining()) * u128::from(of)
                };
                share(a, b.limit()).cmp(&share(b, a.limit()))
            } else {
                a.remaining().cmp(&b.remaining())
            };
            left.then(b.reset_after().cmp(&a.reset_after()))
        })
        .map(|(i, _)| i)
}

/// Whole seconds, rounded up, so that a client waiting this long is never early.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Which headers carry the rate-limit state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    #[default]
    Draft,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    Legacy,
    /// Both sets.
    Both,
}

/// The draft's quota units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum QuotaUnit {
    /// One unit per request (the default, not announced).
    Requests,
    /// One unit per byte of content.
    ContentBytes,
    /// One unit per concurrent request.
    ConcurrentRequests,
}

impl QuotaUnit {
    /// The token the draft uses.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaUnit::Requests => "requests",
            QuotaUnit::ContentBytes => "content-bytes",
            QuotaUnit::ConcurrentRequests => "concurrent-requests",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use limiter_core::{Algorithm, Limit, ManualClock, MemoryStore, Period, Store};

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

    #[tokio::test]
    async fn windows_of_different_units_compare_by_the_share_left() {
        let minute = Duration::from_secs(60);
        let chat = Policy::new(
            "chat",
            vec![
                Limit::new(500, minute).with_name("answers"),
                Limit::new(450, minute)
                    .with_name("tokens")
                    .counting("tokens"),
            ],
        )
        .unwrap();
        let headers = PreparedHeaders::new(&chat, None, HeaderStyle::Draft).unwrap();
        assert!(headers
            .policy
            .to_str()
            .unwrap()
            .ends_with("\"tokens\";q=450;w=60;qu=\"tokens\""));
        let store = MemoryStore::new();
        // 499 of 500 answers left against 350 of 450 tokens: the tokens are closer to
        // exhaustion, though more of them are left.
        let decision = store
            .check(&chat, "k", limiter_core::Cost::new(1, 100))
            .await
            .unwrap();
        assert_eq!(headers.figures(&decision).unwrap().window, 1);
        // One unit: the fewest units left, as always.
        let headers = PreparedHeaders::new(&policy(), None, HeaderStyle::Draft).unwrap();
        let decision = store.check(&policy(), "k", 1).await.unwrap();
        assert_eq!(headers.figures(&decision).unwrap().window, 0);
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

    /// `RateLimit`'s `r` and `t`.
    fn r_and_t(headers: &HeaderMap) -> (u64, Option<u64>) {
        let field = headers[RATELIMIT].to_str().unwrap();
        let param = |name: &str| {
            field
                .split(';')
                .find_map(|p| p.strip_prefix(name))
                .map(|v| v.parse::<u64>().unwrap())
        };
        (param("r=").unwrap(), param("t="))
    }

    /// Every algorithm's 5 per minute, as a demo user would configure it.
    fn five_per_minute() -> [Limit; 5] {
        let minute = Duration::from_secs(60);
        [
            Limit::new(5, minute),
            Limit::new(5, minute).with_algorithm(Algorithm::SlidingLog),
            Limit::new(5, minute).with_algorithm(Algorithm::SlidingWindow),
            Limit::new(5, minute).with_algorithm(Algorithm::FixedWindow),
            Limit::per_calendar(5, Period::Minute),
        ]
    }

    /// 7 s into a minute, so that fixed and calendar windows are part-way through.
    const START_US: i64 = 1_700_000_040_000_000 + 7_000_000;

    /// Replays `requests` requests 1 s apart on a fresh store, then returns the store,
    /// its clock and the headers of the last response.
    async fn replay(
        policy: &Policy,
        style: HeaderStyle,
        requests: usize,
    ) -> (MemoryStore<ManualClock>, ManualClock, HeaderMap, Decision) {
        let clock = ManualClock::new(START_US);
        let store = MemoryStore::builder().clock(clock.clone()).build();
        let prepared = PreparedHeaders::new(policy, None, style).unwrap();
        let mut last = None;
        for i in 0..requests {
            if i > 0 {
                clock.advance(Duration::from_secs(1));
            }
            last = Some(store.check(policy, "k", 1).await.unwrap());
        }
        let decision = last.unwrap();
        let mut headers = HeaderMap::new();
        prepared.write(&decision, &mut headers);
        (store, clock, headers, decision)
    }

    /// The draft's `t`: after `t - 1` s, no more than `r` units fit; after `t` s, `r + 1`
    /// do. For every algorithm, on admitted responses and on the 429 that follows the
    /// fifth request, where `t` is also `Retry-After`.
    #[tokio::test]
    async fn t_is_the_wait_until_more_than_r_is_available() {
        for limit in five_per_minute() {
            let algo = format!("{:?}", limit.algorithm());
            let policy = Policy::new("p", vec![limit.with_name("burst")]).unwrap();
            for requests in 1..=6 {
                let (store, clock, headers, decision) =
                    replay(&policy, HeaderStyle::Draft, requests).await;
                assert_eq!(decision.is_allowed(), requests <= 5, "{algo} #{requests}");
                let (r, t) = r_and_t(&headers);
                let t = t.unwrap_or_else(|| panic!("{algo} #{requests}: no t"));
                if !decision.is_allowed() {
                    assert_eq!(r, 0, "{algo}");
                    assert_eq!(headers[RETRY_AFTER], t.to_string().as_str(), "{algo}");
                }
                clock.advance(Duration::from_secs(t - 1));
                let early = store.check(&policy, "k", r + 1).await.unwrap();
                assert!(!early.is_allowed(), "{algo} #{requests}: r={r} t={t}");
                clock.advance(Duration::from_secs(1));
                let due = store.check(&policy, "k", r + 1).await.unwrap();
                assert!(due.is_allowed(), "{algo} #{requests}: r={r} t={t}");
            }
        }
    }

    #[tokio::test]
    async fn a_whole_window_has_no_t_and_legacy_reset_is_the_whole_window() {
        let policy = Policy::new(
            "p",
            vec![Limit::new(5, Duration::from_secs(60)).with_name("burst")],
        )
        .unwrap();
        let prepared = PreparedHeaders::new(&policy, None, HeaderStyle::Draft).unwrap();
        let store = MemoryStore::new();
        let mut headers = HeaderMap::new();
        prepared.write(&store.check(&policy, "k", 0).await.unwrap(), &mut headers);
        assert_eq!(headers[RATELIMIT], "\"burst\";r=5");

        // Legacy: `X-RateLimit-Reset` is still when the window is whole again, 60 s
        // after five requests at once, while `t` says 12 s.
        let clock = ManualClock::new(START_US);
        let store = MemoryStore::builder().clock(clock.clone()).build();
        for _ in 0..5 {
            store.check(&policy, "k", 1).await.unwrap();
        }
        let denied = store.check(&policy, "k", 1).await.unwrap();
        for style in [HeaderStyle::Legacy, HeaderStyle::Both] {
            let prepared = PreparedHeaders::new(&policy, None, style).unwrap();
            let mut headers = HeaderMap::new();
            prepared.write(&denied, &mut headers);
            assert_eq!(headers[X_RATELIMIT_RESET], "60");
            assert_eq!(headers[X_RATELIMIT_REMAINING], "0");
            assert_eq!(headers[RETRY_AFTER], "12");
            assert_eq!(headers.contains_key(RATELIMIT), style == HeaderStyle::Both);
            if style == HeaderStyle::Both {
                assert_eq!(headers[RATELIMIT], "\"burst\";r=0;t=12");
            }
        }
    }
}
