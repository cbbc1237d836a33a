//! Joining six started nodes into a cluster with `redis-cli --cluster create`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{binaries, RedisServer};

/// How long `redis-cli --cluster create` may take (it waits for the nodes to agree).
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Panics with install instructions when `redis-cli` is missing.
pub(super) fn require_redis_cli() {
    let status = Command::new("redis-cli")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| binaries::spawn_error("redis-cli", e));
    if let Err(e) = status {
        panic!("{e}");
    }
}

/// Runs `redis-cli --cluster create <nodes> --cluster-replicas 1 --cluster-yes`, bounded.
///
/// Its output goes to a file in the first node's directory rather than a pipe, so a
/// chatty run can never block on a full pipe while we poll for its exit.
pub(super) fn create(nodes: &[RedisServer]) {
    let log_path = nodes[0].dir.join("cluster-create.log");
    let log =
        std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("creating {log_path:?}: {e}"));
    let err_log = log
        .try_clone()
        .unwrap_or_else(|e| panic!("cloning {log_path:?}: {e}"));
    let mut child = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .unwrap_or_else(|e| panic!("{}", binaries::spawn_error("redis-cli", e)));
    let output = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + CREATE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                panic!(
                    "redis-cli --cluster create failed ({status}):\n{}",
                    output()
                )
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-cli --cluster create did not finish within {CREATE_TIMEOUT:?}:\n{}",
                    output()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("waiting for redis-cli --cluster create: {e}"),
        }
    }
}
