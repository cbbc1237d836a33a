//! The first half of a request: which policy applies, who the client is, what the
//! request costs, and under which key it counts. Nothing here waits.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use http::header::AUTHORIZATION;
use http::Request;

use crate::config::TokenFallback;
use crate::enumeration::{FailureReport, Presented, Source, SourceGuard, Verdict};
use crate::key::{RequestIdentity, TokenError};
use crate::rejection::Rejection;
use crate::rules::{EndpointRule, Rules};

/// The key part of clients whose address is unknown (a server without `ConnectInfo`):
/// they share one budget, which errs on the side of limiting.
const UNKNOWN_CLIENT: &str = "unknown";

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
    let Some(rule) = rules.find(req.method(), req.uri().path()) else {
        return Plan::Pass;
    };
    let headers = req.headers();
    // The client's address only when something asks for it: a `global` or `endpoint`
    // budget without exempt networks never looks.
    let enumeration = rules.enumeration.as_ref();
    let client = (rule.key.needs_ip() || !rules.exempt_cidrs.is_empty() || enumeration.is_some())
        .then(|| req.extensions().get::<ConnectInfo<SocketAddr>>())
        .flatten()
        .map(|ConnectInfo(peer)| rules.client_ip.resolve(peer.ip(), headers));
    if let Some(ip) = client {
        if rules.exempt_cidrs.iter().any(|net| net.contains(&ip)) {
            return Plan::Pass;
        }
    }

    let needs_user = rule.key.needs_user();
    let mut failed_token = false;
    let user = match &rules.jwt {
        Some(jwt) if needs_user || !rules.exempt_users.is_empty() || enumeration.is_some() => {
            match jwt.identify(headers) {
                Ok(user) => Some(user),
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
    if user
        .as_ref()
        .is_some_and(|u| rules.exempt_users.contains(u))
    {
        return Plan::Pass;
    }

    let api_key = if rule.key.needs_api_key() || enumeration.is_some() {
        rules.api_key.read(headers)
    } else {
        None
    };
    // After the identity is known, before any store call: a blocked client costs none.
    let mut report = None;
    if let (Some(config), Some(ip)) = (enumeration, client) {
        let source = Source {
            address: rules.client_ip.bucket(ip),
            network: rules.client_ip.network(ip),
        };
        let presented = Presented {
            user: user.as_deref(),
            api_key: api_key.as_deref(),
            failed_token: failed_token
                .then(|| headers.get(AUTHORIZATION).map(|v| v.as_bytes()))
                .flatten(),
        };
        match guard.check(config, &source, &presented) {
            Verdict::Blocked(left) => return Plan::Reject(Rejection::AbnormalUsage(left)),
            Verdict::Pass(r) => report = r,
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
        user: user.as_deref(),
        ip: ip.as_deref().unwrap_or(UNKNOWN_CLIENT),
        api_key: api_key.as_deref().filter(|_| rule.key.needs_api_key()),
        method: req.method().as_str(),
        route: &rule.route,
    });
    Plan::Check {
        rule,
        key: Cow::Owned(key),
        cost,
        report,
    }
}
