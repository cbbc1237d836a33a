//! Several policies for one request in one script call: decide.lua given the windows of
//! every policy, each with its own keys and cost, decides them all or nothing, as it
//! decides the windows of one policy. One round trip, atomic on a standalone Redis; on a
//! Cluster the keys of different policies live in different slots, and the decision
//! falls back to reserving in order (see [`Store::check_all`](crate::Store::check_all)).

use std::collections::HashSet;

use std::fmt::Write as _;

use super::reply::parse_parts;
use super::{key_count, script_args, Connection, RedisStore};
use crate::cost::Cost;
use crate::decision::Decision;
use crate::error::Error;
use crate::joint::{Check, Joint};
use crate::key;
use crate::policy::Policy;

impl RedisStore {
    /// Whether `checks` are decided in one script call: on a standalone Redis, two or
    /// more, no key checked twice (one script evaluates every window against the state
    /// before the call: a key checked twice would not see its own first charge;
    /// reserving in order does).
    pub(super) fn joins(&self, checks: &[Check<'_>]) -> bool {
        if checks.len() < 2 || matches!(self.conn, Connection::Cluster(_)) {
            return false;
        }
        let distinct: HashSet<(&str, &str)> =
            checks.iter().map(|c| (c.policy.name(), c.key)).collect();
        distinct.len() == checks.len()
    }

    /// The body of [`Store::check_all`](crate::Store::check_all) for a Redis store: one
    /// script call where [`joins`](Self::joins), else reserving in order.
    pub(super) async fn check_all_joint(&self, checks: &[Check<'_>]) -> Result<Joint, Error> {
        if !self.joins(checks) {
            return crate::joint::in_order(self, checks).await;
        }
        let mut keys = Vec::with_capacity(checks.len());
        for check in checks {
            keys.push(key::normalize(check.key)?);
        }
        for (check, key) in checks.iter().zip(&keys) {
            self.refuse_new_under_pressure(check.policy, key).await?;
        }
        let cmd = self.joint_evalsha(checks, &keys);
        // A standalone Redis: one shard.
        let reply = self.call::<Vec<i64>>(0, cmd).await?;
        parse_joint(checks, &reply)
    }

    fn joint_evalsha(
        &self,
        checks: &[Check<'_>],
        keys: &[std::borrow::Cow<'_, str>],
    ) -> ::redis::Cmd {
        let windows: usize = checks.iter().map(|c| c.policy.limits().len()).sum();
        let key_total: usize = checks.iter().map(|c| key_count(c.policy)).sum();
        let mut cmd = ::redis::Cmd::with_capacity(6 + key_total + 4 * windows, 128 * key_total);
        cmd.arg("EVALSHA")
            .arg(self.scripts.decide.get_hash())
            .arg(key_total);
        for (check, key) in checks.iter().zip(keys) {
            self.push_keys(&mut cmd, check.policy, key);
        }
        push_joint_args(&mut cmd, checks.iter().map(|c| (c.policy, c.cost)), windows);
        #[cfg(feature = "test-clock")]
        self.push_script_clock(&mut cmd);
        cmd
    }
}

/// decide.lua's arguments after the keys for a joint decision: the cost of every window
/// (comma-separated), the number of windows, and every window's four arguments.
pub(super) fn push_joint_args<'p>(
    cmd: &mut ::redis::Cmd,
    parts: impl Iterator<Item = (&'p Policy, Cost)> + Clone,
    windows: usize,
) {
    let mut costs = String::with_capacity(4 * windows);
    for (policy, cost) in parts.clone() {
        for limit in policy.limits() {
            if !costs.is_empty() {
                costs.push(',');
            }
            let _ = write!(costs, "{}", cost.of(limit));
        }
    }
    cmd.arg(costs).arg(windows);
    for (policy, _) in parts {
        for limit in policy.limits() {
            let (code, max, window, period) = script_args(limit);
            cmd.arg(code).arg(max).arg(window).arg(period);
        }
    }
}

/// Each policy's decision as a [`Joint`]: every one when admitted; when denied, up to the
/// first policy that refused.
pub(super) fn joint_of(mut decisions: Vec<Decision>) -> Joint {
    if let Some(first) = decisions.iter().position(|d| !d.is_allowed()) {
        decisions.truncate(first + 1);
    }
    Joint::new(decisions)
}

fn parse_joint(checks: &[Check<'_>], reply: &[i64]) -> Result<Joint, Error> {
    Ok(joint_of(parse_parts(
        checks.iter().map(|c| (c.policy, c.cost)),
        reply,
    )?))
}
