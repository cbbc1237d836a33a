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

/// Runs the faults from `phase_start` (an instant of the run that started at `start`),
/// those that fit in `phase_s`; returns their moments.
pub async fn run(t: Targets, start: Instant, phase_start: Instant, phase_s: u64) -> Vec<Mark> {
    let mut marks = Vec::new();
    let mut mark = |label: String| {
        let m = Mark {
            t: start.elapsed().as_secs_f64(),
            label,
        };
        println!("fault   t={:>6.1}s  {}", m.t, m.label);
        marks.push(m);
    };
    let at = |s: u64| tokio::time::sleep_until((phase_start + Duration::from_secs(s)).into());

    if KILL_AT + 10 <= phase_s {
        at(KILL_AT).await;
        let cluster = t.topology.cluster();
        let killed = tokio::task::spawn_blocking(move || {
            let mut c = topology::lock(&cluster);
            let url = c.kill_master(0);
            (url, c.wait_for_failover(FAILOVER_TIMEOUT))
        })
        .await;
        match killed {
            Ok((url, Ok(took))) => {
                mark(format!("master {url} killed {:.1}s ago: replica promoted", took.as_secs_f64()));
            }
            Ok((url, Err(why))) => mark(format!("master {url} killed; {why}")),
            Err(e) => mark(format!("kill master: {e}")),
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
        match stalled {
            Ok(Some(port)) => mark(format!("node :{port} stalled (CLIENT PAUSE {STALL:?} ALL)")),
            _ => mark("stall: no master answered".into()),
        }
    }
    if CUT_AT + CUT.as_secs() <= phase_s {
        at(CUT_AT).await;
        t.topology.set_partitioned(true);
        mark(format!("instance {} partitioned from Redis (proxy blackhole)", t.proxied));
        tokio::time::sleep(CUT).await;
        t.topology.set_partitioned(false);
        mark(format!("instance {} link healed", t.proxied));
    }
    if STORM_AT + STORM.as_secs() <= phase_s {
        at(STORM_AT).await;
        t.storm.set(true, t.stormed);
        mark(format!("memory pressure on instance {}: fresh-address storm", t.stormed));
        tokio::time::sleep(STORM).await;
        t.storm.set(false, t.stormed);
        mark(format!("storm over: {} fresh addresses", t.storm.addresses()));
    }
    if RELOAD_AT + 5 <= phase_s {
        at(RELOAD_AT).await;
        let before = reloads(&t.instances).await;
        match t.policy.write(&t.policy_path, true) {
            Ok(()) => mark("policy file rewritten (reload)".into()),
            Err(e) => mark(format!("policy rewrite failed: {e}")),
        }
        // The instances poll the file every 200 ms.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = reloads(&t.instances).await;
        let reloaded = before.iter().zip(&after).filter(|(b, a)| a > b).count();
        mark(format!("{reloaded} of {} instances reloaded", t.instances.len()));
    }
    marks
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
