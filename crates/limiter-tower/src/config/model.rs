//! The policy file as written: serde types, with the JSON Schema derived from them.
//!
//! Nothing here is validated beyond its shape; [`compile`](super::compile) turns a
//! [`ConfigFile`] into the rules the layer runs, and reports what does not make sense.

use std::num::NonZeroUsize;
use std::time::Duration;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

pub use super::guard::StoreSetup;
pub use super::memory_guard::MemoryGuardConfig;
use super::throughput::Switchable;
pub use super::throughput::{BatchConfig, ByteSize, LeasesConfig, PolicyLeases};
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
    /// The circuit breaker of a Redis store's calls. Read at start-up, like `store`.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// When this process sheds requests (503) instead of queueing their decisions for
    /// Redis any longer. Read at start-up, like `store`.
    #[serde(default)]
    pub overload: super::OverloadConfig,
    /// Which rate-limit response headers to send.
    #[serde(default)]
    pub headers: HeaderStyle,
    /// How the client address behind the `ip` scope is found.
    #[serde(default)]
    pub client_ip: ClientIpConfig,
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
    /// Limited endpoints; the first whose path and method match a request applies.
    #[serde(default)]
    #[schemars(with = "Vec<EndpointConfig>")]
    pub endpoints: Vec<Spanned<EndpointConfig>>,
}

/// The store behind every policy.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StoreConfig {
    /// In this process only: each instance counts on its own.
    Memory {
        /// The most (policy, key) entries held at once (default 1,000,000). At the cap,
        /// once expired entries are swept, a request for a new key is answered 429
        /// whatever the failure mode (never admitted uncounted); tracked keys keep working.
        #[serde(default)]
        max_keys: Option<usize>,
    },
    /// One Redis server, shared by every instance.
    Redis {
        /// `redis://host:port/db`; `${VAR}` is replaced from the environment.
        url: String,
        /// Prefix of every key (default `rl:`).
        #[serde(default)]
        key_prefix: Option<String>,
        /// The longest one call to Redis may take before it has failed, the failure
        /// mode deciding its requests (default 100ms; a batch gets 100us more per
        /// decision after its first). Timed from when the call is written to when its
        /// reply is read, on a thread of its own: time queued in this process never
        /// counts (see `overload`). A miss counts as a failure for the circuit breaker.
        #[serde(
            default = "default_store_timeout",
            deserialize_with = "limiter_core::config_serde::duration"
        )]
        #[schemars(with = "DurationText", transform = no_default)]
        timeout: Duration,
        /// Remember denials in this process, so that requests from keys over their limit
        /// are answered 429 without a Redis call until their retry time (off when unset).
        #[serde(default)]
        local_cache: Option<LocalCacheConfig>,
        /// Send the concurrent decisions of this process to Redis together, one script
        /// call for many (on unless `off`): adds at most `linger` to a decision under
        /// load, nothing when idle.
        #[serde(
            default = "super::throughput::batch_on",
            deserialize_with = "super::throughput::batch"
        )]
        #[schemars(with = "Switchable<BatchConfig>")]
        batch: Option<BatchConfig>,
        /// Quota leases for hot keys (off unless set): units reserved in Redis first and
        /// admitted in this process, never more than Redis counted.
        #[serde(default, deserialize_with = "super::throughput::leases")]
        #[schemars(with = "Switchable<LeasesConfig>")]
        leases: Option<LeasesConfig>,
        /// Refuse new keys while Redis memory is above a share of `maxmemory` (on
        /// unless `off`): they are decided by the failure mode, while keys Redis holds
        /// keep being decided.
        #[serde(
            default = "super::memory_guard::memory_guard_on",
            deserialize_with = "super::memory_guard::memory_guard"
        )]
        #[schemars(with = "Switchable<MemoryGuardConfig>")]
        memory_guard: Option<MemoryGuardConfig>,
    },
    /// A Redis Cluster, reached through any of its nodes.
    RedisCluster {
        /// Node URLs; `${VAR}` is replaced from the environment.
        nodes: Vec<String>,
        /// Prefix of every key (default `rl:`).
        #[serde(default)]
        key_prefix: Option<String>,
        /// The longest one call to Redis may take before it has failed, the failure
        /// mode deciding its requests (default 100ms; a batch gets 100us more per
        /// decision after its first). Timed from when the call is written to when its
        /// reply is read, on a thread of its own: time queued in this process never
        /// counts (see `overload`). A miss counts as a failure for the circuit breaker.
        #[serde(
            default = "default_store_timeout",
            deserialize_with = "limiter_core::config_serde::duration"
        )]
        #[schemars(with = "DurationText", transform = no_default)]
        timeout: Duration,
        /// Remember denials in this process, so that requests from keys over their limit
        /// are answered 429 without a Redis call until their retry time (off when unset).
        #[serde(default)]
        local_cache: Option<LocalCacheConfig>,
        /// Send the concurrent decisions of this process to Redis together, one script
        /// call for many (on unless `off`): adds at most `linger` to a decision under
        /// load, nothing when idle.
        #[serde(
            default = "super::throughput::batch_on",
            deserialize_with = "super::throughput::batch"
        )]
        #[schemars(with = "Switchable<BatchConfig>")]
        batch: Option<BatchConfig>,
        /// Quota leases for hot keys (off unless set): units reserved in Redis first and
        /// admitted in this process, never more than Redis counted.
        #[serde(default, deserialize_with = "super::throughput::leases")]
        #[schemars(with = "Switchable<LeasesConfig>")]
        leases: Option<LeasesConfig>,
        /// Refuse new keys while Redis memory is above a share of `maxmemory` (on
        /// unless `off`): they are decided by the failure mode, while keys Redis holds
        /// keep being decided.
        #[serde(
            default = "super::memory_guard::memory_guard_on",
            deserialize_with = "super::memory_guard::memory_guard"
        )]
        #[schemars(with = "Switchable<MemoryGuardConfig>")]
        memory_guard: Option<MemoryGuardConfig>,
    },
}

/// The local cache of denials in front of a Redis store (limiter-core's `DenialCache`).
///
/// A request denied by Redis is remembered until its retry time; until then the same key
/// under the same policy (and limits) is denied from memory, without a Redis call, the
/// circuit breaker or the store timeout. Exact: it only denies what Redis would deny, as
/// other instances can only consume more meanwhile. Allowed requests and peeks always
/// reach Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalCacheConfig {
    /// The most (policy, key) denials remembered at once (default 10,000), the least
    /// used forgotten first.
    #[serde(
        default = "default_local_cache_keys",
        deserialize_with = "local_cache_keys"
    )]
    pub max_keys: NonZeroUsize,
}

/// Names the field in its message: errors inside `store` are located at the section only
/// (serde buffers a `kind`-tagged enum before reading its fields), so the message has to
/// say which value is wrong.
fn local_cache_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NonZeroUsize, D::Error> {
    let keys = usize::deserialize(deserializer)?;
    NonZeroUsize::new(keys).ok_or_else(|| {
        serde::de::Error::custom(
            "local_cache.max_keys must be at least 1 (leave local_cache out to turn it off)",
        )
    })
}

impl Default for LocalCacheConfig {
    fn default() -> Self {
        LocalCacheConfig {
            max_keys: default_local_cache_keys(),
        }
    }
}

fn default_local_cache_keys() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN)
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Memory { max_keys: None }
    }
}

impl StoreConfig {
    /// One Redis server at `url` (`redis://host:port/db`), as the file's defaults have
    /// it: keys under `rl:`, the default `timeout`, batches on, no local cache, no
    /// leases, the memory guard on.
    ///
    /// ```
    /// use limiter_tower::StoreConfig;
    ///
    /// let StoreConfig::Redis { timeout, batch, .. } = StoreConfig::redis("redis://127.0.0.1/") else {
    ///     unreachable!()
    /// };
    /// assert_eq!(timeout, std::time::Duration::from_millis(250));
    /// assert!(batch.is_some());
    /// ```
    pub fn redis(url: impl Into<String>) -> Self {
        StoreConfig::Redis {
            url: url.into(),
            key_prefix: None,
            timeout: default_store_timeout(),
            local_cache: None,
            batch: super::throughput::batch_on(),
            leases: None,
            memory_guard: super::memory_guard::memory_guard_on(),
        }
    }

    /// A Redis Cluster reached through any of `nodes`, with the defaults of
    /// [`redis`](Self::redis).
    pub fn redis_cluster<N: Into<String>>(nodes: impl IntoIterator<Item = N>) -> Self {
        StoreConfig::RedisCluster {
            nodes: nodes.into_iter().map(Into::into).collect(),
            key_prefix: None,
            timeout: default_store_timeout(),
            local_cache: None,
            batch: super::throughput::batch_on(),
            leases: None,
            memory_guard: super::memory_guard::memory_guard_on(),
        }
    }
}

fn default_store_timeout() -> Duration {
    limiter_core::DEFAULT_TIMEOUT
}

/// Which headers carry the rate-limit state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    #[default]
    Draft,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    Legacy,
    /// Both sets.
    Both,
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

/// A forwarding header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
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

/// What happens to a request without a valid token on a policy that needs `user`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenFallback {
    /// Count it under the client address instead.
    #[default]
    Ip,
    /// Answer 401.
    Reject,
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

/// The header the `api_key` scope reads unless told otherwise.
pub(crate) const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

fn default_api_key_header() -> String {
    DEFAULT_API_KEY_HEADER.to_owned()
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
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Ip]
}

/// One part of a rate-limit key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// The verified token's identity.
    User,
    /// The client address (IPv6 grouped by prefix).
    Ip,
    /// A hash of the API key header.
    ApiKey,
    /// The matched route template and method.
    Endpoint,
    /// One budget for everyone.
    Global,
}

impl Scope {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Ip => "ip",
            Scope::ApiKey => "api_key",
            Scope::Endpoint => "endpoint",
            Scope::Global => "global",
        }
    }
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

/// The draft's quota units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum QuotaUnit {
    /// One unit per request (the default, not announced).
    Requests,
    /// One unit per byte of content.
    ContentBytes,
    /// One unit per concurrent request.
    ConcurrentRequests,
}

impl QuotaUnit {
    /// The token the draft uses.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaUnit::Requests => "requests",
            QuotaUnit::ContentBytes => "content-bytes",
            QuotaUnit::ConcurrentRequests => "concurrent-requests",
        }
    }
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
