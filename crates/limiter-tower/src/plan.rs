//! The first half of a request: which policy applies, who the client is, what the
//! request costs, and under which key it counts. Nothing here waits.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Once};
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use http::Request;

use crate::config::TokenFallback;
use crate::key::{RequestIdentity, TokenError};
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
    },
}

pub(crate) fn plan<'r, B>(rules: &'r Rules, req: &Request<B>) -> Plan<'r> {
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
    // The client's address only when something asks for it: a `global` or `endpoint`
    // budget without exempt networks never looks.
    let exempts_by_ip = !rules.exempt_cidrs.is_empty();
    let client = if rule.key.needs_ip() || exempts_by_ip {
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
    let user = match &rules.jwt {
        Some(jwt) if needs_user || !rules.exempt_users.is_empty() => match jwt.identify(headers) {
            Ok(user) => Some(user),
            Err(err) if needs_user && rules.token_fallback == TokenFallback::Reject => {
                return Plan::Reject(Rejection::Unauthorized(err));
            }
            Err(err) => {
                if err != TokenError::Missing {
                    tracing::debug!(policy = rule.policy.name(), error = %err, "token not accepted; counting by client address");
                }
                None
            }
        },
        _ => None,
    };
    if user
        .as_ref()
        .is_some_and(|u| rules.exempt_users.contains(u))
    {
        return Plan::Pass;
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
        };
    }
    let api_key = if rule.key.needs_api_key() {
        rules.api_key.read(headers)
    } else {
        None
    };
    // Formatting the address allocates: only when the key can contain it.
    let ip = client
        .filter(|_| rule.key.needs_ip())
        .map(|ip| rules.client_ip.bucket(ip));
    let key = rule.key.render(&RequestIdentity {
        user: user.as_deref(),
        ip: ip.as_deref(),
        api_key: api_key.as_deref(),
        method: req.method().as_str(),
        route: &rule.route,
    });
    match key {
        Some(key) => Plan::Check {
            rule,
            key: Cow::Owned(key),
            cost,
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
