//! The compiled configuration: one immutable snapshot that requests read through an
//! `ArcSwap`, so a reload replaces it whole and a request in flight keeps the one it
//! started with.

mod endpoint;

use std::collections::HashSet;
use std::sync::Arc;

use http::Method;
use ipnet::IpNet;

pub(crate) use endpoint::{denials, EndpointRule, PlanRules};
pub use endpoint::{BadCost, Cost};

use crate::client_timestamp::ClientTimestamp;
use crate::key::TokenFallback;
use crate::key::{ApiKeyReader, ClientIpResolver, JwtVerifier};
use crate::pricing::PlanReader;
use crate::store::StoreSetup;

/// Which endpoints a route template leads to, by method.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteTargets {
    /// `(methods, endpoint index)`, in file order; `None` means every method.
    pub targets: Vec<(Option<Box<[Method]>>, usize)>,
}

/// Everything the layer enforces, compiled from one configuration file.
#[derive(Debug)]
pub struct Rules {
    pub(crate) routes: matchit::Router<RouteTargets>,
    pub(crate) endpoints: Box<[Arc<EndpointRule>]>,
    pub(crate) default: Option<Arc<EndpointRule>>,
    /// The shared policies, checked where a policy names them in `also`.
    pub(crate) shared: Box<[Arc<EndpointRule>]>,
    pub(crate) client_ip: ClientIpResolver,
    pub(crate) jwt: Option<JwtVerifier>,
    pub(crate) token_fallback: TokenFallback,
    pub(crate) api_key: ApiKeyReader,
    /// Where a client's plan is read; `None` without plans.
    pub(crate) plans: Option<PlanReader>,
    pub(crate) exempt_cidrs: Box<[IpNet]>,
    pub(crate) exempt_users: HashSet<String>,
    /// Refuses requests whose own timestamp is too far from this process's clock.
    pub(crate) client_timestamp: Option<ClientTimestamp>,
    /// The enumeration defence; `None` when off.
    pub(crate) enumeration: Option<Arc<crate::Enumeration>>,
    /// The store sections it was compiled with; a reload cannot change the store.
    pub(crate) store: StoreSetup,
}

impl Rules {
    /// The policy for `method` and `path`: the first matching endpoint, else the default.
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&Arc<EndpointRule>> {
        if let Ok(matched) = self.routes.at(path) {
            let hit = matched
                .value
                .targets
                .iter()
                .find(|(methods, _)| methods.as_ref().is_none_or(|m| m.contains(method)));
            if let Some((_, index)) = hit {
                return self.endpoints.get(*index);
            }
        }
        self.default.as_ref()
    }

    /// The compiled rules of every policy (endpoints, the default, then the shared ones).
    pub(crate) fn rules(&self) -> impl Iterator<Item = &Arc<EndpointRule>> {
        self.endpoints
            .iter()
            .chain(self.default.as_ref())
            .chain(self.shared.iter())
    }

    /// The policies enforced: endpoints' in the order given, the default, then the
    /// shared ones.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_tower::{Endpoint, LimiterBuilder, Limit, Policy};
    ///
    /// let policy = Policy::new("a", vec![Limit::new(5, Duration::from_secs(60))]).unwrap();
    /// let rules = LimiterBuilder::new().endpoint(Endpoint::new("/a", policy)).rules().unwrap();
    /// assert_eq!(rules.policies().map(|p| p.name()).collect::<Vec<_>>(), ["a"]);
    /// ```
    pub fn policies(&self) -> impl Iterator<Item = &limiter_core::Policy> {
        self.rules().map(|rule| &rule.policy)
    }

    /// The store, failure mode and breaker sections, with `${VAR}` references expanded.
    /// A reload keeps the store the layer was built with; this tells what the file asks
    /// for.
    pub fn store(&self) -> &StoreSetup {
        &self.store
    }
}
