//! Exact, atomic, multi-window rate limiting on an in-memory store and on Redis.
//!
//! - [`Policy`]: named windows ([`Limit`]) checked together, each with its
//!   [`Algorithm`]: GCRA, sliding log, sliding-window counter, fixed or calendar window.
//! - [`Store`]: where state lives. [`MemoryStore`] (sharded, in-process) and
//!   [`RedisStore`] (one Lua script per decision, Redis `TIME` as the only clock, Cluster
//!   ready through hash tags) decide identically.
//! - [`Limiter`]: a policy on a store; [`Limiter::check`] answers at once,
//!   [`Limiter::acquire`] waits its turn.
//!
//! ```
//! use std::time::Duration;
//! use limiter_core::{Algorithm, Limit, Limiter, MemoryStore, Policy};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let policy = Policy::new("uploads", vec![
//!     Limit::new(10, Duration::from_secs(1)).with_name("burst"),
//!     Limit::new(1_000, Duration::from_secs(3600)).with_name("hourly")
//!         .with_algorithm(Algorithm::SlidingWindow),
//! ])?;
//! let limiter = Limiter::new(policy, MemoryStore::new());
//! let decision = limiter.check("tenant-7", 4).await?; // a request costing 4 units
//! assert!(decision.is_allowed());
//! assert_eq!(decision.windows()[0].remaining(), 6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # The crate's README
//!
//! The rest of this page is `README.md`, compiled as a doc test.
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod algorithm;
mod calendar;
mod clock;
#[cfg(feature = "serde")]
pub mod config_serde;
mod connection;
mod cost;
mod decision;
mod distinct;
mod error;
mod joint;
mod key;
mod limiter;
pub mod metric_names;
mod overrides;
mod policy;
mod reservation;
mod store;

pub use calendar::Period;
pub use clock::{Clock, CoarseClock, ManualClock, MonotonicClock, Stopwatch};
pub use cost::Cost;
pub use decision::{Decision, Verdict, WindowState};
pub use distinct::{DistinctCounter, MemoryDistinct, RedisDistinct};
pub use error::{AcquireError, Error, InvalidFailureMode, Overload, PolicyError, StoreError};
pub use error::{LimitField, LimitProblem, StoreConfigError, Unavailable};
pub use joint::{Check, Joint};
pub use key::MAX_KEY_LEN;
pub use limiter::Limiter;
pub use overrides::{
    Adjustment, BadFactor, Override, OverrideList, RedisOverrides, MAX_FACTOR, MAX_OVERRIDES,
};
pub use policy::{Algorithm, Leasing, Limit, Policy, MAX_WINDOWS};
pub use reservation::Reservation;
pub use store::{Batched, BatchedBuilder, DenialCache, DenialCacheBuilder};
pub use store::{BreakerConfig, BreakerState, FailureMode, Guarded, GuardedBuilder};
pub use store::{LeaseStats, LeaseStore, Leased, LeasedBuilder};
pub use store::{
    MemoryGuard, MemoryStore, MemoryStoreBuilder, RedisStore, RedisStoreBuilder, Store,
    DEFAULT_MAX_KEYS,
};
pub use store::{DEFAULT_MAX_QUEUED, DEFAULT_MAX_WAIT, DEFAULT_TIMEOUT, PER_DECISION_ALLOWANCE};
