//! Keys over their limit, as this instance saw them: the latest denials it made that
//! still stand (until their retry time), at most [`MAX_LISTED`], for the admin route.
//! Listing them from the store would scan every counter; this costs a lookup per denial
//! and an allocation per newly denied key.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

/// The most keys listed.
pub(crate) const MAX_LISTED: usize = 1_000;

#[derive(Clone)]
struct Seen {
    policy: Arc<str>,
    key: Box<str>,
    until: Instant,
}

/// The denials that still stand, by (policy, key).
pub(crate) struct OverLimit {
    seen: Cache<u64, Seen>,
    hasher: RandomState,
}

impl OverLimit {
    pub(crate) fn new() -> Self {
        OverLimit {
            seen: Cache::new(MAX_LISTED),
            hasher: RandomState::new(),
        }
    }

    /// `key` was denied under `policy`, until `retry` from now.
    pub(crate) fn record(&self, policy: &Arc<str>, key: &str, retry: Duration) {
        let hash = self.hasher.hash_one((&**policy, key));
        let until = Instant::now() + retry;
        if self.seen.get(&hash).is_some_and(|s| s.until >= until) {
            return;
        }
        let seen = Seen {
            policy: Arc::clone(policy),
            key: key.into(),
            until,
        };
        self.seen.insert(hash, seen);
    }

    /// `(policy, key, time until a retry can succeed)` of every denial still standing,
    /// by policy and key.
    pub(crate) fn list(&self) -> Vec<(Arc<str>, Box<str>, Duration)> {
        let now = Instant::now();
        let mut listed: Vec<_> = self
            .seen
            .iter()
            .filter(|(_, s)| s.until > now)
            .map(|(_, s)| (s.policy, s.key, s.until - now))
            .collect();
        listed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        listed
    }
}

impl std::fmt::Debug for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverLimit")
            .field("listed", &self.seen.len())
            .finish()
    }
}
