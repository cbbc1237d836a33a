//! A six-node Redis Cluster (3 masters, 3 replicas) of real processes, for failover tests.

mod create;
mod failover;
mod topology;

use std::time::Instant;

use crate::{ports, RedisServer};

/// Nodes in the cluster: three masters, each with one replica.
const NODES: usize = 6;

/// Failure detection threshold: short, so failover tests take seconds rather than the
/// default 15 s.
const NODE_TIMEOUT_MS: &str = "1000";

/// A Redis Cluster of six `redis-server` processes on 127.0.0.1 (3 masters, 3 replicas),
/// each in its own temporary directory; all killed and removed on drop.
///
/// ```no_run
/// let cluster = redis_harness::RedisCluster::spawn();
/// let client = redis::cluster::ClusterClient::new(cluster.nodes()).unwrap();
/// let mut conn = client.get_connection().unwrap();
/// let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut conn).unwrap();
/// ```
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// The last master killed by [`RedisCluster::kill_master`], for failover waits.
    killed: Option<KilledMaster>,
}

/// What `wait_for_failover` needs to know about the master that was killed.
struct KilledMaster {
    /// Ports of the nodes that replicated it: one of them must take over.
    replica_ports: Vec<u16>,
    at: Instant,
}

impl RedisCluster {
    /// Starts six nodes, joins them with `redis-cli --cluster create ... --cluster-replicas
    /// 1`, and waits until every node reports `cluster_state:ok` with all 16384 slots
    /// assigned and every replica's link to its master is up.
    ///
    /// ```no_run
    /// let cluster = redis_harness::RedisCluster::spawn();
    /// assert_eq!(cluster.masters().len(), 3);
    /// assert_eq!(cluster.replicas().len(), 3);
    /// ```
    ///
    /// # Panics
    /// When `redis-server` or `redis-cli` is missing, or the cluster does not form in time.
    pub fn spawn() -> Self {
        // Fail on a missing redis-cli before starting six servers for nothing.
        create::require_redis_cli();
        let nodes = (0..NODES)
            .map(|_| {
                RedisServer::spawn_on(ports::free_cluster_port, |port| {
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &format!("nodes-{port}.conf"),
                        "--cluster-node-timeout",
                        NODE_TIMEOUT_MS,
                    ]
                    .map(String::from)
                    .to_vec()
                })
            })
            .collect();
        let cluster = RedisCluster {
            nodes,
            killed: None,
        };
        create::create(&cluster.nodes);
        cluster.wait_until_healthy();
        cluster
    }

    /// `redis://` urls of the nodes whose process is running, in spawn order: suitable as
    /// a cluster client's initial nodes.
    ///
    /// ```no_run
    /// let cluster = redis_harness::RedisCluster::spawn();
    /// assert_eq!(cluster.nodes().len(), 6);
    /// ```
    pub fn nodes(&self) -> Vec<String> {
        self.live().map(RedisServer::url).collect()
    }

    /// The running node at `url` (as [`RedisCluster::nodes`] and
    /// [`RedisCluster::masters`] give it), to stall or query that node alone.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let cluster = redis_harness::RedisCluster::spawn();
    /// let master = cluster.node(&cluster.masters()[0]).unwrap();
    /// master.pause(Duration::from_secs(5));
    /// master.unpause();
    /// ```
    pub fn node(&self, url: &str) -> Option<&RedisServer> {
        self.live().find(|n| n.url() == url)
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    fn node_on(&self, port: u16) -> Option<&RedisServer> {
        self.nodes.iter().find(|n| n.port() == port)
    }
}

#[cfg(test)]
mod tests;
