//! The workspace's crates in one place, for the demo and the end-to-end tests.
//!
//! ```
//! use limiter::limiter_core::{Limit, Policy};
//! let policy = Policy::new("p", vec![Limit::new(1, std::time::Duration::from_secs(1))]);
//! assert!(policy.is_ok());
//! ```

// Re-exported under their own names: `core` would shadow Rust's `core` and `tower` the
// tower crate wherever they are imported.
pub use limiter_core;
pub use limiter_tower;

pub mod telemetry;

/// The workspace's `README.md`, whose Rust examples are compiled (and, where they need no
/// Redis, run) as doc tests.
#[doc = include_str!("../README.md")]
mod readme_doctests {}
