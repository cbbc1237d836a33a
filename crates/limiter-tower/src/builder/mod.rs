//! [`LimiterBuilder`]: everything the policy file can say, in code. The file loader
//! compiles into this same builder, so a layer built either way enforces the same rules.

mod endpoint;
mod error;

use std::collections::HashSet;
use std::sync::Arc;

use http::HeaderName;
use ipnet::IpNet;
use limiter_core::{BreakerConfig, FailureMode, Limit, Policy};

pub use endpoint::{Endpoint, PolicyRule};
pub use error::BuildError;
pub(crate) use error::Entry;

use crate::client_timestamp::ClientTimestamp;
use crate::enumeration::Enumeration;
use crate::headers::HeaderStyle;
use crate::headers::PreparedHeaders;
use crate::key::{ApiKeyReader, ClientIpResolver, Jwt, KeyTemplate};
use crate::key::{ForwardedHeader, TokenFallback};
use crate::pricing::{PlanReader, Plans};
use crate::rules::{denials, EndpointRule, PlanRules, RouteTargets, Rules};
use crate::store::{OverloadConfig, StoreConfig, StoreSetup};
use crate::usage::{Actual, SettleRule};

/// The longest penalty a policy may set.
const MAX_PENALTY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The route name of the default policy in the `endpoint` scope.
const UNMATCHED_ROUTE: &str = "*";

/// Builds a [`LimiterLayer`](crate::LimiterLayer) (or the [`Rules`] it enforces) in code.
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use http::Method;
/// use limiter_tower::{Endpoint, Limit, LimiterLayer, Policy, PolicyRule, Scope};
///
/// let search = Policy::new("search", vec![Limit::new(10, Duration::from_secs(1))]).unwrap();
/// let everything = Policy::new("default", vec![Limit::new(100, Duration::from_secs(60))]).unwrap();
/// let layer = LimiterLayer::builder()
///     .endpoint(Endpoint::new("/search", search).methods([Method::GET]))
///     .default_policy(PolicyRule::new(everything).scopes([Scope::Ip]))
///     .build_in_memory()
///     .unwrap();
/// let app: Router = Router::new().route("/search", get(|| async { "found" })).layer(layer);
/// # let _ = app;
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct LimiterBuilder {
    endpoints: Vec<Endpoint>,
    shared: Vec<PolicyRule>,
    default_policy: Option<PolicyRule>,
    headers: HeaderStyle,
    trusted_proxies: Vec<IpNet>,
    forwarded_header: ForwardedHeader,
    ipv6_prefix: Option<u8>,
    jwt: Option<Jwt>,
    plans: Option<Plans>,
    api_key_header: Option<HeaderName>,
    exempt_cidrs: Vec<IpNet>,
    exempt_users: Vec<String>,
    store: StoreConfig,
    failure_mode: FailureMode,
    shadow: bool,
    breaker: BreakerConfig,
    overload: OverloadConfig,
    client_timestamp: Option<ClientTimestamp>,
    enumeration: EnumerationSlot,
}

/// The enumeration defence, on by default (see [`Enumeration::default`]).
#[derive(Debug, Clone)]
struct EnumerationSlot(Option<Enumeration>);

impl Default for EnumerationSlot {
    fn default() -> Self {
        EnumerationSlot(Some(Enumeration::default()))
    }
}

/// IPv6 clients share one budget per /64 unless told otherwise.
pub(crate) const DEFAULT_IPV6_PREFIX: u8 = 64;

impl LimiterBuilder {
    /// No endpoints, no default policy (every request passes), an in-memory store.
    pub fn new() -> Self {
        LimiterBuilder::default()
    }

    /// Limits a route. Endpoints are tried in the order added: the first whose route
    /// and method match a request applies.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// A shared policy, enforced only where an endpoint (or the default policy) names it
    /// with [`also`](PolicyRule::also): one budget over several endpoints, per team or
    /// for everyone (see there for an example).
    pub fn policy(mut self, rule: impl Into<PolicyRule>) -> Self {
        self.shared.push(rule.into());
        self
    }

    /// The policy for requests no endpoint matches; without one they pass unlimited.
    pub fn default_policy(mut self, rule: impl Into<PolicyRule>) -> Self {
        self.default_policy = Some(rule.into());
        self
    }

    /// Which rate-limit headers responses carry (the draft's by default).
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.headers = style;
        self
    }

    /// Believes `header` from these peers (your load balancers) when finding the client
    /// address of the `ip` scope.
    pub fn trusted_proxies(
        mut self,
        proxies: impl IntoIterator<Item = IpNet>,
        header: ForwardedHeader,
    ) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self.forwarded_header = header;
        self
    }

    /// Groups IPv6 clients by this prefix length (at most 128; 64 by default).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = Some(bits);
        self
    }

    /// Verifies bearer tokens for the `user` scope (required when a policy uses it).
    pub fn jwt(mut self, jwt: Jwt) -> Self {
        self.jwt = Some(jwt);
        self
    }

    /// Where a client's plan is read, and the plans there are: policies set limits per
    /// plan with [`PolicyRule::plan`] (see [`Plans`] for an example).
    pub fn plans(mut self, plans: Plans) -> Self {
        self.plans = Some(plans);
        self
    }

    /// The header the `api_key` scope reads (`x-api-key` by default).
    pub fn api_key_header(mut self, header: HeaderName) -> Self {
        self.api_key_header = Some(header);
        self
    }

    /// Never limits requests from these client addresses.
    pub fn exempt_cidrs(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> Self {
        self.exempt_cidrs.extend(cidrs);
        self
    }

    /// Never limits these users (as the `user` scope reads them from tokens).
    pub fn exempt_users<U: Into<String>>(mut self, users: impl IntoIterator<Item = U>) -> Self {
        self.exempt_users.extend(users.into_iter().map(Into::into));
        self
    }

    /// Where counters live (in this process by default).
    pub fn store(mut self, store: StoreConfig) -> Self {
        self.store = store;
        self
    }

    /// What decides when the store fails (admit, by default).
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// Shadow mode for every policy without a setting of its own (see
    /// [`PolicyRule::shadow`]): off by default.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// The circuit breaker of a Redis store's calls.
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// When a Redis store's waiting decisions are shed with 503 (see
    /// [`OverloadConfig`]).
    pub fn overload(mut self, overload: OverloadConfig) -> Self {
        self.overload = overload;
        self
    }

    /// Refuses (400) requests whose timestamp header is further from this process's
    /// clock than the tolerated skew, or malformed (off unless set). Rate-limit windows
    /// never read a client's time either way.
    pub fn client_timestamp(mut self, check: ClientTimestamp) -> Self {
        self.client_timestamp = Some(check);
        self
    }

    /// The key-enumeration defence: `Some` to configure it, `None` to turn it off (on by
    /// default, with [`Enumeration::default`]'s thresholds).
    pub fn enumeration(mut self, enumeration: Option<Enumeration>) -> Self {
        self.enumeration = EnumerationSlot(enumeration);
        self
    }

    /// The rules, checked: for [`LimiterLayer::new`](crate::LimiterLayer::new) or
    /// [`LimiterLayer::replace_rules`](crate::LimiterLayer::replace_rules).
    pub fn rules(self) -> Result<Rules, BuildError> {
        let defaults = Defaults {
            style: self.headers,
            failure_mode: self.failure_mode,
            shadow: self.shadow,
            plans: self.plans.as_ref(),
        };
        let mut names = HashSet::new();
        let mut shared: Vec<Arc<EndpointRule>> = Vec::with_capacity(self.shared.len());
        for (i, rule) in self.shared.into_iter().enumerate() {
            let at = Entry::Policy(i);
            if !rule.also.is_empty() {
                return Err(at.error(
                    "also",
                    "only an endpoint's policy or the default policy checks others",
                ));
            }
            let rule = compile_rule(rule, UNMATCHED_ROUTE, &defaults, at, &[])?;
            if !names.insert(rule.policy.name().to_owned()) {
                return Err(at.error(
                    "name",
                    format!(
                        "policy name {:?} is used twice; counters are stored by name",
                        rule.policy.name()
                    ),
                ));
            }
            shared.push(Arc::new(rule));
        }
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        let mut by_route: Vec<(String, RouteTargets)> = Vec::new();
        for (i, endpoint) in self.endpoints.into_iter().enumerate() {
            let at = Entry::Endpoint(i);
            let rule = compile_rule(endpoint.rule, &endpoint.route, &defaults, at, &shared)?;
            if !names.insert(rule.policy.name().to_owned()) {
                return Err(at.error(
                    "name",
                    format!(
                        "policy name {:?} is used twice; counters are stored by name",
                        rule.policy.name()
                    ),
                ));
            }
            let methods = (!endpoint.methods.is_empty()).then(|| endpoint.methods.into());
            match by_route.iter_mut().find(|(r, _)| *r == endpoint.route) {
                Some((_, targets)) => targets.targets.push((methods, i)),
                None => by_route.push((
                    endpoint.route,
                    RouteTargets {
                        targets: vec![(methods, i)],
                    },
                )),
            }
            endpoints.push(Arc::new(rule));
        }
        let mut routes = matchit::Router::new();
        for (route, targets) in by_route {
            let at = Entry::Endpoint(targets.targets[0].1);
            routes
                .insert(route.clone(), targets)
                .map_err(|e| at.error("path", format!("route {route:?}: {e}")))?;
        }

        let default = match self.default_policy {
            Some(rule) => {
                let at = Entry::DefaultPolicy;
                let rule = compile_rule(rule, UNMATCHED_ROUTE, &defaults, at, &shared)?;
                if !names.insert(rule.policy.name().to_owned()) {
                    return Err(at.error("name", "the default policy's name is also an endpoint's"));
                }
                Some(Arc::new(rule))
            }
            None => None,
        };

        let needs_user = endpoints
            .iter()
            .chain(default.as_ref())
            .chain(&shared)
            .any(|r| r.key.needs_user());
        let plan_claim = self.plans.as_ref().and_then(|p| p.source.claim_name());
        // The plan's claim and every claim a scope reads, each once.
        let mut claims: Vec<String> = plan_claim.map(str::to_owned).into_iter().collect();
        let scoped = endpoints.iter().chain(default.as_ref()).chain(&shared);
        for claim in scoped.flat_map(|r| r.key.claims()) {
            if !claims.iter().any(|c| c == claim) {
                claims.push(claim.to_owned());
            }
        }
        let (jwt, token_fallback) = match self.jwt {
            Some(jwt) => {
                let (verifier, fallback) = jwt
                    .verifier()
                    .map_err(|(field, message)| BuildError::new(format!("jwt.{field}"), message))?;
                (Some(verifier.capture(claims)), fallback)
            }
            None if needs_user || !self.exempt_users.is_empty() => {
                return Err(BuildError::new("jwt", "a policy uses the `user` scope or a claim (or users are exempted) but no `jwt` section is configured"));
            }
            None if plan_claim.is_some() => {
                return Err(BuildError::new(
                    "plans.claim",
                    "plans are read from a token claim but no `jwt` section verifies tokens",
                ));
            }
            None => (None, TokenFallback::default()),
        };
        let api_key = ApiKeyReader::new(
            self.api_key_header
                .unwrap_or(HeaderName::from_static(crate::key::DEFAULT_API_KEY_HEADER)),
        );
        let plans = match &self.plans {
            Some(plans) => {
                if plans.source.reads_header() && self.trusted_proxies.is_empty() {
                    return Err(BuildError::new(
                        "plans.header",
                        "a plan header is believed only from trusted proxies, and `client_ip.trusted_proxies` names none",
                    ));
                }
                let claim_at = plan_claim.and_then(|c| jwt.as_ref()?.captured(c));
                PlanReader::new(plans, claim_at, &api_key)
            }
            None => None,
        };

        let ipv6_prefix = self.ipv6_prefix.unwrap_or(DEFAULT_IPV6_PREFIX);
        if ipv6_prefix > 128 {
            return Err(BuildError::new(
                "client_ip.ipv6_prefix",
                "must be at most 128",
            ));
        }
        self.failure_mode
            .validate()
            .map_err(|e| BuildError::new("failure_mode", e))?;
        if let Some((field, message)) = self.breaker.invalid_field() {
            return Err(BuildError::new(format!("breaker.{field}"), message));
        }
        if let StoreConfig::Redis { timeout, .. } | StoreConfig::RedisCluster { timeout, .. } =
            &self.store
        {
            if timeout.is_zero() {
                return Err(BuildError::new("store.timeout", "must be longer than zero"));
            }
        }

        let enumeration = match self.enumeration.0 {
            Some(mut enumeration) => {
                if let Some((field, message)) = enumeration.invalid_field() {
                    return Err(BuildError::new(format!("enumeration.{field}"), message));
                }
                // Compared with what requests present, which is hashed.
                enumeration.honeypot_api_keys = enumeration
                    .honeypot_api_keys
                    .iter()
                    .map(|key| crate::key::hash_api_key(key.as_bytes()))
                    .collect();
                Some(Arc::new(enumeration))
            }
            None => None,
        };

        Ok(Rules {
            shared: shared.into(),
            enumeration,
            routes,
            endpoints: endpoints.into(),
            default,
            client_ip: ClientIpResolver::new(
                self.trusted_proxies,
                self.forwarded_header,
                ipv6_prefix,
            ),
            jwt,
            token_fallback,
            api_key,
            plans,
            exempt_cidrs: self.exempt_cidrs.iter().map(IpNet::trunc).collect(),
            exempt_users: self.exempt_users.into_iter().collect(),
            client_timestamp: self.client_timestamp,
            store: StoreSetup {
                store: self.store,
                failure_mode: self.failure_mode,
                breaker: self.breaker,
                overload: self.overload,
            },
        })
    }
}

/// What a policy takes from the builder when it does not say itself.
struct Defaults<'a> {
    style: HeaderStyle,
    failure_mode: FailureMode,
    shadow: bool,
    plans: Option<&'a Plans>,
}

fn compile_rule(
    rule: PolicyRule,
    route: &str,
    defaults: &Defaults<'_>,
    at: Entry,
    shared: &[Arc<EndpointRule>],
) -> Result<EndpointRule, BuildError> {
    if rule.scopes.is_empty() {
        return Err(at.error(
            "scopes",
            "at least one scope is needed (`global` for one budget for everyone)",
        ));
    }
    // What decides for this policy when the store fails travels with it.
    let policy = rule
        .policy
        .with_failure_mode(rule.failure_mode.unwrap_or(defaults.failure_mode))
        .map_err(|e| at.error("failure_mode", e))?;
    let headers = PreparedHeaders::new(&policy, rule.quota_unit, defaults.style)
        .map_err(|e| at.error("limits", e))?;
    let denials = denials(&policy);
    let settles = rule.actual != Actual::Estimate
        || !rule.charge_statuses.is_empty()
        || rule.refund_server_errors;
    let settle = settles.then(|| SettleRule {
        actual: rule.actual,
        statuses: rule.charge_statuses.into(),
        refund_server_errors: rule.refund_server_errors,
    });
    let mut compiled = EndpointRule {
        name: Arc::from(policy.name()),
        route: Arc::from(route),
        key: KeyTemplate::new(&rule.scopes),
        cost: rule.cost,
        settle,
        shadow: rule.shadow.unwrap_or(defaults.shadow),
        shadow_headers: rule.shadow_headers,
        penalty: match rule.penalty {
            Some(p) if p.is_zero() || p > MAX_PENALTY => {
                return Err(at.error("penalty", "must be longer than zero and at most a day"));
            }
            penalty => penalty,
        },
        headers,
        denials,
        policy,
        plans: Box::default(),
        also: Box::default(),
        metrics: Default::default(),
    };
    compiled.also = also_rules(&compiled, &rule.also, shared, at)?;
    compiled.plans = plan_rules(&compiled, rule.plans, rule.quota_unit, defaults, at)?;
    Ok(compiled)
}

/// The shared policies `names` a policy also checks.
fn also_rules(
    base: &EndpointRule,
    names: &[String],
    shared: &[Arc<EndpointRule>],
    at: Entry,
) -> Result<Box<[Arc<EndpointRule>]>, BuildError> {
    let mut rules: Vec<Arc<EndpointRule>> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let field = format!("also[{i}]");
        let Some(rule) = shared.iter().find(|r| r.policy.name() == name) else {
            return Err(at.error(
                &field,
                format!("no shared policy is named {name:?} (see `policies`)"),
            ));
        };
        if rules.iter().any(|r| Arc::ptr_eq(r, rule)) {
            return Err(at.error(&field, format!("{name:?} is named twice")));
        }
        // Decided together, all or nothing: a settlement after the response or a
        // policy that never denies does not fit that (yet).
        for (what, r) in [("this policy", base), (name.as_str(), &**rule)] {
            if r.settle.is_some() {
                return Err(at.error(&field, format!("{what} settles after the response (`usage`), which a policy checked with others cannot do")));
            }
            if r.shadow {
                return Err(at.error(
                    &field,
                    format!(
                        "{what} is in shadow mode, which a policy checked with others cannot be"
                    ),
                ));
            }
        }
        rules.push(Arc::clone(rule));
    }
    Ok(rules.into())
}

/// The rules of `base`'s policy under each plan's limits, checked against the declared
/// plans.
fn plan_rules(
    base: &EndpointRule,
    plans: Vec<(String, Vec<Limit>)>,
    quota_unit: Option<crate::headers::QuotaUnit>,
    defaults: &Defaults<'_>,
    at: Entry,
) -> Result<PlanRules, BuildError> {
    let mut rules: Vec<(Arc<str>, Arc<EndpointRule>)> = Vec::with_capacity(plans.len());
    for (plan, limits) in plans {
        let field = format!("plans.{plan}");
        let Some(declared) = defaults.plans else {
            return Err(at.error(
                &field,
                "limits per plan need a `plans` section saying where a client's plan is read",
            ));
        };
        if plan == declared.default {
            return Err(at.error(
                &field,
                "the default plan's limits are the policy's own `limits`",
            ));
        }
        if !declared.names.contains(&plan) {
            return Err(at.error(
                &field,
                format!("plan {plan:?} is not declared in `plans.names`"),
            ));
        }
        if rules.iter().any(|(name, _)| **name == *plan) {
            return Err(at.error(&field, "the plan's limits are given twice"));
        }
        let mut policy = Policy::new(base.policy.name(), limits)
            .map_err(|e| at.error(&format!("{field}.{}", e.field()), e))?
            .with_leasing(base.policy.leasing());
        if let Some(mode) = base.policy.failure_mode() {
            policy = policy
                .with_failure_mode(mode)
                .map_err(|e| at.error("failure_mode", e))?;
        }
        let headers = PreparedHeaders::new(&policy, quota_unit, defaults.style)
            .map_err(|e| at.error(&format!("{field}.limits"), e))?;
        let rule = EndpointRule {
            denials: denials(&policy),
            policy,
            headers,
            plans: Box::default(),
            metrics: Default::default(),
            ..base.clone()
        };
        rules.push((Arc::from(plan), Arc::new(rule)));
    }
    Ok(rules.into())
}
