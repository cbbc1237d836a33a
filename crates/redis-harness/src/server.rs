//! One `redis-server` child process: started on a free port, awaited, killed on drop.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{binaries, ports};

/// How long a server gets to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the harness's own probes wait for a reply: a stalled node must not hang a
/// polling loop past its deadline.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A `redis-server` child process on 127.0.0.1, killed on drop.
///
/// ```no_run
/// let server = redis_harness::RedisServer::spawn();
/// let pong: String = server.cmd(&["PING"]);
/// assert_eq!(pong, "PONG");
/// ```
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    pub(crate) dir: PathBuf,
    extra: Vec<String>,
    /// The connection that can lift a `CLIENT PAUSE` (see `pause.rs`).
    pub(crate) pause_control: Mutex<Option<TcpStream>>,
}

impl RedisServer {
    /// Starts a standalone server on a free port and waits until it answers `PING`.
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let _: () = server.cmd(&["SET", "k", "v"]);
    /// ```
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not start: tests need it.
    pub fn spawn() -> Self {
        Self::spawn_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments.
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn_with(&["--maxmemory", "10mb"]);
    /// let conf: Vec<String> = server.cmd(&["CONFIG", "GET", "maxmemory"]);
    /// assert_eq!(conf[1], "10485760");
    /// ```
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not start.
    pub fn spawn_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn_on(ports::free_port, |_| extra.clone())
    }

    /// Starts a server on a port from `pick_port`, with arguments that may depend on the
    /// port (a cluster node names its config file after it).
    pub(crate) fn spawn_on(pick_port: fn() -> u16, args_for: impl Fn(u16) -> Vec<String>) -> Self {
        let mut last_error = String::new();
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..5 {
            let port = pick_port();
            let dir =
                std::env::temp_dir().join(format!("redis-harness-{}-{port}", std::process::id()));
            let mut server = RedisServer {
                child: None,
                port,
                dir,
                extra: args_for(port),
                pause_control: Mutex::new(None),
            };
            match server.start() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn start(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("creating {:?}: {e}", self.dir))?;
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(&self.dir)
        .args(&self.extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| binaries::spawn_error("redis-server", e))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "redis-server on port {} exited: {status}",
                        self.port
                    ));
                }
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.answers_as_ours() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(format!(
            "redis-server on port {} did not answer within {START_TIMEOUT:?}",
            self.port
        ))
    }

    /// Whether the server on our port is our child: another test may have bound the port
    /// between our probe for a free one and our server's start.
    fn answers_as_ours(&self) -> bool {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return false;
        };
        let info: String = self.probe(&["INFO", "server"]).unwrap_or_default();
        info.lines()
            .any(|l| l.trim() == format!("process_id:{pid}"))
    }

    /// The server's port on 127.0.0.1.
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let addr = format!("127.0.0.1:{}", server.port());
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let client = redis::Client::open(server.url()).unwrap();
    /// ```
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the process is running (not killed).
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(PROBE_TIMEOUT)
    }

    /// A synchronous connection for inspecting or disturbing the server.
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let mut conn = server.connection();
    /// let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    /// ```
    ///
    /// # Panics
    /// When the server does not accept the connection.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection()
            .unwrap_or_else(|e| panic!("connecting to redis on port {}: {e}", self.port))
    }

    /// Runs one command and returns its reply.
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let n: i64 = server.cmd(&["INCR", "counter"]);
    /// assert_eq!(n, 1);
    /// ```
    ///
    /// # Panics
    /// When the command fails.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        build(args)
            .query(&mut self.connection())
            .unwrap_or_else(|e| panic!("redis {args:?} failed: {e}"))
    }

    /// Script executions this server has counted (`EVALSHA` and `EVAL`, rejected ones
    /// included), from `INFO commandstats`: how many decisions reached Redis.
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// assert_eq!(server.script_calls(), 0);
    /// ```
    ///
    /// # Panics
    /// When the command fails.
    pub fn script_calls(&self) -> u64 {
        let info: String = self.cmd(&["INFO", "commandstats"]);
        info.lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .flat_map(|l| l.split([':', ',']))
            .filter_map(|field| {
                let (name, value) = field.split_once('=')?;
                matches!(name, "calls" | "rejected_calls")
                    .then(|| value.trim().parse::<u64>().ok())?
            })
            .sum()
    }

    /// Runs one command on a fresh connection with a bounded reply wait, for polling
    /// loops that must tolerate a node that is down or stalled.
    pub(crate) fn probe<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut conn = self.try_connection()?;
        conn.set_read_timeout(Some(PROBE_TIMEOUT))?;
        conn.set_write_timeout(Some(PROBE_TIMEOUT))?;
        build(args).query(&mut conn)
    }

    /// Kills the process (SIGKILL) and waits for it to exit.
    ///
    /// ```no_run
    /// let mut server = redis_harness::RedisServer::spawn();
    /// server.kill();
    /// assert!(redis::Client::open(server.url()).unwrap().get_connection().is_err());
    /// ```
    pub fn kill(&mut self) {
        self.pause_control
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (nothing is persisted).
    ///
    /// ```no_run
    /// let mut server = redis_harness::RedisServer::spawn();
    /// server.restart();
    /// let pong: String = server.cmd(&["PING"]);
    /// ```
    ///
    /// # Panics
    /// When it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.start() {
            panic!("redis-server did not restart: {e}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn build(args: &[&str]) -> redis::Cmd {
    let (name, rest) = args.split_first().expect("a redis command needs a name");
    let mut cmd = redis::cmd(name);
    for arg in rest {
        cmd.arg(*arg);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawns_answers_restarts_and_dies_with_its_handle() {
        let mut server = RedisServer::spawn();
        let _: () = server.cmd(&["SET", "k", "v"]);
        server.restart();
        let v: Option<String> = server.cmd(&["GET", "k"]);
        assert_eq!(v, None, "a restarted server starts empty");
        let port = server.port();
        drop(server);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
