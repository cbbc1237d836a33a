//! The proxy's accept loop: registers each new connection and hands it to its threads.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{pump, Conn, Mode, Shared};

/// How often the accept loop checks for new connections and for the proxy stopping: a
/// non-blocking listener polled this often, so the thread can always exit.
const ACCEPT_POLL: Duration = Duration::from_millis(10);

pub(super) fn spawn(listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("making the proxy listener non-blocking: {e}"));
    std::thread::Builder::new()
        .name("fault-proxy-accept".into())
        .spawn(move || run(&listener, &shared))
        .unwrap_or_else(|e| panic!("spawning the proxy's accept thread: {e}"))
}

fn run(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        match listener.accept() {
            Ok((client, _)) => admit(client, shared),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Wait on the condition variable rather than sleeping, so a drop wakes
                // us at once.
                let state = shared.lock();
                if state.stopping {
                    return;
                }
                drop(shared.changed.wait_timeout(state, ACCEPT_POLL));
            }
            // Transient accept errors (e.g. the client gave up already): keep serving.
            Err(_) => {}
        }
        if shared.lock().stopping {
            return;
        }
    }
}

/// Registers the connection at once, so a `cut_all` that follows the client's connect
/// cuts it even before its upstream connection exists.
fn admit(client: TcpStream, shared: &Arc<Shared>) {
    let mut state = shared.lock();
    if state.stopping || state.mode == Mode::Refuse {
        return; // dropping `client` closes it
    }
    // Accepted sockets may inherit the listener's non-blocking flag on some platforms.
    if client.set_nonblocking(false).is_err() {
        return;
    }
    let Ok(handle) = client.try_clone() else {
        return;
    };
    let id = state.next_id;
    state.next_id += 1;
    state.conns.insert(
        id,
        Conn {
            client: handle,
            upstream: None,
        },
    );
    let thread_shared = Arc::clone(shared);
    match std::thread::Builder::new()
        .name("fault-proxy-conn".into())
        .spawn(move || pump::serve(id, client, &thread_shared))
    {
        Ok(thread) => state.track(thread),
        Err(_) => {
            if let Some(conn) = state.conns.remove(&id) {
                conn.shutdown();
            }
        }
    }
}
