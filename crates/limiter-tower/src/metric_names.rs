//! The names of the metrics this crate emits through the [`metrics`] facade, in one place.
//! The store wrappers' metrics are in [`limiter_core::metric_names`]. Nothing is recorded
//! unless the application installs a `metrics` recorder.
//!
//! ```
//! use limiter_tower::metric_names;
//!
//! assert!(metric_names::ALL.contains(&metric_names::DECISIONS_TOTAL));
//! assert!(metric_names::ALL.iter().all(|name| name.starts_with("ratelimit_")));
//! ```

/// Counter `{policy, result}`: one per decision (`allowed`, `denied`,
/// `degraded_allowed`, `degraded_denied`, `shed`, and `shadow_denied`: a shadow policy
/// would have denied it and let it through).
pub const DECISIONS_TOTAL: &str = "ratelimit_decisions_total";
/// Histogram `{store}`: seconds each decision took.
pub const DECISION_DURATION_SECONDS: &str = "ratelimit_decision_duration_seconds";
/// Counter `{result}`: reloads of the policy file (`ok`, `failed`).
pub const CONFIG_RELOADS_TOTAL: &str = "ratelimit_config_reloads_total";
/// Gauge: rule sets put in force so far (1 for the first).
pub const CONFIG_GENERATION: &str = "ratelimit_config_generation";
/// Counter `{policy}`: denials answered by the local cache of denials.
pub const LOCAL_CACHE_HITS_TOTAL: &str = "ratelimit_local_cache_hits_total";
/// Counter `{reason}`: sources blocked by the key-enumeration defence (`honeypot`,
/// `identities`, `failed_auth`).
pub const ABUSE_BLOCKS_TOTAL: &str = "ratelimit_abuse_blocks_total";

/// Counter `{policy, result}`: reservations settled after the response (`refunded`: the
/// actual cost was below the estimate, `charged`: above it, `failed`: the store did not
/// settle, and the estimate stays).
pub const SETTLEMENTS_TOTAL: &str = "ratelimit_settlements_total";
/// Counter `{reason}`: decisions a [`DecisionSink`](crate::DecisionSink) exporter dropped
/// instead of exporting (`queue_full`: decisions came faster than it sends them,
/// `export_failed`: the collector did not take them).
pub const DECISION_SPANS_DROPPED_TOTAL: &str = "ratelimit_decision_spans_dropped_total";

/// Every metric name above.
pub const ALL: &[&str] = &[
    DECISIONS_TOTAL,
    DECISION_DURATION_SECONDS,
    CONFIG_RELOADS_TOTAL,
    CONFIG_GENERATION,
    LOCAL_CACHE_HITS_TOTAL,
    ABUSE_BLOCKS_TOTAL,
    SETTLEMENTS_TOTAL,
    DECISION_SPANS_DROPPED_TOTAL,
];
