//! The flood phase (as examples/flood.rs): one global key, several hundred keep-alive
//! connections spread over the instances, all opened first, then released together
//! behind a barrier, each sending its share back to back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Barrier;

use crate::http::{self, Headers};
use crate::policy::Endpoint;

/// The flood's answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct FloodResult {
    pub conns: usize,
    pub sent: u64,
    pub admitted: u64,
    pub denied: u64,
    pub degraded: u64,
    pub shed: u64,
    pub errors: u64,
    pub limit: u64,
    pub seconds: f64,
}

impl FloodResult {
    fn add(&mut self, other: &FloodResult) {
        self.sent += other.sent;
        self.admitted += other.admitted;
        self.denied += other.denied;
        self.degraded += other.degraded;
        self.shed += other.shed;
        self.errors += other.errors;
    }
}

/// Sends `3 * limit` requests to the flood key over `conns` connections.
pub async fn run(targets: &[SocketAddr], conns: usize, limit: u64) -> FloodResult {
    let total = 3 * limit;
    let barrier = Arc::new(Barrier::new(conns + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns {
        let addr = targets[c % targets.len()];
        // The first `total % conns` connections send one more.
        let share = total / conns as u64 + u64::from((c as u64) < total % conns as u64);
        let barrier = Arc::clone(&barrier);
        tasks.spawn(connection(addr, share, barrier));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut result = FloodResult {
        conns,
        limit,
        ..FloodResult::default()
    };
    while let Some(done) = tasks.join_next().await {
        if let Ok(part) = done {
            result.add(&part);
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

async fn connection(addr: SocketAddr, share: u64, barrier: Arc<Barrier>) -> FloodResult {
    let mut tally = FloodResult::default();
    let mut sender = http::connect(addr).await.ok();
    barrier.wait().await;
    let path = Endpoint::Flood.path(0);
    for _ in 0..share {
        tally.sent += 1;
        let mut current = match sender.take() {
            Some(s) => s,
            None => match http::connect(addr).await {
                Ok(s) => s,
                Err(_) => {
                    tally.errors += 1;
                    continue;
                }
            },
        };
        match http::get(&mut current, addr, &path, &Headers::default()).await {
            Ok(a) => {
                match a.status {
                    200..=299 => tally.admitted += 1,
                    429 => tally.denied += 1,
                    503 => tally.shed += 1,
                    _ => tally.errors += 1,
                }
                if a.degraded {
                    tally.degraded += 1;
                }
                sender = Some(current);
            }
            Err(_) => tally.errors += 1,
        }
    }
    tally
}
