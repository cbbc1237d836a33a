//! Many decisions and settlements in one script call: `batch.lua`, the wrapper that runs
//! `decide.lua` for every cost of every decision entry, and `refund.lua` then a forced
//! `decide.lua` for every settlement.

use super::joint::push_joint_args;
use super::refund::{push_settle_args, settle_arg_count};
use super::reply::{parse_parts, parse_reply, reply_len, windows_len};
use super::{
    key_count, policy_arg_count, protocol, push_cost, push_policy_args, store_error, Connection,
    RedisStore,
};
use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::{Error, StoreError};
use crate::key;
use crate::policy::Policy;
use crate::reservation::Settle;

/// One entry of a batch, for one (normalized) key under one policy.
pub(crate) struct BatchEntry<'a> {
    pub(crate) policy: &'a Policy,
    pub(crate) key: &'a str,
    pub(crate) op: BatchOp<'a>,
}

/// What an entry does.
pub(crate) enum BatchOp<'a> {
    /// Decides every cost, in order (at least one).
    Decide(&'a [Cost]),
    /// Decides several (policy, key, cost) all or nothing (see `joint.rs`): the entry's
    /// own policy and key are the first part's. Replies one decision per part.
    Joint(&'a [JointPart]),
    /// Settles a lease or a reservation: gives back what it did not use, charges what
    /// it used beyond what it took.
    Settle(Settle),
}

/// One part of a joint entry: a policy, a normalized key under it, and the cost.
pub(crate) type JointPart = (Policy, compact_str::CompactString, Cost);

impl BatchEntry<'_> {
    /// How many decisions the entry replies: one per cost, one per joint part, none for a
    /// settlement.
    fn replies(&self) -> usize {
        match self.op {
            BatchOp::Decide(costs) => costs.len(),
            BatchOp::Joint(parts) => parts.len(),
            BatchOp::Settle(_) => 0,
        }
    }
}

/// A decision and the store time (Redis `TIME`, µs) it was made at.
pub(crate) type Decided = (Decision, i64);

/// A [`BatchOp`] that owns its figures, to be sent to the I/O thread.
pub(super) enum OwnedOp {
    Decide(Cost),
    Settle(Settle),
}

impl RedisStore {
    /// Runs every entry in order: each cost of a decision entry decided exactly as
    /// [`Store::check`](crate::Store::check) would one by one, each refund as
    /// [`LeaseStore::refund`](crate::LeaseStore::refund) and
    /// [`Store::settle`](crate::Store::settle) would. Returns one decision per
    /// cost, in that order.
    ///
    /// On a standalone Redis the whole batch is one call. On a Cluster a script's keys
    /// must share a slot, so each entry (whose keys share a hash tag) is its own call;
    /// the calls travel together over the cluster connection's pipelined connections.
    /// Either way the batch is one outcome for the timeout and the breaker of `shard`,
    /// the shard serving its keys. On the I/O thread only.
    pub(super) async fn decide_batch(
        &self,
        shard: usize,
        entries: &[BatchEntry<'_>],
    ) -> Result<Vec<Decided>, Error> {
        let decisions = entries.iter().map(|e| e.replies().max(1)).sum();
        self.on_wire(shard, decisions, self.send_batch(entries))
            .await
    }

    async fn send_batch(&self, entries: &[BatchEntry<'_>]) -> Result<Vec<Decided>, Error> {
        if matches!(self.conn, Connection::Single(_)) {
            return self.call_batch(entries).await;
        }
        let calls = entries
            .iter()
            .map(|entry| self.call_batch(std::slice::from_ref(entry)));
        let mut decided = Vec::with_capacity(entries.len());
        for result in futures_util::future::join_all(calls).await {
            decided.extend(result?);
        }
        Ok(decided)
    }

    async fn call_batch(&self, entries: &[BatchEntry<'_>]) -> Result<Vec<Decided>, Error> {
        let cmd = self.batch_cmd(entries);
        let reply: Vec<i64> = self
            .run(&cmd, &mut self.conn.clone())
            .await
            .map_err(store_error)?;
        parse_batch(entries, &reply)
    }

    /// One entry as its own batch, sent from any runtime: a take or refund of a lease, a
    /// reservation or a settlement without [`Batched`](crate::Batched).
    pub(super) async fn decide_alone(
        &self,
        policy: &Policy,
        key: &str,
        op: OwnedOp,
    ) -> Result<Vec<Decided>, Error> {
        let policy = policy.clone();
        let key = key::normalize(key)?.into_owned();
        let shard = self.shards.shard_of(&policy, &key);
        self.on_io(move |store| async move {
            let costs;
            let op = match op {
                OwnedOp::Decide(cost) => {
                    costs = [cost];
                    BatchOp::Decide(&costs)
                }
                OwnedOp::Settle(settle) => BatchOp::Settle(settle),
            };
            let entry = BatchEntry {
                policy: &policy,
                key: &key,
                op,
            };
            store
                .decide_batch(shard, std::slice::from_ref(&entry))
                .await
        })
        .await
    }

    fn batch_cmd(&self, entries: &[BatchEntry<'_>]) -> redis::Cmd {
        let keys: usize = entries.iter().map(entry_key_count).sum();
        let mut cmd = redis::Cmd::with_capacity(4 + keys * 2 + entries.len() * 8, 64 * keys);
        cmd.arg("EVALSHA")
            .arg(self.scripts.batch.get_hash())
            .arg(keys);
        for entry in entries {
            if let BatchOp::Joint(parts) = entry.op {
                for (policy, key, _) in parts {
                    self.push_keys(&mut cmd, policy, key);
                }
                continue;
            }
            self.push_keys(&mut cmd, entry.policy, entry.key);
            if let BatchOp::Settle(Settle {
                marker: Some(marker),
                ..
            }) = entry.op
            {
                self.push_marker(&mut cmd, entry.policy, entry.key, marker);
            }
        }
        cmd.arg(entries.len());
        for entry in entries {
            match entry.op {
                BatchOp::Decide(costs) => {
                    cmd.arg(key_count(entry.policy))
                        .arg(policy_arg_count(entry.policy))
                        .arg(costs.len());
                    for cost in costs {
                        push_cost(&mut cmd, entry.policy, *cost, false);
                    }
                    push_policy_args(&mut cmd, entry.policy);
                }
                BatchOp::Joint(parts) => {
                    let windows: usize = parts.iter().map(|(p, _, _)| p.limits().len()).sum();
                    cmd.arg(entry_key_count(entry))
                        .arg(1 + protocol::ARGS_PER_WINDOW * windows)
                        .arg(1);
                    push_joint_args(&mut cmd, parts.iter().map(|(p, _, c)| (p, *c)), windows);
                }
                BatchOp::Settle(ref settle) => {
                    cmd.arg(entry_key_count(entry))
                        .arg(settle_arg_count(entry.policy, settle))
                        .arg(0);
                    push_settle_args(&mut cmd, entry.policy, settle);
                }
            }
        }
        #[cfg(feature = "test-clock")]
        self.push_script_clock(&mut cmd);
        cmd
    }
}

/// The keys an entry sends: its windows', and a settlement's marker.
fn entry_key_count(entry: &BatchEntry<'_>) -> usize {
    if let BatchOp::Joint(parts) = entry.op {
        return parts.iter().map(|(policy, _, _)| key_count(policy)).sum();
    }
    let marker = matches!(
        entry.op,
        BatchOp::Settle(Settle {
            marker: Some(_),
            ..
        })
    );
    key_count(entry.policy) + usize::from(marker)
}

fn parse_batch(entries: &[BatchEntry<'_>], reply: &[i64]) -> Result<Vec<Decided>, Error> {
    let Some((&now, mut rest)) = reply.split_first() else {
        return Err(StoreError::Protocol("batch script replied nothing".into()).into());
    };
    let mut decided = Vec::with_capacity(entries.iter().map(BatchEntry::replies).sum());
    for entry in entries {
        if let BatchOp::Joint(parts) = entry.op {
            let len = 2 + parts.iter().map(|(p, _, _)| windows_len(p)).sum::<usize>();
            if rest.len() < len {
                return Err(StoreError::Protocol("batch script replied too little".into()).into());
            }
            let (one, more) = rest.split_at(len);
            let policies = parts.iter().map(|(policy, _, cost)| (policy, *cost));
            decided.extend(parse_parts(policies, one)?.into_iter().map(|d| (d, now)));
            rest = more;
            continue;
        }
        let len = reply_len(entry.policy);
        let costs = match entry.op {
            BatchOp::Decide(costs) => costs,
            _ => &[],
        };
        for &cost in costs {
            if rest.len() < len {
                return Err(StoreError::Protocol("batch script replied too little".into()).into());
            }
            let (one, more) = rest.split_at(len);
            decided.push((parse_reply(entry.policy, cost, one)?, now));
            rest = more;
        }
    }
    if !rest.is_empty() {
        return Err(StoreError::Protocol("batch script replied too much".into()).into());
    }
    Ok(decided)
}
