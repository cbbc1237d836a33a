//! The task that ends leases: at each lease's expiry it takes the lease out of its lane
//! and gives its unused units back to the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::lane::{Lane, Lease};
use super::Stats;
use crate::store::LeaseStore;

/// A lease to end at `at`, unless its lane has replaced it by then.
pub(super) struct Expiry {
    pub(super) at: Instant,
    pub(super) lane: Arc<Lane>,
    pub(super) id: u64,
}

/// Runs until every [`Leased`](super::Leased) clone is gone, then ends the leases still
/// held at once: nothing stays reserved for a process that no longer admits.
pub(super) async fn run<S: LeaseStore>(
    store: Arc<S>,
    stats: Arc<Stats>,
    mut incoming: mpsc::UnboundedReceiver<Expiry>,
) {
    // Ordered by expiry, then by arrival (lease ids only grow).
    let mut due: BTreeMap<(Instant, u64), Arc<Lane>> = BTreeMap::new();
    loop {
        let next = due.first_key_value().map(|(&(at, _), _)| at);
        tokio::select! {
            message = incoming.recv() => match message {
                Some(expiry) => {
                    due.insert((expiry.at, expiry.id), expiry.lane);
                }
                None => break,
            },
            () = sleep_until(next), if next.is_some() => {
                let now = Instant::now();
                while let Some(entry) = due.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let ((_, id), lane) = entry.remove_entry();
                    end(&store, &stats, &lane, id);
                }
            }
        }
    }
    for ((_, id), lane) in due {
        end(&store, &stats, &lane, id);
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

fn end<S: LeaseStore>(store: &Arc<S>, stats: &Arc<Stats>, lane: &Arc<Lane>, id: u64) {
    let lease = lane.state.lock().end(id);
    if let Some(lease) = lease {
        give_back(store, stats, lane, lease);
    }
}

/// Refunds a lease that has left its lane (expired or replaced), in a task of its own so
/// that a slow store never delays other expiries. Each lease leaves its lane once, under
/// the lane's lock, so its units are given back at most once.
pub(super) fn give_back<S: LeaseStore>(
    store: &Arc<S>,
    stats: &Arc<Stats>,
    lane: &Arc<Lane>,
    lease: Lease,
) {
    if lease.left == 0 {
        stats.lease_ended(0, true);
        return;
    }
    let (store, stats, lane) = (Arc::clone(store), Arc::clone(stats), Arc::clone(lane));
    tokio::spawn(async move {
        let result = store
            .refund(
                &lane.policy,
                &lane.key,
                lease.taken,
                lease.left,
                lease.taken_at_us,
            )
            .await;
        if let Err(err) = &result {
            tracing::warn!(policy = lane.policy.name(), error = %err, units = lease.left,
                "rate-limit lease refund failed: its units stay used until their windows pass");
        }
        stats.lease_ended(lease.left, result.is_ok());
    });
}
