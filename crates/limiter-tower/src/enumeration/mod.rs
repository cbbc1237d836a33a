//! The key-enumeration defence: a client address (or its network) that presents too many
//! distinct identities, or too many distinct failed credentials, in a window, or any
//! honeypot identity, is answered 429 `abnormal-usage-detected` for a while.
//!
//! [`Enumeration`] is its configuration (on by default); the guard that applies it lives
//! in [`guard`].

mod guard;

use std::collections::HashSet;
use std::time::Duration;

pub(crate) use guard::{Counter, FailureReport, Presented, Source, SourceGuard, Verdict};

/// Mark a response with this extension to report a failed authentication that only the
/// application can see (an unknown API key, a wrong password): the layer counts the
/// credential the request presented against its client address, on the way out.
///
/// ```
/// use axum::{http::StatusCode, response::IntoResponse, Extension};
/// use limiter_tower::FailedAuth;
///
/// async fn handler() -> impl IntoResponse {
///     // The API key is not one of ours.
///     (StatusCode::UNAUTHORIZED, Extension(FailedAuth))
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailedAuth;

/// The enumeration defence, configured in code (the `enumeration` section of the file).
///
/// Per client address, and per network (/24 for IPv4, the configured `ipv6_prefix` for
/// IPv6), the distinct identities presented (verified users, API keys) are counted in
/// a window, and per address the distinct failed credentials (invalid or expired
/// tokens, keys the application reports with [`FailedAuth`]). Above a threshold, or at
/// the first use of a honeypot identity, the source is blocked for `block`.
///
/// ```
/// use std::time::Duration;
/// use limiter_tower::{Enumeration, LimiterBuilder};
///
/// let layer = LimiterBuilder::new()
///     .enumeration(Some(
///         Enumeration::default()
///             .max_identities(50)
///             .block(Duration::from_secs(3600))
///             .honeypot_api_keys(["sk_live_canary"]),
///     ))
///     .build_in_memory()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Enumeration {
    pub(crate) window: Duration,
    pub(crate) max_identities: u64,
    pub(crate) max_identities_per_network: u64,
    pub(crate) max_failed_auth: u64,
    pub(crate) block: Duration,
    pub(crate) max_sources: usize,
    pub(crate) honeypot_users: HashSet<String>,
    pub(crate) honeypot_api_keys: HashSet<String>,
}

impl Default for Enumeration {
    /// 100 identities per address or 1,000 per network, or 30 failed credentials per
    /// address, in a minute; blocked for 10 minutes; 10,000 sources tracked.
    fn default() -> Self {
        Enumeration {
            window: Duration::from_secs(60),
            max_identities: 100,
            max_identities_per_network: 1_000,
            max_failed_auth: 30,
            block: Duration::from_secs(600),
            max_sources: 10_000,
            honeypot_users: HashSet::new(),
            honeypot_api_keys: HashSet::new(),
        }
    }
}

impl Enumeration {
    /// The counting window, from a source's first identity (1 minute by default).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Distinct identities one address may present in a window (100).
    pub fn max_identities(mut self, max: u64) -> Self {
        self.max_identities = max;
        self
    }

    /// Distinct identities one network may present in a window (1,000).
    pub fn max_identities_per_network(mut self, max: u64) -> Self {
        self.max_identities_per_network = max;
        self
    }

    /// Distinct failed credentials one address may present in a window (30).
    pub fn max_failed_auth(mut self, max: u64) -> Self {
        self.max_failed_auth = max;
        self
    }

    /// How long a source stays blocked (10 minutes).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Sources (addresses and networks) tracked in this process at once (10,000), the
    /// least used forgotten first; the blocked list and the in-memory counts are bounded
    /// by it.
    pub fn max_sources(mut self, max: usize) -> Self {
        self.max_sources = max;
        self
    }

    /// Users (as the `user` scope reads them) no real client has: any use blocks.
    pub fn honeypot_users<U: Into<String>>(mut self, users: impl IntoIterator<Item = U>) -> Self {
        self.honeypot_users
            .extend(users.into_iter().map(Into::into));
        self
    }

    /// API keys no real client has: any use blocks.
    pub fn honeypot_api_keys<K: Into<String>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.honeypot_api_keys
            .extend(keys.into_iter().map(Into::into));
        self
    }

    /// The first setting that cannot work, with why.
    pub(crate) fn invalid_field(&self) -> Option<(&'static str, &'static str)> {
        if self.window.is_zero() {
            Some(("window", "must be longer than zero"))
        } else if self.block.is_zero() {
            Some(("block", "must be longer than zero"))
        } else if self.max_identities == 0 {
            Some(("max_identities", "must be at least 1"))
        } else if self.max_identities_per_network == 0 {
            Some(("max_identities_per_network", "must be at least 1"))
        } else if self.max_failed_auth == 0 {
            Some(("max_failed_auth", "must be at least 1"))
        } else if self.max_sources == 0 {
            Some(("max_sources", "must be at least 1"))
        } else {
            None
        }
    }
}
