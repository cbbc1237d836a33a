//! The first half of a request: which policy applies, who the client is, what the
//! request costs, and under which key it counts. Nothing here waits.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use http::header::AUTHORIZATION;
use http::Request;

use crate::enumeration::{FailureReport, Presented, Source, Verdict};
use crate::key::TokenFallback;
use crate::key::{KeyTemplate, RequestIdentity, TokenError};
use crate::overrides::Applied;
use crate::pricing::PlanInputs;
use crate::rejection::{Rejection, NO_CLIENT_ADDRESS};
use crate::rules::{EndpointRule, Rules};
use crate::shared::Shared;

/// What to do with a request.
pub(crate) enum Plan<'r> {
    /// No policy applies, or the client is exempt.
    Pass,
    /// Answer at once.
    Reject(Rejection),
    /// Ask the store for `cost` units of `key` under `rule` (an override's scaled form of
    /// the policy's, owned).
    Check {
        rule: Cow<'r, Arc<EndpointRule>>,
        key: Cow<'r, str>,
        cost: u64,
        /// Counts the request's credential as failed if the application says so.
        report: Option<FailureReport>,
        /// The shared policies checked with it, each with its key and cost.
        also: Vec<Also<'r>>,
    },
}

/// A shared policy checked with the request's own, and what the request is under it.
pub(crate) struct Also<'r> {
    pub rule: Cow<'r, Arc<EndpointRule>>,
    pub key: Cow<'r, str>,
    pub cost: u64,
}

pub(crate) fn plan<'r, B>(rules: &'r Rules, shared: &Shared, req: &Request<B>) -> Plan<'r> {
    let guard = &shared.guard;
    let headers = req.headers();
    // Every request through the layer, limited or not: it guards against replays.
    if let Some(stamp) = &rules.client_timestamp {
        if let Err(err) = stamp.check(headers, SystemTime::now()) {
            return Plan::Reject(Rejection::BadTimestamp(err));
        }
    }
    let Some(rule) = rules.find(req.method(), req.uri().path()) else {
        return Plan::Pass;
    };
    // Only a policy with limits per plan reads the client's plan.
    let plans = rules
        .plans
        .as_ref()
        .filter(|_| !rule.plans.is_empty() || rule.also.iter().any(|r| !r.plans.is_empty()));
    // The client's address only when something asks for it: a `global` or `endpoint`
    // budget without exempt networks never looks.
    let enumeration = rules.enumeration.as_ref();
    let exempts_by_ip = !rules.exempt_cidrs.is_empty();
    let client = if rule.any_key(KeyTemplate::needs_ip) || exempts_by_ip || enumeration.is_some() {
        match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => Some(rules.client_ip.resolve(peer.ip(), headers)),
            // Exempt networks cannot be told apart without it: refuse rather than limit
            // them silently.
            None if exempts_by_ip => return no_client_address(),
            None => None,
        }
    } else {
        None
    };
    if let Some(ip) = client {
        if rules.exempt_cidrs.iter().any(|net| net.contains(&ip)) {
            return Plan::Pass;
        }
    }

    let needs_user = rule.any_key(KeyTemplate::needs_user);
    let plan_claim = plans.is_some_and(|p| p.reads_claim());
    let mut failed_token = false;
    let verified = match &rules.jwt {
        Some(jwt)
            if needs_user
                || plan_claim
                || !rules.exempt_users.is_empty()
                || enumeration.is_some() =>
        {
            match jwt.identify(headers) {
                Ok(verified) => Some(verified),
                Err(err) if needs_user && rules.token_fallback == TokenFallback::Reject => {
                    return Plan::Reject(Rejection::Unauthorized(err));
                }
                Err(err) => {
                    failed_token = err != TokenError::Missing;
                    if failed_token {
                        tracing::debug!(policy = rule.policy.name(), error = %err, "token not accepted; counting by client address");
                    }
                    None
                }
            }
        }
        _ => None,
    };
    let user = verified.as_ref().map(|v| v.user.as_str());
    if user.is_some_and(|u| rules.exempt_users.contains(u)) {
        return Plan::Pass;
    }

    let plan_key = plans.is_some_and(|p| p.reads_api_key());
    let api_key = if rule.any_key(KeyTemplate::needs_api_key) || plan_key || enumeration.is_some() {
        rules.api_key.read(headers)
    } else {
        None
    };
    let plan = match plans {
        Some(plans) => {
            let inputs = PlanInputs {
                headers,
                peer: req
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(peer)| peer.ip()),
                claims: verified.as_ref().map(|v| &*v.claims),
                api_key: api_key.as_deref(),
            };
            plans.read(&inputs, &rules.client_ip).map(|p| &**p)
        }
        None => None,
    };
    let endpoint = rule;
    let rule = rule.for_plan(plan);
    // After the identity is known, before any store call: a blocked client costs none.
    let mut report = None;
    if let (Some(config), Some(ip)) = (enumeration, client) {
        let presented = Presented {
            user,
            api_key: api_key.as_deref(),
            failed_token: failed_token
                .then(|| headers.get(AUTHORIZATION).map(|v| v.as_bytes()))
                .flatten(),
        };
        // Formatting the source allocates: an anonymous request while no source is
        // blocked has nothing to count and nothing to be refused for.
        if !presented.is_empty() || guard.any_blocked() {
            let source = Source {
                address: rules.client_ip.bucket(ip),
                network: rules.client_ip.network(ip),
            };
            match guard.check(config, &source, &presented) {
                Verdict::Blocked(left) => return Plan::Reject(Rejection::AbnormalUsage(left)),
                Verdict::Pass(r) => report = r,
            }
        }
    }

    let cost = match rule.cost.of(headers) {
        Ok(cost) => cost,
        Err(err) => return Plan::Reject(Rejection::BadCost(err)),
    };
    // Formatting the address allocates: only when a key can contain it.
    let ip = client
        .filter(|_| rule.any_key(KeyTemplate::needs_ip))
        .map(|ip| rules.client_ip.bucket(ip));
    let identity = RequestIdentity {
        user,
        ip: ip.as_deref(),
        api_key: api_key.as_deref(),
        method: req.method().as_str(),
        route: &endpoint.route,
        claims: rules
            .jwt
            .as_ref()
            .zip(verified.as_ref())
            .map(|(jwt, v)| (jwt.captured_names(), &*v.claims)),
    };
    let Some(key) = key_of(rule, &identity) else {
        return no_client_address();
    };
    let rule = match overridden(shared, rule, &key) {
        Ok(rule) => rule,
        Err(blocked) => return blocked,
    };
    let mut also = Vec::with_capacity(endpoint.also.len());
    for rule in endpoint.also.iter() {
        let rule = rule.for_plan(plan);
        let cost = match rule.cost.of(headers) {
            Ok(cost) => cost,
            Err(err) => return Plan::Reject(Rejection::BadCost(err)),
        };
        let Some(key) = key_of(rule, &identity) else {
            return no_client_address();
        };
        let rule = match overridden(shared, rule, &key) {
            Ok(rule) => rule,
            Err(blocked) => return blocked,
        };
        also.push(Also { rule, key, cost });
    }
    Plan::Check {
        rule,
        key,
        cost,
        report,
        also,
    }
}

/// `rule` as an override of `key` has it (scaled, or the request refused), unless the
/// key is in the policy's penalty box.
fn overridden<'r>(
    shared: &Shared,
    rule: &'r Arc<EndpointRule>,
    key: &str,
) -> Result<Cow<'r, Arc<EndpointRule>>, Plan<'r>> {
    if rule.penalty.is_some() {
        if let Some(left) = shared.penalties.left(rule.policy.name(), key) {
            return Err(Plan::Reject(Rejection::Penalized(left)));
        }
    }
    match shared.overrides.apply(rule, key) {
        Applied::None => Ok(Cow::Borrowed(rule)),
        Applied::Scaled(scaled) => Ok(Cow::Owned(scaled)),
        Applied::Blocked(left) => Err(Plan::Reject(Rejection::Blocked(left))),
    }
}

/// The key of `rule` for `identity`: borrowed when it is the same for every request.
fn key_of<'r>(rule: &'r EndpointRule, identity: &RequestIdentity<'_>) -> Option<Cow<'r, str>> {
    if let Some(key) = rule.key.fixed() {
        return Some(Cow::Borrowed(key));
    }
    let identity = RequestIdentity {
        api_key: identity.api_key.filter(|_| rule.key.needs_api_key()),
        ..identity.clone()
    };
    rule.key.render(&identity).map(Cow::Owned)
}

/// The key needs the client address and the server gives none: every client would share
/// one budget. A server fault, answered 500 and logged once rather than per request.
fn no_client_address<'r>() -> Plan<'r> {
    static LOGGED: Once = Once::new();
    LOGGED.call_once(|| tracing::error!("{NO_CLIENT_ADDRESS}"));
    Plan::Reject(Rejection::NoClientAddress)
}
