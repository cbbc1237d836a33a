//! [`SourceGuard`]: the enumeration defence in the request path. A blocked source is
//! answered from a local list without any store call; a (source, identity) pair already
//! seen in the window costs one local lookup; only new pairs reach the counter (on
//! Redis, in a task of their own, so that no request waits for it).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limiter_core::{DistinctCounter, MemoryDistinct, RedisDistinct};
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::Enumeration;

/// Redis counts in flight at once; beyond, new pairs are counted when seen again.
const MAX_IN_FLIGHT: usize = 256;

/// Where distinct counts live: the layer's store decides.
#[derive(Debug, Clone)]
pub(crate) enum Counter {
    Memory(MemoryDistinct),
    Redis(RedisDistinct),
}

/// The blocked sources and the pairs seen, shared by every request of a layer.
#[derive(Clone)]
pub(crate) struct SourceGuard {
    inner: Arc<Inner>,
}

struct Inner {
    /// Address or network → blocked until.
    blocked: Cache<String, Instant>,
    /// When the latest block ends, in nanoseconds after `epoch`: while it is past, no
    /// source is blocked, and a request presenting no identity needs no lookup at all.
    blocks_end: AtomicU64,
    epoch: Instant,
    /// Hash of (set, item) → when it was counted.
    seen: Cache<u64, Instant>,
    seen_hasher: std::collections::hash_map::RandomState,
    counter: Counter,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for SourceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceGuard")
            .field("blocked", &self.inner.blocked.len())
            .field("counter", &self.inner.counter)
            .finish()
    }
}

/// Who sent a request: its address and, when different, its network.
pub(crate) struct Source {
    pub(crate) address: String,
    pub(crate) network: Option<String>,
}

/// What a request presented: a verified user, an API key (hashed), a token that did
/// not verify (as sent).
#[derive(Default)]
pub(crate) struct Presented<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) api_key: Option<&'a str>,
    pub(crate) failed_token: Option<&'a [u8]>,
}

impl Presented<'_> {
    /// Nothing to count: only a block in force can concern such a request.
    pub(crate) fn is_empty(&self) -> bool {
        self.user.is_none() && self.api_key.is_none() && self.failed_token.is_none()
    }
}

/// What the guard says of a request.
pub(crate) enum Verdict {
    /// Go on; the report counts a failure if the application reports one.
    Pass(Option<FailureReport>),
    /// Answer 429 `abnormal-usage-detected`, retry after this long.
    Blocked(Duration),
}

/// Counts the request's credential as failed if its response carries
/// [`FailedAuth`](super::FailedAuth).
pub(crate) struct FailureReport {
    guard: SourceGuard,
    config: Arc<Enumeration>,
    address: String,
    credential: u64,
}

impl FailureReport {
    pub(crate) fn report(self) {
        let set = failures_set(&self.address);
        self.guard.count(
            &self.config,
            set,
            self.credential,
            self.config.max_failed_auth,
            &self.address,
        );
    }
}

/// A stable 64-bit hash of an identity: instances must agree on it (Redis counts them
/// together), so not a per-process hasher.
fn item(kind: &[u8], value: &[u8]) -> u64 {
    let digest = Sha256::new()
        .chain_update(kind)
        .chain_update(value)
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

fn failures_set(address: &str) -> String {
    format!("fail:{address}")
}

impl SourceGuard {
    pub(crate) fn new(counter: Counter, max_sources: usize) -> Self {
        let max_sources = max_sources.max(1);
        SourceGuard {
            inner: Arc::new(Inner {
                blocked: Cache::new(max_sources),
                blocks_end: AtomicU64::new(0),
                epoch: Instant::now(),
                // A few identities per source in ordinary use.
                seen: Cache::new(max_sources.saturating_mul(4)),
                seen_hasher: Default::default(),
                counter,
                in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            }),
        }
    }

    /// Whether any source may be blocked now (false once every block has ended).
    pub(crate) fn any_blocked(&self) -> bool {
        self.inner.blocks_end.load(Ordering::Relaxed) > self.nanos(Instant::now())
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.inner.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// How much longer `target` stays blocked, if it is.
    fn blocked_for(&self, target: &str, now: Instant) -> Option<Duration> {
        let until = self.inner.blocked.get(target)?;
        let left = until.checked_duration_since(now).filter(|d| !d.is_zero());
        if left.is_none() {
            self.inner.blocked.remove(target);
        }
        left
    }

    fn block(&self, target: &str, duration: Duration, reason: &'static str) {
        let now = Instant::now();
        if self.blocked_for(target, now).is_some() {
            return;
        }
        self.inner.blocked.insert(target.to_owned(), now + duration);
        let end = self.nanos(now + duration);
        self.inner.blocks_end.fetch_max(end, Ordering::Relaxed);
        metrics::counter!(crate::metric_names::ABUSE_BLOCKS_TOTAL, "reason" => reason).increment(1);
        tracing::warn!(
            source = target,
            reason,
            block_secs = duration.as_secs(),
            "client blocked: abnormal usage"
        );
    }

    /// The whole defence for one request from `source` under `config`.
    pub(crate) fn check(
        &self,
        config: &Arc<Enumeration>,
        source: &Source,
        presented: &Presented<'_>,
    ) -> Verdict {
        let now = Instant::now();
        let targets = std::iter::once(&source.address).chain(source.network.as_ref());
        for target in targets {
            if let Some(left) = self.blocked_for(target, now) {
                return Verdict::Blocked(left);
            }
        }
        let honeypot = presented
            .user
            .is_some_and(|u| config.honeypot_users.contains(u))
            || presented
                .api_key
                .is_some_and(|k| config.honeypot_api_keys.contains(k));
        if honeypot {
            self.block(&source.address, config.block, "honeypot");
            return Verdict::Blocked(config.block);
        }

        let identities = [
            presented.user.map(|u| item(b"u:", u.as_bytes())),
            presented.api_key.map(|k| item(b"k:", k.as_bytes())),
        ];
        let mut blocked = false;
        for identity in identities.into_iter().flatten() {
            let address = format!("id:{}", source.address);
            blocked |= self.count(
                config,
                address,
                identity,
                config.max_identities,
                &source.address,
            );
            if let Some(network) = &source.network {
                blocked |= self.count(
                    config,
                    format!("id:{network}"),
                    identity,
                    config.max_identities_per_network,
                    network,
                );
            }
        }
        if let Some(token) = presented.failed_token {
            blocked |= self.count(
                config,
                failures_set(&source.address),
                item(b"t:", token),
                config.max_failed_auth,
                &source.address,
            );
        }
        if blocked {
            return Verdict::Blocked(config.block);
        }
        let report = identities
            .into_iter()
            .flatten()
            .last()
            .map(|credential| FailureReport {
                guard: self.clone(),
                config: Arc::clone(config),
                address: source.address.clone(),
                credential,
            });
        Verdict::Pass(report)
    }

    /// Adds `item` to `set`; blocks `target` when the set holds more than `max`. True
    /// when it blocked now (only the in-memory counter can tell at once).
    fn count(
        &self,
        config: &Arc<Enumeration>,
        set: String,
        item: u64,
        max: u64,
        target: &str,
    ) -> bool {
        let inner = &self.inner;
        let seen_key = inner.seen_hasher.hash_one((&set, item));
        let now = Instant::now();
        if inner
            .seen
            .get(&seen_key)
            .is_some_and(|at| now.duration_since(at) < config.window)
        {
            return false;
        }
        match &inner.counter {
            Counter::Memory(counter) => {
                inner.seen.insert(seen_key, now);
                if counter.insert_now(&set, item, config.window) > max {
                    self.block(target, config.block, reason(&set));
                    return true;
                }
                false
            }
            Counter::Redis(counter) => {
                let Ok(handle) = tokio::runtime::Handle::try_current() else {
                    return false;
                };
                // Saturated: this pair is counted when it comes again.
                let Ok(permit) = Arc::clone(&inner.in_flight).try_acquire_owned() else {
                    return false;
                };
                inner.seen.insert(seen_key, now);
                let guard = self.clone();
                let counter = counter.clone();
                let (window, block) = (config.window, config.block);
                let target = target.to_owned();
                handle.spawn(async move {
                    let _permit = permit;
                    match counter.insert(&set, item, window).await {
                        Ok(count) if count > max => guard.block(&target, block, reason(&set)),
                        Ok(_) => {}
                        Err(err) => {
                            // Counted again when seen again; the defence fails open.
                            guard.inner.seen.remove(&seen_key);
                            tracing::debug!(error = %err, "enumeration count failed");
                        }
                    }
                });
                false
            }
        }
    }
}

fn reason(set: &str) -> &'static str {
    if set.starts_with("fail:") {
        "failed_auth"
    } else {
        "identities"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> SourceGuard {
        SourceGuard::new(Counter::Memory(MemoryDistinct::new(100)), 100)
    }

    fn source(address: &str) -> Source {
        Source {
            address: address.to_owned(),
            network: Some("10.0.0.0/24".to_owned()),
        }
    }

    #[test]
    fn a_flood_of_sources_stays_within_the_caps() {
        let guard = guard();
        let config = Arc::new(
            Enumeration::default()
                .honeypot_users(["canary"])
                .max_identities(1_000),
        );
        for i in 0..100_000u32 {
            let address = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            let user = if i % 2 == 0 {
                "canary".to_owned()
            } else {
                format!("user-{i}")
            };
            let presented = Presented {
                user: Some(&user),
                ..Default::default()
            };
            let source = Source {
                address,
                network: None,
            };
            let verdict = guard.check(&config, &source, &presented);
            assert_eq!(
                matches!(verdict, Verdict::Blocked(_)),
                i % 2 == 0,
                "{}",
                source.address
            );
        }
        // 50,000 sources blocked and 100,000 pairs seen, in caches of 100 and 400.
        assert!(
            guard.inner.blocked.len() <= 100,
            "{}",
            guard.inner.blocked.len()
        );
        assert!(guard.inner.seen.len() <= 400, "{}", guard.inner.seen.len());
    }

    #[test]
    fn blocks_above_the_threshold_and_only_that_source() {
        let guard = guard();
        let config = Arc::new(Enumeration::default().max_identities(5));
        let a = source("10.0.0.1");
        for i in 0..5 {
            let user = format!("user-{i}");
            let presented = Presented {
                user: Some(&user),
                ..Default::default()
            };
            assert!(matches!(
                guard.check(&config, &a, &presented),
                Verdict::Pass(_)
            ));
            // Seen again: no new count.
            assert!(matches!(
                guard.check(&config, &a, &presented),
                Verdict::Pass(_)
            ));
        }
        let presented = Presented {
            user: Some("user-5"),
            ..Default::default()
        };
        assert!(matches!(
            guard.check(&config, &a, &presented),
            Verdict::Blocked(_)
        ));
        let presented = Presented::default();
        assert!(matches!(
            guard.check(&config, &a, &presented),
            Verdict::Blocked(_)
        ));
        assert!(matches!(
            guard.check(&config, &source("10.0.0.2"), &presented),
            Verdict::Pass(_)
        ));
    }

    #[test]
    fn honeypots_block_at_once() {
        let guard = guard();
        let config = Arc::new(Enumeration::default().honeypot_users(["admin-canary"]));
        let presented = Presented {
            user: Some("admin-canary"),
            ..Default::default()
        };
        let a = source("10.0.0.1");
        assert!(matches!(
            guard.check(&config, &a, &presented),
            Verdict::Blocked(_)
        ));
        assert!(matches!(
            guard.check(&config, &a, &Presented::default()),
            Verdict::Blocked(_)
        ));
    }

    #[test]
    fn failed_credentials_count_distinct_and_reports_add_to_them() {
        let guard = guard();
        let config = Arc::new(Enumeration::default().max_failed_auth(2));
        let a = source("10.0.0.1");
        let same = Presented {
            failed_token: Some(b"expired"),
            ..Default::default()
        };
        for _ in 0..10 {
            // The same stale token again and again is one failure.
            assert!(matches!(guard.check(&config, &a, &same), Verdict::Pass(_)));
        }
        let other = Presented {
            failed_token: Some(b"forged"),
            ..Default::default()
        };
        assert!(matches!(guard.check(&config, &a, &other), Verdict::Pass(_)));
        let keyed = Presented {
            api_key: Some("feed"),
            ..Default::default()
        };
        let Verdict::Pass(Some(report)) = guard.check(&config, &a, &keyed) else {
            panic!("an identity makes a report");
        };
        report.report();
        assert!(matches!(
            guard.check(&config, &a, &keyed),
            Verdict::Blocked(_)
        ));
    }
}
