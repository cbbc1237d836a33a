//! [`Endpoint`] and [`PolicyRule`]: a route and the policy enforced on it, as written in
//! code (or read from one entry of the policy file).

use http::Method;
use limiter_core::{FailureMode, Policy};

use crate::config::{QuotaUnit, Scope};
use crate::rules::Cost;

/// A policy and how requests are keyed and costed under it: the `default_policy` of
/// [`LimiterBuilder`](crate::LimiterBuilder), and the part of every [`Endpoint`] that is
/// not its route.
///
/// ```
/// use std::time::Duration;
/// use limiter_tower::{Limit, Policy, PolicyRule, Scope};
///
/// let policy = Policy::new("per-user", vec![Limit::new(100, Duration::from_secs(60))]).unwrap();
/// let rule = PolicyRule::new(policy).scopes([Scope::User, Scope::Endpoint]);
/// # let _ = rule;
/// ```
#[derive(Debug, Clone)]
pub struct PolicyRule {
    pub(crate) policy: Policy,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) cost: Cost,
    pub(crate) quota_unit: Option<QuotaUnit>,
    pub(crate) failure_mode: Option<FailureMode>,
}

impl PolicyRule {
    /// Enforces `policy` per client address ([`Scope::Ip`]), one unit per request. Its
    /// name keys the stored counters: keep it stable so a changed limit keeps its usage.
    pub fn new(policy: Policy) -> Self {
        PolicyRule {
            policy,
            scopes: vec![Scope::Ip],
            cost: Cost::Fixed(1),
            quota_unit: None,
            failure_mode: None,
        }
    }

    /// What the budget is per, in key order (at least one; `[Scope::Global]` for one
    /// budget for everyone).
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.scopes = scopes.into_iter().collect();
        self
    }

    /// What one request costs.
    pub fn cost(mut self, cost: Cost) -> Self {
        self.cost = cost;
        self
    }

    /// What a unit of quota is, when not one request (`qu` in `RateLimit-Policy`).
    pub fn quota_unit(mut self, unit: QuotaUnit) -> Self {
        self.quota_unit = Some(unit);
        self
    }

    /// What decides for this policy when the store fails, over the builder's
    /// [`failure_mode`](crate::LimiterBuilder::failure_mode).
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = Some(mode);
        self
    }
}

impl From<Policy> for PolicyRule {
    fn from(policy: Policy) -> Self {
        PolicyRule::new(policy)
    }
}

/// A limited route: a `matchit` route template (`/users/{id}`, `/files/{*path}`), the
/// methods it covers, and its [`PolicyRule`].
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use limiter_tower::{Cost, Endpoint, Limit, Policy, Scope};
///
/// let policy = Policy::new("search", vec![Limit::new(10, Duration::from_secs(1))]).unwrap();
/// let search = Endpoint::new("/search", policy)
///     .methods([Method::GET])
///     .scopes([Scope::Ip, Scope::Endpoint])
///     .cost(Cost::Fixed(2));
/// # let _ = search;
/// ```
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub(crate) route: String,
    pub(crate) methods: Vec<Method>,
    pub(crate) rule: PolicyRule,
}

impl Endpoint {
    /// `rule` (a [`PolicyRule`] or a bare [`Policy`]) on every method of `route`.
    pub fn new(route: impl Into<String>, rule: impl Into<PolicyRule>) -> Self {
        Endpoint {
            route: route.into(),
            methods: Vec::new(),
            rule: rule.into(),
        }
    }

    /// Only these methods (all when none are given).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// See [`PolicyRule::scopes`].
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.rule = self.rule.scopes(scopes);
        self
    }

    /// See [`PolicyRule::cost`].
    pub fn cost(mut self, cost: Cost) -> Self {
        self.rule = self.rule.cost(cost);
        self
    }

    /// See [`PolicyRule::quota_unit`].
    pub fn quota_unit(mut self, unit: QuotaUnit) -> Self {
        self.rule = self.rule.quota_unit(unit);
        self
    }

    /// See [`PolicyRule::failure_mode`].
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.rule = self.rule.failure_mode(mode);
        self
    }
}
