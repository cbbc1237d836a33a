//! The command line: the scenario's size and where its inputs and outputs are.

use std::path::PathBuf;

/// What went wrong reading the command line.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("{flag} {value}: {reason}")]
    BadValue {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("unknown flag {0}\n{USAGE}")]
    Unknown(String),
}

pub const USAGE: &str = "usage: loadtest [--instances N] [--rate R] [--duration S] [--warmup S] \
[--spike S] [--flood-conns C] [--flood-limit L] [--leases on|off] [--tracing on|off] \
[--soak [MINUTES]] [--demo PATH] [--out DIR]
  --instances N     demo instances (default 3: sized for a 2-core machine; 10 on 16 cores)
  --rate R          steady offered rate, requests/s over all instances (default 1500)
  --duration S      steady seconds after the spike, over which the faults are spread
                    (default 70; the faults need 65)
  --warmup S        warm-up seconds at half the rate (default 5)
  --spike S         seconds at twice the rate (default 10)
  --flood-conns C   concurrent connections of the flood phase (default 300)
  --flood-limit L   the flood key's limit per hour (default 1000; 3 x L requests are sent)
  --leases on|off   quota leases in the policy file (default off, as a user's file
                    without a leases section; on writes loadtest-leases.md)
  --tracing on|off  every decision's span recorded by the instances (default on)
  --soak [MINUTES]  steady traffic only, for MINUTES (default 30, or SOAK_MIN)
  --demo PATH       the demo binary (default target/release/examples/demo)
  --out DIR         where loadtest.md and the PNG charts go (default docs)";

/// The scenario's parameters.
#[derive(Clone, Debug)]
pub struct Args {
    pub instances: usize,
    pub rate: u32,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub spike_s: u64,
    pub flood_conns: usize,
    pub flood_limit: u64,
    pub leases: bool,
    pub tracing: bool,
    pub soak_min: Option<u64>,
    pub demo: PathBuf,
    pub out: PathBuf,
    /// The command line as given, for the report.
    pub command: String,
}

impl Args {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, ArgsError> {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        let mut parsed = Args {
            instances: 3,
            rate: 1500,
            duration_s: 70,
            warmup_s: 5,
            spike_s: 10,
            flood_conns: 300,
            flood_limit: 1000,
            leases: false,
            tracing: true,
            soak_min: None,
            demo: PathBuf::from(target).join("release/examples/demo"),
            out: PathBuf::from("docs"),
            command: String::new(),
        };
        let args: Vec<String> = args.into_iter().collect();
        parsed.command = std::iter::once("loadtest".to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut it = args.into_iter().peekable();
        while let Some(flag) = it.next() {
            if flag == "--soak" {
                // The value is optional: `--soak` alone means SOAK_MIN or 30 minutes.
                let given = it.next_if(|v| !v.starts_with("--"));
                let value = given.or_else(|| std::env::var("SOAK_MIN").ok());
                parsed.soak_min = Some(match value {
                    Some(v) => number(&flag, &v)?,
                    None => 30,
                });
                continue;
            }
            let value = it
                .next()
                .ok_or_else(|| ArgsError::MissingValue(flag.clone()))?;
            match flag.as_str() {
                "--instances" => parsed.instances = number(&flag, &value)?,
                "--rate" => parsed.rate = number(&flag, &value)?,
                "--duration" => parsed.duration_s = number(&flag, &value)?,
                "--warmup" => parsed.warmup_s = number(&flag, &value)?,
                "--spike" => parsed.spike_s = number(&flag, &value)?,
                "--flood-conns" => parsed.flood_conns = number(&flag, &value)?,
                "--flood-limit" => parsed.flood_limit = number(&flag, &value)?,
                "--leases" => parsed.leases = on_off(&flag, &value)?,
                "--tracing" => parsed.tracing = on_off(&flag, &value)?,
                "--demo" => parsed.demo = PathBuf::from(value),
                "--out" => parsed.out = PathBuf::from(value),
                _ => return Err(ArgsError::Unknown(flag)),
            }
        }
        if parsed.instances == 0 || parsed.rate == 0 || parsed.flood_conns == 0 {
            return Err(ArgsError::BadValue {
                flag: "--instances/--rate/--flood-conns".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(parsed)
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, ArgsError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| ArgsError::BadValue {
        flag: flag.into(),
        value: value.into(),
        reason: e.to_string(),
    })
}

fn on_off(flag: &str, value: &str) -> Result<bool, ArgsError> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(ArgsError::BadValue {
            flag: flag.into(),
            value: value.into(),
            reason: "expected on or off".into(),
        }),
    }
}
