//! The demo instances: started in a mount namespace of their own with the hosts file
//! that routes them to the cluster (see topology.rs), awaited until they serve, read from
//! /proc for RSS and CPU, and killed on drop.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long an instance gets to connect its store and listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong starting an instance.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("starting {demo}: {source}")]
    Spawn {
        demo: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("instance {index} on {addr} did not serve /metrics within {START_TIMEOUT:?}; the end of its log:\n{log}")]
    NotReady {
        index: usize,
        addr: SocketAddr,
        log: String,
    },
    #[error("no free loopback port: {0}")]
    Port(std::io::Error),
}

/// How an instance is started.
pub struct Launch<'a> {
    pub demo: &'a Path,
    pub policy: &'a Path,
    pub hosts: &'a Path,
    /// Where each instance's log goes, as `demo-<tag>-<index>.log`: kept after the run.
    pub log_dir: &'a Path,
    pub tag: &'a str,
    /// Every decision's `ratelimit.decide` span recorded (limiter_tower at DEBUG, JSON
    /// logs), or logs at INFO only (the span is then never built).
    pub tracing: bool,
}

/// One running demo process.
pub struct Instance {
    child: Child,
    pub addr: SocketAddr,
}

impl Instance {
    /// Starts instance `index` on a free loopback port and waits until it serves.
    pub async fn start(index: usize, launch: &Launch<'_>) -> Result<Instance, InstanceError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(InstanceError::Port)?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = launch
            .log_dir
            .join(format!("demo-{}-{index}.log", launch.tag));
        let spawn_err = |source| InstanceError::Spawn {
            demo: launch.demo.to_path_buf(),
            source,
        };
        let out = File::create(&log).map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        // `unshare -m` gives the process a private mount namespace, where the bind mount
        // of its hosts file is seen by it alone; `exec` keeps the demo's PID the child's.
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
        ])
        .arg(launch.hosts)
        .arg(launch.demo)
        .arg("--config")
        .arg(launch.policy)
        .arg("--listen")
        .arg(addr.to_string())
        // The demo uses the file's Redis store only when REDIS_URL is set; the
        // cluster store reads its nodes from the file, not from this.
        .env("REDIS_URL", format!("redis://{}", crate::topology::HOST))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
        if launch.tracing {
            cmd.env("RUST_LOG", "info,limiter_tower=debug")
                .args(["--log-format", "json"]);
        } else {
            cmd.env("RUST_LOG", "warn");
        }
        let child = cmd.spawn().map_err(spawn_err)?;
        let mut instance = Instance { child, addr };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if crate::http::scrape(addr).await.is_ok() {
                return Ok(instance);
            }
            if let Ok(Some(_)) = instance.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        instance.kill();
        // Quoted: the error is read where the run failed, maybe not where its logs are.
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let log = lines[lines.len().saturating_sub(10)..].join("\n");
        Err(InstanceError::NotReady { index, addr, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in MiB (`VmRSS` of /proc/PID/status), if the process runs.
    pub fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }

    /// CPU seconds used so far (user + system, /proc/PID/stat).
    pub fn cpu_seconds(&self) -> Option<f64> {
        crate::cpu::process_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `n` instances; instance `proxied` (if any) behind the fault proxies.
pub async fn start_all(
    n: usize,
    proxied: Option<usize>,
    launch: &Launch<'_>,
    proxied_hosts: &Path,
) -> Result<Vec<Instance>, InstanceError> {
    let mut instances = Vec::with_capacity(n);
    for i in 0..n {
        let hosts = if Some(i) == proxied {
            proxied_hosts
        } else {
            launch.hosts
        };
        let this = Launch { hosts, ..*launch };
        instances.push(Instance::start(i, &this).await?);
    }
    Ok(instances)
}
