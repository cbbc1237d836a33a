//! The key of the local caches in front of a store: a policy name and a rate-limit key,
//! looked up by borrowed strings without allocating.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use compact_str::CompactString;
use quick_cache::Equivalent;

use crate::policy::Policy;

/// A (policy name, key) pair as a map holds it. Hashed as the two strings, so that a
/// [`PolicyKeyRef`] of borrowed strings finds it.
#[derive(PartialEq, Eq)]
pub(super) struct PolicyKey {
    policy: Arc<str>,
    key: CompactString,
}

impl PolicyKey {
    pub(super) fn new(policy: &Policy, key: &str) -> Self {
        PolicyKey {
            policy: Arc::clone(policy.shared_name()),
            key: CompactString::from(key),
        }
    }

    /// The bytes the pair holds beyond its own size (for memory bounds).
    pub(super) fn heap_bytes(&self) -> usize {
        if self.key.is_heap_allocated() {
            self.key.len()
        } else {
            0
        }
    }
}

impl Hash for PolicyKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        PolicyKeyRef {
            policy: &self.policy,
            key: &self.key,
        }
        .hash(state);
    }
}

/// A borrowed (policy name, key) pair, to look a [`PolicyKey`] up.
#[derive(Hash)]
pub(super) struct PolicyKeyRef<'a> {
    pub(super) policy: &'a str,
    pub(super) key: &'a str,
}

impl<'a> PolicyKeyRef<'a> {
    pub(super) fn new(policy: &'a Policy, key: &'a str) -> Self {
        PolicyKeyRef {
            policy: policy.name(),
            key,
        }
    }
}

impl Equivalent<PolicyKey> for PolicyKeyRef<'_> {
    fn equivalent(&self, other: &PolicyKey) -> bool {
        self.policy == &*other.policy && self.key == other.key.as_str()
    }
}
