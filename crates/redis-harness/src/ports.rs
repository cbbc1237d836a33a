//! Choosing loopback ports for servers.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

/// Offset from a cluster node's client port to its cluster bus port (fixed by Redis).
pub(crate) const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// Cluster client ports come from `10000..20000`, so bus ports fall in `20000..30000`:
/// both ranges are disjoint and below Linux's ephemeral range (32768+), so neither a
/// standalone server (`free_port`) nor an outgoing connection can be handed one by the OS.
const CLUSTER_PORTS: std::ops::Range<u16> = 10_000..20_000;

/// A port the OS reports free on 127.0.0.1 right now.
///
/// It can be taken before the server binds it; callers retry (and check that the server
/// answering is their own child).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// A port for a cluster node: it and its bus port (`port + 10000`) are both free now.
///
/// Picked at random in a fixed range (rather than from the OS) because the OS only
/// vouches for one port, and the bus port must be free too.
pub(crate) fn free_cluster_port() -> u16 {
    let span = u64::from(CLUSTER_PORTS.end - CLUSTER_PORTS.start);
    for _ in 0..1000 {
        let offset = u16::try_from(random() % span).expect("offset is below the span");
        let port = CLUSTER_PORTS.start + offset;
        if is_free(port) && is_free(port + CLUSTER_BUS_OFFSET) {
            return port;
        }
    }
    panic!("no free loopback port pair (port, port + 10000) in {CLUSTER_PORTS:?}");
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A random number from std's per-instance random hash keys: enough to spread parallel
/// tests over the range without a dependency.
fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}
