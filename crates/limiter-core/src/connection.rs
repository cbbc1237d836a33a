//! [`Connection`]: a standalone or Cluster Redis connection, one type for every command.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};

/// The longest the cluster client waits for any one reply. The store's own timeout
/// decides each call; this bounds the client's own work, its slot refreshes above all: a
/// refresh holds the client's topology lock while it asks nodes for the slot map, and
/// without a bound one asking a node that never answers (stalled, or cut off without an
/// error) held it for good, stalling every later command, the breaker's health probe
/// included, so that an instance answered from its failure mode until restarted
/// (crates/loadtest, after a master was killed).
const CLUSTER_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest the cluster client waits to connect to a node.
const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cluster client whose every wait is bounded (see [`CLUSTER_RESPONSE_TIMEOUT`]).
pub(crate) fn cluster_client(nodes: &[&str]) -> redis::RedisResult<ClusterClient> {
    ClusterClient::builder(nodes.to_vec())
        .connection_timeout(CLUSTER_CONNECT_TIMEOUT)
        .response_timeout(CLUSTER_RESPONSE_TIMEOUT)
        .build()
}

/// A connection to a standalone Redis or to a Cluster.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(Arc<Cluster>),
}

/// A Cluster connection that can be made anew from the nodes it was given (see
/// [`Connection::renew`]).
pub(crate) struct Cluster {
    nodes: Vec<String>,
    conn: RwLock<ClusterConnection>,
}

impl Cluster {
    /// The current connection: a handle to it, cheap to clone.
    fn current(&self) -> ClusterConnection {
        self.conn.read().clone()
    }
}

impl Connection {
    /// Connects to a standalone Redis.
    pub(crate) async fn single(url: &str) -> redis::RedisResult<Connection> {
        let client = redis::Client::open(url)?;
        Ok(Connection::Single(ConnectionManager::new(client).await?))
    }

    /// Connects to a Redis Cluster through any of its nodes.
    pub(crate) async fn cluster(nodes: &[&str]) -> redis::RedisResult<Connection> {
        let conn = cluster_client(nodes)?.get_async_connection().await?;
        Ok(Connection::Cluster(Arc::new(Cluster {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            conn: RwLock::new(conn),
        })))
    }

    /// Makes a Cluster connection anew from the nodes it was given, as a client starting
    /// now would: it asks them for the slot map afresh. A cluster client learns that the
    /// map changed from the errors its commands meet (a redirection, a refused
    /// connection); after a failover behind a node that swallows requests instead of
    /// refusing them, and with no keyed command sent (the breaker open), it would ask the
    /// old master forever. A standalone connection manager reconnects by itself: nothing
    /// to do.
    pub(crate) async fn renew(&self) -> redis::RedisResult<()> {
        if let Connection::Cluster(cluster) = self {
            let nodes: Vec<&str> = cluster.nodes.iter().map(String::as_str).collect();
            let conn = cluster_client(&nodes)?.get_async_connection().await?;
            *cluster.conn.write() = conn;
        }
        Ok(())
    }

    /// `PING`: on a Cluster, to the master serving `slot` (any node without one).
    pub(crate) async fn ping(&self, slot: Option<u16>) -> redis::RedisResult<()> {
        if let (Connection::Cluster(cluster), Some(slot)) = (self, slot.and_then(Slot::new)) {
            let route =
                SingleNodeRoutingInfo::SpecificNode(Route::with_slot(slot, SlotAddr::Master));
            let mut conn = cluster.current();
            let ping = conn.route_command(redis::cmd("PING"), RoutingInfo::SingleNode(route));
            return ping.await.map(drop);
        }
        redis::cmd("PING").query_async(&mut self.clone()).await
    }

    /// `standalone` or `cluster`, for `Debug`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Connection::Single(_) => "standalone",
            Connection::Cluster(_) => "cluster",
        }
    }
}

/// One connection type for every command: the store never asks which it has.
impl ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(cluster) => {
                let mut conn = cluster.current();
                Box::pin(async move { conn.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Connection::Cluster(cluster) => {
                let mut conn = cluster.current();
                Box::pin(async move { conn.req_packed_commands(cmd, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(cluster) => cluster.current().get_db(),
        }
    }
}
