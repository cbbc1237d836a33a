//! Moving one connection's bytes, in both directions, as the proxy's mode allows.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Mode, Shared};

/// How long connecting to the target may take before the client is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects the registered connection `id` to the target and forwards until either side
/// closes or the connection is cut; then closes both sockets.
pub(super) fn serve(id: u64, client: TcpStream, shared: &Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
        close(id, shared);
        return;
    };
    let streams = (
        client.try_clone(),
        upstream.try_clone(),
        upstream.try_clone(),
    );
    let (Ok(client_in), Ok(upstream_out), Ok(handle)) = streams else {
        close(id, shared);
        return;
    };
    {
        let mut state = shared.lock();
        let Some(conn) = state.conns.get_mut(&id) else {
            return; // cut while we were connecting
        };
        conn.upstream = Some(handle);
        let back_shared = Arc::clone(shared);
        match std::thread::Builder::new()
            .name("fault-proxy-back".into())
            .spawn(move || forward(id, upstream, client, &back_shared))
        {
            Ok(thread) => state.track(thread),
            Err(_) => {
                drop(state);
                close(id, shared);
                return;
            }
        }
    }
    forward(id, client_in, upstream_out, shared);
}

/// Copies `from` to `to` chunk by chunk, holding each chunk as the mode says.
fn forward(id: u64, mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !release(id, shared) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // Either side closing (or failing) ends the whole connection: Redis clients do not
    // half-close, and the other direction's thread must not wait forever.
    close(id, shared);
}

/// Waits until the mode lets a chunk read now through: at once in `Pass`, after the
/// delay in `Delay`, never while `Blackhole`. `false` when the connection was cut or the
/// proxy is stopping.
fn release(id: u64, shared: &Shared) -> bool {
    let read_at = Instant::now();
    let mut state = shared.lock();
    loop {
        if state.stopping || !state.conns.contains_key(&id) {
            return false;
        }
        state = match state.mode {
            Mode::Pass => return true,
            Mode::Refuse => return false,
            Mode::Blackhole => shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner()),
            Mode::Delay(d) => {
                let Some(left) = (read_at + d).checked_duration_since(Instant::now()) else {
                    return true;
                };
                if left.is_zero() {
                    return true;
                }
                shared
                    .changed
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

fn close(id: u64, shared: &Shared) {
    if let Some(conn) = shared.lock().conns.remove(&id) {
        conn.shutdown();
    }
}
