//! Reading the cluster's shape from the nodes themselves: who is master, who replicates
//! whom, whether the cluster is serving, and which master owns a key.

use std::time::{Duration, Instant};

use redis::{from_redis_value_ref, Value};

use super::{RedisCluster, NODES};
use crate::RedisServer;

/// How long `spawn` waits for a freshly created cluster to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between polls of the nodes' state.
pub(super) const POLL: Duration = Duration::from_millis(50);

/// Every slot of a Redis Cluster.
const SLOTS: &str = "16384";

/// A node's answer to `ROLE`.
#[derive(Debug, PartialEq)]
pub(super) enum Role {
    Master,
    Replica {
        master_port: u16,
        /// The replication link is up (`connected`), not connecting or syncing.
        link_up: bool,
    },
}

impl RedisCluster {
    /// `redis://` urls of the running nodes that report `ROLE` master, in spawn order.
    ///
    /// ```no_run
    /// let cluster = redis_harness::RedisCluster::spawn();
    /// let masters = cluster.masters();
    /// assert_eq!(masters.len(), 3);
    /// ```
    pub fn masters(&self) -> Vec<String> {
        self.live()
            .filter(|n| role(n) == Some(Role::Master))
            .map(RedisServer::url)
            .collect()
    }

    /// `redis://` urls of the running nodes that report `ROLE` slave, in spawn order.
    ///
    /// ```no_run
    /// let cluster = redis_harness::RedisCluster::spawn();
    /// assert_eq!(cluster.replicas().len(), 3);
    /// ```
    pub fn replicas(&self) -> Vec<String> {
        self.live()
            .filter(|n| matches!(role(n), Some(Role::Replica { .. })))
            .map(RedisServer::url)
            .collect()
    }

    /// The `redis://` url of the master serving `key`'s slot (`CLUSTER KEYSLOT`, then
    /// `CLUSTER SLOTS`), as seen by the first running node.
    ///
    /// ```no_run
    /// let cluster = redis_harness::RedisCluster::spawn();
    /// let owner = cluster.master_for_key("user:42");
    /// assert!(cluster.masters().contains(&owner));
    /// ```
    ///
    /// # Panics
    /// When no node answers or no master serves the slot.
    pub fn master_for_key(&self, key: &str) -> String {
        let node = self.live().next().expect("no cluster node is running");
        let slot: i64 = node
            .probe(&["CLUSTER", "KEYSLOT", key])
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key} on {}: {e}", node.url()));
        let ranges: Vec<Vec<Value>> = node
            .probe(&["CLUSTER", "SLOTS"])
            .unwrap_or_else(|e| panic!("CLUSTER SLOTS on {}: {e}", node.url()));
        for range in &ranges {
            // Each range: [start, end, [master ip, master port, id, ...], replicas...].
            let [start, end, master, ..] = range.as_slice() else {
                panic!("malformed CLUSTER SLOTS entry: {range:?}");
            };
            let (start, end): (i64, i64) = (parse(start), parse(end));
            if (start..=end).contains(&slot) {
                let master: Vec<Value> = parse(master);
                let [ip, port, ..] = master.as_slice() else {
                    panic!("malformed CLUSTER SLOTS master: {master:?}");
                };
                return format!("redis://{}:{}", parse::<String>(ip), parse::<u16>(port));
            }
        }
        panic!("no master serves slot {slot} (key {key:?}): {ranges:?}");
    }

    /// Waits until the freshly created cluster serves every slot from every node's point
    /// of view and each replica is in sync with its master.
    pub(super) fn wait_until_healthy(&self) {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.health() {
                Ok(()) => return,
                Err(why) => last = why,
            }
            std::thread::sleep(POLL);
        }
        panic!("the cluster did not become healthy within {HEALTHY_TIMEOUT:?}: {last}");
    }

    fn health(&self) -> Result<(), String> {
        let mut masters = 0;
        for node in &self.nodes {
            serving(node)?;
            let info: String = node
                .probe(&["CLUSTER", "INFO"])
                .map_err(|e| format!("{}: {e}", node.url()))?;
            let known = format!("cluster_known_nodes:{NODES}");
            if !info.lines().any(|l| l.trim() == known) {
                return Err(format!(
                    "{} does not know all {NODES} nodes yet",
                    node.url()
                ));
            }
            match role(node) {
                Some(Role::Master) => masters += 1,
                Some(Role::Replica { link_up: true, .. }) => {}
                other => return Err(format!("{} is {other:?}", node.url())),
            }
        }
        if masters != NODES / 2 {
            return Err(format!("{masters} masters, expected {}", NODES / 2));
        }
        Ok(())
    }

    /// Ports of the running nodes that replicate the node on `master_port`.
    pub(super) fn replica_ports_of(&self, master_port: u16) -> Vec<u16> {
        self.live()
            .filter(|n| matches!(role(n), Some(Role::Replica { master_port: p, .. }) if p == master_port))
            .map(RedisServer::port)
            .collect()
    }
}

/// `Ok` when the node reports `cluster_state:ok` with all slots assigned.
pub(super) fn serving(node: &RedisServer) -> Result<(), String> {
    let info: String = node
        .probe(&["CLUSTER", "INFO"])
        .map_err(|e| format!("{}: {e}", node.url()))?;
    let has = |line: &str| info.lines().any(|l| l.trim() == line);
    if !has("cluster_state:ok") {
        return Err(format!("{}: cluster_state is not ok", node.url()));
    }
    if !has(&format!("cluster_slots_assigned:{SLOTS}")) {
        return Err(format!("{}: not all slots are assigned", node.url()));
    }
    Ok(())
}

/// The node's `ROLE`, or `None` when it does not answer (killed, stalled).
pub(super) fn role(node: &RedisServer) -> Option<Role> {
    let reply: Vec<Value> = node.probe(&["ROLE"]).ok()?;
    match from_redis_value_ref::<String>(reply.first()?)
        .ok()?
        .as_str()
    {
        "master" => Some(Role::Master),
        "slave" => {
            // ["slave", master ip, master port, link state, offset]
            let master_port = from_redis_value_ref(reply.get(2)?).ok()?;
            let state: String = from_redis_value_ref(reply.get(3)?).ok()?;
            Some(Role::Replica {
                master_port,
                link_up: state == "connected",
            })
        }
        _ => None,
    }
}

fn parse<T: redis::FromRedisValue>(v: &Value) -> T {
    from_redis_value_ref(v).unwrap_or_else(|e| {
        panic!(
            "unexpected {v:?} in a CLUSTER SLOTS reply, wanted {}: {e}",
            std::any::type_name::<T>()
        )
    })
}
