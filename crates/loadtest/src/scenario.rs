//! The run, start to end: cluster, policy file, instances, traffic with the sampler and
//! the faults beside it, then the flood and the CPU probes (tracing on and off). Every
//! process it starts is owned by a value dropped when the run ends or is cancelled.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::accuracy::{self, Accuracy};
use crate::args::Args;
use crate::capacity::Costs;
use crate::faults::{self, FaultLog, Mark, Window};
use crate::flood::{self, FloodResult};
use crate::identities::Identities;
use crate::instances::{self, Instance, InstanceError, Launch};
use crate::policy::{Endpoint, Policy};
use crate::record::{InstanceTally, Recorder, Second};
use crate::sample::{self, Sample};
use crate::schedule::{Phase, Schedule};
use crate::topology::{Topology, TopologyError};
use crate::traffic::{self, Storm};

/// Seconds of warm-up before a soak's RSS baseline.
const SOAK_WARMUP_S: u64 = 60;
/// Quiet seconds between the faults and the flood: breakers close, Redis is healthy.
const CALM: Duration = Duration::from_secs(5);
/// Seconds of traffic per CPU probe.
const PROBE_S: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error("signing the tokens: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a setup task panicked: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Everything the report needs.
pub struct Outcome {
    pub args: Args,
    pub schedule: Schedule,
    pub seconds: Vec<Second>,
    pub samples: Vec<Sample>,
    pub marks: Vec<Mark>,
    pub windows: Vec<Window>,
    /// /proc/loadavg at the start and at the end: the machine may be shared.
    pub load: (String, String),
    pub accuracy: BTreeMap<Endpoint, Accuracy>,
    pub by_instance: Vec<InstanceTally>,
    /// Seconds from the first scheduled request to the end of the traffic.
    pub run_s: f64,
    pub flood: Option<FloodResult>,
    /// Costs over the steady phase before the spike (soak: its whole steady part), over
    /// the masters of that time.
    pub steady: Option<Costs>,
    /// The probes after the run, with their costs.
    pub probes: Vec<(Probe, Costs)>,
    pub ports: Vec<u16>,
    /// Node indexes of the masters at the start.
    pub masters: Vec<usize>,
    /// Node indexes of the masters at the end.
    pub masters_at_end: Vec<usize>,
    pub proxied: usize,
    pub stormed: usize,
    /// Distinct (policy, key) pairs the traffic touched.
    pub live_keys: u64,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// A temporary directory (hosts files, the policy file, instance logs), removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn run(args: Args) -> Result<Outcome, RunError> {
    let dir = TempDir(std::env::temp_dir().join(format!("loadtest-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(io("creating the temporary directory"))?;
    println!("starting a 6-node Redis Cluster (3 masters, 3 replicas)...");
    let dir_path = dir.0.clone();
    let topology =
        Arc::new(tokio::task::spawn_blocking(move || Topology::start(&dir_path)).await??);
    let ports = topology.ports().to_vec();
    let index_of = |masters: Vec<u16>| -> Vec<usize> {
        masters
            .iter()
            .filter_map(|p| ports.iter().position(|q| q == p))
            .collect()
    };
    let topo = Arc::clone(&topology);
    let masters = index_of(tokio::task::spawn_blocking(move || topo.master_ports()).await?);
    let policy = Arc::new(Policy {
        nodes: topology.node_urls(),
        leases: args.leases,
        flood_limit: args.flood_limit,
    });
    let policy_path = dir.0.join("policy.yaml");
    policy
        .write(&policy_path, false)
        .map_err(io("writing the policy file"))?;
    println!("signing 101,000 tokens...");
    let ids = Arc::new(tokio::task::spawn_blocking(Identities::sign).await??);
    // Logs outlive the run (a fault's effect is read there), beside the build.
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let log_dir = PathBuf::from(target).join("loadtest-logs");
    std::fs::create_dir_all(&log_dir).map_err(io("creating target/loadtest-logs"))?;
    println!("instance logs: {}", log_dir.display());
    let launch = Launch {
        demo: &args.demo,
        policy: &policy_path,
        hosts: &topology.direct_hosts,
        log_dir: &log_dir,
        tag: "run",
        tracing: args.tracing,
    };
    // With one or two instances, the faults share them.
    let proxied = 1 % args.instances;
    let stormed = 2 % args.instances;
    println!(
        "starting {} demo instances (instance {proxied} behind the fault proxies)...",
        args.instances
    );
    let instances = instances::start_all(
        args.instances,
        Some(proxied),
        &launch,
        &topology.proxied_hosts,
    )
    .await?;
    let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();

    let schedule = match args.soak_min {
        Some(min) => Schedule::soak(args.rate, SOAK_WARMUP_S, min * 60),
        None => Schedule::scenario(args.rate, args.warmup_s, args.spike_s, args.duration_s),
    };
    if args.soak_min.is_none() && args.duration_s < faults::NEEDED_S {
        println!(
            "--duration {} is under the {} s the faults need: those that do not fit are skipped",
            args.duration_s,
            faults::NEEDED_S
        );
    }
    let recorder = Arc::new(Recorder::default());
    let storm = Arc::new(Storm::default());
    let start = Instant::now() + Duration::from_millis(200);
    println!(
        "running {} s, {} requests{}",
        schedule.len(),
        schedule.total(),
        if args.soak_min.is_some() {
            " (soak)"
        } else {
            ""
        }
    );
    let (done_tx, done_rx) = watch::channel(false);
    let traffic = async {
        traffic::run(
            &schedule,
            start,
            &addrs,
            Arc::clone(&ids),
            Arc::clone(&recorder),
            Arc::clone(&storm),
        )
        .await;
        let _ = done_tx.send(true);
    };
    let fault_phase = schedule.start_of(Phase::Faults);
    let fault_run = async {
        match fault_phase {
            Some(s) if args.soak_min.is_none() => {
                let targets = faults::Targets {
                    topology: Arc::clone(&topology),
                    instances: addrs.clone(),
                    proxied,
                    stormed,
                    storm: Arc::clone(&storm),
                    policy: Arc::clone(&policy),
                    policy_path: policy_path.clone(),
                };
                faults::run(
                    targets,
                    start,
                    start + Duration::from_secs(s),
                    args.duration_s,
                )
                .await
            }
            _ => FaultLog::default(),
        }
    };
    let sampler = sample_until_done(start, &schedule, &ports, &instances, &recorder, done_rx);
    let load_start = loadavg();
    let ((), log, samples) = tokio::join!(traffic, fault_run, sampler);
    let load = (load_start, loadavg());
    let run_s = start.elapsed().as_secs_f64();
    let seconds = recorder.seconds();
    let keys = recorder.keys();
    let live_keys = keys.keys().filter(|(e, _)| *e != Endpoint::Storm).count() as u64;
    let accuracy = accuracy::check(&keys, args.flood_limit, run_s);
    let steady = steady_costs(&schedule, &seconds, &samples, &masters);
    let topo = Arc::clone(&topology);
    let masters_at_end = index_of(tokio::task::spawn_blocking(move || topo.master_ports()).await?);

    let (flood, probes) = if args.soak_min.is_some() {
        (None, Vec::new())
    } else {
        tokio::time::sleep(CALM).await;
        println!(
            "flood: {} connections, {} requests on one key (limit {})",
            args.flood_conns,
            3 * args.flood_limit,
            args.flood_limit
        );
        let flood = flood::run(&addrs, args.flood_conns, args.flood_limit).await;
        println!("flood: {flood:?}");
        drop(instances);
        // The restarted instances get a file that lists the running nodes only, as an
        // operator's would once the killed node is gone for good. (A dead node listed no
        // longer keeps an instance from starting: limiter-core's tests/memory_guard.rs.)
        let live = Policy {
            nodes: topology.live_node_urls(),
            ..*policy
        };
        live.write(&policy_path, true)
            .map_err(io("writing the policy file"))?;
        let mut probes = Vec::new();
        for probe in Probe::after(&args) {
            let tag = probe.tag();
            let launch = Launch {
                tracing: probe.tracing,
                tag: &tag,
                ..launch
            };
            let costs = cpu_probe(probe, &launch, &topology, proxied, &ids, &masters_at_end);
            probes.push((probe, costs.await?));
        }
        (Some(flood), probes)
    };
    Ok(Outcome {
        args,
        schedule,
        seconds,
        samples,
        marks: log.marks,
        windows: log.windows,
        load,
        accuracy,
        by_instance: recorder.instances(),
        run_s,
        flood,
        steady,
        probes,
        ports,
        masters,
        masters_at_end,
        proxied,
        stormed,
        live_keys,
    })
}

/// The load averages (1, 5, 15 minutes) from /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Samples once a second until the traffic is done, printing a progress line each time.
async fn sample_until_done(
    start: Instant,
    schedule: &Schedule,
    ports: &[u16],
    instances: &[Instance],
    recorder: &Recorder,
    mut done: watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    tokio::time::sleep_until(start.into()).await;
    let mut tick = tokio::time::interval(sample::INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.changed() => {}
        }
        let t = start.elapsed().as_secs_f64();
        let s = sample::take(t, ports, instances).await;
        if let Some(last) = samples.last() {
            progress(&s, last, schedule, recorder);
        }
        samples.push(s);
        if *done.borrow() {
            return samples;
        }
    }
}

fn progress(now: &Sample, last: &Sample, schedule: &Schedule, recorder: &Recorder) {
    let sec = (now.t.floor() as u64).saturating_sub(1);
    let phase = schedule.phase(sec).map_or("-", Phase::name);
    let s = recorder.second(sec);
    let dt = now.t - last.t;
    let redis_max = now
        .nodes
        .iter()
        .zip(&last.nodes)
        .filter_map(|(b, a)| {
            sample::rate(a.as_ref().map(|a| a.cpu_s), b.as_ref().map(|b| b.cpu_s), dt)
        })
        .fold(0.0, f64::max);
    let rss: f64 = now.rss_mib.iter().flatten().sum();
    println!(
        "t={sec:>4}s {phase:<16} sent {:>5} ok {:>5} 429 {:>5} degraded {:>4} shed {:>3} lost {:>3} \
         p50 {:>6.2} p99 {:>7.2} p99.9 {:>7.2} ms | redis max {:>3.0}% | rss {:>5.0} MiB",
        s.sent,
        s.ok,
        s.denied,
        s.degraded,
        s.shed,
        s.lost,
        s.ms(0.5),
        s.ms(0.99),
        s.ms(0.999),
        redis_max * 100.0,
        rss
    );
}

/// The costs over the steady phase before the spike (a soak's steady part), from the
/// samples nearest its bounds.
fn steady_costs(
    schedule: &Schedule,
    seconds: &[Second],
    samples: &[Sample],
    masters: &[usize],
) -> Option<Costs> {
    let (from, to) = match (
        schedule.start_of(Phase::Steady),
        schedule.start_of(Phase::Spike),
    ) {
        (Some(a), Some(b)) => (a, b),
        _ => (schedule.start_of(Phase::Soak)?, schedule.len()),
    };
    let a = samples.iter().find(|s| s.t >= from as f64)?;
    let b = samples.iter().rev().find(|s| s.t <= to as f64)?;
    // Requests answered in the seconds the samples span.
    let answered: u64 = seconds
        .iter()
        .enumerate()
        .filter(|(i, _)| (*i as f64) >= a.t.floor() && (*i as f64) < b.t.floor())
        .map(|(_, s)| s.sent - s.lost)
        .sum();
    Some(Costs::between(a, b, answered, masters))
}

/// A CPU probe after the run: `instances` fresh instances sent `rate` requests/s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub tracing: bool,
    pub instances: usize,
    pub rate: u32,
}

impl Probe {
    /// Every instance at the steady rate with tracing off and on (what tracing costs),
    /// then one instance alone at the steady rate and at the spike's, with the run's
    /// tracing: an instance's CPU per request falls as its rate grows (fewer wake-ups
    /// per request, fuller batches), so the capacity arithmetic takes the busiest.
    fn after(args: &Args) -> [Probe; 4] {
        let all = |tracing| Probe {
            tracing,
            instances: args.instances,
            rate: args.rate,
        };
        let alone = |rate| Probe {
            tracing: args.tracing,
            instances: 1,
            rate,
        };
        [
            all(!args.tracing),
            all(args.tracing),
            alone(args.rate),
            alone(args.rate.saturating_mul(2)),
        ]
    }

    /// Requests per second each instance is sent.
    pub fn rate_per_instance(&self) -> u32 {
        self.rate / self.instances.max(1) as u32
    }

    /// The log files' tag.
    fn tag(&self) -> String {
        let tracing = if self.tracing { "on" } else { "off" };
        format!("probe-{}x{}-tracing-{tracing}", self.instances, self.rate)
    }
}

/// Starts `probe.instances` fresh instances with `launch.tracing` and measures their CPU
/// per request over `PROBE_S` seconds at `probe.rate`.
async fn cpu_probe(
    probe: Probe,
    launch: &Launch<'_>,
    topology: &Topology,
    proxied: usize,
    ids: &Arc<Identities>,
    masters: &[usize],
) -> Result<Costs, RunError> {
    let tracing = if launch.tracing { "on" } else { "off" };
    println!(
        "cpu probe: {} instance(s), tracing {tracing}, {PROBE_S} s at {} req/s",
        probe.instances, probe.rate
    );
    // The proxied instance only where there are others: one alone talks to Redis directly.
    let proxied = Some(proxied).filter(|_| probe.instances > 1);
    let instances =
        instances::start_all(probe.instances, proxied, launch, &topology.proxied_hosts).await?;
    let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
    let schedule = Schedule::soak(probe.rate, 0, PROBE_S);
    let recorder = Arc::new(Recorder::default());
    let start = Instant::now() + Duration::from_millis(100);
    tokio::time::sleep_until(start.into()).await;
    let before = sample::take(0.0, topology.ports(), &instances).await;
    traffic::run(
        &schedule,
        start,
        &addrs,
        Arc::clone(ids),
        Arc::clone(&recorder),
        Arc::new(Storm::default()),
    )
    .await;
    let after = sample::take(start.elapsed().as_secs_f64(), topology.ports(), &instances).await;
    let answered: u64 = recorder.seconds().iter().map(|s| s.sent - s.lost).sum();
    let costs = Costs::between(&before, &after, answered, masters);
    println!(
        "cpu probe: tracing {tracing}: {:.1} µs instance CPU per request ({answered} answered)",
        costs.instance_us()
    );
    Ok(costs)
}
