//! The workspace's crates in one place, for the demo and the end-to-end tests.
//!
//! ```
//! use limiter::core::{Limit, Policy};
//! let policy = Policy::new("p", vec![Limit::new(1, std::time::Duration::from_secs(1))]);
//! assert!(policy.is_ok());
//! ```

pub use limiter_core as core;
pub use limiter_tower as tower;

pub mod telemetry;
