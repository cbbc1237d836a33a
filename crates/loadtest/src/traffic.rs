//! The open-loop generator: a dispatcher releases each request at its scheduled time
//! (schedule.rs) to the next instance in turn, and a pool of keep-alive connections per
//! instance sends them. A request that finds every connection busy waits, and that wait
//! is part of its latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Mutex};

use crate::http::{self, Headers};
use crate::identities::{self, Identities};
use crate::policy::{Endpoint, MIX};
use crate::record::Recorder;
use crate::schedule::Schedule;

/// Connections per instance: enough for a few hundred requests in flight each while a
/// Redis node stalls.
const CONNECTIONS: usize = 96;

/// Identities of the storm's fresh client addresses start here, past every real user.
const STORM_BASE: u32 = 1 << 20;

/// The memory-pressure storm: while on, one request in four gets an extra request to
/// `target` from a fresh client address, each address used twice (admitted, then denied
/// and remembered in that instance's local cache of denials).
#[derive(Default)]
pub struct Storm {
    on: AtomicBool,
    target: AtomicU32,
    next: AtomicU32,
}

impl Storm {
    pub fn set(&self, on: bool, target: usize) {
        self.target
            .store(u32::try_from(target).unwrap_or(0), Ordering::Relaxed);
        self.on.store(on, Ordering::Relaxed);
    }

    /// The next storm request's (instance, identity), if the storm is on.
    fn next(&self) -> Option<(usize, u32)> {
        if !self.on.load(Ordering::Relaxed) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Some((
            self.target.load(Ordering::Relaxed) as usize,
            STORM_BASE + n / 2,
        ))
    }

    /// Distinct addresses the storm used.
    pub fn addresses(&self) -> u32 {
        self.next.load(Ordering::Relaxed).div_ceil(2)
    }
}

/// One request to send.
struct Job {
    second: u64,
    instance: usize,
    due: Instant,
    endpoint: Endpoint,
    identity: u32,
}

/// Sends `schedule` from `start` to `targets`, recording into `recorder`; returns when
/// every request has its answer or its timeout.
pub async fn run(
    schedule: &Schedule,
    start: Instant,
    targets: &[SocketAddr],
    ids: Arc<Identities>,
    recorder: Arc<Recorder>,
    storm: Arc<Storm>,
) {
    let mut queues = Vec::new();
    let mut workers = tokio::task::JoinSet::new();
    for &addr in targets {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..CONNECTIONS {
            let (rx, ids, recorder) = (Arc::clone(&rx), Arc::clone(&ids), Arc::clone(&recorder));
            workers.spawn(worker(addr, rx, ids, recorder));
        }
        queues.push(tx);
    }
    let mut rng = SmallRng::seed_from_u64(0x21);
    let mut turn = 0usize;
    for (n, (second, offset)) in schedule.send_times().enumerate() {
        let due = start + offset;
        tokio::time::sleep_until(due.into()).await;
        let endpoint = pick_endpoint(&mut rng);
        let identity = identities::pick(&mut rng);
        turn = (turn + 1) % queues.len();
        // A closed queue means its workers are gone (the runtime is shutting down).
        let _ = queues[turn].send(Job {
            second,
            instance: turn,
            due,
            endpoint,
            identity,
        });
        if n % 4 == 0 {
            if let Some((target, identity)) = storm.next() {
                let instance = target % queues.len();
                let endpoint = Endpoint::Storm;
                let _ = queues[instance].send(Job {
                    second,
                    instance,
                    due,
                    endpoint,
                    identity,
                });
            }
        }
    }
    drop(queues);
    while workers.join_next().await.is_some() {}
}

fn pick_endpoint(rng: &mut impl Rng) -> Endpoint {
    let mut x: f64 = rng.random();
    for (endpoint, share) in MIX {
        if x < share {
            return endpoint;
        }
        x -= share;
    }
    MIX[MIX.len() - 1].0
}

/// One connection: takes the next job of its instance, sends it, records the answer;
/// reconnects after a failure. Ends when the queue is closed and empty.
async fn worker(
    addr: SocketAddr,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    ids: Arc<Identities>,
    recorder: Arc<Recorder>,
) {
    let mut sender = None;
    loop {
        let Some(job) = queue.lock().await.recv().await else {
            return;
        };
        let path = job.endpoint.path(job.identity);
        let address = identities::address(job.identity);
        let headers = Headers {
            bearer: job.endpoint.signed().then(|| ids.bearer(job.identity)),
            forwarded_for: Some(&address),
        };
        let current = match sender.take() {
            Some(s) => Ok(s),
            None => http::connect(addr).await,
        };
        let answer = match current {
            Ok(mut s) => match http::get(&mut s, addr, &path, &headers).await {
                Ok(answer) => {
                    sender = Some(s);
                    Some(answer)
                }
                Err(_) => None, // the connection is dropped with `s`
            },
            Err(_) => None,
        };
        let key = (job.endpoint, job.identity);
        recorder.record(job.second, job.instance, key, answer, job.due.elapsed());
    }
}
