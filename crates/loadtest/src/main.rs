//! `loadtest`: demo instances over a Redis Cluster under skewed open-loop traffic with a
//! spike, faults and a flood (or a soak), reported in docs/loadtest.md with PNG charts.
//! See README.md beside this crate.

mod accuracy;
mod args;
mod capacity;
mod charts;
mod cpu;
mod faults;
mod flood;
mod http;
mod identities;
mod instances;
mod policy;
mod record;
mod report;
mod sample;
mod scenario;
mod schedule;
mod topology;
mod traffic;

use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let args = match args::Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = args.out.clone();
    // Dropping the scenario's future (on a signal) drops the instances, the proxies and
    // the cluster it owns: their Drop kills every process. Dropping the runtime waits for
    // the blocking tasks, each bounded (probes 0.5 s, a failover wait 30 s).
    let code = runtime.block_on(async move {
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("loadtest: installing the SIGTERM handler: {e}");
                return ExitCode::FAILURE;
            }
        };
        let outcome = tokio::select! {
            r = scenario::run(args) => r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("loadtest: interrupted; stopping every process");
                return ExitCode::from(130);
            }
            _ = term.recv() => {
                eprintln!("loadtest: terminated; stopping every process");
                return ExitCode::from(143);
            }
        };
        match outcome.map(|o| report::write(&o, &out)) {
            Ok(Ok(path)) => {
                println!("report: {}", path.display());
                ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                eprintln!("loadtest: {e}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("loadtest: {e}");
                ExitCode::FAILURE
            }
        }
    });
    drop(runtime);
    code
}
