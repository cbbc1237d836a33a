//! A burst on one key over HTTP: `C` keep-alive connections, spread round-robin over the
//! given instances, send `TOTAL` GET requests in all, as one closed-loop burst. Every
//! connection is opened (and its HTTP/1.1 handshake done) first; then all of them start
//! together behind a barrier, each sending its share back to back (the next request once
//! the previous response's body is read).
//!
//! ```sh
//! cargo build --release --example flood
//! target/release/examples/flood --conns 600 --total 3000 --limit 1000 --path /status \
//!     127.0.0.1:3001 127.0.0.1:3002 127.0.0.1:3003
//! ```
//!
//! Defaults: `--conns 64 --total 3000 --limit 1000 --path /status --timeout-ms 10000` (the
//! timeout bounds each connect and each request).
//!
//! Prints one line of `key=value` (scripts/bench-flood.sh reads it): the responses by
//! kind, with `admitted` every 2xx, `denied` every 429 without `RateLimit-Degraded`,
//! `degraded` every response with that header (whatever its status, so it overlaps the
//! others), `shed` every 503 and `errors` every connection error, timeout and other
//! status; `admitted_per_limit` (admitted / `--limit`); the latency percentiles of the
//! responses (request sent to body read, connection errors excluded) in ms; `statuses`,
//! every status seen with its count. A request that fails drops its connection: the next
//! one of that connection opens a new one.

use std::collections::BTreeMap;
use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HOST;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::time::timeout;

const USAGE: &str =
    "usage: flood [--conns C] [--total N] [--limit L] [--path P] [--timeout-ms MS] HOST:PORT...";

type Sender = SendRequest<Empty<Bytes>>;
type BoxError = Box<dyn Error + Send + Sync>;

struct Args {
    targets: Vec<SocketAddr>,
    conns: usize,
    total: usize,
    limit: u64,
    path: String,
    timeout: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        targets: Vec::new(),
        conns: 64,
        total: 3000,
        limit: 1000,
        path: "/status".into(),
        timeout: Duration::from_secs(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") {
            args.targets
                .push(arg.parse().map_err(|e| format!("{arg}: {e}"))?);
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{arg} {value}: {e}"))
        };
        match arg.as_str() {
            "--conns" => args.conns = number()? as usize,
            "--total" => args.total = number()? as usize,
            "--limit" => args.limit = number()?,
            "--path" => args.path = value,
            "--timeout-ms" => args.timeout = Duration::from_millis(number()?),
            other => return Err(format!("unknown flag {other}; {USAGE}")),
        }
    }
    if args.targets.is_empty() || args.conns == 0 || args.limit == 0 {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// What one connection saw.
struct Tally {
    admitted: u64,
    denied: u64,
    degraded: u64,
    shed: u64,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            admitted: 0,
            denied: 0,
            degraded: 0,
            shed: 0,
            errors: 0,
            statuses: BTreeMap::new(),
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
        }
    }

    /// A response: 2xx admitted, 429 denied unless degraded (a failure mode's 429 is
    /// only degraded), 503 shed, any other status an error.
    fn response(&mut self, status: u16, degraded: bool, latency: Duration) {
        match status {
            200..=299 => self.admitted += 1,
            429 if !degraded => self.denied += 1,
            429 => {}
            503 => self.shed += 1,
            _ => self.errors += 1,
        }
        self.degraded += u64::from(degraded);
        *self.statuses.entry(status).or_default() += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us.max(1));
    }

    fn add(&mut self, other: Tally) {
        self.admitted += other.admitted;
        self.denied += other.denied;
        self.degraded += other.degraded;
        self.shed += other.shed;
        self.errors += other.errors;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.latency_us.add(&other.latency_us).expect("same bounds");
    }
}

async fn connect(addr: SocketAddr) -> Result<Sender, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection); // drives the connection; its error shows in send_request
    Ok(sender)
}

/// One request: its status and whether it carried `RateLimit-Degraded`.
async fn request(
    sender: &mut Sender,
    addr: SocketAddr,
    path: &str,
) -> Result<(u16, bool), BoxError> {
    let request = Request::get(path)
        .header(HOST, addr.to_string())
        .body(Empty::new())?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let degraded = response.headers().contains_key("ratelimit-degraded");
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok((status, degraded))
}

/// One connection: opened, then the barrier, then `share` requests back to back.
async fn connection(
    addr: SocketAddr,
    share: usize,
    path: Arc<str>,
    limit: Duration,
    start: Arc<Barrier>,
) -> Tally {
    let mut tally = Tally::new();
    let mut sender = match timeout(limit, connect(addr)).await {
        Ok(Ok(sender)) => Some(sender),
        _ => None,
    };
    start.wait().await;
    for _ in 0..share {
        let mut current = match sender.take() {
            Some(s) => s,
            None => match timeout(limit, connect(addr)).await {
                Ok(Ok(s)) => s,
                _ => {
                    tally.errors += 1;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match timeout(limit, request(&mut current, addr, &path)).await {
            Ok(Ok((status, degraded))) => {
                tally.response(status, degraded, sent.elapsed());
                sender = Some(current);
            }
            _ => tally.errors += 1, // the connection is dropped with `current`
        }
    }
    tally
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("flood: {e}");
            return ExitCode::from(2);
        }
    };
    let path: Arc<str> = args.path.as_str().into();
    let start = Arc::new(Barrier::new(args.conns + 1));
    let tasks: Vec<_> = (0..args.conns)
        .map(|i| {
            let share = args.total / args.conns + usize::from(i < args.total % args.conns);
            let addr = args.targets[i % args.targets.len()];
            tokio::spawn(connection(
                addr,
                share,
                path.clone(),
                args.timeout,
                start.clone(),
            ))
        })
        .collect();
    start.wait().await;
    let began = Instant::now();
    let mut tally = Tally::new();
    for task in tasks {
        match task.await {
            Ok(t) => tally.add(t),
            Err(e) => {
                eprintln!("flood: a connection task failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let wall = began.elapsed();

    let ms = |q: f64| tally.latency_us.value_at_quantile(q) as f64 / 1000.0;
    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect();
    println!(
        "conns={} total={} limit={} admitted={} denied={} degraded={} shed={} errors={} \
         admitted_per_limit={:.3} p50_ms={:.1} p99_ms={:.1} p999_ms={:.1} wall_ms={} \
         statuses={}",
        args.conns,
        args.total,
        args.limit,
        tally.admitted,
        tally.denied,
        tally.degraded,
        tally.shed,
        tally.errors,
        tally.admitted as f64 / args.limit as f64,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        wall.as_millis(),
        statuses.join(","),
    );
    ExitCode::SUCCESS
}
