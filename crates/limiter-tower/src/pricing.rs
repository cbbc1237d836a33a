//! Plans: which of a policy's sets of limits applies to the client asking, read from a
//! verified token's claim, a trusted gateway's header, or the client's API key.
//!
//! A plan changes a policy's limits, never its name: the counters are the policy's, so
//! a client whose plan changes is decided under the new limits at once and keeps the
//! usage it has (as a reload keeps it).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use crate::key::{hash_api_key, ApiKeyReader, ClientIpResolver};

/// Maps a client's API key (as presented) to its plan: for keys kept in a database or
/// a cache of the application's. Called on the request path: it must not block.
pub type PlanLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where a client's plan is read. Whatever it names that the [`Plans`] do not declare,
/// and a client it names nothing for, gets the default plan.
#[derive(Clone)]
pub struct PlanSource(Source);

#[derive(Clone)]
enum Source {
    Claim(String),
    Header(HeaderName),
    ApiKeys(HashMap<String, String>),
    Lookup(PlanLookup),
}

impl PlanSource {
    /// A claim of the verified bearer token (`plan: pro`): needs
    /// [`jwt`](crate::LimiterBuilder::jwt). A token that does not verify names no plan.
    pub fn claim(name: impl Into<String>) -> Self {
        PlanSource(Source::Claim(name.into()))
    }

    /// A request header set by a gateway in front of this service. It is believed only
    /// from the [trusted proxies](crate::LimiterBuilder::trusted_proxies): from any other
    /// peer a client could name its own plan.
    pub fn header(name: HeaderName) -> Self {
        PlanSource(Source::Header(name))
    }

    /// The client's API key (the [`api_key_header`](crate::LimiterBuilder::api_key_header)),
    /// listed with its plan: `(key, plan)` pairs. Keys are kept hashed, as the `api_key`
    /// scope keeps them.
    pub fn api_keys<K: AsRef<[u8]>, P: Into<String>>(
        keys: impl IntoIterator<Item = (K, P)>,
    ) -> Self {
        let keys = keys
            .into_iter()
            .map(|(key, plan)| (hash_api_key(key.as_ref()), plan.into()))
            .collect();
        PlanSource(Source::ApiKeys(keys))
    }

    /// The client's API key, looked up by the application: `lookup` gets the key as
    /// presented (requests whose key is not UTF-8 get the default plan).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use limiter_tower::PlanSource;
    ///
    /// let source = PlanSource::api_key_lookup(Arc::new(|key: &str| {
    ///     key.starts_with("pro_").then(|| "pro".to_owned())
    /// }));
    /// # let _ = source;
    /// ```
    pub fn api_key_lookup(lookup: PlanLookup) -> Self {
        PlanSource(Source::Lookup(lookup))
    }

    /// Whether this source reads a request header.
    pub(crate) fn reads_header(&self) -> bool {
        matches!(self.0, Source::Header(_))
    }

    /// The claim this source reads, if it reads one.
    pub(crate) fn claim_name(&self) -> Option<&str> {
        match &self.0 {
            Source::Claim(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Debug for PlanSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Claim(name) => f.debug_tuple("Claim").field(name).finish(),
            Source::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Source::ApiKeys(keys) => f.debug_tuple("ApiKeys").field(&keys.len()).finish(),
            Source::Lookup(_) => f.write_str("Lookup(..)"),
        }
    }
}

/// The plans clients can be on, and where a client's is read: a policy's
/// [`plan`](crate::PolicyRule::plan) limits apply to clients on that plan, its own limits
/// to clients on the default plan and on plans it does not name.
///
/// ```
/// use std::time::Duration;
/// use limiter_tower::{Endpoint, Jwt, Limit, LimiterBuilder, PlanSource, Plans, Policy, Scope};
///
/// let minute = |max| vec![Limit::new(max, Duration::from_secs(60))];
/// let api = Policy::new("api", minute(5)).unwrap();
/// let rules = LimiterBuilder::new()
///     .jwt(Jwt::new([jsonwebtoken::Algorithm::HS256]).hmac_secret("secret"))
///     .plans(Plans::new(PlanSource::claim("plan"), "free").names(["pro"]))
///     .endpoint(Endpoint::new("/api", api).scopes([Scope::User]).plan("pro", minute(50)))
///     .rules()
///     .unwrap();
/// # let _ = rules;
/// ```
#[derive(Debug, Clone)]
pub struct Plans {
    pub(crate) source: PlanSource,
    pub(crate) default: String,
    pub(crate) names: Vec<String>,
}

impl Plans {
    /// Plans read from `source`; clients it names no declared plan for are on `default`.
    pub fn new(source: PlanSource, default: impl Into<String>) -> Self {
        Plans {
            source,
            default: default.into(),
            names: Vec::new(),
        }
    }

    /// The other plans (besides the default) policies may set limits for: a plan a policy
    /// names that is not declared is an error, so a misspelt plan cannot go unnoticed.
    pub fn names<N: Into<String>>(mut self, names: impl IntoIterator<Item = N>) -> Self {
        self.names.extend(names.into_iter().map(Into::into));
        self
    }
}

/// [`Plans`] ready for requests.
#[derive(Debug, Clone)]
pub(crate) struct PlanReader {
    source: Reader,
    /// The declared plans other than the default.
    names: Box<[Arc<str>]>,
}

#[derive(Clone)]
enum Reader {
    /// The position of the plan claim among the verifier's captured claims.
    Claim(usize),
    Header(HeaderName),
    ApiKeys(HashMap<String, Arc<str>>),
    Lookup(PlanLookup, ApiKeyReader),
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reader::Claim(at) => f.debug_tuple("Claim").field(at).finish(),
            Reader::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Reader::ApiKeys(keys) => f.debug_tuple("ApiKeys").field(&keys.len()).finish(),
            Reader::Lookup(..) => f.write_str("Lookup(..)"),
        }
    }
}

/// What a request offers to read its plan from.
pub(crate) struct PlanInputs<'a> {
    pub headers: &'a HeaderMap,
    /// The peer's address, when the server gives it.
    pub peer: Option<IpAddr>,
    /// The verified token's captured claims.
    pub claims: Option<&'a [Option<String>]>,
    /// The API key's hash, as the `api_key` scope reads it.
    pub api_key: Option<&'a str>,
}

impl PlanReader {
    /// `plans` read with `claim_at` (the plan claim's position among the captured claims)
    /// and `api_key` (the API key header's reader).
    /// `None` when the plan is read from a claim and `claim_at` is `None`.
    pub(crate) fn new(
        plans: &Plans,
        claim_at: Option<usize>,
        api_key: &ApiKeyReader,
    ) -> Option<Self> {
        let source = match (&plans.source.0, claim_at) {
            (Source::Claim(_), Some(at)) => Reader::Claim(at),
            (Source::Claim(_), None) => return None,
            (Source::Header(name), _) => Reader::Header(name.clone()),
            (Source::ApiKeys(keys), _) => Reader::ApiKeys(
                keys.iter()
                    .map(|(key, plan)| (key.clone(), Arc::from(plan.as_str())))
                    .collect(),
            ),
            (Source::Lookup(lookup), _) => Reader::Lookup(Arc::clone(lookup), api_key.clone()),
        };
        let names = plans
            .names
            .iter()
            .filter(|name| **name != plans.default)
            .map(|name| Arc::from(name.as_str()))
            .collect();
        Some(PlanReader { source, names })
    }

    /// Whether the plan is read from a token claim (the token must then be verified).
    pub(crate) fn reads_claim(&self) -> bool {
        matches!(self.source, Reader::Claim(_))
    }

    /// Whether the plan is read from the API key.
    pub(crate) fn reads_api_key(&self) -> bool {
        matches!(self.source, Reader::ApiKeys(_) | Reader::Lookup(..))
    }

    /// The declared plan the request is on, other than the default; `None` for the
    /// default plan.
    pub(crate) fn read(
        &self,
        inputs: &PlanInputs<'_>,
        client_ip: &ClientIpResolver,
    ) -> Option<&Arc<str>> {
        let named = match &self.source {
            Reader::Claim(at) => inputs.claims?.get(*at)?.as_deref()?,
            Reader::Header(name) => {
                if !inputs.peer.is_some_and(|peer| client_ip.is_trusted(peer)) {
                    return None;
                }
                inputs.headers.get(name)?.to_str().ok()?.trim()
            }
            Reader::ApiKeys(keys) => {
                return keys.get(inputs.api_key?).and_then(|p| self.declared(p))
            }
            Reader::Lookup(lookup, reader) => {
                let key = inputs.headers.get(reader.header())?.to_str().ok()?;
                let plan = lookup(key)?;
                return self.declared(&plan);
            }
        };
        self.declared(named)
    }

    fn declared(&self, plan: &str) -> Option<&Arc<str>> {
        self.names.iter().find(|name| ***name == *plan)
    }
}
