//! The first half of a request: which policy applies, who the client is, what the
//! request costs, and under which key it counts. Nothing here waits.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use http::header::AUTHORIZATION;
use http::Request;

use crate::enumeration::{FailureReport, Presented, Source, SourceGuard, Verdict};
use crate::key::TokenFallback;
use crate::key::{RequestIdentity, TokenError};
use crate::pricing::PlanInputs;
use crate::rejection::{Rejection, NO_CLIENT_ADDRESS};
use crate::rules::{EndpointRule, Rules};

/// What to do with a request.
pub(crate) enum Plan<'r> {
    /// No policy applies, or the client is exempt.
    Pass,
    /// Answer at once.
    Reject(Rejection),
    /// Ask the store for `cost` units of `key` under `rule`.
    Check {
        rule: &'r Arc<EndpointRule>,
        key: Cow<'r, str>,
        cost: u64,
        /// Counts the request's credential as failed if the application says so.
        report: Option<FailureReport>,
    },
}

pub(crate) fn plan<'r, B>(rules: &'r Rules, guard: &SourceGuard, req: &Request<B>) -> Plan<'r> {
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
    let plans = rules.plans.as_ref().filter(|_| !rule.plans.is_empty());
    // The client's address only when something asks for it: a `global` or `endpoint`
    // budget without exempt networks never looks.
    let enumeration = rules.enumeration.as_ref();
    let exempts_by_ip = !rules.exempt_cidrs.is_empty();
    let client = if rule.key.needs_ip() || exempts_by_ip || enumeration.is_some() {
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

    let needs_user = rule.key.needs_user();
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
    let api_key = if rule.key.needs_api_key() || plan_key || enumeration.is_some() {
        rules.api_key.read(headers)
    } else {
        None
    };
    let rule = match plans {
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
            rule.for_plan(plans.read(&inputs, &rules.client_ip).map(|p| &**p))
        }
        None => rule,
    };
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
    if let Some(key) = rule.key.fixed() {
        return Plan::Check {
            rule,
            key: Cow::Borrowed(key),
            cost,
            report,
        };
    }
    // Formatting the address allocates: only when the key can contain it.
    let ip = client
        .filter(|_| rule.key.needs_ip())
        .map(|ip| rules.client_ip.bucket(ip));
    let key = rule.key.render(&RequestIdentity {
        user,
        ip: ip.as_deref(),
        api_key: api_key.as_deref().filter(|_| rule.key.needs_api_key()),
        method: req.method().as_str(),
        route: &rule.route,
    });
    match key {
        Some(key) => Plan::Check {
            rule,
            key: Cow::Owned(key),
            cost,
            report,
        },
        None => no_client_address(),
    }
}

/// The key needs the client address and the server gives none: every client would share
/// one budget. A server fault, answered 500 and logged once rather than per request.
fn no_client_address<'r>() -> Plan<'r> {
    static LOGGED: Once = Once::new();
    LOGGED.call_once(|| tracing::error!("{NO_CLIENT_ADDRESS}"));
    Plan::Reject(Rejection::NoClientAddress)
}
