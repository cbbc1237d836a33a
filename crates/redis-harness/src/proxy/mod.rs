//! A TCP proxy on 127.0.0.1 that injects network faults between a client and a server.

mod accept;
mod pump;

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a [`FaultProxy`] does with traffic; switchable at any time with
/// [`FaultProxy::set_mode`].
///
/// ```
/// use std::time::Duration;
/// let mode = redis_harness::Mode::Delay(Duration::from_millis(200));
/// assert_ne!(mode, redis_harness::Mode::Pass);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything as it comes.
    Pass,
    /// Hold every chunk this long before forwarding it, in both directions.
    Delay(Duration),
    /// Keep connections open but forward nothing, like a network partition: bytes are
    /// held (in the proxy and the kernel's buffers) and delivered if the mode goes back
    /// to forwarding before the connection is cut.
    Blackhole,
    /// Drop every open connection and close new ones as soon as they are accepted.
    Refuse,
}

/// A TCP proxy on 127.0.0.1 in front of a target address, with switchable faults.
/// Its threads stop and its connections close when it is dropped.
///
/// ```no_run
/// use redis_harness::{FaultProxy, Mode, RedisServer};
/// let server = RedisServer::spawn();
/// let proxy = FaultProxy::start(("127.0.0.1", server.port()));
/// let mut conn = redis::Client::open(proxy.url()).unwrap().get_connection().unwrap();
/// proxy.set_mode(Mode::Blackhole);
/// // ... commands through `conn` now hang ...
/// ```
pub struct FaultProxy {
    /// Where the proxy listens.
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// State shared by the proxy handle and its threads.
struct Shared {
    target: SocketAddr,
    state: Mutex<State>,
    /// Signalled on every change of `State`: threads holding bytes re-check the mode.
    changed: Condvar,
}

struct State {
    mode: Mode,
    stopping: bool,
    next_id: u64,
    /// Open connections by id. A connection that is no longer here has been cut: its
    /// threads stop forwarding.
    conns: HashMap<u64, Conn>,
    /// Connection threads, joined on drop.
    threads: Vec<JoinHandle<()>>,
}

/// Handles on one proxied connection's sockets, used only to shut them down: that
/// wakes the threads blocked reading or writing them.
struct Conn {
    client: TcpStream,
    upstream: Option<TcpStream>,
}

impl Conn {
    fn shutdown(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(upstream) = &self.upstream {
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

impl FaultProxy {
    /// Starts a proxy on a free 127.0.0.1 port forwarding to `target`, in [`Mode::Pass`].
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let proxy = redis_harness::FaultProxy::start(("127.0.0.1", server.port()));
    /// ```
    ///
    /// # Panics
    /// When `target` does not resolve or no loopback port can be bound.
    pub fn start(target: impl ToSocketAddrs) -> Self {
        Self::start_on(("127.0.0.1", 0), target)
    }

    /// Starts a proxy listening on `listen` (any loopback address and port) forwarding to
    /// `target`, in [`Mode::Pass`]. For a client that must reach the proxy under a given
    /// address: a Redis Cluster client connects to the ports the nodes announce, so a
    /// proxy in front of one node for one client listens on that node's port at another
    /// loopback address (`127.0.0.2`) which only that client resolves the nodes' name to.
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let proxy = redis_harness::FaultProxy::start_on(
    ///     ("127.0.0.2", server.port()),
    ///     ("127.0.0.1", server.port()),
    /// );
    /// assert_eq!(proxy.port(), server.port());
    /// ```
    ///
    /// # Panics
    /// When `target` does not resolve or `listen` cannot be bound.
    pub fn start_on(listen: impl ToSocketAddrs, target: impl ToSocketAddrs) -> Self {
        let target = target
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .expect("the proxy target does not resolve to an address");
        let listener = TcpListener::bind(listen)
            .unwrap_or_else(|e| panic!("binding the proxy's loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("reading the proxy's port: {e}"));
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(State {
                mode: Mode::Pass,
                stopping: false,
                next_id: 0,
                conns: HashMap::new(),
                threads: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let accept = accept::spawn(listener, Arc::clone(&shared));
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The proxy's port (on 127.0.0.1 unless started with [`FaultProxy::start_on`]).
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let proxy = redis_harness::FaultProxy::start(("127.0.0.1", server.port()));
    /// let stream = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    /// ```
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://<proxy address>:<proxy port>` (127.0.0.1 unless started with
    /// [`FaultProxy::start_on`]): where clients connect to go through the proxy.
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let proxy = redis_harness::FaultProxy::start(("127.0.0.1", server.port()));
    /// let client = redis::Client::open(proxy.url()).unwrap();
    /// ```
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Switches what the proxy does, for open and new connections alike.
    /// [`Mode::Refuse`] also drops every open connection.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redis_harness::{FaultProxy, Mode, RedisServer};
    /// let server = RedisServer::spawn();
    /// let proxy = FaultProxy::start(("127.0.0.1", server.port()));
    /// proxy.set_mode(Mode::Delay(Duration::from_millis(100)));
    /// proxy.set_mode(Mode::Pass);
    /// ```
    pub fn set_mode(&self, mode: Mode) {
        let mut state = self.shared.lock();
        state.mode = mode;
        if mode == Mode::Refuse {
            state.cut_all();
        }
        self.shared.changed.notify_all();
    }

    /// Drops every open connection once; the mode stays as it is, so new connections are
    /// served (in [`Mode::Pass`], normally).
    ///
    /// ```no_run
    /// let server = redis_harness::RedisServer::spawn();
    /// let proxy = redis_harness::FaultProxy::start(("127.0.0.1", server.port()));
    /// proxy.cut_all();
    /// ```
    pub fn cut_all(&self) {
        self.shared.lock().cut_all();
        self.shared.changed.notify_all();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let threads = {
            let mut state = self.shared.lock();
            state.stopping = true;
            state.cut_all();
            std::mem::take(&mut state.threads)
        };
        self.shared.changed.notify_all();
        // The accept thread sees `stopping` within one poll; the connection threads'
        // sockets are shut down, so their reads and writes return at once.
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of `State` is a single step, so a panicking holder leaves it whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn cut_all(&mut self) {
        for (_, conn) in self.conns.drain() {
            conn.shutdown();
        }
    }

    /// Keeps a connection thread's handle for the join on drop, forgetting finished ones
    /// so a long-lived proxy does not accumulate them.
    fn track(&mut self, thread: JoinHandle<()>) {
        self.threads.retain(|t| !t.is_finished());
        self.threads.push(thread);
    }
}

#[cfg(test)]
mod tests;
