//! The costs measured over a window of the run, and what they say about 1M requests/s
//! (2M during the spike): instances = rate x CPU per request, Redis shards = rate x
//! Redis CPU per request, each core kept under `UTILIZATION`.

use std::collections::BTreeMap;

use crate::sample::Sample;

/// The busiest a core may run: the Redis CPU target (70%), applied to the
/// instances too, so queues stay short enough for the latency targets.
pub const UTILIZATION: f64 = 0.7;

/// Totals over a window.
#[derive(Clone, Debug, Default)]
pub struct Costs {
    /// Requests answered in the window.
    pub requests: u64,
    pub seconds: f64,
    /// CPU seconds of every instance.
    pub instance_cpu_s: f64,
    /// CPU seconds of every Redis node.
    pub redis_cpu_s: f64,
    pub redis_commands: u64,
    /// Decision script calls (EVALSHA/EVAL): one per batch of decisions.
    pub redis_scripts: u64,
    /// Calls per command name.
    pub calls: BTreeMap<String, u64>,
}

impl Costs {
    /// The differences between two samples, with `requests` answered between them, over
    /// the Redis nodes at indexes `nodes` (the masters: a replica's CPU goes to applying
    /// its master's writes, and a shard is sized by its master). Nodes or instances
    /// missing from either sample are left out.
    pub fn between(a: &Sample, b: &Sample, requests: u64, nodes: &[usize]) -> Costs {
        let mut c = Costs {
            requests,
            seconds: b.t - a.t,
            ..Costs::default()
        };
        for &i in nodes {
            if let (Some(Some(x)), Some(Some(y))) = (a.nodes.get(i), b.nodes.get(i)) {
                c.redis_cpu_s += (y.cpu_s - x.cpu_s).max(0.0);
                c.redis_commands += y.commands.saturating_sub(x.commands);
                c.redis_scripts += y.scripts.saturating_sub(x.scripts);
                for (name, &n) in &y.calls {
                    let before = x.calls.get(name).copied().unwrap_or(0);
                    *c.calls.entry(name.clone()).or_default() += n.saturating_sub(before);
                }
            }
        }
        for (x, y) in a.instance_cpu_s.iter().zip(&b.instance_cpu_s) {
            if let (Some(x), Some(y)) = (x, y) {
                c.instance_cpu_s += (y - x).max(0.0);
            }
        }
        c
    }

    /// Instance CPU per request, µs.
    pub fn instance_us(&self) -> f64 {
        per(self.instance_cpu_s * 1e6, self.requests)
    }

    /// Redis CPU per request, µs (all nodes).
    pub fn redis_us(&self) -> f64 {
        per(self.redis_cpu_s * 1e6, self.requests)
    }

    /// Redis CPU per command, µs.
    pub fn redis_us_per_command(&self) -> f64 {
        per(self.redis_cpu_s * 1e6, self.redis_commands)
    }

    /// Redis commands per request (decision).
    pub fn commands_per_request(&self) -> f64 {
        per(self.redis_commands as f64, self.requests)
    }

    /// Decision script calls per request: below 1 where batching, leases and the local
    /// cache spare Redis.
    pub fn scripts_per_request(&self) -> f64 {
        per(self.redis_scripts as f64, self.requests)
    }

    /// The commands sent most per request: (name, calls per request), most first.
    pub fn top_commands(&self, n: usize) -> Vec<(String, f64)> {
        let mut top: Vec<(String, f64)> = self
            .calls
            .iter()
            .map(|(name, &calls)| (name.clone(), per(calls as f64, self.requests)))
            .collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        top.truncate(n);
        top
    }

    /// Requests one fully busy core serves.
    pub fn per_core_rps(&self) -> f64 {
        let us = self.instance_us();
        if us > 0.0 {
            1e6 / us
        } else {
            0.0
        }
    }
}

fn per(total: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        total / n as f64
    }
}

/// Cores (1-CPU instances, or single-threaded Redis shards) needed for `rate` requests/s
/// at `us_per_request` µs of CPU each, each kept under [`UTILIZATION`].
pub fn cores_for(rate: f64, us_per_request: f64) -> u64 {
    (rate * us_per_request / 1e6 / UTILIZATION).ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::NodeCounters;

    #[test]
    fn costs_are_differences_per_request() {
        let node = |cpu_s, commands, scripts| {
            Some(NodeCounters {
                cpu_s,
                commands,
                scripts,
                keys: 0,
                calls: BTreeMap::from([("evalsha".to_string(), scripts)]),
            })
        };
        let a = Sample {
            t: 10.0,
            nodes: vec![node(1.0, 100, 10), None],
            rss_mib: vec![],
            instance_cpu_s: vec![Some(2.0), Some(3.0)],
            ..Sample::default()
        };
        let b = Sample {
            t: 20.0,
            nodes: vec![node(1.5, 1100, 510), node(9.0, 9, 9)],
            rss_mib: vec![],
            instance_cpu_s: vec![Some(4.0), Some(4.0)],
            ..Sample::default()
        };
        let c = Costs::between(&a, &b, 10_000, &[0, 1]);
        assert_eq!(c.seconds, 10.0);
        assert_eq!(c.instance_us(), 300.0); // 3 CPU-s over 10,000 requests
        assert_eq!(c.redis_us(), 50.0);
        assert_eq!(c.redis_us_per_command(), 500.0);
        assert_eq!(c.scripts_per_request(), 0.05);
        assert_eq!(c.calls["evalsha"], 500);
    }

    #[test]
    fn a_million_requests_at_100_us_need_143_cores_at_70_percent() {
        assert_eq!(cores_for(1e6, 100.0), 143);
        assert_eq!(cores_for(10.0, 1.0), 1);
    }
}
