//! Once a second: every Redis node's CPU and command counters (`INFO`), every instance's
//! RSS and CPU (/proc).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cpu;
use crate::instances::Instance;
use crate::topology;

/// A node's cumulative counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeCounters {
    /// used_cpu_sys + used_cpu_user, seconds.
    pub cpu_s: f64,
    /// total_commands_processed.
    pub commands: u64,
    /// Calls of the decision scripts (`EVALSHA` + `EVAL`).
    pub scripts: u64,
    /// Keys held (`db0:keys`): what the limiter stores on this node.
    pub keys: u64,
    /// Calls per command (`INFO commandstats`), lower-case names.
    pub calls: BTreeMap<String, u64>,
}

/// One second's readings.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Per node, in spawn order; `None` when it did not answer (killed, stalled).
    pub nodes: Vec<Option<NodeCounters>>,
    /// Per instance.
    pub rss_mib: Vec<Option<f64>>,
    pub instance_cpu_s: Vec<Option<f64>>,
    /// CPU seconds of this process (the load generator) and of the whole machine.
    pub generator_cpu_s: Option<f64>,
    pub machine_busy_s: Option<f64>,
}

/// Reads the counters of the node on `port` (blocking, bounded by the probe timeout).
pub fn node_counters(port: u16) -> Option<NodeCounters> {
    let mut conn = topology::connect(port).ok()?;
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .arg("stats")
        .arg("commandstats")
        .arg("keyspace")
        .query(&mut conn)
        .ok()?;
    Some(parse_info(&info))
}

/// The counters in an `INFO cpu stats commandstats` reply.
pub fn parse_info(info: &str) -> NodeCounters {
    let mut c = NodeCounters::default();
    for line in info.lines() {
        let line = line.trim();
        if let Some((name, value)) = line.split_once(':') {
            match name {
                "used_cpu_sys" | "used_cpu_user" => c.cpu_s += value.parse().unwrap_or(0.0),
                "total_commands_processed" => c.commands = value.parse().unwrap_or(0),
                "cmdstat_evalsha" | "cmdstat_eval" => c.scripts += calls(value),
                "db0" => c.keys = field(value, "keys="),
                _ => {}
            }
            if let Some(command) = name.strip_prefix("cmdstat_") {
                c.calls.insert(command.to_string(), calls(value));
            }
        }
    }
    c
}

/// `calls=N` of a commandstats line's value.
fn calls(value: &str) -> u64 {
    field(value, "calls=")
}

/// The number after `name` (e.g. `keys=`) in a comma-separated INFO value; 0 if absent.
fn field(value: &str, name: &str) -> u64 {
    value
        .split(',')
        .find_map(|f| f.strip_prefix(name))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Samples every node (in parallel: a stalled one must not delay the others) and every
/// instance.
pub async fn take(t: f64, ports: &[u16], instances: &[Instance]) -> Sample {
    let probes: Vec<_> = ports
        .iter()
        .map(|&p| tokio::task::spawn_blocking(move || node_counters(p)))
        .collect();
    let mut nodes = Vec::with_capacity(probes.len());
    for probe in probes {
        nodes.push(probe.await.ok().flatten());
    }
    Sample {
        t,
        nodes,
        rss_mib: instances.iter().map(Instance::rss_mib).collect(),
        instance_cpu_s: instances.iter().map(Instance::cpu_seconds).collect(),
        generator_cpu_s: cpu::process_seconds("/proc/self/stat"),
        machine_busy_s: cpu::machine_busy_seconds(),
    }
}

/// A per-second rate between two samples of a cumulative value.
pub fn rate(before: Option<f64>, after: Option<f64>, dt: f64) -> Option<f64> {
    match (before, after) {
        (Some(a), Some(b)) if dt > 0.0 && b >= a => Some((b - a) / dt),
        _ => None,
    }
}

/// The pause between samples.
pub const INTERVAL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_commands_and_script_calls() {
        let info = "# CPU\r\nused_cpu_sys:1.50\r\nused_cpu_user:2.25\r\n# Stats\r\n\
                    total_commands_processed:1234\r\n# Commandstats\r\n\
                    cmdstat_evalsha:calls=100,usec=500,usec_per_call=5.00,rejected_calls=0\r\n\
                    cmdstat_eval:calls=3,usec=30\r\ncmdstat_info:calls=7,usec=1\r\n\
                    # Keyspace\r\ndb0:keys=42,expires=42,avg_ttl=1000\r\n";
        let c = parse_info(info);
        assert_eq!(c.cpu_s, 3.75);
        assert_eq!(c.commands, 1234);
        assert_eq!(c.scripts, 103);
        assert_eq!(c.keys, 42);
        assert_eq!(c.calls.get("info"), Some(&7));
    }
}
