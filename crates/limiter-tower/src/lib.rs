//! A tower/axum rate-limit layer on [`limiter_core`]: composite keys (user, client
//! address, API key, endpoint, global), policies built in code or read from a
//! hot-reloaded YAML file, and the draft-ietf-httpapi-ratelimit-headers response fields.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use limiter_tower::{Endpoint, Limit, LimiterLayer, Policy, Scope};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Every client address: 100 requests a minute, counted in this process.
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .layer(LimiterLayer::per_client_ip(100, Duration::from_secs(60))?);
//!
//! // Per route, per client and route, several windows: anything a policy file can say.
//! let search = Policy::new("search", vec![
//!     Limit::new(10, Duration::from_secs(1)).with_name("burst"),
//!     Limit::new(1000, Duration::from_secs(86_400)).with_name("daily"),
//! ])?;
//! let layer = LimiterLayer::builder()
//!     .endpoint(Endpoint::new("/search", search).scopes([Scope::Ip, Scope::Endpoint]))
//!     .build_in_memory()?;
//! let app: Router = Router::new().route("/search", get(|| async { "found" })).layer(layer);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! The same from a file: [`LimiterLayer::from_file`], with hot reload through
//! [`LimiterLayer::reloader`]; the loader compiles into the same [`LimiterBuilder`].
//!
//! Request flow: route match → key → store decision → headers or 429. Everything that
//! depends only on the rules (routes, key templates, header values, 429 bodies) is
//! prepared when they are built.
//!
//! # The crate's README
//!
//! The rest of this page is `README.md`, compiled as a doc test.
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unreachable_pub)]

mod admin;
mod body;
mod builder;
mod client_timestamp;
pub mod config;
mod decision_sink;
mod enumeration;
mod future;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod joint;
mod key;
mod layer;
pub mod metric_names;
mod observe;
mod outcome;
mod over_limit;
mod overrides;
mod penalty;
mod plan;
mod pricing;
mod problem;
mod quota;
mod rejection;
mod reload;
mod rules;
mod service;
mod shadow;
mod shared;
mod store;
mod usage;

pub use admin::AdminApi;
pub use body::{AnyBody, BodyKind, ResponseBody, SameBody};
pub use builder::{BuildError, Endpoint, LimiterBuilder, PolicyRule};
pub use client_timestamp::{BadTimestamp, ClientTimestamp};
pub use config::ConfigError;
pub use decision_sink::{DecisionRecord, DecisionSink, TraceParent};
pub use enumeration::{Enumeration, FailedAuth};
pub use future::ResponseFuture;
pub use headers::{HeaderStyle, QuotaUnit};
pub use key::{ForwardedHeader, Scope, TokenFallback};
pub use key::{Jwt, JwtKeyError};
pub use layer::{LayerError, LimiterLayer, UsageError};
pub use pricing::{PlanLookup, PlanSource, Plans};
pub use quota::QuotaRoute;
pub use rejection::Rejection;
pub use rules::{BadCost, Cost, Rules};
pub use service::LimiterService;
pub use shadow::ShadowDenied;
pub use store::{AnyStore, ConnectError, RedisStack};
pub use store::{StoreConfig, StoreSetup};
pub use usage::{Actual, Usage, UsageReport};

/// The core types a builder takes: policies and their windows, and how a failing
/// store is handled.
pub use limiter_core::{Adjustment, Override};
pub use limiter_core::{Algorithm, BreakerConfig, FailureMode, Leasing, Limit, Period, Policy};
