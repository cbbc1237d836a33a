//! [`Connection`]: a standalone or Cluster Redis connection, one type for every command.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;

/// A connection to a standalone Redis or to a Cluster.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Connects to a standalone Redis.
    pub(crate) async fn single(url: &str) -> redis::RedisResult<Connection> {
        let client = redis::Client::open(url)?;
        Ok(Connection::Single(ConnectionManager::new(client).await?))
    }

    /// Connects to a Redis Cluster through any of its nodes.
    pub(crate) async fn cluster(nodes: &[&str]) -> redis::RedisResult<Connection> {
        let client = redis::cluster::ClusterClient::new(nodes.to_vec())?;
        Ok(Connection::Cluster(client.get_async_connection().await?))
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
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
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
            Connection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}
