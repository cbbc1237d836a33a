//! [`Endpoint`] and [`PolicyRule`]: a route and the policy enforced on it, as written in
//! code (or read from one entry of the policy file).

use http::{Method, StatusCode};
use limiter_core::{FailureMode, Limit, Policy};

use crate::headers::QuotaUnit;
use crate::key::Scope;
use crate::rules::Cost;
use crate::usage::Actual;

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
    pub(crate) actual: Actual,
    pub(crate) charge_statuses: Vec<StatusCode>,
    pub(crate) refund_server_errors: bool,
    pub(crate) shadow: Option<bool>,
    pub(crate) shadow_headers: bool,
    pub(crate) plans: Vec<(String, Vec<Limit>)>,
    pub(crate) also: Vec<String>,
    pub(crate) penalty: Option<std::time::Duration>,
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
            actual: Actual::Estimate,
            charge_statuses: Vec::new(),
            refund_server_errors: false,
            shadow: None,
            shadow_headers: false,
            plans: Vec::new(),
            also: Vec::new(),
            penalty: None,
        }
    }

    /// The penalty box: a key this policy denies stays denied for `penalty` (429 with
    /// the time left in `Retry-After`), whatever its windows hold meanwhile, on every
    /// instance sharing the store (Cloudflare's mitigation timeout). At most a day.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_tower::{Limit, Policy, PolicyRule};
    ///
    /// let login = Policy::new("login", vec![Limit::new(5, Duration::from_secs(60))]).unwrap();
    /// // Past 5 a minute, a client waits out ten minutes.
    /// let rule = PolicyRule::new(login).penalty(Duration::from_secs(600));
    /// # let _ = rule;
    /// ```
    pub fn penalty(mut self, penalty: std::time::Duration) -> Self {
        self.penalty = Some(penalty);
        self
    }

    /// Also checks the shared policy `name` (see
    /// [`LimiterBuilder::policy`](crate::LimiterBuilder::policy)) for every request under
    /// this one: a request is admitted only if every policy admits it, and charged in all
    /// of them or in none. Policies are checked in order, this one first: put the
    /// narrowest first (per user before per team before global).
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_tower::{Endpoint, Limit, LimiterBuilder, Policy, PolicyRule, Scope};
    ///
    /// let minute = |max| vec![Limit::new(max, Duration::from_secs(60))];
    /// let everyone = Policy::new("everyone", minute(1_000)).unwrap();
    /// let per_user = Policy::new("per-user", minute(10)).unwrap();
    /// let rules = LimiterBuilder::new()
    ///     .policy(PolicyRule::new(everyone).scopes([Scope::Global]))
    ///     .endpoint(Endpoint::new("/api", per_user).scopes([Scope::Ip]).also("everyone"))
    ///     .rules()
    ///     .unwrap();
    /// # let _ = rules;
    /// ```
    pub fn also(mut self, name: impl Into<String>) -> Self {
        self.also.push(name.into());
        self
    }

    /// Other limits for clients on `plan` (see [`Plans`](crate::Plans)): the same policy,
    /// counted under the same name, so a client whose plan changes keeps its usage and
    /// is decided under the new limits at once. Clients on the default plan and on plans
    /// not named here get the policy's own limits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_tower::{Limit, Policy, PolicyRule, Scope};
    ///
    /// let minute = |max| vec![Limit::new(max, Duration::from_secs(60))];
    /// let api = Policy::new("api", minute(5)).unwrap();
    /// let rule = PolicyRule::new(api)
    ///     .scopes([Scope::User])
    ///     .plan("pro", minute(50))
    ///     .plan("enterprise", minute(500));
    /// # let _ = rule;
    /// ```
    pub fn plan(mut self, plan: impl Into<String>, limits: Vec<Limit>) -> Self {
        self.plans.push((plan.into(), limits));
        self
    }

    /// What the budget is per, in key order (at least one; `[Scope::Global]` for one
    /// budget for everyone).
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.scopes = scopes.into_iter().collect();
        self
    }

    /// What one request costs: in a policy counting requests and another unit
    /// ([`Limit::counting`](crate::Limit::counting)), the units; the request counts one
    /// in the windows of requests. With an [`actual`](Self::actual) cost, the estimate
    /// reserved until the response says what the request cost.
    pub fn cost(mut self, cost: Cost) -> Self {
        self.cost = cost;
        self
    }

    /// Where the request's actual cost comes from once the handler has answered: its
    /// [`cost`](Self::cost) is reserved first, as an estimate, and the difference given
    /// back or charged on top (a debt past the limit delays later requests).
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_tower::{Actual, Cost, Limit, Policy, PolicyRule, Scope};
    ///
    /// // 60 answers and 100,000 tokens a minute per user; each answer reserves 2,000
    /// // tokens and is charged what its handler reports through `Usage`.
    /// let chat = Policy::new("chat", vec![
    ///     Limit::new(60, Duration::from_secs(60)).with_name("answers"),
    ///     Limit::new(100_000, Duration::from_secs(60)).with_name("tokens").counting("tokens"),
    /// ]).unwrap();
    /// let rule = PolicyRule::new(chat)
    ///     .scopes([Scope::User])
    ///     .cost(Cost::Fixed(2_000))
    ///     .actual(Actual::Reported);
    /// # let _ = rule;
    /// ```
    pub fn actual(mut self, actual: Actual) -> Self {
        self.actual = actual;
        self
    }

    /// Charges only responses of these statuses and refunds the others whole, the
    /// request included: `[StatusCode::UNAUTHORIZED]` counts failed logins only.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::StatusCode;
    /// use limiter_tower::{Limit, Policy, PolicyRule};
    ///
    /// let logins = Policy::new("failed-logins", vec![Limit::new(10, Duration::from_secs(60))]).unwrap();
    /// let rule = PolicyRule::new(logins).charge_statuses([StatusCode::UNAUTHORIZED]);
    /// # let _ = rule;
    /// ```
    pub fn charge_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.charge_statuses = statuses.into_iter().collect();
        self
    }

    /// Refunds server errors (5xx) whole: a client is not charged for the service's
    /// failures.
    pub fn refund_server_errors(mut self, refund: bool) -> Self {
        self.refund_server_errors = refund;
        self
    }

    /// Shadow mode: decides and counts as if enforced, and never denies. A request it
    /// would have denied passes with a [`ShadowDenied`](crate::ShadowDenied) in its
    /// extensions, is counted in `ratelimit_decisions_total{result="shadow_denied"}` and
    /// logged (at most a line a second). Over the builder's
    /// [`shadow`](crate::LimiterBuilder::shadow).
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_tower::{Limit, Policy, PolicyRule};
    ///
    /// // What a 100-a-minute limit would do, before anyone is refused by it.
    /// let planned = Policy::new("planned", vec![Limit::new(100, Duration::from_secs(60))]).unwrap();
    /// let rule = PolicyRule::new(planned).shadow(true);
    /// # let _ = rule;
    /// ```
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// Whether a shadow policy's responses carry its rate-limit fields (not by default:
    /// clients see nothing of a policy being tried out).
    pub fn shadow_headers(mut self, send: bool) -> Self {
        self.shadow_headers = send;
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

    /// See [`PolicyRule::actual`].
    pub fn actual(mut self, actual: Actual) -> Self {
        self.rule = self.rule.actual(actual);
        self
    }

    /// See [`PolicyRule::charge_statuses`].
    pub fn charge_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.rule = self.rule.charge_statuses(statuses);
        self
    }

    /// See [`PolicyRule::refund_server_errors`].
    pub fn refund_server_errors(mut self, refund: bool) -> Self {
        self.rule = self.rule.refund_server_errors(refund);
        self
    }

    /// See [`PolicyRule::shadow`].
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.rule = self.rule.shadow(shadow);
        self
    }

    /// See [`PolicyRule::shadow_headers`].
    pub fn shadow_headers(mut self, send: bool) -> Self {
        self.rule = self.rule.shadow_headers(send);
        self
    }

    /// See [`PolicyRule::failure_mode`].
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.rule = self.rule.failure_mode(mode);
        self
    }

    /// See [`PolicyRule::also`].
    pub fn also(mut self, name: impl Into<String>) -> Self {
        self.rule = self.rule.also(name);
        self
    }

    /// See [`PolicyRule::penalty`].
    pub fn penalty(mut self, penalty: std::time::Duration) -> Self {
        self.rule = self.rule.penalty(penalty);
        self
    }

    /// See [`PolicyRule::plan`].
    pub fn plan(mut self, plan: impl Into<String>, limits: Vec<Limit>) -> Self {
        self.rule = self.rule.plan(plan, limits);
        self
    }
}
