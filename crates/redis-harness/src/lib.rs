//! Real `redis-server` processes for tests: spawned on free loopback ports, awaited until
//! they answer, killed when dropped. No mocks: faults are injected into real processes
//! (kill, restart, `CLIENT PAUSE`), into a real cluster (killing a master) and into the
//! network path (a TCP proxy that delays, blackholes, refuses or cuts).
//!
//! A missing `redis-server` or `redis-cli` binary fails the test with a message saying how
//! to install it; nothing is skipped.
//!
//! ```no_run
//! let server = redis_harness::RedisServer::spawn();
//! let mut conn = server.connection();
//! let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
//! assert_eq!(pong, "PONG");
//! ```
//!
//! # The crate's README
//!
//! The rest of this page is `README.md`, compiled as a doc test.
#![doc = include_str!("../README.md")]

mod binaries;
mod cluster;
mod pause;
mod ports;
mod proxy;
mod server;

pub use cluster::RedisCluster;
pub use proxy::{FaultProxy, Mode};
pub use server::RedisServer;
