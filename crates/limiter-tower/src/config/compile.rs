//! From the file as written to [`Rules`], through [`LimiterBuilder`]: environment
//! variables expanded, key files read, limits and policies built by the core, and every
//! error located at its line and field.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use http::{HeaderName, Method, StatusCode};
use jsonwebtoken::Algorithm as JwtAlg;
use limiter_core::{Algorithm, Leasing, Limit, Policy};
use serde_saphyr::Spanned;

use super::env::expand_env;
use super::error::{ConfigError, Position};
use super::model::*;
use crate::builder::{Endpoint, Entry, LimiterBuilder, PolicyRule};
use crate::client_timestamp::ClientTimestamp;
use crate::key::Jwt;
use crate::pricing::{PlanSource, Plans};
use crate::rules::{Cost, Rules};
use crate::store::{PolicyLeases, StoreConfig};
use crate::usage::Actual;

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

/// Compiles `config` (read from `file`; relative paths resolve against `base`): what
/// only a file has (environment variables, key files, method and header names as text,
/// line numbers) is resolved here, the rest is [`LimiterBuilder`]'s.
pub(crate) fn compile(config: &ConfigFile, file: &Path, base: &Path) -> Result<Rules, ConfigError> {
    let ctx = Ctx { file, base };
    let mut builder = LimiterBuilder::new()
        .headers(config.headers)
        .trusted_proxies(
            config.client_ip.trusted_proxies.iter().copied(),
            config.client_ip.forwarded_header,
        )
        .ipv6_prefix(config.client_ip.ipv6_prefix)
        .exempt_cidrs(config.exemptions.cidrs.iter().copied())
        .exempt_users(config.exemptions.users.iter().cloned())
        .store(expand_store(&ctx, &config.store)?)
        .failure_mode(config.failure_mode)
        .shadow(config.shadow)
        .breaker(config.breaker.clone())
        .overload(config.overload)
        .enumeration(config.enumeration.to_builder());
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
        let rule = policy_rule(&ctx, &endpoint.policy(), at, &field)?;
        builder = builder.endpoint(Endpoint::new(endpoint.path.clone(), rule).methods(methods));
    }
    for (i, entry) in config.policies.iter().enumerate() {
        let field = format!("policies[{i}]");
        builder = builder.policy(policy_rule(&ctx, &entry.value, position(entry), &field)?);
    }
    if let Some(entry) = &config.default_policy {
        builder = builder.default_policy(policy_rule(
            &ctx,
            &entry.value,
            position(entry),
            "default_policy",
        )?);
    }
    if let Some(jwt) = &config.jwt {
        builder = builder.jwt(jwt_keys(&ctx, jwt)?);
    }
    if let Some(plans) = &config.plans {
        builder = builder.plans(plans_section(&ctx, plans)?);
    }
    if let Some(stamp) = &config.client_timestamp {
        let header = HeaderName::from_str(&stamp.header).map_err(|_| {
            ctx.invalid(
                None,
                "client_timestamp.header".into(),
                "not a valid header name",
            )
        })?;
        builder = builder.client_timestamp(
            ClientTimestamp::new(header)
                .max_skew(stamp.max_skew)
                .required(stamp.required),
        );
    }
    let api_key = HeaderName::from_str(&config.api_key.header)
        .map_err(|_| ctx.invalid(None, "api_key.header".into(), "not a valid header name"))?;
    builder.api_key_header(api_key).rules().map_err(|e| {
        let at = match e.entry() {
            Some(Entry::Endpoint(i)) => config.endpoints.get(i).and_then(position),
            Some(Entry::DefaultPolicy) => config.default_policy.as_ref().and_then(position),
            Some(Entry::Policy(i)) => config.policies.get(i).and_then(position),
            None => None,
        };
        ctx.invalid(at, e.field().to_owned(), e.message())
    })
}

/// One entry's policy, with what only the file can get wrong checked: its limits, the
/// policy the core builds of them, and the cost.
fn policy_rule(
    ctx: &Ctx<'_>,
    config: &PolicyConfig,
    at: Option<Position>,
    field: &str,
) -> Result<PolicyRule, ConfigError> {
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
    let mut rule = PolicyRule::new(policy)
        .scopes(config.scopes.iter().cloned())
        .cost(cost);
    if let Some(unit) = config.quota_unit {
        rule = rule.quota_unit(unit);
    }
    if let Some(mode) = config.failure_mode {
        rule = rule.failure_mode(mode);
    }
    if let Some(shadow) = config.shadow {
        rule = rule.shadow(shadow);
    }
    rule = rule.shadow_headers(config.shadow_headers);
    for name in &config.also {
        rule = rule.also(name.clone());
    }
    if let Some(penalty) = config.penalty {
        rule = rule.penalty(penalty);
    }
    for (plan, limits) in &config.plans {
        let limits = limits
            .limits
            .iter()
            .enumerate()
            .map(|(i, limit)| {
                compile_limit(limit).map_err(|m| {
                    ctx.invalid(at.clone(), format!("{field}.plans.{plan}.limits[{i}]"), m)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        rule = rule.plan(plan.clone(), limits);
    }
    if let Some(usage) = &config.usage {
        rule = usage_rule(ctx, rule, usage, at, &format!("{field}.usage"))?;
    }
    Ok(rule)
}

/// The `usage` section of a policy, on its rule.
fn usage_rule(
    ctx: &Ctx<'_>,
    mut rule: PolicyRule,
    usage: &UsageConfig,
    at: Option<Position>,
    field: &str,
) -> Result<PolicyRule, ConfigError> {
    let actual = match (usage.actual, &usage.header) {
        (ActualSource::Header, Some(name)) => Actual::Header {
            name: HeaderName::from_str(name).map_err(|_| {
                ctx.invalid(
                    at.clone(),
                    format!("{field}.header"),
                    "not a valid header name",
                )
            })?,
            strip: usage.strip_header,
        },
        (ActualSource::Header, None) => {
            return Err(ctx.invalid(
                at,
                format!("{field}.header"),
                "`actual: header` needs the header's name",
            ));
        }
        (_, Some(_)) => {
            return Err(ctx.invalid(
                at,
                format!("{field}.header"),
                "a header is read only with `actual: header`",
            ));
        }
        (ActualSource::Report, None) => Actual::Reported,
        (ActualSource::Estimate, None) => Actual::Estimate,
    };
    let statuses = usage
        .charge_statuses
        .iter()
        .enumerate()
        .map(|(i, &code)| {
            StatusCode::from_u16(code)
                .ok()
                .filter(|_| (100..=599).contains(&code))
                .ok_or_else(|| {
                    ctx.invalid(
                        at.clone(),
                        format!("{field}.charge_statuses[{i}]"),
                        "not an HTTP status (100 to 599)",
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    rule = rule
        .actual(actual)
        .charge_statuses(statuses)
        .refund_server_errors(usage.refund_server_errors);
    Ok(rule)
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
            Algorithm::Calendar(period)
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
        (_, Some(window)) => window,
        (_, None) => return Err("`window` is required".into()),
    };
    let mut limit = Limit::new(config.max, window)
        .with_name(&config.name)
        .with_algorithm(algorithm);
    if let Some(unit) = &config.unit {
        if unit.is_empty() {
            return Err("`unit` must not be empty".into());
        }
        limit = limit.counting(unit);
    }
    Ok(limit)
}

/// The `plans` section: its one source, its API keys with `${VAR}` expanded.
fn plans_section(ctx: &Ctx<'_>, config: &PlansConfig) -> Result<Plans, ConfigError> {
    let source = match (&config.claim, &config.header, config.api_keys.is_empty()) {
        (Some(claim), None, true) => PlanSource::claim(claim.clone()),
        (None, Some(header), true) => PlanSource::header(
            HeaderName::from_str(header)
                .map_err(|_| ctx.invalid(None, "plans.header".into(), "not a valid header name"))?,
        ),
        (None, None, false) => {
            let keys = config
                .api_keys
                .iter()
                .map(|(key, plan)| Ok((ctx.env("plans.api_keys", key)?, plan.clone())))
                .collect::<Result<Vec<_>, ConfigError>>()?;
            PlanSource::api_keys(keys)
        }
        _ => {
            return Err(ctx.invalid(
                None,
                "plans".into(),
                "set exactly one of `claim`, `header` and `api_keys`",
            ))
        }
    };
    Ok(Plans::new(source, config.default.clone()).names(config.names.iter().cloned()))
}

/// The `jwt` section's keys, read from the environment and the files it names.
fn jwt_keys(ctx: &Ctx<'_>, config: &JwtConfig) -> Result<Jwt, ConfigError> {
    let invalid = |field: &str, message: String| ctx.invalid(None, format!("jwt.{field}"), message);
    let allowed: Vec<JwtAlg> = config.algorithms.clone();
    let mut jwt = Jwt::new(allowed.iter().copied())
        .leeway(config.leeway)
        .identity_claim(config.identity_claim.clone())
        .on_invalid(config.on_invalid);
    if let Some(issuer) = &config.issuer {
        jwt = jwt.issuer(issuer.clone());
    }
    if let Some(audience) = &config.audience {
        jwt = jwt.audience(audience.clone());
    }

    let hmac = allowed
        .iter()
        .any(|a| a.family() == jsonwebtoken::AlgorithmFamily::Hmac);
    match (&config.hs_secret_env, hmac) {
        (Some(var), true) => {
            let secret = std::env::var(var)
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ConfigError::Env {
                    file: ctx.file.to_owned(),
                    field: "jwt.hs_secret_env".into(),
                    var: var.clone(),
                })?;
            jwt = jwt.hmac_secret(secret);
        }
        (None, true) => {
            return Err(invalid(
                "hs_secret_env",
                "HS* algorithms are allowed but no secret variable is named".into(),
            ))
        }
        (Some(_), false) => {
            return Err(invalid(
                "hs_secret_env",
                "a secret is configured but no HS* algorithm is allowed".into(),
            ))
        }
        (None, false) => {}
    }

    for (i, pk) in config.public_keys.iter().enumerate() {
        let field = format!("public_keys[{i}]");
        let path = ctx.path(&format!("jwt.{field}.pem_file"), &pk.pem_file)?;
        let pem = std::fs::read(&path).map_err(|e| {
            invalid(
                &format!("{field}.pem_file"),
                format!("{}: {e}", path.display()),
            )
        })?;
        jwt = jwt
            .public_key_pem(pk.algorithm, pk.kid.clone(), &pem)
            .map_err(|e| invalid(&field, format!("{}: {e}", path.display())))?;
    }

    if let Some(jwks) = &config.jwks_file {
        let path = ctx.path("jwt.jwks_file", jwks)?;
        let text = std::fs::read(&path)
            .map_err(|e| invalid("jwks_file", format!("{}: {e}", path.display())))?;
        jwt = jwt
            .jwks(&text)
            .map_err(|e| invalid("jwks_file", format!("{}: {e}", path.display())))?;
    }
    Ok(jwt)
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
            memory_guard,
        } => StoreConfig::Redis {
            url: ctx.env("store.url", url)?,
            key_prefix: prefix(key_prefix)?,
            timeout: *timeout,
            local_cache: *local_cache,
            batch: *batch,
            leases: *leases,
            memory_guard: *memory_guard,
        },
        StoreConfig::RedisCluster {
            nodes,
            key_prefix,
            timeout,
            local_cache,
            batch,
            leases,
            memory_guard,
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
            memory_guard: *memory_guard,
        },
    })
}
