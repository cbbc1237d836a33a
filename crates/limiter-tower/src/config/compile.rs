//! From the file as written to [`Rules`]: policies validated by the core, routes
//! compiled into a `matchit` router, keys, header values and 429 bodies prepared, and
//! JWT keys loaded and bound to their algorithms.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderName, Method};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey};
use limiter_core::{Algorithm, Leasing, Limit, Period, Policy};
use serde_saphyr::Spanned;

use super::env::expand_env;
use super::error::{ConfigError, Position};
use super::model::*;
use crate::headers::PreparedHeaders;
use crate::key::{ApiKeyReader, BoundKey, ClaimRules, ClientIpResolver, JwtVerifier, KeyTemplate};
use crate::problem;
use crate::rules::{Cost, Denial, EndpointRule, RouteTargets, Rules};

/// The route name of the default policy in the `endpoint` scope.
const UNMATCHED_ROUTE: &str = "*";

/// Reports problems against one file.
struct Ctx<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Ctx<'_> {
    fn invalid(
        &self,
        position: Option<Position>,
        field: String,
        message: impl ToString,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            position,
            field,
            message: message.to_string(),
        }
    }

    fn env(&self, field: &str, text: &str) -> Result<String, ConfigError> {
        expand_env(text).map_err(|unset| ConfigError::Env {
            file: self.file.to_owned(),
            field: field.to_owned(),
            var: unset.0,
        })
    }

    fn path(&self, field: &str, text: &str) -> Result<PathBuf, ConfigError> {
        Ok(self.base.join(self.env(field, text)?))
    }
}

fn position<T>(spanned: &Spanned<T>) -> Option<Position> {
    Some(Position {
        line: spanned.referenced.line(),
        column: spanned.referenced.column(),
    })
}

/// Compiles `config` (read from `file`; relative paths resolve against `base`).
pub fn compile(config: &ConfigFile, file: &Path, base: &Path) -> Result<Rules, ConfigError> {
    let ctx = Ctx { file, base };
    let style = config.headers;

    let mut names = HashSet::new();
    let mut endpoints = Vec::with_capacity(config.endpoints.len());
    let mut by_path: Vec<(String, RouteTargets)> = Vec::new();
    for (i, entry) in config.endpoints.iter().enumerate() {
        let at = position(entry);
        let field = format!("endpoints[{i}]");
        let endpoint = &entry.value;
        let methods = endpoint
            .methods
            .iter()
            .map(|m| {
                Method::from_str(&m.to_ascii_uppercase()).map_err(|_| {
                    ctx.invalid(
                        at.clone(),
                        format!("{field}.methods"),
                        format!("invalid method {m:?}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rule = compile_policy(
            &ctx,
            &endpoint.policy(),
            &endpoint.path,
            style,
            config.failure_mode,
            at.clone(),
            &field,
        )?;
        if !names.insert(rule.policy.name().to_owned()) {
            return Err(ctx.invalid(
                at,
                format!("{field}.name"),
                format!(
                    "policy name {:?} is used twice; counters are stored by name",
                    endpoint.name
                ),
            ));
        }
        let methods = (!methods.is_empty()).then(|| methods.into_boxed_slice());
        match by_path.iter_mut().find(|(p, _)| *p == endpoint.path) {
            Some((_, targets)) => targets.targets.push((methods, i)),
            None => by_path.push((
                endpoint.path.clone(),
                RouteTargets {
                    targets: vec![(methods, i)],
                },
            )),
        }
        endpoints.push(Arc::new(rule));
    }
    let mut routes = matchit::Router::new();
    for (path, targets) in by_path {
        let index = targets.targets[0].1;
        routes.insert(path.clone(), targets).map_err(|e| {
            ctx.invalid(
                position(&config.endpoints[index]),
                format!("endpoints[{index}].path"),
                format!("route {path:?}: {e}"),
            )
        })?;
    }

    let default = match &config.default_policy {
        Some(entry) => {
            let rule = compile_policy(
                &ctx,
                &entry.value,
                UNMATCHED_ROUTE,
                style,
                config.failure_mode,
                position(entry),
                "default_policy",
            )?;
            if !names.insert(rule.policy.name().to_owned()) {
                return Err(ctx.invalid(
                    position(entry),
                    "default_policy.name".into(),
                    "the default policy's name is also an endpoint's",
                ));
            }
            Some(Arc::new(rule))
        }
        None => None,
    };

    let needs_user = endpoints
        .iter()
        .chain(default.as_ref())
        .any(|r| r.key.needs_user());
    let jwt = match &config.jwt {
        Some(jwt) => Some(compile_jwt(&ctx, jwt)?),
        None if needs_user || !config.exemptions.users.is_empty() => {
            return Err(ctx.invalid(None, "jwt".into(), "a policy uses the `user` scope (or users are exempted) but no `jwt` section is configured"));
        }
        None => None,
    };

    let api_key = HeaderName::from_str(&config.api_key.header)
        .map(ApiKeyReader::new)
        .map_err(|_| ctx.invalid(None, "api_key.header".into(), "not a valid header name"))?;

    if config.client_ip.ipv6_prefix > 128 {
        return Err(ctx.invalid(None, "client_ip.ipv6_prefix".into(), "must be at most 128"));
    }

    Ok(Rules {
        routes,
        endpoints: endpoints.into(),
        default,
        client_ip: ClientIpResolver::new(
            config.client_ip.trusted_proxies.clone(),
            config.client_ip.forwarded_header,
            config.client_ip.ipv6_prefix,
        ),
        token_fallback: config
            .jwt
            .as_ref()
            .map(|j| j.on_invalid)
            .unwrap_or_default(),
        jwt,
        api_key,
        exempt_cidrs: config.exemptions.cidrs.iter().map(|n| n.trunc()).collect(),
        exempt_users: config.exemptions.users.iter().cloned().collect(),
        store: StoreSetup {
            store: expand_store(&ctx, &config.store)?,
            failure_mode: config.failure_mode,
            breaker: checked_breaker(&ctx, config.breaker)?,
        },
    })
}

fn compile_policy(
    ctx: &Ctx<'_>,
    config: &PolicyConfig,
    route: &str,
    style: HeaderStyle,
    default_mode: FailureMode,
    at: Option<Position>,
    field: &str,
) -> Result<EndpointRule, ConfigError> {
    let limits = config
        .limits
        .iter()
        .enumerate()
        .map(|(i, limit)| {
            compile_limit(limit)
                .map_err(|m| ctx.invalid(at.clone(), format!("{field}.limits[{i}]"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let policy = Policy::new(&config.name, limits)
        .map_err(|e| ctx.invalid(at.clone(), format!("{field}.{}", e.field()), e))?
        .with_leasing(config.leases.map_or(Leasing::Store, PolicyLeases::to_core));
    let cost = match (&config.cost, &config.cost_header) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid(
                at,
                format!("{field}.cost_header"),
                "set either `cost` or `cost_header`, not both",
            ));
        }
        (_, Some(header)) => Cost::Header {
            name: HeaderName::from_str(&header.name).map_err(|_| {
                ctx.invalid(
                    at.clone(),
                    format!("{field}.cost_header.name"),
                    "not a valid header name",
                )
            })?,
            default: header.default,
            max: header.max,
        },
        (cost, None) => Cost::Fixed(cost.unwrap_or(1)),
    };
    let headers = PreparedHeaders::new(&policy, config.quota_unit, style)
        .map_err(|e| ctx.invalid(at.clone(), format!("{field}.limits"), e))?;
    let denials = policy
        .limits()
        .iter()
        .map(|limit| Denial {
            retry: problem::quota_exceeded(policy.name(), limit.name(), limit.capacity(), false),
            never: problem::quota_exceeded(policy.name(), limit.name(), limit.capacity(), true),
        })
        .collect();
    if config.scopes.is_empty() {
        return Err(ctx.invalid(
            at,
            format!("{field}.scopes"),
            "at least one scope is needed (`global` for one budget for everyone)",
        ));
    }
    Ok(EndpointRule {
        name: Arc::from(policy.name()),
        route: Arc::from(route),
        key: KeyTemplate::new(&config.scopes),
        cost,
        headers,
        denials,
        policy,
        failure_mode: config.failure_mode.unwrap_or(default_mode).to_core(),
        metrics: Default::default(),
    })
}

fn compile_limit(config: &LimitConfig) -> Result<Limit, String> {
    let algorithm = match config.algorithm {
        AlgorithmName::Gcra => Algorithm::Gcra {
            burst: config.burst,
        },
        AlgorithmName::SlidingLog => Algorithm::SlidingLog,
        AlgorithmName::SlidingWindow => Algorithm::SlidingWindow,
        AlgorithmName::FixedWindow => Algorithm::FixedWindow,
        AlgorithmName::Calendar => {
            let period = config.period.ok_or("`calendar` needs a `period`")?;
            if config.window.is_some() {
                return Err("`calendar` takes a `period`, not a `window`".into());
            }
            Algorithm::Calendar(match period {
                PeriodName::Minute => Period::Minute,
                PeriodName::Hour => Period::Hour,
                PeriodName::Day => Period::Day,
                PeriodName::Week => Period::Week,
                PeriodName::Month => Period::Month,
            })
        }
    };
    if config.burst.is_some() && config.algorithm != AlgorithmName::Gcra {
        return Err("`burst` applies to `gcra` only".into());
    }
    if config.period.is_some() && config.algorithm != AlgorithmName::Calendar {
        return Err("`period` applies to `calendar` only".into());
    }
    let window = match (config.algorithm, config.window) {
        (AlgorithmName::Calendar, _) => std::time::Duration::ZERO,
        (_, Some(window)) => window.0,
        (_, None) => return Err("`window` is required".into()),
    };
    Ok(Limit::new(config.max, window)
        .with_name(&config.name)
        .with_algorithm(algorithm))
}

fn compile_jwt(ctx: &Ctx<'_>, config: &JwtConfig) -> Result<JwtVerifier, ConfigError> {
    let invalid = |field: &str, message: String| ctx.invalid(None, format!("jwt.{field}"), message);
    if config.algorithms.is_empty() {
        return Err(invalid("algorithms", "list at least one algorithm".into()));
    }
    let allowed: Vec<JwtAlg> = config.algorithms.iter().map(|a| to_jwt(*a)).collect();
    let mut keys = Vec::new();

    let hmac: Vec<JwtAlg> = allowed.iter().copied().filter(|a| is_hmac(*a)).collect();
    match (&config.hs_secret_env, hmac.is_empty()) {
        (Some(var), false) => {
            let secret = std::env::var(var)
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ConfigError::Env {
                    file: ctx.file.to_owned(),
                    field: "jwt.hs_secret_env".into(),
                    var: var.clone(),
                })?;
            for algorithm in hmac {
                keys.push(BoundKey {
                    algorithm,
                    kid: None,
                    key: DecodingKey::from_secret(secret.as_bytes()),
                });
            }
        }
        (None, false) => {
            return Err(invalid(
                "hs_secret_env",
                "HS* algorithms are allowed but no secret variable is named".into(),
            ))
        }
        (Some(_), true) => {
            return Err(invalid(
                "hs_secret_env",
                "a secret is configured but no HS* algorithm is allowed".into(),
            ))
        }
        (None, true) => {}
    }

    for (i, pk) in config.public_keys.iter().enumerate() {
        let field = format!("public_keys[{i}]");
        let algorithm = to_jwt(pk.algorithm);
        if !allowed.contains(&algorithm) || is_hmac(algorithm) {
            return Err(invalid(
                &field,
                format!("{:?} must be an allowed public-key algorithm", pk.algorithm),
            ));
        }
        let path = ctx.path(&format!("jwt.{field}.pem_file"), &pk.pem_file)?;
        let pem = std::fs::read(&path).map_err(|e| {
            invalid(
                &format!("{field}.pem_file"),
                format!("{}: {e}", path.display()),
            )
        })?;
        let key = match algorithm.family() {
            jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
            jsonwebtoken::AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
            _ => DecodingKey::from_ed_pem(&pem),
        }
        .map_err(|e| {
            invalid(
                &format!("{field}.pem_file"),
                format!("{}: {e}", path.display()),
            )
        })?;
        keys.push(BoundKey {
            algorithm,
            kid: pk.kid.clone(),
            key,
        });
    }

    if let Some(jwks) = &config.jwks_file {
        let path = ctx.path("jwt.jwks_file", jwks)?;
        let text = std::fs::read(&path)
            .map_err(|e| invalid("jwks_file", format!("{}: {e}", path.display())))?;
        let set: JwkSet = serde_json::from_slice(&text)
            .map_err(|e| invalid("jwks_file", format!("{}: {e}", path.display())))?;
        for (i, jwk) in set.keys.iter().enumerate() {
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| invalid("jwks_file", format!("key #{i}: {e}")))?;
            if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
                return Err(invalid(
                    "jwks_file",
                    format!("key #{i} is symmetric; only public keys belong in a JWKS file"),
                ));
            }
            let named = jwk
                .common
                .key_algorithm
                .map(|a| JwtAlg::from_str(&a.to_string()))
                .transpose()
                .map_err(|_| invalid("jwks_file", format!("key #{i}: unsupported alg")))?;
            for algorithm in key.family().algorithms() {
                if allowed.contains(algorithm) && named.is_none_or(|n| n == *algorithm) {
                    keys.push(BoundKey {
                        algorithm: *algorithm,
                        kid: jwk.common.key_id.clone(),
                        key: key.clone(),
                    });
                }
            }
        }
    }

    let covered: HashSet<JwtAlg> = keys.iter().map(|k| k.algorithm).collect();
    if let Some(missing) = allowed.iter().find(|a| !covered.contains(a)) {
        return Err(invalid(
            "algorithms",
            format!("no key is configured for {missing:?}"),
        ));
    }
    let rules = ClaimRules {
        leeway_secs: config.leeway.0.as_secs(),
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        identity_claim: config.identity_claim.clone(),
    };
    Ok(JwtVerifier::new(keys, &rules))
}

fn is_hmac(a: JwtAlg) -> bool {
    a.family() == jsonwebtoken::AlgorithmFamily::Hmac
}

fn to_jwt(a: JwtAlgorithm) -> JwtAlg {
    match a {
        JwtAlgorithm::HS256 => JwtAlg::HS256,
        JwtAlgorithm::HS384 => JwtAlg::HS384,
        JwtAlgorithm::HS512 => JwtAlg::HS512,
        JwtAlgorithm::RS256 => JwtAlg::RS256,
        JwtAlgorithm::RS384 => JwtAlg::RS384,
        JwtAlgorithm::RS512 => JwtAlg::RS512,
        JwtAlgorithm::PS256 => JwtAlg::PS256,
        JwtAlgorithm::PS384 => JwtAlg::PS384,
        JwtAlgorithm::PS512 => JwtAlg::PS512,
        JwtAlgorithm::ES256 => JwtAlg::ES256,
        JwtAlgorithm::ES384 => JwtAlg::ES384,
        JwtAlgorithm::EdDSA => JwtAlg::EdDSA,
    }
}

fn checked_breaker(ctx: &Ctx<'_>, breaker: BreakerSection) -> Result<BreakerSection, ConfigError> {
    match breaker.invalid_field() {
        Some((field, message)) => Err(ctx.invalid(None, format!("breaker.{field}"), message)),
        None => Ok(breaker),
    }
}

fn expand_store(ctx: &Ctx<'_>, store: &StoreConfig) -> Result<StoreConfig, ConfigError> {
    let prefix = |p: &Option<String>| {
        p.as_deref()
            .map(|p| ctx.env("store.key_prefix", p))
            .transpose()
    };
    Ok(match store {
        StoreConfig::Memory { max_keys } => StoreConfig::Memory {
            max_keys: *max_keys,
        },
        StoreConfig::Redis {
            url,
            key_prefix,
            timeout,
            local_cache,
            batch,
            leases,
        } => StoreConfig::Redis {
            url: ctx.env("store.url", url)?,
            key_prefix: prefix(key_prefix)?,
            timeout: *timeout,
            local_cache: *local_cache,
            batch: *batch,
            leases: *leases,
        },
        StoreConfig::RedisCluster {
            nodes,
            key_prefix,
            timeout,
            local_cache,
            batch,
            leases,
        } => StoreConfig::RedisCluster {
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| ctx.env(&format!("store.nodes[{i}]"), n))
                .collect::<Result<_, _>>()?,
            key_prefix: prefix(key_prefix)?,
            timeout: *timeout,
            local_cache: *local_cache,
            batch: *batch,
            leases: *leases,
        },
    })
}
