//! The policy file as written: serde types, with the JSON Schema derived from them.
//!
//! Nothing here is validated beyond its shape; [`compile`](super::compile) turns a
//! [`ConfigFile`] into the rules the layer runs, and reports what does not make sense.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::headers::{HeaderStyle, QuotaUnit};
use crate::key::{ForwardedHeader, Scope, TokenFallback};
use crate::store::{OverloadConfig, PolicyLeases, StoreConfig};
use limiter_core::config_serde::{no_default, DurationText};
use limiter_core::{BreakerConfig, FailureMode, Period};

/// A whole policy file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where counters live. Read once at start-up: a reload never reconnects.
    #[serde(default)]
    pub store: StoreConfig,
    /// What decides when the store fails, is slower than its `timeout`, or its circuit
    /// breaker is open: `open` (admit, the default), `closed` (429), or
    /// `{ mode: local, share: 0.34 }`. Read at start-up, like `store`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Shadow mode for every policy without a `shadow` of its own: decided and counted
    /// as if enforced, never denying (default false). Reloaded with the policies.
    #[serde(default)]
    pub shadow: bool,
    /// The circuit breaker of a Redis store's calls. Read at start-up, like `store`.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// When this process sheds requests (503) instead of queueing their decisions for
    /// Redis any longer. Read at start-up, like `store`.
    #[serde(default)]
    pub overload: OverloadConfig,
    /// Which rate-limit response headers to send.
    #[serde(default)]
    pub headers: HeaderStyle,
    /// How the client address behind the `ip` scope is found.
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    /// Where a client's plan is read, and which plans there are (policies set `plans`
    /// limits for them). Without it every client gets each policy's own limits.
    #[serde(default)]
    pub plans: Option<PlansConfig>,
    /// How the `user` scope verifies bearer tokens. Required when a policy uses `user`.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// Where the `api_key` scope reads the key from.
    #[serde(default)]
    pub api_key: ApiKeyConfig,
    /// Requests that are never limited.
    #[serde(default)]
    pub exemptions: Exemptions,
    /// Refuse requests whose own timestamp header is too far from this process's clock
    /// (off unless set).
    #[serde(default)]
    pub client_timestamp: Option<super::ClientTimestampConfig>,
    /// The key-enumeration defence (on by default).
    #[serde(default)]
    pub enumeration: super::EnumerationConfig,
    /// The policy for requests that match no endpoint; without one they pass unlimited.
    #[serde(default)]
    #[schemars(with = "Option<PolicyConfig>")]
    pub default_policy: Option<Spanned<PolicyConfig>>,
    /// Shared policies: enforced where an endpoint's (or the default) policy names them
    /// in `also`, e.g. one budget per team across several endpoints.
    #[serde(default)]
    #[schemars(with = "Vec<PolicyConfig>")]
    pub policies: Vec<Spanned<PolicyConfig>>,
    /// Limited endpoints; the first whose path and method match a request applies.
    #[serde(default)]
    #[schemars(with = "Vec<EndpointConfig>")]
    pub endpoints: Vec<Spanned<EndpointConfig>>,
}

/// Where the client address comes from.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Peers whose forwarding header is believed (your load balancers), as CIDRs.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<IpNet>,
    /// Which forwarding header trusted proxies set.
    #[serde(default)]
    pub forwarded_header: ForwardedHeader,
    /// IPv6 clients are grouped by this prefix length: one budget per /64 by default.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        ClientIpConfig {
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            ipv6_prefix: default_ipv6_prefix(),
        }
    }
}

fn default_ipv6_prefix() -> u8 {
    crate::builder::DEFAULT_IPV6_PREFIX
}

/// Bearer-token verification for the `user` scope.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted signature algorithms. `none` does not exist here.
    #[schemars(with = "Vec<JwtAlgorithmSchema>")]
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// The environment variable holding the HMAC secret (for HS256/384/512).
    #[serde(default)]
    pub hs_secret_env: Option<String>,
    /// Public keys in PEM files, each bound to one algorithm.
    #[serde(default)]
    pub public_keys: Vec<PublicKeyConfig>,
    /// A JWKS file (`{"keys": [...]}`) with public keys.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(
        default = "default_leeway",
        deserialize_with = "limiter_core::config_serde::duration"
    )]
    #[schemars(with = "DurationText", transform = no_default)]
    pub leeway: Duration,
    /// Required `iss`, when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim that names the user (default `sub`).
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
    /// What a missing or invalid token means where a policy needs `user`.
    #[serde(default)]
    pub on_invalid: TokenFallback,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_identity_claim() -> String {
    "sub".to_owned()
}

// The schema of `jsonwebtoken::Algorithm` as its names are written (it derives
// `Deserialize` but not `JsonSchema`).
/// A JWS algorithm that may be accepted.
#[derive(JsonSchema)]
#[schemars(rename = "JwtAlgorithm")]
#[allow(clippy::upper_case_acronyms, dead_code)]
enum JwtAlgorithmSchema {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// A public key in a PEM file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// The one algorithm this key verifies (RS*, PS*, ES*, EdDSA).
    #[schemars(with = "JwtAlgorithmSchema")]
    pub algorithm: jsonwebtoken::Algorithm,
    /// Path of the PEM file (relative to the policy file).
    pub pem_file: String,
    /// The `kid` tokens name this key by; any token of the algorithm when unset.
    #[serde(default)]
    pub kid: Option<String>,
}

/// The `api_key` scope.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The request header holding the key.
    #[serde(default = "default_api_key_header")]
    pub header: String,
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        ApiKeyConfig {
            header: default_api_key_header(),
        }
    }
}

fn default_api_key_header() -> String {
    crate::key::DEFAULT_API_KEY_HEADER.to_owned()
}

/// Requests that are never limited.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exemptions {
    /// Client addresses (after proxy resolution), as CIDRs.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cidrs: Vec<IpNet>,
    /// User identities (as the `user` scope reads them from tokens).
    #[serde(default)]
    pub users: Vec<String>,
}

// Repeats `PolicyConfig`'s fields instead of flattening one in: serde cannot combine
// `flatten` with `deny_unknown_fields`, and a misspelt field must stay an error that
// names its line.
/// A limited endpoint: a route, and the policy for it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Route template, `matchit` syntax: `/users/{id}`, `/files/{*path}`.
    pub path: String,
    /// Methods this entry covers; all when empty.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The policy's name. Counters are stored under it: keep it stable across edits so
    /// that a changed limit keeps the usage already counted.
    pub name: String,
    /// What the budget is per, in key order: `user`, `ip`, `api_key`, `endpoint`, `global`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<Scope>,
    /// The windows, all checked together.
    pub limits: Vec<LimitConfig>,
    /// The units one request costs (default 1).
    #[serde(default)]
    pub cost: Option<u64>,
    /// Read the cost from a request header instead.
    #[serde(default)]
    pub cost_header: Option<CostHeaderConfig>,
    /// What a unit of quota is, when not one request (`qu` in `RateLimit-Policy`).
    #[serde(default)]
    pub quota_unit: Option<QuotaUnit>,
    /// What decides for this policy when the store fails; the file's `failure_mode` when
    /// unset.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
    /// Whether this policy's keys may be leased, over the store's `leases` section:
    /// `off`, `on` (the default) or `{ lifetime: 50ms }`. Reloaded with the policy.
    #[serde(default)]
    pub leases: Option<PolicyLeases>,
    /// What is settled after the response: the actual cost, and which responses count.
    /// The cost (`cost` or `cost_header`) is then the estimate reserved first.
    #[serde(default)]
    pub usage: Option<UsageConfig>,
    /// Shadow mode: decided and counted as if enforced, never denying; what it would
    /// have denied passes, counted as `shadow_denied`. Over the file's `shadow`.
    #[serde(default)]
    pub shadow: Option<bool>,
    /// Whether a shadow policy's responses carry its rate-limit fields (default false).
    #[serde(default)]
    pub shadow_headers: bool,
    /// Other limits for clients on these plans (declared in the file's `plans`); the
    /// policy's own `limits` are the default plan's and those of plans not named here.
    #[serde(default)]
    pub plans: BTreeMap<String, PlanLimitsConfig>,
    /// Shared policies (from `policies`) also checked for every request under this one,
    /// in order after it; admitted only if all admit, charged in all or none.
    #[serde(default)]
    pub also: Vec<String>,
    /// The penalty box: a key this policy denies stays denied this long (at most `1d`),
    /// on every instance.
    #[serde(
        default,
        deserialize_with = "limiter_core::config_serde::optional_duration"
    )]
    #[schemars(with = "Option<DurationText>", transform = no_default)]
    pub penalty: Option<Duration>,
}

impl EndpointConfig {
    /// The policy part of the entry.
    pub fn policy(&self) -> PolicyConfig {
        PolicyConfig {
            name: self.name.clone(),
            scopes: self.scopes.clone(),
            limits: self.limits.clone(),
            cost: self.cost,
            cost_header: self.cost_header.clone(),
            quota_unit: self.quota_unit,
            failure_mode: self.failure_mode,
            leases: self.leases,
            usage: self.usage.clone(),
            shadow: self.shadow,
            shadow_headers: self.shadow_headers,
            plans: self.plans.clone(),
            also: self.also.clone(),
            penalty: self.penalty,
        }
    }
}

/// A named set of windows and how requests are keyed and costed under it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy's name. Counters are stored under it: keep it stable across edits so
    /// that a changed limit keeps the usage already counted.
    pub name: String,
    /// What the budget is per, in key order: `user`, `ip`, `api_key`, `endpoint`, `global`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<Scope>,
    /// The windows, all checked together.
    pub limits: Vec<LimitConfig>,
    /// The units one request costs (default 1).
    #[serde(default)]
    pub cost: Option<u64>,
    /// Read the cost from a request header instead.
    #[serde(default)]
    pub cost_header: Option<CostHeaderConfig>,
    /// What a unit of quota is, when not one request (`qu` in `RateLimit-Policy`).
    #[serde(default)]
    pub quota_unit: Option<QuotaUnit>,
    /// What decides for this policy when the store fails; the file's `failure_mode` when
    /// unset.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
    /// Whether this policy's keys may be leased, over the store's `leases` section:
    /// `off`, `on` (the default) or `{ lifetime: 50ms }`. Reloaded with the policy.
    #[serde(default)]
    pub leases: Option<PolicyLeases>,
    /// What is settled after the response: the actual cost, and which responses count.
    /// The cost (`cost` or `cost_header`) is then the estimate reserved first.
    #[serde(default)]
    pub usage: Option<UsageConfig>,
    /// Shadow mode: decided and counted as if enforced, never denying; what it would
    /// have denied passes, counted as `shadow_denied`. Over the file's `shadow`.
    #[serde(default)]
    pub shadow: Option<bool>,
    /// Whether a shadow policy's responses carry its rate-limit fields (default false).
    #[serde(default)]
    pub shadow_headers: bool,
    /// Other limits for clients on these plans (declared in the file's `plans`); the
    /// policy's own `limits` are the default plan's and those of plans not named here.
    #[serde(default)]
    pub plans: BTreeMap<String, PlanLimitsConfig>,
    /// Shared policies (from `policies`) also checked for every request under this one,
    /// in order after it; admitted only if all admit, charged in all or none.
    #[serde(default)]
    pub also: Vec<String>,
    /// The penalty box: a key this policy denies stays denied this long (at most `1d`),
    /// on every instance.
    #[serde(
        default,
        deserialize_with = "limiter_core::config_serde::optional_duration"
    )]
    #[schemars(with = "Option<DurationText>", transform = no_default)]
    pub penalty: Option<Duration>,
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Ip]
}

/// The file's plans: exactly one of `claim`, `header` and `api_keys` says where a
/// client's plan is read.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlansConfig {
    /// The plan of clients the source names no declared plan for.
    pub default: String,
    /// The other plans policies may set limits for.
    #[serde(default)]
    pub names: Vec<String>,
    /// A claim of the verified bearer token (`plan`); needs the `jwt` section.
    #[serde(default)]
    pub claim: Option<String>,
    /// A request header set by a gateway in front of this service, believed only from
    /// `client_ip.trusted_proxies`.
    #[serde(default)]
    pub header: Option<String>,
    /// API keys (as sent in the `api_key` header; `${VAR}` expanded) and their plans.
    #[serde(default)]
    pub api_keys: BTreeMap<String, String>,
}

/// A policy's limits on one plan.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanLimitsConfig {
    /// The windows, all checked together, as the policy's own `limits`.
    pub limits: Vec<LimitConfig>,
}

/// A cost known after the response.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageConfig {
    /// Where the actual cost comes from: `estimate` (the cost is the estimate; only the
    /// status rules settle), `report` (the handler, through `Usage` or `UsageReport`) or
    /// `header` (a response header, named by `header`).
    #[serde(default)]
    pub actual: ActualSource,
    /// With `actual: header`: the response header holding the actual cost.
    #[serde(default)]
    pub header: Option<String>,
    /// With `actual: header`: remove the header before the response leaves.
    #[serde(default)]
    pub strip_header: bool,
    /// Only responses of these statuses are charged; the others are refunded whole (all
    /// are charged when empty). `[401]` counts failed logins only.
    #[serde(default)]
    pub charge_statuses: Vec<u16>,
    /// Refund server errors (5xx) whole.
    #[serde(default)]
    pub refund_server_errors: bool,
}

/// Where a request's actual cost comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActualSource {
    /// The estimate is the cost.
    #[default]
    Estimate,
    /// The handler reports it.
    Report,
    /// A response header.
    Header,
}

/// A cost read from a request header.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CostHeaderConfig {
    /// The header name.
    pub name: String,
    /// The cost when the header is absent.
    #[serde(default = "default_cost")]
    pub default: u64,
    /// The largest cost accepted; larger values are answered 400.
    pub max: u64,
}

fn default_cost() -> u64 {
    1
}

/// One window of a policy.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// The window's name, shown in headers and problem bodies (`burst`, `daily`).
    pub name: String,
    /// Units allowed per window (GCRA: the sustained rate per window).
    pub max: u64,
    /// The window length (`60s`, `1h`, `1d`); not for `calendar`.
    #[serde(
        default,
        deserialize_with = "limiter_core::config_serde::optional_duration"
    )]
    #[schemars(with = "Option<DurationText>", transform = no_default)]
    pub window: Option<Duration>,
    /// How the window counts.
    #[serde(default)]
    pub algorithm: AlgorithmName,
    /// GCRA only: units that may arrive at once (default `max`).
    #[serde(default)]
    pub burst: Option<u64>,
    /// `calendar` only: the UTC period.
    #[serde(default)]
    pub period: Option<Period>,
    /// What the window counts: `requests` (the default) or another unit (`tokens`,
    /// `bytes`), charged the policy's cost while windows of requests count the request.
    /// A policy counts requests and at most one other unit.
    #[serde(default)]
    pub unit: Option<String>,
}

/// The counting algorithms of `limiter-core`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlgorithmName {
    /// Generic cell rate algorithm (token bucket).
    #[default]
    Gcra,
    /// Exact sliding log.
    SlidingLog,
    /// Sliding-window counter.
    SlidingWindow,
    /// Fixed window aligned to the epoch.
    FixedWindow,
    /// Fixed window aligned to UTC calendar periods.
    Calendar,
}
