//! [`Batched`]: the queue in front of a Redis store. It sends the concurrent decisions of
//! one process to Redis together, one script call for many, with concurrent requests for
//! the same key coalesced into one entry, and sheds decisions beyond its bounds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use compact_str::CompactString;
use hashbrown::HashMap;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use super::batch::{BatchEntry, BatchOp, Decided, JointPart};
use super::joint::joint_of;
use super::RedisStore;
use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::{Error, Overload, StoreError, Unavailable};
use crate::joint::{Check, Joint};
use crate::key;
use crate::policy::Policy;
use crate::reservation::{Reservation, Settle};
use crate::store::{LeaseStore, Store};

/// The default bound on decisions waiting to be sent: beyond it a decision is shed.
pub const DEFAULT_MAX_QUEUED: usize = 16_384;

/// The default bound on the time a decision waits to be sent: a decision still waiting
/// after it is shed. Half a second: far above what a healthy Redis needs to drain a full
/// queue (tens of milliseconds), and below the timeouts of the clients of a typical API.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(500);

/// A [`RedisStore`] whose concurrent decisions travel to Redis together, through a
/// bounded queue.
///
/// - **Batches**: a task on the store's I/O thread collects the decisions waiting to be
///   sent and decides them in one script call, each exactly as a call of its own would
///   (the batch script runs the single-decision script for each). With no call out, a
///   decision is sent at once (with whatever else is already queued): an idle process
///   adds no latency. Behind a call already out, a batch closes when
///   [`max_batch`](BatchedBuilder::max_batch) decisions are waiting or
///   [`linger`](BatchedBuilder::linger) after its first one, and while every one of the
///   [`max_in_flight`](BatchedBuilder::max_in_flight) calls is out it keeps growing until
///   one comes back: a busy process sends fewer, larger calls.
/// - **One outcome per call**: a batch is one call for the store's timeout and circuit
///   breaker, timed on the wire (see [`RedisStore`]); the time its decisions waited here
///   never counts against Redis.
/// - **Sheds what it cannot send in time**: when decisions arrive faster than Redis
///   answers they wait their turn, but never more than
///   [`max_queued`](BatchedBuilder::max_queued) of them per shard (default
///   [`DEFAULT_MAX_QUEUED`]) and never longer than [`max_wait`](BatchedBuilder::max_wait)
///   (default [`DEFAULT_MAX_WAIT`]): beyond either a decision fails with
///   [`Error::Overloaded`] without reaching Redis (nothing counted, nothing to admit;
///   a server answers 503), counted in `ratelimit_shed_decisions_total{reason}`. A
///   decision that waited too long behind calls that failed (Redis stalled, the breaker
///   not open yet) waited for Redis, not for this process: it fails as a store failure
///   ([`Unavailable::Deadline`]), for the failure mode to decide.
/// - **Coalesces hot keys**: decisions for the same policy and key in one batch are one
///   entry carrying every cost; the script decides them in arrival order, so a burst on
///   one key admits exactly what one-by-one calls would, in one round trip.
/// - **Refunds travel too**: a [`Leased`](crate::Leased) store's refunds are entries of
///   the next batch (never shed: they wait for room).
/// - **Observable**: the decisions each call carried go to the `ratelimit_batch_decisions`
///   histogram.
/// - **Cluster: a lane per shard**: the decisions for each master's slots are queued,
///   batched, sent and timed apart, each shard's under its own breaker (see
///   [`RedisStore`]): a master that stalls or dies holds up and fails only its own keys'
///   decisions, while the other masters' keys are decided by Redis as before. In a
///   batch a script's keys must share a slot, so each entry is its own call, all sent
///   together (one outcome for the shard's breaker).
/// - **Unbatched**: [`max_batch(1)`](BatchedBuilder::max_batch) with several calls in
///   flight sends each decision as its own call, through the same bounded queue.
///
/// A failed call fails every decision in it with the same error; wrap the store in
/// [`Guarded`](crate::Guarded) for a failure mode. Dropping a decision's future does not
/// take it out of a batch already sent. The collector ends when the last clone is
/// dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use limiter_core::{Batched, Limit, Limiter, Policy, RedisStore};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStore::builder().connect("redis://127.0.0.1:6379").await?;
/// let store = Batched::builder(redis).max_wait(Duration::from_millis(200)).build();
/// let policy = Policy::new("api", vec![Limit::new(100, Duration::from_secs(60))])?;
/// let limiter = Limiter::new(policy, store);
/// assert!(limiter.check("user:42", 1).await?.is_allowed());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Batched {
    shared: Arc<Shared>,
}

struct Shared {
    store: RedisStore,
    config: BatchConfig,
    /// One queue per shard of the store (see [`RedisStore`]), each with its collector.
    queues: Box<[Queue]>,
}

/// A shard's queue and its bound.
struct Queue {
    jobs: mpsc::UnboundedSender<Job>,
    /// One permit per decision waiting to be sent to this shard, the batches being
    /// formed included. Per shard, so that a stalled master's backlog never takes the
    /// room of decisions for the others.
    room: Arc<Semaphore>,
}

#[derive(Clone, Copy, Debug)]
struct BatchConfig {
    max_batch: usize,
    linger: Duration,
    max_in_flight: usize,
    max_queued: usize,
    max_wait: Duration,
}

/// One decision or settlement waiting for its batch.
struct Job {
    policy: Policy,
    key: CompactString,
    work: Work,
}

enum Work {
    Decide {
        cost: Cost,
        queued_at: Instant,
        /// Its room in the queue, given back when its batch is sent.
        room: Option<OwnedSemaphorePermit>,
        reply: oneshot::Sender<Result<Decided, Error>>,
    },
    Settle {
        settle: Settle,
        reply: SettleReply,
    },
    /// Several (policy, key, cost) decided all or nothing, an entry of its own.
    Joint {
        parts: Vec<JointPart>,
        queued_at: Instant,
        room: Option<OwnedSemaphorePermit>,
        reply: oneshot::Sender<Result<Joint, Error>>,
    },
}

/// Who learns how a settlement went: a caller waiting for it, or a callback run on the
/// store's I/O thread ([`Batched::settle_detached`]).
enum SettleReply {
    Waiting(oneshot::Sender<Result<(), Error>>),
    Detached(Box<dyn FnOnce(Result<(), Error>) + Send>),
}

impl SettleReply {
    fn send(self, result: Result<(), Error>) {
        match self {
            // A caller that gave up has dropped its receiver: nothing to tell it.
            SettleReply::Waiting(reply) => {
                let _ = reply.send(result);
            }
            SettleReply::Detached(done) => done(result),
        }
    }
}

/// Configures a [`Batched`] store.
#[derive(Debug)]
pub struct BatchedBuilder {
    store: RedisStore,
    config: BatchConfig,
}

impl Batched {
    /// Starts configuring batching in front of `store`: batches of at most 256
    /// decisions, a 20 µs linger, 1 call in flight, at most [`DEFAULT_MAX_QUEUED`]
    /// decisions queued for at most [`DEFAULT_MAX_WAIT`].
    pub fn builder(store: RedisStore) -> BatchedBuilder {
        BatchedBuilder {
            store,
            config: BatchConfig {
                max_batch: 256,
                linger: Duration::from_micros(20),
                max_in_flight: 1,
                max_queued: DEFAULT_MAX_QUEUED,
                max_wait: DEFAULT_MAX_WAIT,
            },
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &RedisStore {
        &self.shared.store
    }

    /// Decides `cost` for `key` in the next batch, with the store time of the decision.
    async fn decide(&self, policy: &Policy, key: &str, cost: Cost) -> Result<Decided, Error> {
        let key = key::normalize(key)?;
        // Before queueing, so that a refused new key fails alone, not its whole batch.
        self.shared
            .store
            .refuse_new_under_pressure(policy, &key)
            .await?;
        let queue = self.queue(policy, &key);
        let room = self.room(queue)?;
        let (reply, answer) = oneshot::channel();
        let work = Work::Decide {
            cost,
            queued_at: Instant::now(),
            room: Some(room),
            reply,
        };
        queue
            .jobs
            .send(job(policy, &key, work))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// The queue of the shard serving `key` (normalized) under `policy`.
    fn queue(&self, policy: &Policy, key: &str) -> &Queue {
        let queues = &self.shared.queues;
        &queues[self.shared.store.shards.shard_of(policy, key) % queues.len()]
    }

    /// A decision's place in `queue`, or the decision shed when the queue is full.
    fn room(&self, queue: &Queue) -> Result<OwnedSemaphorePermit, Error> {
        match Arc::clone(&queue.room).try_acquire_owned() {
            Ok(room) => Ok(room),
            Err(TryAcquireError::NoPermits) => {
                Err(shed(Overload::Queued(self.shared.config.max_queued)))
            }
            Err(TryAcquireError::Closed) => Err(stopped()),
        }
    }

    /// Decides `checks` all or nothing in the next batch, as one entry of it.
    async fn decide_joint(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        let mut parts = Vec::with_capacity(checks.len());
        for check in checks {
            let key = key::normalize(check.key)?;
            self.shared
                .store
                .refuse_new_under_pressure(check.policy, &key)
                .await?;
            parts.push((check.policy.clone(), CompactString::from(&*key), check.cost));
        }
        let queue = self.queue(&parts[0].0, &parts[0].1);
        let room = self.room(queue)?;
        let (reply, answer) = oneshot::channel();
        let first = Job {
            policy: parts[0].0.clone(),
            key: parts[0].1.clone(),
            work: Work::Joint {
                parts,
                queued_at: Instant::now(),
                room: Some(room),
                reply,
            },
        };
        queue.jobs.send(first).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Sends a settlement (a lease's refund, a reservation's) in the next batch.
    /// Settlements are never shed: they are bounded by the leases and reservations
    /// admitted, and a lost one would leave units used, or debt uncharged.
    async fn send_settle(&self, policy: &Policy, key: &str, settle: Settle) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.queue_settle(policy, key, settle, SettleReply::Waiting(reply));
        answer.await.map_err(|_| stopped())?
    }

    /// Queues a settlement; a failure to queue it goes to its reply.
    fn queue_settle(&self, policy: &Policy, key: &str, settle: Settle, reply: SettleReply) {
        let key = match key::normalize(key) {
            Ok(key) => key,
            Err(error) => return reply.send(Err(error)),
        };
        let job = job(policy, &key, Work::Settle { settle, reply });
        if let Err(mpsc::error::SendError(job)) = self.queue(policy, &key).jobs.send(job) {
            if let Work::Settle { reply, .. } = job.work {
                reply.send(Err(stopped()));
            }
        }
    }

    /// Settles `reservation` as [`Store::settle`] does, in the next batch, without
    /// waiting: `done` gets the outcome on the store's I/O thread (at once when there is
    /// nothing to settle). For a caller that must not wait, or spawn a task, per
    /// settlement: a server settling after every response.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use limiter_core::{Batched, Limit, Policy, RedisStore, Store};
    ///
    /// # async fn example() -> Result<(), limiter_core::Error> {
    /// let store = Batched::builder(RedisStore::builder().connect("redis://127.0.0.1:6379").await?).build();
    /// let policy = Policy::new("llm", vec![Limit::new(10_000, Duration::from_secs(60)).counting("tokens")]).unwrap();
    /// let reservation = store.reserve(&policy, "user-1", 2_000).await?;
    /// store.settle_detached(&policy, "user-1", reservation, 1_200, |result| {
    ///     if let Err(error) = result {
    ///         eprintln!("not settled, the estimate stays: {error}");
    ///     }
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn settle_detached(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost>,
        done: impl FnOnce(Result<(), Error>) + Send + 'static,
    ) {
        let Some(settle) = reservation.settlement(actual.into()) else {
            return done(Ok(()));
        };
        self.queue_settle(policy, key, settle, SettleReply::Detached(Box::new(done)));
    }
}

fn job(policy: &Policy, key: &str, work: Work) -> Job {
    Job {
        policy: policy.clone(),
        key: CompactString::from(key),
        work,
    }
}

impl std::fmt::Debug for Batched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batched")
            .field("store", &self.shared.store)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn stopped() -> Error {
    Error::Store(StoreError::Unavailable(Unavailable::IoStopped))
}

/// The answer to a decision that waited `max_wait` without being sent. Behind calls
/// that failed (a stalled Redis, before the breaker has opened), Redis is why it waited:
/// a store failure, for the failure mode to decide. Behind calls that succeeded, this
/// process fell behind: it is shed.
fn waited_too_long(store: &RedisStore, shard: usize, max_wait: Duration) -> Error {
    if store.shards.wire(shard).is_failing() {
        Error::Store(StoreError::Unavailable(Unavailable::Deadline(max_wait)))
    } else {
        shed(Overload::Waited(max_wait))
    }
}

/// A shed decision, counted.
fn shed(overload: Overload) -> Error {
    metrics::counter!(crate::metric_names::SHED_DECISIONS_TOTAL, "reason" => overload.reason())
        .increment(1);
    Error::Overloaded(overload)
}

impl BatchedBuilder {
    /// The most decisions one batch carries (default 256; at least 1). With 1 (and
    /// several calls in flight) every decision is its own call.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.config.max_batch = max_batch.max(1);
        self
    }

    /// How long a batch waits for more decisions after its first while another call is
    /// out (default 20 µs). The wait yields to other tasks rather than sleeping, since
    /// timers are coarser than this; zero sends what is queued at once.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger = linger;
        self
    }

    /// How many batch calls may be out at once (default 1; at least 1). While all are
    /// out, the next batch keeps growing. With one, batches reach Redis in the order they
    /// were formed, so every key's requests are decided in arrival order; with more, two
    /// calls may overtake each other and so may two requests of one key in them (counts
    /// stay exact). More calls in flight did not raise throughput on the 2-core
    /// benchmark machine (see BENCHMARKS.md).
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.config.max_in_flight = max_in_flight.max(1);
        self
    }

    /// The most decisions waiting to be sent to one shard (default
    /// [`DEFAULT_MAX_QUEUED`]; at least 1; a standalone Redis is one shard, a Cluster
    /// one per master): a decision arriving beyond it is shed with
    /// [`Overload::Queued`]. Bounds memory and, with [`max_wait`](Self::max_wait), the
    /// wait under overload. Per shard, so that a stalled master's backlog sheds only
    /// its own keys' decisions.
    pub fn max_queued(mut self, max_queued: usize) -> Self {
        self.config.max_queued = max_queued.max(1);
        self
    }

    /// The longest a decision waits to be sent (default [`DEFAULT_MAX_WAIT`]): one still
    /// waiting when its batch goes out is shed with [`Overload::Waited`] instead, or,
    /// when the last call to Redis failed, fails with [`Unavailable::Deadline`] (Redis
    /// held it up: the failure mode decides).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.config.max_wait = max_wait;
        self
    }

    /// Builds the store and starts its collectors (one per shard) on the store's I/O
    /// thread.
    pub fn build(self) -> Batched {
        let queues = (0..self.store.shards.len())
            .map(|shard| {
                let (jobs, queued) = mpsc::unbounded_channel();
                let lane = Lane {
                    store: self.store.clone(),
                    shard,
                    config: self.config,
                };
                self.store.io.spawn(collect(lane, queued));
                Queue {
                    jobs,
                    room: Arc::new(Semaphore::new(self.config.max_queued)),
                }
            })
            .collect();
        Batched {
            shared: Arc::new(Shared {
                store: self.store,
                config: self.config,
                queues,
            }),
        }
    }
}

/// What a collector sends to: one shard of a store.
#[derive(Clone)]
struct Lane {
    store: RedisStore,
    shard: usize,
    config: BatchConfig,
}

/// A shard's collector: forms its batches and sends each in a task of its own.
async fn collect(lane: Lane, mut queue: mpsc::UnboundedReceiver<Job>) {
    let config = lane.config;
    let calls = Arc::new(Semaphore::new(config.max_in_flight));
    while let Some(first) = queue.recv().await {
        // Sized to what is queued: most batches carry a few decisions, and a vector sized
        // for many is a large allocation (a slow path of the allocator) per batch.
        let mut jobs = Vec::with_capacity((queue.len() + 1).min(config.max_batch));
        jobs.push(first);
        take_queued(&mut queue, &mut jobs, config.max_batch);
        // Linger only behind a call already out: an idle process sends at once.
        let busy = calls.available_permits() < config.max_in_flight;
        if busy && jobs.len() < config.max_batch && !config.linger.is_zero() {
            let until = Instant::now() + config.linger;
            while jobs.len() < config.max_batch && Instant::now() < until {
                tokio::task::yield_now().await;
                take_queued(&mut queue, &mut jobs, config.max_batch);
            }
        }
        let Some(permit) = call_slot(&calls, &mut queue, &mut jobs, config.max_batch).await else {
            return;
        };
        tokio::spawn(send(lane.clone(), jobs, permit));
    }
}

fn take_queued(queue: &mut mpsc::UnboundedReceiver<Job>, jobs: &mut Vec<Job>, max: usize) {
    while jobs.len() < max {
        match queue.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => return,
        }
    }
}

/// Waits for a free call slot, adding arriving decisions to the batch meanwhile.
async fn call_slot(
    calls: &Arc<Semaphore>,
    queue: &mut mpsc::UnboundedReceiver<Job>,
    jobs: &mut Vec<Job>,
    max: usize,
) -> Option<OwnedSemaphorePermit> {
    let mut open = true;
    loop {
        if jobs.len() >= max || !open {
            return Arc::clone(calls).acquire_owned().await.ok();
        }
        tokio::select! {
            biased;
            permit = Arc::clone(calls).acquire_owned() => return permit.ok(),
            job = queue.recv() => match job {
                Some(job) => {
                    jobs.push(job);
                    take_queued(queue, jobs, max);
                }
                None => open = false,
            },
        }
    }
}

/// One entry of a batch: the job whose policy and key it is, and either the costs in
/// arrival order and the job each cost is for, or a settlement (refunds of one key
/// merged into one: see [`Settle::merged`]).
struct Group {
    first: usize,
    costs: SmallVec<[Cost; 4]>,
    jobs: SmallVec<[usize; 4]>,
    settle: Option<Settle>,
}

/// Sends one batch: decisions that waited past `max_wait` are shed, decisions for the
/// same (policy, key) become one entry with their costs in arrival order, each refund an
/// entry of its own; every job gets its answer.
async fn send(lane: Lane, mut jobs: Vec<Job>, permit: OwnedSemaphorePermit) {
    let (store, shard, max_wait) = (&lane.store, lane.shard, lane.config.max_wait);
    let now = Instant::now();
    jobs.retain_mut(|job| match &mut job.work {
        Work::Decide {
            queued_at, reply, ..
        } if now.duration_since(*queued_at) > max_wait => {
            // A caller that gave up has dropped its receiver: nothing to tell it.
            let (closed, _) = oneshot::channel();
            let reply = std::mem::replace(reply, closed);
            let _ = reply.send(Err(waited_too_long(store, shard, max_wait)));
            false
        }
        Work::Joint {
            queued_at, reply, ..
        } if now.duration_since(*queued_at) > max_wait => {
            let (closed, _) = oneshot::channel();
            let reply = std::mem::replace(reply, closed);
            let _ = reply.send(Err(waited_too_long(store, shard, max_wait)));
            false
        }
        Work::Decide { room, .. } | Work::Joint { room, .. } => {
            // Sent now: its room in the queue is free for the next decision.
            drop(room.take());
            true
        }
        Work::Settle { .. } => true,
    });
    if jobs.is_empty() {
        return;
    }
    let groups = group(&jobs);
    let entries: Vec<BatchEntry<'_>> = groups.iter().map(|g| entry(&jobs[g.first], g)).collect();
    metrics::histogram!(crate::metric_names::BATCH_DECISIONS).record(jobs.len() as f64);
    let result = store.decide_batch(shard, &entries).await;
    drop(permit);
    drop(entries);
    let mut answers: Vec<Option<Decided>> = Vec::new();
    answers.resize_with(jobs.len(), || None);
    let mut joints: Vec<Option<Joint>> = Vec::new();
    joints.resize_with(jobs.len(), || None);
    let result = result.map(|decided| {
        let mut decided = decided.into_iter();
        for group in &groups {
            if let Work::Joint { parts, .. } = &jobs[group.first].work {
                let decisions = decided.by_ref().take(parts.len()).map(|(d, _)| d).collect();
                joints[group.first] = Some(joint_of(decisions));
                continue;
            }
            for (&job, decision) in group.jobs.iter().zip(decided.by_ref()) {
                answers[job] = Some(decision);
            }
        }
    });
    // A caller that gave up has dropped its receiver: there is nothing to tell it.
    for ((job, answer), joint) in jobs.into_iter().zip(answers).zip(joints) {
        match (job.work, &result) {
            (Work::Joint { reply, .. }, Ok(_)) => {
                if let Some(joint) = joint {
                    let _ = reply.send(Ok(joint));
                }
            }
            (Work::Joint { reply, .. }, Err(err)) => {
                let _ = reply.send(Err(err.clone()));
            }
            (Work::Decide { reply, .. }, Ok(_)) => {
                if let Some(answer) = answer {
                    let _ = reply.send(Ok(answer));
                }
            }
            (Work::Decide { reply, .. }, Err(err)) => {
                let _ = reply.send(Err(err.clone()));
            }
            (Work::Settle { reply, .. }, Ok(_)) => reply.send(Ok(())),
            (Work::Settle { reply, .. }, Err(err)) => reply.send(Err(err.clone())),
        }
    }
}

/// The entries of a batch: decisions for one (policy, key) together, and its refunds
/// together where they give back to the same windows; other settlements alone.
fn group(jobs: &[Job]) -> Vec<Group> {
    let mut index: HashMap<(&Policy, &str), usize> = HashMap::with_capacity(jobs.len());
    let mut refunds: HashMap<(&Policy, &str), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let alone = Group {
            first: i,
            costs: SmallVec::new(),
            jobs: SmallVec::new(),
            settle: None,
        };
        match job.work {
            Work::Joint { .. } => groups.push(Group {
                jobs: SmallVec::from_slice(&[i]),
                ..alone
            }),
            Work::Decide { cost, .. } => {
                let at = *index
                    .entry((&job.policy, job.key.as_str()))
                    .or_insert_with(|| {
                        groups.push(alone);
                        groups.len() - 1
                    });
                groups[at].costs.push(cost);
                groups[at].jobs.push(i);
            }
            Work::Settle { settle, .. } => {
                let at = (&job.policy, job.key.as_str());
                let merged = refunds.get(&at).and_then(|&g| {
                    let merged = groups[g].settle?.merged(&settle, &job.policy)?;
                    Some((g, merged))
                });
                if let Some((g, merged)) = merged {
                    groups[g].settle = Some(merged);
                    continue;
                }
                refunds.insert(at, groups.len());
                groups.push(Group {
                    settle: Some(settle),
                    ..alone
                });
            }
        }
    }
    groups
}

fn entry<'a>(job: &'a Job, group: &'a Group) -> BatchEntry<'a> {
    let op = match (&job.work, group.settle) {
        (Work::Joint { parts, .. }, _) => BatchOp::Joint(parts),
        (_, Some(settle)) => BatchOp::Settle(settle),
        (_, None) => BatchOp::Decide(&group.costs),
    };
    BatchEntry {
        policy: &job.policy,
        key: &job.key,
        op,
    }
}

impl Store for Batched {
    /// One entry of the next batch (decide.lua over every policy's windows, all or
    /// nothing) on a standalone Redis; on a Cluster, or with a key checked twice,
    /// reserving in order, each reservation in a batch.
    async fn check_all(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        if !self.shared.store.joins(checks) {
            return crate::joint::in_order(self, checks).await;
        }
        self.decide_joint(checks).await
    }

    async fn check(
        &self,
        policy: &Policy,
        key: &str,
        cost: impl Into<Cost> + Send,
    ) -> Result<Decision, Error> {
        Ok(self.decide(policy, key, cost.into()).await?.0)
    }

    async fn reserve(
        &self,
        policy: &Policy,
        key: &str,
        estimate: impl Into<Cost> + Send,
    ) -> Result<Reservation, Error> {
        let estimate = estimate.into();
        let (decision, at) = self.decide(policy, key, estimate).await?;
        Ok(Reservation::new(decision, estimate, at))
    }

    async fn settle(
        &self,
        policy: &Policy,
        key: &str,
        reservation: Reservation,
        actual: impl Into<Cost> + Send,
    ) -> Result<(), Error> {
        match reservation.settlement(actual.into()) {
            Some(settle) => self.send_settle(policy, key, settle).await,
            None => Ok(()),
        }
    }

    /// Resets at once, outside the batches.
    fn reset(&self, policy: &Policy, key: &str) -> impl Future<Output = Result<(), Error>> + Send {
        self.shared.store.reset(policy, key)
    }

    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send {
        self.shared.store.ping()
    }
}

impl LeaseStore for Batched {
    async fn take(&self, policy: &Policy, key: &str, units: u64) -> Result<Decided, Error> {
        self.decide(policy, key, units.into()).await
    }

    fn refund(
        &self,
        policy: &Policy,
        key: &str,
        taken: u64,
        unused: u64,
        taken_at_us: i64,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let settle = Settle {
            reserved: taken.into(),
            actual: taken.saturating_sub(unused).into(),
            at: taken_at_us,
            marker: None,
        };
        self.send_settle(policy, key, settle)
    }
}
