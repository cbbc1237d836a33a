//! A tower/axum rate-limit layer on [`limiter_core`]: composite keys (user, client
//! address, API key, endpoint, global), policies in a hot-reloaded YAML file, and the
//! draft-ietf-httpapi-ratelimit-headers response fields.
//!
//! Request flow: route match → key → store decision → headers or 429. Everything that
//! depends only on the policy file (routes, key templates, header values, 429 bodies) is
//! prepared when the file loads; see [`RateLimitLayer`] for an example.

#![warn(missing_docs)]

mod body;
pub mod config;
mod future;
pub mod headers;
pub mod key;
mod layer;
mod observe;
mod outcome;
mod plan;
pub mod problem;
mod rejection;
mod rules;
mod service;
mod store;

pub use body::{AnyBody, BodyKind, ResponseBody, SameBody};
pub use config::ConfigError;
pub use future::ResponseFuture;
pub use layer::{LayerError, RateLimitLayer};
pub use rejection::Rejection;
pub use rules::{BadCost, Cost, Denial, EndpointRule, Rules};
pub use service::RateLimitService;
pub use store::{AnyStore, ConnectError, RedisStack};
