//! [`Batched`]: a Redis store wrapper that sends the concurrent decisions of one process
//! to Redis together, one script call for many, with concurrent requests for the same
//! key coalesced into one entry.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use compact_str::CompactString;
use hashbrown::HashMap;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::redis::{BatchEntry, BatchOp, Decided};
use super::{LeaseStore, RedisStore, Store};
use crate::decision::Decision;
use crate::error::{Error, StoreError, Unavailable};
use crate::key;
use crate::policy::Policy;

/// A [`RedisStore`] whose concurrent decisions travel to Redis together.
///
/// - **Batches**: a background task collects the decisions waiting to be sent and
///   decides them in one script call, each exactly as a call of its own would (the batch
///   script runs the single-decision script for each). With no call out, a decision is
///   sent at once (with whatever else is already queued): an idle process adds no
///   latency. Behind a call already out, a batch closes when
///   [`max_batch`](BatchedBuilder::max_batch) decisions are waiting or
///   [`linger`](BatchedBuilder::linger) after its first one, and while every one of the
///   [`max_in_flight`](BatchedBuilder::max_in_flight) calls is out it keeps growing until
///   one comes back: a busy process sends fewer, larger calls.
/// - **Coalesces hot keys**: decisions for the same policy and key in one batch are one
///   entry carrying every cost; the script decides them in arrival order, so a burst on
///   one key admits exactly what one-by-one calls would, in one round trip.
/// - **Refunds travel too**: a [`Leased`](crate::Leased) store's refunds are entries of
///   the next batch.
/// - **Observable**: the decisions each call carried go to the `ratelimit_batch_decisions`
///   histogram.
/// - **Cluster**: a script's keys must share a slot, so each entry is its own call, all
///   sent together.
///
/// A failed call fails every decision in it with the same error; wrap the batched store
/// in [`Guarded`](crate::Guarded) for a deadline and a failure mode. Dropping a decision's
/// future does not take it out of a batch already sent. The collector task is started by
/// the first decision (so in its Tokio runtime) and ends when the last clone is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use limiter_core::{Batched, Limit, Limiter, Policy, RedisStore};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisStore::builder().connect("redis://127.0.0.1:6379").await?;
/// let store = Batched::builder(redis).linger(Duration::from_micros(20)).build();
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
    /// Started by the first decision, inside the caller's runtime.
    queue: OnceLock<mpsc::Sender<Job>>,
}

#[derive(Clone, Copy, Debug)]
struct BatchConfig {
    max_batch: usize,
    linger: Duration,
    max_in_flight: usize,
    queue: usize,
}

/// One decision or refund waiting for its batch.
struct Job {
    policy: Policy,
    key: CompactString,
    work: Work,
}

enum Work {
    Decide {
        cost: u64,
        reply: oneshot::Sender<Result<Decided, Error>>,
    },
    Refund {
        taken: u64,
        unused: u64,
        taken_at: i64,
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

/// Configures a [`Batched`] store.
#[derive(Debug)]
pub struct BatchedBuilder {
    store: RedisStore,
    config: BatchConfig,
}

impl Batched {
    /// Starts configuring batching in front of `store`: batches of at most 256
    /// decisions, a 20 µs linger, 1 call in flight, 16,384 decisions queued at most.
    pub fn builder(store: RedisStore) -> BatchedBuilder {
        BatchedBuilder {
            store,
            config: BatchConfig {
                max_batch: 256,
                linger: Duration::from_micros(20),
                max_in_flight: 1,
                queue: 16_384,
            },
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &RedisStore {
        &self.shared.store
    }

    /// Decides `cost` for `key` in the next batch, with the store time of the decision.
    async fn decide(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decided, Error> {
        // Before queueing, so that a refused new key fails alone, not its whole batch.
        self.shared
            .store
            .refuse_new_under_pressure(policy, &key::normalize(key)?)
            .await?;
        let (reply, answer) = oneshot::channel();
        self.enqueue(policy, key, Work::Decide { cost, reply })
            .await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Sends a lease refund in the next batch.
    async fn give_back(
        &self,
        policy: &Policy,
        key: &str,
        taken: u64,
        unused: u64,
        taken_at: i64,
    ) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        let work = Work::Refund {
            taken,
            unused,
            taken_at,
            reply,
        };
        self.enqueue(policy, key, work).await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn enqueue(&self, policy: &Policy, key: &str, work: Work) -> Result<(), Error> {
        let key = key::normalize(key)?;
        let job = Job {
            policy: policy.clone(),
            key: CompactString::from(key.as_ref()),
            work,
        };
        let queue = self.shared.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.shared.config.queue);
            tokio::spawn(collect(self.shared.store.clone(), rx, self.shared.config));
            tx
        });
        queue.send(job).await.map_err(|_| stopped())
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
    Error::Store(StoreError::Unavailable(Unavailable::BatcherStopped))
}

impl BatchedBuilder {
    /// The most decisions one batch carries (default 256; at least 1).
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

    /// The most decisions waiting to be sent (default 16,384; at least 1): beyond it
    /// callers wait for room, which bounds memory under overload.
    pub fn queue(mut self, queue: usize) -> Self {
        self.config.queue = queue.max(1);
        self
    }

    /// Builds the store. Its collector task starts with the first decision.
    pub fn build(self) -> Batched {
        Batched {
            shared: Arc::new(Shared {
                store: self.store,
                config: self.config,
                queue: OnceLock::new(),
            }),
        }
    }
}

/// The collector: forms batches and sends each in a task of its own.
async fn collect(store: RedisStore, mut queue: mpsc::Receiver<Job>, config: BatchConfig) {
    let calls = Arc::new(Semaphore::new(config.max_in_flight));
    while let Some(first) = queue.recv().await {
        let mut jobs = Vec::with_capacity(config.max_batch.min(64));
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
        tokio::spawn(send(store.clone(), jobs, permit));
    }
}

fn take_queued(queue: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, max: usize) {
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
    queue: &mut mpsc::Receiver<Job>,
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

/// One entry of a batch: the job whose policy and key it is, the costs in arrival order
/// and the job each cost is for (a refund: its job alone, no cost).
type Group = (usize, SmallVec<[u64; 4]>, SmallVec<[usize; 4]>);

/// Sends one batch: decisions for the same (policy, key) become one entry with their
/// costs in arrival order, each refund an entry of its own; every job gets its answer.
async fn send(store: RedisStore, jobs: Vec<Job>, permit: OwnedSemaphorePermit) {
    let mut index: HashMap<(&Policy, &str), usize> = HashMap::with_capacity(jobs.len());
    let mut groups: Vec<Group> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match job.work {
            Work::Decide { cost, .. } => {
                let at = *index
                    .entry((&job.policy, job.key.as_str()))
                    .or_insert_with(|| {
                        groups.push((i, SmallVec::new(), SmallVec::new()));
                        groups.len() - 1
                    });
                groups[at].1.push(cost);
                groups[at].2.push(i);
            }
            Work::Refund { .. } => groups.push((i, SmallVec::new(), SmallVec::new())),
        }
    }
    let entries: Vec<BatchEntry<'_>> = groups
        .iter()
        .map(|(first, costs, _)| {
            let job = &jobs[*first];
            let op = match job.work {
                Work::Decide { .. } => BatchOp::Decide(costs),
                Work::Refund {
                    taken,
                    unused,
                    taken_at,
                    ..
                } => BatchOp::Refund {
                    taken,
                    unused,
                    taken_at,
                },
            };
            BatchEntry {
                policy: &job.policy,
                key: &job.key,
                op,
            }
        })
        .collect();
    metrics::histogram!(crate::metric_names::BATCH_DECISIONS).record(jobs.len() as f64);
    let result = store.decide_batch(&entries).await;
    drop(permit);
    drop(entries);
    drop(index);
    let mut decided = match result {
        Ok(decided) => Ok(decided.into_iter()),
        Err(err) => Err(err),
    };
    let mut answers: Vec<Option<Result<Decided, Error>>> = Vec::new();
    answers.resize_with(jobs.len(), || None);
    if let Ok(decided) = &mut decided {
        let order = groups.iter().flat_map(|(_, _, jobs)| jobs.iter().copied());
        for (job, decision) in order.zip(decided) {
            answers[job] = Some(Ok(decision));
        }
    }
    // A caller that gave up has dropped its receiver: there is nothing to tell it.
    for (job, answer) in jobs.into_iter().zip(answers) {
        match (job.work, &decided) {
            (Work::Decide { reply, .. }, Ok(_)) => {
                if let Some(answer) = answer {
                    let _ = reply.send(answer);
                }
            }
            (Work::Decide { reply, .. }, Err(err)) => {
                let _ = reply.send(Err(err.clone()));
            }
            (Work::Refund { reply, .. }, Ok(_)) => {
                let _ = reply.send(Ok(()));
            }
            (Work::Refund { reply, .. }, Err(err)) => {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

impl Store for Batched {
    async fn check(&self, policy: &Policy, key: &str, cost: u64) -> Result<Decision, Error> {
        Ok(self.decide(policy, key, cost).await?.0)
    }

    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send {
        self.shared.store.ping()
    }
}

impl LeaseStore for Batched {
    async fn take(&self, policy: &Policy, key: &str, units: u64) -> Result<Decided, Error> {
        self.decide(policy, key, units).await
    }

    fn refund(
        &self,
        policy: &Policy,
        key: &str,
        taken: u64,
        unused: u64,
        taken_at_us: i64,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        self.give_back(policy, key, taken, unused, taken_at_us)
    }
}
