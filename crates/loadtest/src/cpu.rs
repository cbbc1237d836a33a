//! CPU time from /proc: of one process, and of the whole machine, so that the report can
//! tell the CPU the run used from the CPU other work on a shared machine took.

/// Clock ticks per second of /proc (`getconf CLK_TCK`): 100 on Linux for every
/// architecture this runs on (USER_HZ is fixed by the kernel ABI).
const CLK_TCK: f64 = 100.0;

/// CPU seconds (user + system) of the process whose `stat` file is `path`
/// (`/proc/PID/stat`, `/proc/self/stat`), fields 14 and 15.
pub fn process_seconds(path: &str) -> Option<f64> {
    parse_process(&std::fs::read_to_string(path).ok()?)
}

fn parse_process(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// CPU seconds every core has spent busy since boot (/proc/stat: user, nice, system,
/// irq, softirq and steal; not idle or iowait).
pub fn machine_busy_seconds() -> Option<f64> {
    parse_machine(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_machine(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>();
    Some(busy / CLK_TCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_process_and_machine_ticks() {
        let stat = "42 (demo (x)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_process(stat), Some(3.0));
        let machine = "cpu  100 10 50 1000 40 5 5 30 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_machine(machine), Some(2.0));
        assert_eq!(parse_process("garbage"), None);
    }
}
