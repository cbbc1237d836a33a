//! The embedded store: a sharded hash table of per-(policy, key) window states.

mod slot;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use std::borrow::Cow;

use self::slot::{Commit, Slot};
use super::Store;
use crate::algorithm::View;
use crate::clock::{Clock, MonotonicClock};
use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::{Error, StoreError};
use crate::joint::{Check, Joint};
use crate::key;
use crate::policy::Policy;
use crate::reservation::{Reservation, Settle};

/// An in-process store: exact, atomic per key, no network.
///
/// - **Sharded**: keys spread over independently locked shards; one decision takes one
///   shard lock once, whatever the number of windows.
/// - **Reclaims memory**: an entry expires once all its windows are back to full
///   capacity. Each shard sweeps expired entries when it has doubled since its last
///   sweep (amortized O(1) per insert) and gives memory back when mostly empty;
///   [`purge_expired`](MemoryStore::purge_expired) sweeps everything at once.
/// - **Key cap**: at most [`max_keys`](MemoryStoreBuilder::max_keys) entries
///   ([`DEFAULT_MAX_KEYS`] unless set), never more, however many threads race for the
///   last place. A request for a new key when the cap is reached first sweeps its shard;
///   if that frees nothing the request fails with [`StoreError::Full`] and nothing is
///   admitted for it (keys already tracked keep working). Refusing is deliberate:
///   admitting new keys untracked would let a flood of distinct keys bypass every limit.
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

/// One-window entries and several-window entries live in separate tables, so that each
/// holds its windows inline: a 3-window entry read from one allocation, not from an
/// entry plus a separately allocated slot array (a second, dependent cache miss), while
/// the common one-window entry stays small.
struct Shard {
    narrow: HashTable<Entry<1>>,
    wide: HashTable<Entry<WIDE>>,
    /// The latest time a decision in this shard used: time never goes back within a
    /// shard, even if the clock were to (a TSC read racing a re-base on another CPU).
    latest: i64,
    /// Sweep when the two tables together hold this many entries.
    sweep_at: usize,
    /// The reservations settled here, by (entry hash, id), until when each is
    /// remembered: a settlement retried within that time changes nothing.
    settled: HashMap<(u64, u64), i64>,
    /// Forget the expired settlements when `settled` holds this many.
    settled_sweep_at: usize,
}

impl Shard {
    /// Remembers that reservation `id` of the entry hashed `hash` is settled, until
    /// `until`; false if it already was.
    fn first_settlement(&mut self, hash: u64, id: u64, now: i64, until: i64) -> bool {
        if self.settled.get(&(hash, id)).is_some_and(|&t| t > now) {
            return false;
        }
        if self.settled.len() >= self.settled_sweep_at {
            self.settled.retain(|_, &mut t| t > now);
            self.settled.shrink_to(self.settled.len() * 2);
            self.settled_sweep_at = (self.settled.len() * 2).max(MIN_SWEEP);
        }
        self.settled.insert((hash, id), until);
        true
    }
}

/// The windows a `wide` entry holds inline; policies with more spill to the heap.
const WIDE: usize = 3;

struct Entry<const N: usize> {
    hash: u64,
    policy: Arc<str>,
    /// Keys up to 24 bytes are stored inline: comparing them costs no pointer chase.
    key: CompactString,
    /// When every window is back to full capacity: the entry can then be dropped.
    expires_at: i64,
    slots: SmallVec<[Slot; N]>,
}

impl<const N: usize> Entry<N> {
    #[inline]
    fn is(&self, policy: &Arc<str>, key: &str) -> bool {
        self.key == key && (Arc::ptr_eq(&self.policy, policy) || self.policy == *policy)
    }
}

/// One decision's inputs, once the shard is chosen and the time read.
struct Request<'a> {
    policy: &'a Policy,
    key: &'a str,
    hash: u64,
    now: i64,
    cost: Cost,
}

/// An entry's windows and expiry as they were before a joint decision changed them;
/// `None` when there was no entry.
struct Snapshot(Option<(SmallVec<[Slot; WIDE]>, i64)>);

impl Snapshot {
    fn of(shard: &Shard, request: &Request<'_>) -> Snapshot {
        let name = request.policy.shared_name();
        let (hash, key) = (request.hash, request.key);
        if let Some(entry) = shard.narrow.find(hash, |e| e.is(name, key)) {
            return Snapshot(Some((
                entry.slots.iter().cloned().collect(),
                entry.expires_at,
            )));
        }
        let entry = shard.wide.find(hash, |e| e.is(name, key));
        Snapshot(entry.map(|e| (e.slots.clone(), e.expires_at)))
    }
}

/// A shard's two tables, the one a policy's entries belong in first.
type Tables<'a, const N: usize, const M: usize> =
    (&'a mut HashTable<Entry<N>>, &'a mut HashTable<Entry<M>>);

const MIN_SWEEP: usize = 64;

/// The default cap on a [`MemoryStore`]'s (policy, key) entries: 1,000,000.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

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
            max_keys: DEFAULT_MAX_KEYS,
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

    /// The most (policy, key) entries held at once (default [`DEFAULT_MAX_KEYS`]);
    /// `usize::MAX` for no cap.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore<C> {
        let shards = (0..self.shards)
            .map(|_| {
                Padded(Mutex::new(Shard {
                    narrow: HashTable::new(),
                    wide: HashTable::new(),
                    latest: i64::MIN,
                    sweep_at: MIN_SWEEP,
                    settled: HashMap::new(),
                    settled_sweep_at: MIN_SWEEP,
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
    /// A store with 64 shards, the [`DEFAULT_MAX_KEYS`] cap and the monotonic clock.
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
    pub fn check_now(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        let key = key::normalize(key)?;
        // Filled in place and moved once, here: a decision holds three windows inline
        // (over 128 bytes, copied by a call to `memcpy`), and returning it from each
        // function on the way out of the store moved it once per function.
        let mut decision = Decision::new();
        self.inner.check(policy, &key, cost.into(), &mut decision)?;
        Ok(decision)
    }

    /// Reserves synchronously: the body of [`Store::reserve`].
    pub fn reserve_now(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        let key = key::normalize(key)?;
        let estimate = estimate.into();
        let mut decision = Decision::new();
        let at = self.inner.check(policy, &key, estimate, &mut decision)?;
        Ok(Reservation::new(decision, estimate, at))
    }

    /// Decides `checks` all or nothing, synchronously: the body of
    /// [`Store::check_all`]. Atomic: no other decision sees the units of a request that
    /// a later check denies.
    pub fn check_all_now(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        let keys = checks
            .iter()
            .map(|check| key::normalize(check.key))
            .collect::<Result<SmallVec<[Cow<'_, str>; 4]>, _>>()?;
        self.inner.check_all(checks, &keys)
    }

    /// Resets synchronously: the body of [`Store::reset`].
    pub fn reset_now(&self, policy: &Policy, key: &str) -> Result<(), Error> {
        let key = key::normalize(key)?;
        let (hash, shard) = self.inner.locate(policy, &key);
        let name = policy.shared_name();
        let mut shard = shard.lock();
        let narrow = shard
            .narrow
            .find_entry(hash, |e| e.is(name, &key))
            .is_ok_and(|found| {
                found.remove();
                true
            });
        let wide = shard
            .wide
            .find_entry(hash, |e| e.is(name, &key))
            .is_ok_and(|found| {
                found.remove();
                true
            });
        let removed = usize::from(narrow) + usize::from(wide);
        self.inner.len.fetch_sub(removed, Ordering::Relaxed);
        Ok(())
    }

    /// Settles synchronously: the body of [`Store::settle`].
    pub fn settle_now(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        let Some(settle) = reservation.settlement(actual.into()) else {
            return Ok(());
        };
        let key = key::normalize(key)?;
        self.inner.settle(policy, &key, &settle)
    }
}

impl<C: Clock> Inner<C> {
    /// The (policy, key) hash and the shard holding its entry.
    #[inline(always)]
    fn locate(&self, policy: &Policy, key: &str) -> (u64, &Mutex<Shard>) {
        // Seeded with the policy name's hash, computed once: a (policy, key) hash costs
        // a hash of the key alone.
        let hash = foldhash::fast::FixedState::with_seed(policy.name_hash()).hash_one(key);
        (hash, &self.shards[self.shard_of(hash)].0)
    }

    /// The shard of a (policy, key) hash.
    #[inline(always)]
    fn shard_of(&self, hash: u64) -> usize {
        // The table indexes buckets with the low bits and tags with the top 7: pick
        // shards with the bits just below the tag.
        (hash << 7).checked_shr(self.shard_shift).unwrap_or(0) as usize
    }

    /// Decides `checks` all or nothing: every shard they touch locked at once (in shard
    /// order, so that joint decisions never wait on each other in a circle), each check
    /// decided as [`check`](Self::check) decides it, and the entries the checks before a
    /// denial changed put back as they were before anyone else can see them.
    fn check_all(&self, checks: &[Check<'_>], keys: &[Cow<'_, str>]) -> Result<Joint, Error> {
        let hashes: SmallVec<[u64; 4]> = checks
            .iter()
            .zip(keys)
            .map(|(check, key)| {
                foldhash::fast::FixedState::with_seed(check.policy.name_hash()).hash_one(&**key)
            })
            .collect();
        let mut order: SmallVec<[usize; 4]> = hashes.iter().map(|&h| self.shard_of(h)).collect();
        order.sort_unstable();
        order.dedup();
        let now = self.clock.now_us();
        let mut guards: SmallVec<[(usize, MutexGuard<'_, Shard>); 4]> = order
            .iter()
            .map(|&index| (index, self.shards[index].0.lock()))
            .collect();
        let now = guards
            .iter()
            .fold(now, |now, (_, shard)| now.max(shard.latest));
        for (_, shard) in guards.iter_mut() {
            shard.latest = now;
        }
        let mut decisions = Vec::with_capacity(checks.len());
        let mut before: SmallVec<[Snapshot; 4]> = SmallVec::new();
        for ((check, key), &hash) in checks.iter().zip(keys).zip(&hashes) {
            let index = self.shard_of(hash);
            let Some((_, shard)) = guards.iter_mut().find(|(i, _)| *i == index) else {
                unreachable!("every check's shard is locked");
            };
            let request = Request {
                policy: check.policy,
                key,
                hash,
                now,
                cost: check.cost,
            };
            before.push(Snapshot::of(shard, &request));
            let mut decision = Decision::new();
            let decided = if check.policy.limits().len() == 1 {
                self.check_in(
                    shard,
                    |s| (&mut s.narrow, &mut s.wide),
                    request,
                    &mut decision,
                )
            } else {
                self.check_in(
                    shard,
                    |s| (&mut s.wide, &mut s.narrow),
                    request,
                    &mut decision,
                )
            };
            let allowed = decided.is_ok() && decision.allowed;
            if !allowed {
                // Put back what the checks before this one changed, latest first, and
                // report their windows as they stand (held, as Redis's script does).
                let done = before.len() - 1;
                for (i, snapshot) in before.into_iter().take(done).enumerate().rev() {
                    let index = self.shard_of(hashes[i]);
                    if let Some((_, shard)) = guards.iter_mut().find(|(j, _)| *j == index) {
                        self.restore(shard, checks[i].policy, &keys[i], hashes[i], snapshot);
                        let request = Request {
                            policy: checks[i].policy,
                            key: &keys[i],
                            hash: hashes[i],
                            now,
                            cost: Cost::ZERO,
                        };
                        let mut held = Decision::new();
                        let peeked = if checks[i].policy.limits().len() == 1 {
                            self.check_in(
                                shard,
                                |s| (&mut s.narrow, &mut s.wide),
                                request,
                                &mut held,
                            )
                        } else {
                            self.check_in(
                                shard,
                                |s| (&mut s.wide, &mut s.narrow),
                                request,
                                &mut held,
                            )
                        };
                        if peeked.is_ok() {
                            decisions[i] = held;
                        }
                    }
                }
                decided?;
                decisions.push(decision);
                return Ok(Joint::new(decisions));
            }
            decisions.push(decision);
        }
        Ok(Joint::new(decisions))
    }

    /// Puts the entry of (`policy`, `key`) back as `snapshot` saw it.
    fn restore(
        &self,
        shard: &mut Shard,
        policy: &Policy,
        key: &str,
        hash: u64,
        snapshot: Snapshot,
    ) {
        let name = policy.shared_name();
        let mut removed = 0;
        if let Ok(found) = shard.narrow.find_entry(hash, |e| e.is(name, key)) {
            found.remove();
            removed += 1;
        }
        if let Ok(found) = shard.wide.find_entry(hash, |e| e.is(name, key)) {
            found.remove();
            removed += 1;
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        let Snapshot(Some((slots, expires_at))) = snapshot else {
            return;
        };
        self.len.fetch_add(1, Ordering::Relaxed);
        let (policy, key) = (Arc::clone(name), CompactString::from(key));
        if slots.len() == 1 {
            let slots = slots.into_iter().collect();
            let entry = Entry {
                hash,
                policy,
                key,
                expires_at,
                slots,
            };
            shard.narrow.insert_unique(hash, entry, |e| e.hash);
        } else {
            let entry = Entry {
                hash,
                policy,
                key,
                expires_at,
                slots,
            };
            shard.wide.insert_unique(hash, entry, |e| e.hash);
        }
    }

    /// Decides into `decision`; returns the store time it was decided at.
    #[inline]
    fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: Cost,
        decision: &mut Decision,
    ) -> Result<i64, Error> {
        let (hash, shard) = self.locate(policy, key);
        // Read before taking the lock, so the lock is held for less time.
        let now = self.clock.now_us();
        let mut guard = shard.lock();
        let shard = &mut *guard;
        let now = now.max(shard.latest);
        shard.latest = now;
        let request = Request {
            policy,
            key,
            hash,
            now,
            cost,
        };
        if policy.limits().len() == 1 {
            self.check_in(shard, |s| (&mut s.narrow, &mut s.wide), request, decision)?;
        } else {
            self.check_in(shard, |s| (&mut s.wide, &mut s.narrow), request, decision)?;
        }
        Ok(now)
    }

    /// Applies `settle` to the entry of (`policy`, `key`), once per marked reservation.
    fn settle(&self, policy: &Policy, key: &str, settle: &Settle) -> Result<(), Error> {
        let (hash, shard) = self.locate(policy, key);
        let now = self.clock.now_us();
        let mut guard = shard.lock();
        let shard = &mut *guard;
        let now = now.max(shard.latest);
        shard.latest = now;
        if let Some(id) = settle.marker {
            // After the longest window nothing the settlement could give back still
            // counts (as the marker's TTL in Redis).
            let longest = policy.limits().iter().map(|l| l.window_us()).max();
            let until = now.saturating_add(longest.unwrap_or(0));
            if !shard.first_settlement(hash, id, now, until) {
                return Ok(());
            }
        }
        let request = Request {
            policy,
            key,
            hash,
            now,
            cost: settle.excess(),
        };
        if policy.limits().len() == 1 {
            self.settle_in(shard, |s| (&mut s.narrow, &mut s.wide), request, settle)
        } else {
            self.settle_in(shard, |s| (&mut s.wide, &mut s.narrow), request, settle)
        }
    }

    /// Gives back what `settle` did not use and charges its excess (`request.cost`),
    /// whatever the windows' room, in the table `tables` puts first (moving the entry
    /// from the other one as [`check_in`](Self::check_in) does).
    fn settle_in<const N: usize, const M: usize>(
        &self,
        shard: &mut Shard,
        tables: for<'a> fn(&'a mut Shard) -> Tables<'a, N, M>,
        request: Request<'_>,
        settle: &Settle,
    ) -> Result<(), Error> {
        let Request {
            policy,
            key,
            hash,
            now,
            cost: excess,
        } = request;
        let limits = policy.limits();
        let name = policy.shared_name();
        let (own, other) = tables(shard);
        if own.find(hash, |e| e.is(name, key)).is_none() {
            let slots: SmallVec<[Slot; N]> = match other.find_entry(hash, |e| e.is(name, key)) {
                Ok(found) => found
                    .remove()
                    .0
                    .slots
                    .into_iter()
                    .take(limits.len())
                    .collect(),
                // The entry expired and was swept: nothing is left to give back.
                Err(_) if excess.is_zero() => return Ok(()),
                Err(_) => {
                    if !self.reserve() {
                        self.sweep(shard, now);
                        if !self.reserve() {
                            return Err(StoreError::Full(self.max_keys).into());
                        }
                    }
                    SmallVec::new()
                }
            };
            let entry = Entry {
                hash,
                policy: Arc::clone(name),
                key: CompactString::from(key),
                expires_at: now,
                slots,
            };
            tables(shard).0.insert_unique(hash, entry, |e| e.hash);
        }
        let Some(entry) = tables(shard).0.find_mut(hash, |e| e.is(name, key)) else {
            return Ok(());
        };
        entry.slots.resize(limits.len(), Slot::Vacant);
        let unused = settle.unused();
        let mut until = now;
        for (slot, limit) in entry.slots.iter_mut().zip(limits) {
            slot.give_back(
                limit,
                settle.at,
                now,
                settle.reserved.of(limit),
                unused.of(limit),
            );
            let owed = excess.of(limit);
            if owed > 0 {
                let (_, commit) = slot.evaluate(limit, now, owed, View::Held);
                slot.commit(commit, now, owed);
            }
            let held = slot.evaluate(limit, now, 0, View::Held).0.reset_after_us;
            until = until.max(now.saturating_add(held as i64));
        }
        entry.expires_at = until;
        Ok(())
    }

    /// Decides in the table `tables` puts first; the other one holds the key's state if a
    /// reload changed the policy's number of windows since, and that state moves over.
    #[inline(always)]
    fn check_in<const N: usize, const M: usize>(
        &self,
        shard: &mut Shard,
        tables: for<'a> fn(&'a mut Shard) -> Tables<'a, N, M>,
        request: Request<'_>,
        decision: &mut Decision,
    ) -> Result<(), Error> {
        let Request {
            policy,
            key,
            hash,
            now,
            cost,
        } = request;
        let limits = policy.limits();
        let name = policy.shared_name();
        let (own, other) = tables(shard);
        if let Some(entry) = own.find_mut(hash, |e| e.is(name, key)) {
            if entry.slots.len() != limits.len() {
                entry.slots.resize(limits.len(), Slot::Vacant);
            }
            decide(&mut entry.slots, policy, now, cost, decision);
            let until = held_until(decision, now);
            entry.expires_at = if consumed(decision, cost) {
                until
            } else {
                // Nothing consumed, but a reload may have re-read the state under a
                // lower rate (a longer GCRA backlog): the entry lives as long as what it
                // holds.
                entry.expires_at.max(until)
            };
            return Ok(());
        }

        let moved = match other.find_entry(hash, |e| e.is(name, key)) {
            Ok(found) => Some(found.remove().0),
            Err(_) => None,
        };
        let (mut slots, kept_until): (SmallVec<[Slot; N]>, _) = match moved {
            // Windows past the policy's count are dropped here, before collecting, so a
            // one-window entry never keeps a spilled array.
            Some(entry) => (
                entry.slots.into_iter().take(limits.len()).collect(),
                Some(entry.expires_at),
            ),
            None => (SmallVec::new(), None),
        };
        slots.resize(limits.len(), Slot::Vacant);
        decide(&mut slots, policy, now, cost, decision);
        // Only a consumed cost creates state (peeks and denials of new keys leave none);
        // a moved entry is kept whatever the decision.
        let consumed = consumed(decision, cost).then(|| held_until(decision, now));
        let Some(expires_at) = consumed.or(kept_until) else {
            return Ok(());
        };
        if kept_until.is_none() {
            if shard.narrow.len() + shard.wide.len() >= shard.sweep_at {
                self.sweep(shard, now);
            }
            if !self.reserve() {
                self.sweep(shard, now);
                if !self.reserve() {
                    // Decided but not committed: the slots are dropped with the request.
                    return Err(StoreError::Full(self.max_keys).into());
                }
            }
        }
        let entry = Entry {
            hash,
            policy: Arc::clone(name),
            key: CompactString::from(key),
            expires_at,
            slots,
        };
        tables(shard).0.insert_unique(hash, entry, |e| e.hash);
        Ok(())
    }

    /// Counts one more entry if the cap allows: one atomic step, so that shards racing
    /// for the last place never take it twice.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |len| {
                (len < self.max_keys).then_some(len + 1)
            })
            .is_ok()
    }

    fn sweep(&self, shard: &mut Shard, now: i64) -> usize {
        let removed = sweep_table(&mut shard.narrow, now) + sweep_table(&mut shard.wide, now);
        self.len.fetch_sub(removed, Ordering::Relaxed);
        shard.sweep_at = ((shard.narrow.len() + shard.wide.len()) * 2).max(MIN_SWEEP);
        removed
    }
}

/// Drops the entries expired at `now` and gives memory back when the table is mostly
/// empty; returns how many were dropped.
fn sweep_table<const N: usize>(table: &mut HashTable<Entry<N>>, now: i64) -> usize {
    let before = table.len();
    table.retain(|e| e.expires_at > now);
    if table.capacity() > 4 * table.len().max(MIN_SWEEP) {
        table.shrink_to_fit(|e| e.hash);
    }
    before - table.len()
}

/// Evaluates every window into `decision` (new), then consumes from all of them or none.
#[inline(always)]
fn decide(slots: &mut [Slot], policy: &Policy, now: i64, cost: Cost, decision: &mut Decision) {
    let limits = policy.limits();
    if let ([slot], [limit]) = (&mut *slots, limits) {
        // One window (the common case): evaluate once, commit in place.
        let cost = cost.of(limit);
        let (state, commit) = slot.evaluate(limit, now, cost, View::Shown);
        decision.push(state);
        if decision.allowed && cost > 0 {
            slot.commit(commit, now, cost);
        }
        return;
    }
    // Several windows: evaluate each as if the request were admitted (the common case),
    // keeping what each would commit; commit all if every window fits. Otherwise nothing
    // is committed and a second pass reports the windows as they stand.
    let mut commits: SmallVec<[Commit; 3]> = SmallVec::new();
    for (slot, limit) in slots.iter_mut().zip(limits) {
        let (state, commit) = slot.evaluate(limit, now, cost.of(limit), View::Taken);
        decision.push(state);
        commits.push(commit);
    }
    if decision.allowed {
        for ((slot, commit), limit) in slots.iter_mut().zip(&commits).zip(limits) {
            let cost = cost.of(limit);
            if cost > 0 {
                slot.commit(*commit, now, cost);
            }
        }
        return;
    }
    *decision = Decision::new();
    for (slot, limit) in slots.iter_mut().zip(limits) {
        decision.push(slot.evaluate(limit, now, cost.of(limit), View::Held).0);
    }
}

/// Whether `decide` consumed the cost: something to remember.
#[inline(always)]
fn consumed(decision: &Decision, cost: Cost) -> bool {
    decision.allowed && !cost.is_zero()
}

/// When every window of the entry is back to full capacity, as the decision reports
/// them: the entry can be dropped then.
#[inline(always)]
fn held_until(decision: &Decision, now: i64) -> i64 {
    let longest = decision.windows.iter().map(|w| w.reset_after_us).max();
    now.saturating_add(longest.unwrap_or(0) as i64)
}

impl<C: Clock> Store for MemoryStore<C> {
    async fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        self.check_now(policy, key, cost)
    }

    async fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        self.reserve_now(policy, key, estimate)
    }

    async fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        self.settle_now(policy, key, reservation, actual)
    }

    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        self.check_all_now(checks)
    }

    async fn reset(&self, policy: &Policy, key: &str) -> Result<(), Error> {
        self.reset_now(policy, key)
    }
}
