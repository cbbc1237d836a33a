//! The faults of the steady phase after the spike, at fixed offsets from its start, each
//! moment recorded for the report and the charts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http;
use crate::policy::Policy;
use crate::topology::{self, Topology};
use crate::traffic::Storm;

/// Seconds after the phase starts: kill a master; stall a node; partition one instance;
/// the memory-pressure storm; the policy reload.
const KILL_AT: u64 = 5;
const STALL_AT: u64 = 20;
const CUT_AT: u64 = 30;
const STORM_AT: u64 = 42;
const RELOAD_AT: u64 = 57;
/// The last fault's end: the phase must be at least this long for all of them.
pub const NEEDED_S: u64 = 65;

/// How long a stall (`CLIENT PAUSE`), a partition and a storm last.
const STALL: Duration = Duration::from_secs(3);
const CUT: Duration = Duration::from_secs(5);
const STORM: Duration = Duration::from_secs(10);
/// The longest a failover may take before the run says so.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// A moment of the run, for the report and as a vertical line on the charts.
#[derive(Clone, Debug)]
pub struct Mark {
    /// Seconds since the run started.
    pub t: f64,
    pub label: String,
}

/// What the faults act on.
pub struct Targets {
    pub topology: Arc<Topology>,
    pub instances: Vec<SocketAddr>,
    /// The instance behind the proxies.
    pub proxied: usize,
    /// The instance the storm hits.
    pub stormed: usize,
    pub storm: Arc<Storm>,
    pub policy: Arc<Policy>,
    pub policy_path: PathBuf,
}

/// A fault's disturbance: from its start to its end plus `SETTLE` (the instances'
/// breakers probe again and their queues drain), in seconds since the run started.
#[derive(Clone, Debug)]
pub struct Window {
    pub from: f64,
    pub to: f64,
    pub what: String,
}

/// Time allowed after a fault ends before the run counts as undisturbed again.
const SETTLE: f64 = 2.0;

/// The moments and the windows of the faults.
#[derive(Default)]
pub struct FaultLog {
    pub marks: Vec<Mark>,
    pub windows: Vec<Window>,
}

impl FaultLog {
    fn mark(&mut self, start: Instant, label: String) -> f64 {
        let t = start.elapsed().as_secs_f64();
        println!("fault   t={t:>6.1}s  {label}");
        self.marks.push(Mark { t, label });
        t
    }

    fn window(&mut self, from: f64, to: f64, what: &str) {
        self.windows.push(Window {
            from,
            to: to + SETTLE,
            what: what.to_string(),
        });
    }
}

/// Runs the faults from `phase_start` (an instant of the run that started at `start`),
/// those that fit in `phase_s`; returns their moments and windows.
pub async fn run(t: Targets, start: Instant, phase_start: Instant, phase_s: u64) -> FaultLog {
    let mut log = FaultLog::default();
    let at = |s: u64| tokio::time::sleep_until((phase_start + Duration::from_secs(s)).into());

    if KILL_AT + 10 <= phase_s {
        at(KILL_AT).await;
        let cluster = t.topology.cluster();
        let killed =
            tokio::task::spawn_blocking(move || topology::lock(&cluster).kill_master(0)).await;
        match killed {
            Ok(url) => {
                let from = log.mark(start, format!("master {url} killed"));
                let cluster = t.topology.cluster();
                let waited = tokio::task::spawn_blocking(move || {
                    topology::lock(&cluster).wait_for_failover(FAILOVER_TIMEOUT)
                })
                .await;
                let label = match waited {
                    Ok(Ok(took)) => format!(
                        "replica promoted, {:.1} s after the kill",
                        took.as_secs_f64()
                    ),
                    Ok(Err(why)) => why,
                    Err(e) => format!("waiting for the failover: {e}"),
                };
                let to = log.mark(start, label);
                log.window(from, to, "master killed, replica promoted");
            }
            Err(e) => {
                log.mark(start, format!("kill master: {e}"));
            }
        }
    }
    if STALL_AT + 5 <= phase_s {
        at(STALL_AT).await;
        let topo = Arc::clone(&t.topology);
        let stalled = tokio::task::spawn_blocking(move || {
            let port = *topo.master_ports().last()?;
            let mut conn = topology::connect(port).ok()?;
            // Expires by itself: no control connection is needed to lift it.
            let ms = STALL.as_millis().to_string();
            redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(ms)
                .arg("ALL")
                .exec(&mut conn)
                .ok()
                .map(|()| port)
        })
        .await;
        if let Ok(Some(port)) = stalled {
            let from = log.mark(
                start,
                format!("master :{port} stalled (CLIENT PAUSE {STALL:?} ALL)"),
            );
            log.window(from, from + STALL.as_secs_f64(), "a master stalled 3 s");
        } else {
            log.mark(start, "stall: no master answered".into());
        }
    }
    if CUT_AT + CUT.as_secs() <= phase_s {
        at(CUT_AT).await;
        t.topology.set_partitioned(true);
        let from = log.mark(
            start,
            format!(
                "instance {} partitioned from Redis (proxy blackhole)",
                t.proxied
            ),
        );
        tokio::time::sleep(CUT).await;
        t.topology.set_partitioned(false);
        let to = log.mark(start, format!("instance {} link healed", t.proxied));
        log.window(from, to, "one instance partitioned 5 s");
    }
    if STORM_AT + STORM.as_secs() <= phase_s {
        at(STORM_AT).await;
        t.storm.set(true, t.stormed);
        let from = log.mark(
            start,
            format!(
                "memory pressure on instance {}: fresh-address storm",
                t.stormed
            ),
        );
        tokio::time::sleep(STORM).await;
        t.storm.set(false, t.stormed);
        let to = log.mark(
            start,
            format!("storm over: {} fresh addresses", t.storm.addresses()),
        );
        log.window(from, to, "memory-pressure storm");
    }
    if RELOAD_AT + 5 <= phase_s {
        at(RELOAD_AT).await;
        let before = reloads(&t.instances).await;
        let written = t.policy.write(&t.policy_path, true);
        let from = match written {
            Ok(()) => log.mark(start, "policy file rewritten (reload)".into()),
            Err(e) => log.mark(start, format!("policy rewrite failed: {e}")),
        };
        // The instances poll the file every 200 ms.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = reloads(&t.instances).await;
        let reloaded = before.iter().zip(&after).filter(|(b, a)| a > b).count();
        let to = log.mark(
            start,
            format!("{reloaded} of {} instances reloaded", t.instances.len()),
        );
        log.window(from, to, "policy reload");
    }
    log
}

/// Each instance's successful reloads so far (0 when its metrics do not answer).
async fn reloads(instances: &[SocketAddr]) -> Vec<f64> {
    let mut counts = Vec::new();
    for &addr in instances {
        let text = http::scrape(addr).await.unwrap_or_default();
        counts.push(http::metric_sum(
            &text,
            "ratelimit_config_reloads_total",
            "result=\"ok\"",
        ));
    }
    counts
}
