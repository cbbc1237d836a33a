//! [`StoreSetup`]: the store and how it is guarded (the `store`, `failure_mode`,
//! `breaker` and `overload` sections), everything
//! [`AnyStore::connect`](crate::AnyStore::connect) needs.

use limiter_core::BreakerConfig;

use super::settings::StoreConfig;

/// The store and how it is guarded: read at start-up by
/// [`AnyStore::connect`](crate::AnyStore::connect); a reload cannot change it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSetup {
    /// The store (`${VAR}` references expanded).
    pub store: StoreConfig,
    /// What decides when it fails.
    pub failure_mode: limiter_core::FailureMode,
    /// The circuit breaker (Redis stores only).
    pub breaker: BreakerConfig,
    /// When decisions waiting for Redis are shed (Redis stores only).
    pub overload: super::overload::OverloadConfig,
}
