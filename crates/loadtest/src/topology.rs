//! The Redis side: the harness's 6-node cluster, announced under a host name, with a
//! fault proxy in front of every node for the one instance whose link gets cut.
//!
//! Why a host name: a cluster client connects to the addresses the nodes announce
//! (`CLUSTER SLOTS`, `MOVED`), not to the ones it was given, so pointing one instance's
//! policy file at proxies only proxies its first connection. Instead every node announces
//! the name `rl-redis` (`cluster-announce-hostname`, `cluster-preferred-endpoint-type
//! hostname`) with its own port. Each instance runs in a mount namespace of its own whose
//! `/etc/hosts` maps that name: to 127.0.0.1 (the nodes) for most, to 127.0.0.2 for the
//! cut instance, where a `FaultProxy` listens on every node's port and forwards to the
//! node. Redirects and reconnections then go through the proxies too, and blackholing them
//! partitions that instance, and only it, from the whole cluster.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis_harness::{FaultProxy, Mode, RedisCluster};

/// The name every node announces.
pub const HOST: &str = "rl-redis";
/// Where the cut instance's proxies listen.
const PROXY_IP: &str = "127.0.0.2";
/// How long the announced name may take to reach every node's `CLUSTER SLOTS`.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(20);
/// The bound on one probe of a node: a stalled node must not hang the sampler.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What went wrong preparing the cluster.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("redis node {node}: {source}")]
    Redis {
        node: u16,
        #[source]
        source: redis::RedisError,
    },
    #[error("the nodes did not announce {HOST} within {ANNOUNCE_TIMEOUT:?}: {0}")]
    Announce(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The cluster, the proxies of the cut instance and the hosts files of the instances.
pub struct Topology {
    cluster: Arc<Mutex<RedisCluster>>,
    ports: Vec<u16>,
    proxies: Vec<FaultProxy>,
    /// `/etc/hosts` for instances that reach the nodes directly.
    pub direct_hosts: PathBuf,
    /// `/etc/hosts` for the instance behind the proxies.
    pub proxied_hosts: PathBuf,
}

impl Topology {
    /// Spawns the cluster (blocking: seconds), makes it announce [`HOST`] and starts the
    /// proxies. Hosts files go into `dir`.
    pub fn start(dir: &Path) -> Result<Topology, TopologyError> {
        let cluster = RedisCluster::spawn();
        let ports: Vec<u16> = cluster.nodes().iter().filter_map(|u| port_of(u)).collect();
        for &port in &ports {
            let mut conn = connect(port)?;
            for (name, value) in [
                ("cluster-announce-hostname", HOST),
                ("cluster-preferred-endpoint-type", "hostname"),
            ] {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg(name)
                    .arg(value)
                    .exec(&mut conn)
                    .map_err(|source| TopologyError::Redis { node: port, source })?;
            }
        }
        wait_announced(&ports)?;
        let proxies = ports
            .iter()
            .map(|&p| FaultProxy::start_on((PROXY_IP, p), ("127.0.0.1", p)))
            .collect();
        let direct_hosts = dir.join("hosts-direct");
        let proxied_hosts = dir.join("hosts-proxied");
        for (path, ip) in [(&direct_hosts, "127.0.0.1"), (&proxied_hosts, PROXY_IP)] {
            let text = format!("127.0.0.1 localhost\n{ip} {HOST}\n");
            std::fs::write(path, text).map_err(|source| TopologyError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Topology {
            cluster: Arc::new(Mutex::new(cluster)),
            ports,
            proxies,
            direct_hosts,
            proxied_hosts,
        })
    }

    /// The nodes as the instances name them: `redis://rl-redis:<port>`.
    pub fn node_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://{HOST}:{p}"))
            .collect()
    }

    /// The running nodes as the instances name them (a killed master is left out).
    pub fn live_node_urls(&self) -> Vec<String> {
        lock(&self.cluster)
            .nodes()
            .iter()
            .filter_map(|u| port_of(u))
            .map(|p| format!("redis://{HOST}:{p}"))
            .collect()
    }

    /// Every node's port (masters and replicas, dead or alive), in spawn order.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The cluster, for the faults (kill a master, wait for the failover).
    pub fn cluster(&self) -> Arc<Mutex<RedisCluster>> {
        Arc::clone(&self.cluster)
    }

    /// Ports of the running masters.
    pub fn master_ports(&self) -> Vec<u16> {
        lock(&self.cluster)
            .masters()
            .iter()
            .filter_map(|u| port_of(u))
            .collect()
    }

    /// Partitions (or heals) the proxied instance from every node.
    pub fn set_partitioned(&self, partitioned: bool) {
        let mode = if partitioned {
            Mode::Blackhole
        } else {
            Mode::Pass
        };
        for proxy in &self.proxies {
            proxy.set_mode(mode);
        }
    }
}

/// Locks the cluster; a panic in a fault thread leaves it usable (each harness call is
/// one step).
pub fn lock(cluster: &Mutex<RedisCluster>) -> MutexGuard<'_, RedisCluster> {
    cluster.lock().unwrap_or_else(|e| e.into_inner())
}

/// The port of a `redis://host:port` url.
pub fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.parse().ok()
}

/// A direct connection to the node on `port`, with bounded waits.
pub fn connect(port: u16) -> Result<redis::Connection, TopologyError> {
    let err = |source| TopologyError::Redis { node: port, source };
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(err)?;
    let conn = client
        .get_connection_with_timeout(PROBE_TIMEOUT)
        .map_err(err)?;
    conn.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(err)?;
    conn.set_write_timeout(Some(PROBE_TIMEOUT)).map_err(err)?;
    Ok(conn)
}

/// Polls every node's `CLUSTER SLOTS` until each master entry names [`HOST`] (the
/// hostnames travel by gossip).
fn wait_announced(ports: &[u16]) -> Result<(), TopologyError> {
    let deadline = Instant::now() + ANNOUNCE_TIMEOUT;
    loop {
        let mut missing = None;
        for &port in ports {
            let slots: redis::Value = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query(&mut connect(port)?)
                .map_err(|source| TopologyError::Redis { node: port, source })?;
            let text = format!("{slots:?}");
            // Each of the 3 ranges names its master and replica: 6 mentions when done.
            let named = text.matches(HOST).count();
            if named < ports.len() {
                missing = Some(format!("node {port} names {HOST} {named} times"));
                break;
            }
        }
        match missing {
            None => return Ok(()),
            Some(why) if Instant::now() >= deadline => return Err(TopologyError::Announce(why)),
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
