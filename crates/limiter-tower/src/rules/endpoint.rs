//! One compiled policy: everything a request under it needs, prepared at load time.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use limiter_core::Policy;

use crate::headers::{BadWindowName, PreparedHeaders};
use crate::key::KeyTemplate;
use crate::problem;
use crate::usage::SettleRule;

/// A policy's rules under other plans' limits, by plan.
pub(crate) type PlanRules = Box<[(Arc<str>, Arc<EndpointRule>)]>;

/// The units a request costs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Cost {
    /// Always this many.
    Fixed(u64),
    /// Read from a header: `default` when absent, at most `max`.
    Header {
        /// The header.
        name: HeaderName,
        /// The cost without the header.
        default: u64,
        /// The largest accepted cost.
        max: u64,
    },
}

/// A cost header that is not a whole number within the configured bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {header} must be a whole number from 0 to {max}")]
pub struct BadCost {
    /// The header name.
    pub header: HeaderName,
    /// The bound.
    pub max: u64,
}

impl Cost {
    /// The cost of a request with `headers`.
    pub fn of(&self, headers: &HeaderMap) -> Result<u64, BadCost> {
        match self {
            Cost::Fixed(cost) => Ok(*cost),
            Cost::Header { name, default, max } => {
                let Some(value) = headers.get(name) else {
                    return Ok(*default);
                };
                let bad = || BadCost {
                    header: name.clone(),
                    max: *max,
                };
                let cost: u64 = value
                    .to_str()
                    .map_err(|_| bad())?
                    .trim()
                    .parse()
                    .map_err(|_| bad())?;
                if cost > *max {
                    return Err(bad());
                }
                Ok(cost)
            }
        }
    }
}

/// The 429 bodies of one window.
#[derive(Debug, Clone)]
pub(crate) struct Denial {
    /// When a retry can succeed.
    pub retry: Bytes,
    /// When the cost exceeds the window's capacity.
    pub never: Bytes,
}

/// A policy ready to enforce.
#[derive(Debug, Clone)]
pub(crate) struct EndpointRule {
    /// The core policy; its name keys the stored counters.
    pub policy: Policy,
    /// The policy's name again, shared: the `policy` label of the layer's metrics, which
    /// thus only ever holds names from the configuration.
    pub name: Arc<str>,
    /// The route template (`*` for the default policy), for the `endpoint` scope.
    pub route: Arc<str>,
    /// How keys are built.
    pub key: KeyTemplate,
    /// What a request costs (the estimate, when settled later).
    pub cost: Cost,
    /// What is settled after the response, if anything.
    pub settle: Option<SettleRule>,
    /// Decided and counted as if enforced, never denying (see
    /// [`ShadowDenied`](crate::ShadowDenied)).
    pub shadow: bool,
    /// Whether a shadow policy's responses carry its rate-limit fields.
    pub shadow_headers: bool,
    /// How long a key this policy denied stays denied (the penalty box).
    pub penalty: Option<std::time::Duration>,
    /// The fixed parts of the response headers.
    pub headers: PreparedHeaders,
    /// One pair of 429 bodies per window, in policy order.
    pub denials: Box<[Denial]>,
    /// The rules of the plans this policy sets other limits for, by plan: the same
    /// policy (same name, same counters) with those limits.
    pub plans: PlanRules,
    /// The shared policies also checked for a request under this one, in order after it:
    /// admitted only if every one admits (see [`Store::check_all`](limiter_core::Store::check_all)).
    pub also: Box<[Arc<EndpointRule>]>,
    /// This policy's metric handles, registered on first use rather than per request
    /// (a registration builds and hashes the labelled key).
    pub metrics: RuleMetrics,
}

impl EndpointRule {
    /// This rule enforcing `policy` instead (a plan's limits, an override's scaled
    /// ones): the same name, keys, cost and settings, the fields and 429 bodies of
    /// `policy`.
    pub(crate) fn with_policy(&self, policy: Policy) -> Result<EndpointRule, BadWindowName> {
        Ok(EndpointRule {
            headers: self.headers.for_policy(&policy)?,
            denials: denials(&policy),
            policy,
            plans: Box::default(),
            metrics: RuleMetrics::default(),
            ..self.clone()
        })
    }

    /// Whether this policy's key, or that of a policy checked with it, `needs`.
    pub(crate) fn any_key(&self, needs: impl Fn(&KeyTemplate) -> bool) -> bool {
        needs(&self.key) || self.also.iter().any(|rule| needs(&rule.key))
    }

    /// The rule a client on `plan` is decided under: the plan's, where this policy sets
    /// limits for it, else this one.
    pub(crate) fn for_plan<'a>(self: &'a Arc<Self>, plan: Option<&str>) -> &'a Arc<Self> {
        match plan {
            Some(plan) if !self.plans.is_empty() => self
                .plans
                .iter()
                .find(|(name, _)| **name == *plan)
                .map_or(self, |(_, rule)| rule),
            _ => self,
        }
    }

    /// What `units` of this policy's cost charge: one request and `units` of the other
    /// unit where the policy counts both, `units` in every window otherwise.
    pub(crate) fn charge(&self, units: u64) -> limiter_core::Cost {
        if self.policy.mixes_units() {
            limiter_core::Cost::new(1, units)
        } else {
            limiter_core::Cost::from(units)
        }
    }
}

/// The 429 bodies of each of `policy`'s windows.
pub(crate) fn denials(policy: &Policy) -> Box<[Denial]> {
    policy
        .limits()
        .iter()
        .map(|limit| Denial {
            retry: problem::quota_exceeded(policy.name(), limit.name(), limit.capacity(), false),
            never: problem::quota_exceeded(policy.name(), limit.name(), limit.capacity(), true),
        })
        .collect()
}

/// Metric handles of one policy, created on first use: install the metrics recorder
/// before the layer serves requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleMetrics {
    /// `ratelimit_decisions_total{policy, result}`, one per result.
    pub decisions: [std::sync::OnceLock<metrics::Counter>; 6],
    /// `ratelimit_decision_duration_seconds{store}`.
    pub latency: std::sync::OnceLock<metrics::Histogram>,
    /// `ratelimit_local_cache_hits_total{policy}`: denials answered by the local cache.
    pub local_cache_hits: std::sync::OnceLock<metrics::Counter>,
}
