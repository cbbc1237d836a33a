//! [`LimiterLayer`]: wraps services in [`LimiterService`].

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tower_layer::Layer;

use crate::body::{AnyBody, SameBody};
use crate::builder::{BuildError, LimiterBuilder, PolicyRule};
use crate::config::{self, ConfigError};
use crate::decision_sink::DecisionSink;
use crate::key::Scope;
use crate::overrides::Applied;
use crate::reload::Reloader;
use crate::rules::Rules;
use crate::service::LimiterService;
use crate::shared::Shared;
use crate::store::{AnyStore, ConnectError};
use limiter_core::{Adjustment, Decision, Limit, Override, OverrideList, Policy, Store};
use std::time::Duration;

/// Why a layer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The policy file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The rules built in code cannot be enforced.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The store it names cannot be reached.
    #[error("store: {0}")]
    Store(#[from] ConnectError),
}

/// A tower layer enforcing rate-limit policies. Cheap to clone: clones share the rules
/// (swapped whole on reload) and the store.
///
/// ```
/// use std::path::Path;
/// use axum::{routing::get, Router};
/// use limiter_tower::LimiterLayer;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let yaml = r#"
/// endpoints:
///   - name: hello
///     path: /hello
///     scopes: [global]
///     limits: [{ name: burst, max: 10, window: 60s }]
/// "#;
/// let loaded = limiter_tower::config::load_str(yaml, Path::new("inline.yaml")).unwrap();
/// let store = limiter_tower::AnyStore::connect(loaded.rules.store()).await.unwrap();
/// let layer = LimiterLayer::new(loaded.rules, store);
/// let app: Router = Router::new().route("/hello", get(|| async { "hi" })).layer(layer);
/// # let _ = app;
/// # });
/// ```
///
/// `M` says how responses carry their bodies: by default ([`SameBody`]) in the
/// service's own body type, which must be `From<Bytes>` (axum's `Body` is) so that the
/// layer can write its 429s in it; [`any_body`](Self::any_body) takes any body type.
pub struct LimiterLayer<M = SameBody> {
    shared: Arc<Shared>,
    kind: PhantomData<fn() -> M>,
}

impl<M> std::fmt::Debug for LimiterLayer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimiterLayer")
            .field("shared", &self.shared)
            .finish()
    }
}

impl<M> Clone for LimiterLayer<M> {
    fn clone(&self) -> Self {
        LimiterLayer::sharing(Arc::clone(&self.shared))
    }
}

impl LimiterLayer {
    /// Everything a policy file can say, in code: see [`LimiterBuilder`].
    pub fn builder() -> LimiterBuilder {
        LimiterBuilder::new()
    }

    /// Limits every request to `max` per `window` per client address, counted in this
    /// process: the whole router under one policy (`default`, GCRA, bursts up to `max`).
    /// Needs no runtime; the service needs the client address (axum's
    /// `into_make_service_with_connect_info::<SocketAddr>()`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum::{routing::get, Router};
    /// use limiter_tower::LimiterLayer;
    ///
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "hi" }))
    ///     .layer(LimiterLayer::per_client_ip(100, Duration::from_secs(60)).unwrap());
    /// # let _ = app;
    /// ```
    pub fn per_client_ip(max: u64, window: Duration) -> Result<Self, LayerError> {
        let policy = Policy::new("default", vec![Limit::new(max, window)])
            .map_err(|e| BuildError::new("default_policy.limits", e))?;
        LimiterBuilder::new()
            .default_policy(PolicyRule::new(policy).scopes([Scope::Ip]))
            .build_in_memory()
    }

    /// Enforces `rules` on `store`.
    pub fn new(rules: Rules, store: AnyStore) -> Self {
        LimiterLayer::sharing(Shared::new(rules, store))
    }

    /// Loads the policy file at `path` and connects to the store it names.
    pub async fn from_file(path: impl AsRef<Path>) -> Result<Self, LayerError> {
        let loaded = config::load(path.as_ref())?;
        let store = AnyStore::connect(loaded.rules.store()).await?;
        Ok(LimiterLayer::new(loaded.rules, store))
    }
}

impl<M> LimiterLayer<M> {
    /// The same layer, answering in the service's own body type.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn same_body(&self) -> LimiterLayer<SameBody> {
        LimiterLayer::sharing(Arc::clone(&self.shared))
    }

    fn sharing(shared: Arc<Shared>) -> Self {
        LimiterLayer {
            shared,
            kind: PhantomData,
        }
    }

    /// The same layer (rules, store, reloads) for services of any body type: responses
    /// carry a [`ResponseBody`](crate::ResponseBody), the service's body or the layer's.
    ///
    /// ```
    /// # use std::path::Path;
    /// use bytes::Bytes;
    /// use http::{Request, Response};
    /// use http_body_util::Empty;
    /// use limiter_tower::{AnyStore, LimiterLayer};
    /// use tower::{service_fn, Layer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let yaml = "endpoints:\n  - { name: all, path: /, scopes: [global], limits: [{ name: burst, max: 1, window: 60s }] }\n";
    /// # let loaded = limiter_tower::config::load_str(yaml, Path::new("inline.yaml")).unwrap();
    /// # let store = AnyStore::connect(loaded.rules.store()).await.unwrap();
    /// // `Empty` is not `From<Bytes>`: the layer's 429s need a body type of their own.
    /// let service = service_fn(|_: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
    /// });
    /// let service = LimiterLayer::new(loaded.rules, store).any_body().layer(service);
    /// # let _ = service;
    /// # });
    /// ```
    pub fn any_body(&self) -> LimiterLayer<AnyBody> {
        LimiterLayer::sharing(Arc::clone(&self.shared))
    }

    /// The rules in force now.
    pub fn rules(&self) -> Arc<Rules> {
        self.shared.rules.load_full()
    }

    /// Replaces the rules; requests already in flight finish under the old ones. Stored
    /// counters are kept by policy name, so a policy keeping its name keeps its usage.
    pub fn replace_rules(&self, rules: Rules) {
        self.shared.replace_rules(rules);
    }

    /// How many rule sets have been in force: 1 for the first, one more per
    /// [`replace_rules`](Self::replace_rules) (and so per applied reload).
    pub fn generation(&self) -> u64 {
        self.shared.generation()
    }

    /// A reloader of this layer's rules from `path` (see [`Reloader::watch`]).
    pub fn reloader(&self, path: impl Into<PathBuf>) -> Reloader {
        Reloader::new(Arc::clone(&self.shared), path.into())
    }

    /// Hands every decision made from now on to `sink` as well as to its
    /// `ratelimit.decide` span (see [`DecisionSink`]), in place of any sink set before;
    /// `None` stops. For every decision traced at a fraction of the cost of a recorded
    /// span: `limiter::telemetry::decisions` exports them over OTLP.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use limiter_tower::{DecisionRecord, DecisionSink, LimiterLayer};
    ///
    /// struct Count(AtomicU64);
    /// impl DecisionSink for Count {
    ///     fn record(&self, _: &DecisionRecord<'_>) {
    ///         self.0.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// }
    ///
    /// let layer = LimiterLayer::per_client_ip(100, Duration::from_secs(60)).unwrap();
    /// let count = Arc::new(Count(AtomicU64::new(0)));
    /// layer.set_decision_sink(Some(Box::new(Arc::clone(&count))));
    /// ```
    pub fn set_decision_sink(&self, sink: Option<Box<dyn DecisionSink>>) {
        self.shared.set_sink(sink);
    }

    /// The store.
    pub fn store(&self) -> &AnyStore {
        &self.shared.store
    }

    /// What `key` has left under the policy named `policy` in the rules in force (and
    /// the key's override, if any), charging nothing. `key` is the key as the layer builds it from the policy's
    /// scopes, in order: `user:alice`, `ip:203.0.113.7`, `global`,
    /// `user:alice:endpoint:GET%20/orders`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use limiter_tower::{Endpoint, Limit, LimiterLayer, Policy, Scope};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let policy = Policy::new("orders", vec![Limit::new(5, Duration::from_secs(60))]).unwrap();
    /// let layer = LimiterLayer::builder()
    ///     .endpoint(Endpoint::new("/orders", policy).scopes([Scope::Global]))
    ///     .build_in_memory()
    ///     .unwrap();
    /// let now = layer.peek("orders", "global").await.unwrap();
    /// assert_eq!(now.windows()[0].remaining(), 5);
    /// layer.reset("orders", "global").await.unwrap();
    /// assert!(layer.peek("billing", "global").await.is_err());
    /// # });
    /// ```
    pub async fn peek(&self, policy: &str, key: &str) -> Result<Decision, UsageError> {
        let rules = self.shared.rules.load();
        let rule = rules
            .rules()
            .find(|r| r.policy.name() == policy)
            .ok_or_else(|| UsageError::UnknownPolicy(policy.to_owned()))?;
        // Under the key's override, as its requests are decided.
        let policy = match self.shared.overrides.apply(rule, key) {
            Applied::Scaled(scaled) => scaled.policy.clone(),
            Applied::None | Applied::Blocked(_) => rule.policy.clone(),
        };
        drop(rules);
        Ok(self.shared.store.peek(&policy, key).await?)
    }

    /// The keys over their limit as this instance saw them: `(policy, key, time until a
    /// retry can succeed)` of its denials that still stand, at most 1,000 (the latest
    /// kept), by policy and key. Each instance lists its own denials.
    pub fn over_limit(&self) -> Vec<(Arc<str>, Box<str>, Duration)> {
        self.shared.over_limit.list()
    }

    /// How much longer `key` is in the penalty box of the policy named `policy`, as this
    /// instance knows it (another instance's penalty is read within about a second);
    /// `None` when it is not.
    pub fn penalty_left(&self, policy: &str, key: &str) -> Option<Duration> {
        self.shared.penalties.left(policy, key)
    }

    /// Forgets what `key` has used under the policy named `policy` (see
    /// [`peek`](Self::peek)): its windows whole again, on every instance sharing the
    /// store, and out of the policy's penalty box here and in the store (another instance
    /// that already read the key's penalty keeps it until it ends).
    pub async fn reset(&self, policy: &str, key: &str) -> Result<(), UsageError> {
        let policy = self.policy(policy)?;
        self.shared.penalties.clear(policy.name(), key).await?;
        Ok(self.shared.store.reset(&policy, key).await?)
    }

    /// Overrides `key`'s limits under the policy named `policy` until the override's end:
    /// scaled ([`Override::scale`]: 10x for a customer this month) or blocked
    /// ([`Override::block`]: an abusive key for an hour). On Redis it is shared: every
    /// instance applies it within about a second, and it survives restarts until it
    /// expires; in memory it lives in this process. The key keeps its usage. A scale the
    /// policy cannot take (a window holding too many units) is refused.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use limiter_tower::{Endpoint, Limit, LimiterLayer, Override, Policy, Scope};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let policy = Policy::new("api", vec![Limit::new(5, Duration::from_secs(60))]).unwrap();
    /// let layer = LimiterLayer::builder()
    ///     .endpoint(Endpoint::new("/api", policy).scopes([Scope::ApiKey]))
    ///     .build_in_memory()
    ///     .unwrap();
    /// let month = SystemTime::now() + Duration::from_secs(30 * 86_400);
    /// // Keys as the layer builds them: the `api_key` scope hashes the key.
    /// let key = "key:0123456789abcdef0123456789abcdef";
    /// layer.set_override("api", key, Override::scale(10.0, month).unwrap()).await.unwrap();
    /// assert_eq!(layer.overrides().await.unwrap().len(), 1);
    /// layer.clear_override("api", key).await.unwrap();
    /// # });
    /// ```
    pub async fn set_override(
        &self,
        policy: &str,
        key: &str,
        adjustment: Override,
    ) -> Result<(), UsageError> {
        let found = self.policy(policy)?;
        if key.is_empty() {
            return Err(UsageError::Store(limiter_core::Error::EmptyKey));
        }
        if let Adjustment::Scale(factor) = adjustment.adjustment() {
            found
                .scaled(factor)
                .map_err(|e| UsageError::BadOverride(e.to_string()))?;
        }
        Ok(self.shared.overrides.set(policy, key, adjustment).await?)
    }

    /// Removes the override of `key` under `policy`, if any: the policy's own limits
    /// apply again.
    pub async fn clear_override(&self, policy: &str, key: &str) -> Result<(), UsageError> {
        self.policy(policy)?;
        Ok(self.shared.overrides.clear(policy, key).await?)
    }

    /// Every override in force, `(policy, key, override)`: on Redis, every instance's.
    pub async fn overrides(&self) -> Result<OverrideList, UsageError> {
        Ok(self.shared.overrides.list().await?)
    }

    fn policy(&self, name: &str) -> Result<Policy, UsageError> {
        let rules = self.shared.rules.load();
        let found = rules.policies().find(|p| p.name() == name).cloned();
        found.ok_or_else(|| UsageError::UnknownPolicy(name.to_owned()))
    }
}

/// Why a key's usage could not be read or reset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// No policy in force has this name.
    #[error("no policy named {0:?}")]
    UnknownPolicy(String),
    /// The override's scale is more than a window of the policy can hold.
    #[error("bad override: {0}")]
    BadOverride(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] limiter_core::Error),
}

impl<S, M> Layer<S> for LimiterLayer<M> {
    type Service = LimiterService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        LimiterService::new(inner, Arc::clone(&self.shared))
    }
}

// The builder's last step lives here, where layers are assembled: the builder itself
// only checks and compiles rules.
impl LimiterBuilder {
    /// The layer, on the in-memory store: no runtime needed. For a Redis store, use
    /// [`build`](Self::build).
    pub fn build_in_memory(self) -> Result<LimiterLayer, LayerError> {
        let rules = self.rules()?;
        let store = AnyStore::in_memory(rules.store())?;
        Ok(LimiterLayer::new(rules, store))
    }

    /// The layer, connected to its store.
    pub async fn build(self) -> Result<LimiterLayer, LayerError> {
        let rules = self.rules()?;
        let store = AnyStore::connect(rules.store()).await?;
        Ok(LimiterLayer::new(rules, store))
    }
}
