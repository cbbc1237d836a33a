//! The names of the metrics this crate emits through the [`metrics`] facade, in one place:
//! the store wrappers' ([`Guarded`](crate::Guarded), [`Batched`](crate::Batched),
//! [`Leased`](crate::Leased)) and the Redis store's [`MemoryGuard`](crate::MemoryGuard). Nothing is recorded unless the application installs a
//! `metrics` recorder.
//!
//! ```
//! use limiter_core::metric_names;
//!
//! assert!(metric_names::ALL.contains(&metric_names::BREAKER_STATE));
//! assert!(metric_names::ALL.iter().all(|name| name.starts_with("ratelimit_")));
//! ```

/// Histogram: seconds each call to Redis took on the wire (a batch is one call).
pub const STORE_DURATION_SECONDS: &str = "ratelimit_store_duration_seconds";
/// Counter `{kind}`: calls to Redis that failed (`timeout`, `unavailable`, `protocol`).
pub const STORE_ERRORS_TOTAL: &str = "ratelimit_store_errors_total";
/// Counter `{reason}`: decisions shed because this process had too many waiting for
/// the store (`queue_full`) or one waited too long (`queue_time`); see
/// [`Batched`](crate::Batched).
pub const SHED_DECISIONS_TOTAL: &str = "ratelimit_shed_decisions_total";
/// Counter `{mode}`: decisions taken by the failure mode instead of the store.
pub const FALLBACK_DECISIONS_TOTAL: &str = "ratelimit_fallback_decisions_total";
/// Gauge: the circuit breaker's state ([`BreakerState`](crate::BreakerState) as a number);
/// on a Redis Cluster one per shard, `{slots}` (e.g. `0-5460`).
pub const BREAKER_STATE: &str = "ratelimit_breaker_state";
/// Counter `{to}`: circuit breaker transitions, by the state entered (and `{slots}` on a
/// Redis Cluster).
pub const BREAKER_TRANSITIONS_TOTAL: &str = "ratelimit_breaker_transitions_total";
/// Histogram: decisions carried by each call of [`Batched`](crate::Batched).
pub const BATCH_DECISIONS: &str = "ratelimit_batch_decisions";
/// Counter: leases taken by [`Leased`](crate::Leased).
pub const LEASES_TOTAL: &str = "ratelimit_leases_total";
/// Counter: units of expired leases given back to the store.
pub const LEASE_REFUNDED_UNITS_TOTAL: &str = "ratelimit_lease_refunded_units_total";
/// Counter: lease refunds the store did not take.
pub const LEASE_REFUND_FAILURES_TOTAL: &str = "ratelimit_lease_refund_failures_total";
/// Gauge: 1 while Redis memory is above the [`MemoryGuard`](crate::MemoryGuard)'s
/// threshold (new keys refused), else 0.
pub const MEMORY_GUARD_OVER: &str = "ratelimit_memory_guard_over";
/// Counter: decisions for new keys the [`MemoryGuard`](crate::MemoryGuard) refused.
pub const MEMORY_GUARD_REFUSALS_TOTAL: &str = "ratelimit_memory_guard_refusals_total";

/// Every metric name above.
pub const ALL: &[&str] = &[
    STORE_DURATION_SECONDS,
    STORE_ERRORS_TOTAL,
    SHED_DECISIONS_TOTAL,
    FALLBACK_DECISIONS_TOTAL,
    BREAKER_STATE,
    BREAKER_TRANSITIONS_TOTAL,
    BATCH_DECISIONS,
    LEASES_TOTAL,
    LEASE_REFUNDED_UNITS_TOTAL,
    LEASE_REFUND_FAILURES_TOTAL,
    MEMORY_GUARD_OVER,
    MEMORY_GUARD_REFUSALS_TOTAL,
];
