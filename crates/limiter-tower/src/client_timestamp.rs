//! [`ClientTimestamp`]: refuses requests whose own timestamp (a header, e.g. of a signed
//! request) is further from this process's clock than a tolerated skew, so that a
//! captured request cannot be replayed long after it was made, nor pre-dated.
//!
//! This is the only place the layer reads a time from a request, and only to refuse it:
//! rate-limit windows run on Redis `TIME` or this process's clock, never on a client's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The skew tolerated unless told otherwise.
pub(crate) const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(5);

/// Longer values are not a timestamp in any accepted format: refused before parsing.
const MAX_TIMESTAMP_LEN: usize = 64;

/// Checks a request's timestamp header against this process's clock. Accepted formats:
/// Unix seconds (`1700000000`), RFC 3339 (`2023-11-14T22:13:20Z`, any offset, optional
/// fraction) and HTTP-date (`Tue, 14 Nov 2023 22:13:20 GMT`).
///
/// ```
/// use std::time::Duration;
/// use http::HeaderName;
/// use limiter_tower::{ClientTimestamp, LimiterLayer};
///
/// let layer = LimiterLayer::builder()
///     .client_timestamp(
///         ClientTimestamp::new(HeaderName::from_static("x-request-timestamp"))
///             .max_skew(Duration::from_secs(5))
///             .required(true),
///     )
///     .build_in_memory()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTimestamp {
    header: HeaderName,
    max_skew: Duration,
    required: bool,
}

impl ClientTimestamp {
    /// Reads the timestamp from `header`; 5 s of skew either way; requests without the
    /// header pass unchecked.
    pub fn new(header: HeaderName) -> Self {
        ClientTimestamp {
            header,
            max_skew: DEFAULT_MAX_SKEW,
            required: false,
        }
    }

    /// How far the timestamp may be from this process's clock, past or future.
    pub fn max_skew(mut self, skew: Duration) -> Self {
        self.max_skew = skew;
        self
    }

    /// Whether a request without the header is refused (400) rather than passed.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// `Ok` when `headers` carry no timestamp (and none is required) or one within the
    /// skew of `now`.
    pub(crate) fn check(&self, headers: &HeaderMap, now: SystemTime) -> Result<(), BadTimestamp> {
        let header = &self.header;
        let Some(value) = headers.get(header) else {
            return match self.required {
                true => Err(BadTimestamp::Missing {
                    header: header.clone(),
                }),
                false => Ok(()),
            };
        };
        let client = parse(value.as_bytes()).ok_or_else(|| BadTimestamp::Malformed {
            header: header.clone(),
        })?;
        let now = unix_nanos(now);
        let max = self.max_skew.as_nanos() as i128;
        let seconds = |nanos: i128| u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        if client > now + max {
            return Err(BadTimestamp::Ahead {
                header: header.clone(),
                seconds: seconds(client - now),
                max_skew: self.max_skew,
            });
        }
        if client < now - max {
            return Err(BadTimestamp::Behind {
                header: header.clone(),
                seconds: seconds(now - client),
                max_skew: self.max_skew,
            });
        }
        Ok(())
    }
}

/// A request timestamp the layer refuses (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadTimestamp {
    /// The header is required and absent.
    #[error("header {header} is required: the time the request was made")]
    Missing {
        /// The header.
        header: HeaderName,
    },
    /// Not a timestamp in an accepted format.
    #[error("header {header} must be a timestamp: Unix seconds, RFC 3339 or an HTTP-date")]
    Malformed {
        /// The header.
        header: HeaderName,
    },
    /// Further in the past than the tolerated skew.
    #[error("header {header} is {seconds} s in the past; at most {max_skew:?} of clock skew is accepted")]
    Behind {
        /// The header.
        header: HeaderName,
        /// How far behind this process's clock, in whole seconds.
        seconds: u64,
        /// The tolerated skew.
        max_skew: Duration,
    },
    /// Further in the future than the tolerated skew.
    #[error("header {header} is {seconds} s in the future; at most {max_skew:?} of clock skew is accepted")]
    Ahead {
        /// The header.
        header: HeaderName,
        /// How far ahead of this process's clock, in whole seconds.
        seconds: u64,
        /// The tolerated skew.
        max_skew: Duration,
    },
}

/// Nanoseconds since the Unix epoch (negative before it).
fn unix_nanos(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// The timestamp in `value`, as nanoseconds since the Unix epoch.
fn parse(value: &[u8]) -> Option<i128> {
    if value.len() > MAX_TIMESTAMP_LEN {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u64 = text.parse().ok()?;
        return Some(i128::from(seconds) * 1_000_000_000);
    }
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(time.unix_timestamp_nanos());
    }
    httpdate::parse_http_date(text).ok().map(unix_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn check(stamp: &ClientTimestamp, value: Option<&[u8]>) -> Result<(), BadTimestamp> {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert("x-ts", HeaderValue::from_bytes(value).unwrap());
        }
        stamp.check(&headers, UNIX_EPOCH + Duration::from_secs(NOW))
    }

    fn stamp() -> ClientTimestamp {
        ClientTimestamp::new(HeaderName::from_static("x-ts"))
    }

    #[test]
    fn every_format_within_the_skew_passes() {
        for ok in [
            &b"1700000000"[..],
            b"1700000005",
            b"1699999995",
            b" 1700000000 ",
            b"2023-11-14T22:13:20Z",
            b"2023-11-14T22:13:23.5Z",
            b"2023-11-14T23:13:20+01:00",
            b"Tue, 14 Nov 2023 22:13:20 GMT",
        ] {
            assert_eq!(check(&stamp(), Some(ok)), Ok(()), "{ok:?}");
        }
        assert_eq!(check(&stamp(), None), Ok(()), "not required");
    }

    #[test]
    fn outside_the_skew_either_way_is_refused() {
        assert!(matches!(
            check(&stamp(), Some(b"1700000006")),
            Err(BadTimestamp::Ahead { seconds: 6, .. })
        ));
        assert!(matches!(
            check(&stamp(), Some(b"2023-11-14T22:13:14Z")),
            Err(BadTimestamp::Behind { seconds: 6, .. })
        ));
        assert!(matches!(
            check(&stamp(), Some(b"Thu, 01 Jan 1970 00:00:00 GMT")),
            Err(BadTimestamp::Behind { .. })
        ));
        let wide = stamp().max_skew(Duration::from_secs(3600));
        assert_eq!(check(&wide, Some(b"1700003600")), Ok(()));
    }

    #[test]
    fn malformed_or_missing_when_required() {
        for bad in [
            &b""[..],
            b"-5",
            b"1.7e9",
            b"99999999999999999999999",
            b"2023-11-14 22:13:20",
            b"yesterday",
            b"\xff\xfe",
            &[b'1'; 65],
        ] {
            assert!(
                matches!(
                    check(&stamp(), Some(bad)),
                    Err(BadTimestamp::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check(&stamp().required(true), None),
            Err(BadTimestamp::Missing { .. })
        ));
    }
}
