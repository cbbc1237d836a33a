//! The embedded store: a sharded hash table of per-(policy, key) window states.

mod slot;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashTable;
use parking_lot::Mutex;
use smallvec::SmallVec;

use self::slot::{Commit, Slot};
use super::Store;
use crate::algorithm::View;
use crate::clock::{Clock, MonotonicClock};
use crate::decision::{Decision, Verdict, Windows};
use crate::error::{Error, StoreError};
use crate::key;
use crate::policy::Policy;

/// An in-process store: exact, atomic per key, no network.
///
/// - **Sharded**: keys spread over independently locked shards; one decision takes one
///   shard lock once, whatever the number of windows.
/// - **Reclaims memory**: an entry expires once all its windows are back to full
///   capacity. Each shard sweeps expired entries when it has doubled since its last
///   sweep (amortized O(1) per insert) and gives memory back when mostly empty;
///   [`purge_expired`](MemoryStore::purge_expired) sweeps everything at once.
/// - **Key cap**: with [`max_keys`](MemoryStoreBuilder::max_keys) set, a request for a
///   new key when the cap is reached first sweeps its shard; if that frees nothing the
///   request fails with [`StoreError::Full`], and the caller's failure mode decides
///   (keys already tracked keep working). Refusing is deliberate: admitting new keys
///   untracked would let a flood of distinct keys bypass every limit.
///
/// ```
/// use std::time::Duration;
/// use limiter_core::{Limit, MemoryStore, Policy, Store};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::builder().shards(16).max_keys(100_000).build();
/// let policy = Policy::new("p", vec![Limit::new(2, Duration::from_secs(1))]).unwrap();
/// assert!(store.check(&policy, "alice", 2).await.unwrap().is_allowed());
/// assert!(!store.check(&policy, "alice", 1).await.unwrap().is_allowed());
/// assert_eq!(store.len(), 1);
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryStore<C: Clock = MonotonicClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    clock: C,
    shards: Box<[Padded<Mutex<Shard>>]>,
    shard_shift: u32,
    max_keys: usize,
    len: AtomicUsize,
}

/// Keeps each shard's lock on its own cache lines so that shards do not contend.
#[repr(align(128))]
struct Padded<T>(T);

struct Shard {
    table: HashTable<Entry>,
    /// The latest time a decision in this shard used: time never goes back within a
    /// shard, even if the clock were to (a TSC read racing a re-base on another CPU).
    latest: i64,
    /// Sweep when the table reaches this many entries.
    sweep_at: usize,
}

struct Entry {
    hash: u64,
    policy: Arc<str>,
    /// Keys up to 24 bytes are stored inline: comparing them costs no pointer chase.
    key: CompactString,
    /// When every window is back to full capacity: the entry can then be dropped.
    expires_at: i64,
    slots: SmallVec<[Slot; 1]>,
}

const MIN_SWEEP: usize = 64;

/// Builds a [`MemoryStore`].
#[derive(Debug)]
pub struct MemoryStoreBuilder<C = MonotonicClock> {
    clock: C,
    shards: usize,
    max_keys: usize,
}

impl MemoryStoreBuilder<MonotonicClock> {
    fn new() -> Self {
        MemoryStoreBuilder {
            clock: MonotonicClock::new(),
            shards: 64,
            max_keys: usize::MAX,
        }
    }
}

impl<C: Clock> MemoryStoreBuilder<C> {
    /// Uses another clock (a [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock<D: Clock>(self, clock: D) -> MemoryStoreBuilder<D> {
        MemoryStoreBuilder {
            clock,
            shards: self.shards,
            max_keys: self.max_keys,
        }
    }

    /// Number of shards, rounded up to a power of two (default 64).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.clamp(1, 1 << 16).next_power_of_two();
        self
    }

    /// The most (policy, key) entries held at once (default: unbounded).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore<C> {
        let shards = (0..self.shards)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    table: HashTable::new(),
                    latest: i64::MIN,
                    sweep_at: MIN_SWEEP,
                }))
            })
            .collect();
        MemoryStore {
            inner: Arc::new(Inner {
                clock: self.clock,
                shards,
                shard_shift: 64 - self.shards.trailing_zeros(),
                max_keys: self.max_keys,
                len: AtomicUsize::new(0),
            }),
        }
    }
}

impl MemoryStore<MonotonicClock> {
    /// A store with 64 shards, no key cap and the monotonic clock.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a store.
    pub fn builder() -> MemoryStoreBuilder<MonotonicClock> {
        MemoryStoreBuilder::new()
    }
}

impl Default for MemoryStore<MonotonicClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock> MemoryStore<C> {
    /// Number of (policy, key) entries held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Relaxed)
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired entry now and gives memory back; returns how many were dropped.
    pub fn purge_expired(&self) -> usize {
        let now = self.inner.clock.now_us();
        self.inner
            .shards
            .iter()
            .map(|shard| self.inner.sweep(&mut shard.0.lock(), now))
            .sum()
    }

    /// Decides synchronously: the body of [`Store::check`], which never waits.
    #[inline]
    pub fn check_now(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        let key = key::normalize(key)?;
        self.inner.check(policy, &key, cost)
    }
}

impl<C: Clock> Inner<C> {
    #[inline]
    fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        // Seeded with the policy name's hash, computed once: a (policy, key) hash costs
        // a hash of the key alone.
        let hash = foldhash::fast::FixedState::with_seed(policy.name_hash()).hash_one(key);
        // The table indexes buckets with the low bits and tags with the top 7: pick
        // shards with the bits just below the tag.
        let index = (hash << 7).checked_shr(self.shard_shift).unwrap_or(0);
        let shard = &self.shards[index as usize];
        // Read before taking the lock, so the lock is held for less time.
        let now = self.clock.now_us();
        let mut shard = shard.0.lock();
        let now = now.max(shard.latest);
        shard.latest = now;
        let limits = policy.limits();
        let name = policy.shared_name();
        let matches =
            |e: &Entry| e.key == key && (Arc::ptr_eq(&e.policy, name) || e.policy == *name);

        if let Some(entry) = shard.table.find_mut(hash, matches) {
            if entry.slots.len() != limits.len() {
                entry.slots.resize(limits.len(), Slot::Vacant);
            }
            let (decision, expires_at) = decide(&mut entry.slots, policy, now, cost);
            if let Some(expires_at) = expires_at {
                entry.expires_at = expires_at;
            }
            return Ok(decision);
        }

        let mut slots: SmallVec<[Slot; 1]> = SmallVec::from_elem(Slot::Vacant, limits.len());
        let (decision, expires_at) = decide(&mut slots, policy, now, cost);
        // Only a consumed cost creates state; peeks and denials of new keys leave none.
        if let Some(expires_at) = expires_at {
            if self.len.load(Ordering::Relaxed) >= self.max_keys {
                self.sweep(&mut shard, now);
                if self.len.load(Ordering::Relaxed) >= self.max_keys {
                    return Err(StoreError::Full(self.max_keys).into());
                }
            }
            if shard.table.len() >= shard.sweep_at {
                self.sweep(&mut shard, now);
            }
            let entry = Entry {
                hash,
                policy: Arc::clone(policy.shared_name()),
                key: CompactString::from(key),
                expires_at,
                slots,
            };
            shard.table.insert_unique(hash, entry, |e| e.hash);
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        Ok(decision)
    }

    fn sweep(&self, shard: &mut Shard, now: i64) -> usize {
        let before = shard.table.len();
        shard.table.retain(|e| e.expires_at > now);
        let removed = before - shard.table.len();
        self.len.fetch_sub(removed, Ordering::Relaxed);
        shard.sweep_at = (shard.table.len() * 2).max(MIN_SWEEP);
        if shard.table.capacity() > 4 * shard.table.len().max(MIN_SWEEP) {
            shard.table.shrink_to_fit(|e| e.hash);
        }
        removed
    }
}

/// Evaluates every window, then consumes from all of them or none. Returns the decision
/// and, when something was consumed, the new expiry of the entry.
#[inline(always)]
fn decide(slots: &mut [Slot], policy: &Policy, now: i64, cost: u64) -> (Decision, Option<i64>) {
    let limits = policy.limits();
    if let ([slot], [limit]) = (&mut *slots, limits) {
        // One window (the common case): evaluate once, commit in place.
        let (state, commit) = slot.evaluate(limit, now, cost, View::Shown);
        let fits = state.verdict == Verdict::Fits;
        let expires_at = (fits && cost > 0).then(|| {
            slot.commit(commit, now, cost);
            now.saturating_add(state.reset_after_us as i64)
        });
        let mut windows = Windows::new();
        windows.push(state);
        return (Decision::from_windows(windows), expires_at);
    }
    // Several windows: evaluate each as if the request were admitted (the common case),
    // keeping what each would commit; commit all if every window fits. Otherwise nothing
    // is committed and a second pass reports the windows as they stand.
    let mut windows = Windows::new();
    let mut commits: SmallVec<[Commit; 3]> = SmallVec::new();
    let mut allowed = true;
    let mut longest = 0;
    for (slot, limit) in slots.iter_mut().zip(limits) {
        let (state, commit) = slot.evaluate(limit, now, cost, View::Taken);
        allowed &= state.verdict == Verdict::Fits;
        longest = longest.max(state.reset_after_us);
        windows.push(state);
        commits.push(commit);
    }
    if allowed {
        if cost == 0 {
            return (Decision::from_windows(windows), None);
        }
        for (slot, commit) in slots.iter_mut().zip(commits) {
            slot.commit(commit, now, cost);
        }
        return (
            Decision::from_windows(windows),
            Some(now.saturating_add(longest as i64)),
        );
    }
    windows.clear();
    for (slot, limit) in slots.iter_mut().zip(limits) {
        windows.push(slot.evaluate(limit, now, cost, View::Held).0);
    }
    (Decision::from_windows(windows), None)
}

impl<C: Clock> Store for MemoryStore<C> {
    async fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        self.check_now(policy, key, cost)
    }
}
