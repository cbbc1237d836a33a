//! Killing a master and waiting for its replica to take over.

use std::time::{Duration, Instant};

use super::topology::{self, Role, POLL};
use super::{KilledMaster, RedisCluster};

impl RedisCluster {
    /// Kills (SIGKILL) the `i`-th of the current [`RedisCluster::masters`] and returns its
    /// `redis://` url. Start timing a failover from here with
    /// [`RedisCluster::wait_for_failover`].
    ///
    /// ```no_run
    /// let mut cluster = redis_harness::RedisCluster::spawn();
    /// let dead = cluster.kill_master(0);
    /// assert!(!cluster.nodes().contains(&dead));
    /// ```
    ///
    /// # Panics
    /// When there are not `i + 1` masters, or the master has no replica to take over.
    pub fn kill_master(&mut self, i: usize) -> String {
        let masters = self.masters();
        let url = masters
            .get(i)
            .unwrap_or_else(|| panic!("no master #{i}: the masters are {masters:?}"))
            .clone();
        let port = self
            .nodes
            .iter()
            .find(|n| n.url() == url)
            .map(|n| n.port())
            .expect("a master is one of our nodes");
        let replica_ports = self.replica_ports_of(port);
        assert!(
            !replica_ports.is_empty(),
            "master {url} has no replica: killing it would not fail over"
        );
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .expect("a master is one of our nodes");
        node.kill();
        self.killed = Some(KilledMaster {
            replica_ports,
            at: Instant::now(),
        });
        url
    }

    /// Polls until a replica of the master killed by [`RedisCluster::kill_master`] reports
    /// `ROLE` master and every running node reports `cluster_state:ok` again; returns the
    /// time since the kill. `Err` says what was still missing at `timeout`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let mut cluster = redis_harness::RedisCluster::spawn();
    /// cluster.kill_master(0);
    /// let took = cluster.wait_for_failover(Duration::from_secs(30)).unwrap();
    /// println!("failover took {took:?}");
    /// ```
    ///
    /// # Panics
    /// When no master was killed.
    pub fn wait_for_failover(&self, timeout: Duration) -> Result<Duration, String> {
        let killed = self
            .killed
            .as_ref()
            .expect("wait_for_failover needs a master killed with kill_master first");
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self.failed_over(&killed.replica_ports) {
                Ok(()) => return Ok(killed.at.elapsed()),
                Err(why) => last = why,
            }
            if Instant::now() >= deadline {
                return Err(format!("no failover within {timeout:?}: {last}"));
            }
            std::thread::sleep(POLL);
        }
    }

    fn failed_over(&self, replica_ports: &[u16]) -> Result<(), String> {
        let promoted = replica_ports
            .iter()
            .filter_map(|&p| self.node_on(p))
            .any(|n| n.is_running() && topology::role(n) == Some(Role::Master));
        if !promoted {
            return Err(format!(
                "no replica among ports {replica_ports:?} is master yet"
            ));
        }
        self.live().try_for_each(topology::serving)
    }
}
