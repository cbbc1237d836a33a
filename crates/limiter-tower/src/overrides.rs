//! Runtime overrides as the layer applies them: a view of every override in force, read
//! on the request path without waiting. On Redis the view follows the shared hash
//! ([`RedisOverrides`]): the first request after [`REFRESH`] asks, in a task of its own,
//! whether it changed, and reloads it if so; every instance thus applies a change within
//! about a second of it (less, under any traffic). On the memory store the view is the
//! only copy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use limiter_core::{Adjustment, Override, OverrideList, RedisOverrides};
use parking_lot::Mutex;

use crate::rules::EndpointRule;

/// How often the view asks Redis whether the overrides changed.
pub(crate) const REFRESH: Duration = Duration::from_millis(250);

/// The overrides in force, by policy, then key.
#[derive(Default)]
struct View {
    version: Option<String>,
    by_policy: HashMap<String, HashMap<String, Arc<Entry>>>,
}

/// One override, and the rule it makes of the policy it scales (built once per rule in
/// force).
struct Entry {
    adjustment: Override,
    scaled: Mutex<Option<(Weak<EndpointRule>, Arc<EndpointRule>)>>,
}

/// What an override makes of a request.
pub(crate) enum Applied {
    /// No override: the rule as it is.
    None,
    /// Refused until the block ends, this much later.
    Blocked(Duration),
    /// Decided under these (scaled) limits.
    Scaled(Arc<EndpointRule>),
}

/// The layer's overrides (one per layer, outliving reloads).
pub(crate) struct Overrides {
    view: ArcSwap<View>,
    /// Whether any override is in force: a request checks this and nothing else when
    /// none is.
    any: AtomicBool,
    redis: Option<RedisOverrides>,
    polled: Polled,
}

/// When a view shared through Redis was last compared with it, so that requests start a
/// comparison at most every [`REFRESH`], one at a time.
pub(crate) struct Polled {
    /// Milliseconds from `epoch` of the last comparison started (0: never).
    checked_ms: AtomicU64,
    running: AtomicBool,
    epoch: Instant,
}

impl Polled {
    pub(crate) fn new() -> Self {
        Polled {
            checked_ms: AtomicU64::new(0),
            running: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    /// The runtime to compare on, when a comparison is due and none is running (it is
    /// then marked running: call [`done`](Self::done) when it ends).
    pub(crate) fn due(&self) -> Option<tokio::runtime::Handle> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.checked_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < REFRESH.as_millis() as u64 {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if self.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.checked_ms.store(now.max(1), Ordering::Relaxed);
        Some(runtime)
    }

    pub(crate) fn done(&self) {
        self.running.store(false, Ordering::Release);
    }
}

impl Overrides {
    pub(crate) fn new(redis: Option<RedisOverrides>) -> Arc<Self> {
        Arc::new(Overrides {
            view: ArcSwap::from_pointee(View::default()),
            any: AtomicBool::new(false),
            redis,
            polled: Polled::new(),
        })
    }

    /// What the override of `key` under `rule`'s policy (if any) makes of a request.
    pub(crate) fn apply(self: &Arc<Self>, rule: &Arc<EndpointRule>, key: &str) -> Applied {
        self.refresh_if_due();
        if !self.any.load(Ordering::Relaxed) {
            return Applied::None;
        }
        let view = self.view.load();
        let Some(entry) = view
            .by_policy
            .get(rule.policy.name())
            .and_then(|keys| keys.get(key))
        else {
            return Applied::None;
        };
        let now = SystemTime::now();
        if entry.adjustment.is_expired(now) {
            return Applied::None;
        }
        match entry.adjustment.adjustment() {
            Adjustment::Block => Applied::Blocked(entry.adjustment.remaining(now)),
            Adjustment::Scale(factor) => match scaled(entry, rule, factor) {
                Some(scaled) => Applied::Scaled(scaled),
                None => Applied::None,
            },
            _ => Applied::None,
        }
    }

    /// Sets the override of `key` under `policy`: in Redis first, where there is one,
    /// then in this instance's view at once.
    pub(crate) async fn set(
        &self,
        policy: &str,
        key: &str,
        adjustment: Override,
    ) -> Result<(), limiter_core::Error> {
        if let Some(redis) = &self.redis {
            redis.set(policy, key, adjustment).await?;
        }
        self.change(|view| {
            let entry = Arc::new(Entry {
                adjustment,
                scaled: Mutex::new(None),
            });
            view.by_policy
                .entry(policy.to_owned())
                .or_default()
                .insert(key.to_owned(), entry);
        });
        Ok(())
    }

    /// Removes the override of `key` under `policy`, if any.
    pub(crate) async fn clear(&self, policy: &str, key: &str) -> Result<(), limiter_core::Error> {
        if let Some(redis) = &self.redis {
            redis.clear(policy, key).await?;
        }
        self.change(|view| {
            if let Some(keys) = view.by_policy.get_mut(policy) {
                keys.remove(key);
            }
        });
        Ok(())
    }

    /// Every override in force: from Redis where there is one (another instance's
    /// included), else this view.
    pub(crate) async fn list(&self) -> Result<OverrideList, limiter_core::Error> {
        if let Some(redis) = &self.redis {
            return Ok(redis.load().await?.1);
        }
        let now = SystemTime::now();
        let view = self.view.load();
        let mut all: OverrideList = view
            .by_policy
            .iter()
            .flat_map(|(policy, keys)| {
                keys.iter()
                    .filter(|(_, e)| !e.adjustment.is_expired(now))
                    .map(|(key, e)| (policy.clone(), key.clone(), e.adjustment))
            })
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(all)
    }

    /// Copies the view, changes the copy, and puts it in force.
    fn change(&self, edit: impl FnOnce(&mut View)) {
        let old = self.view.load();
        let mut view = View {
            version: old.version.clone(),
            by_policy: old.by_policy.clone(),
        };
        edit(&mut view);
        self.install(view);
    }

    fn install(&self, mut view: View) {
        view.by_policy.retain(|_, keys| !keys.is_empty());
        self.any
            .store(!view.by_policy.is_empty(), Ordering::Relaxed);
        self.view.store(Arc::new(view));
    }

    /// Starts a comparison with Redis when the last one is older than [`REFRESH`] and
    /// none is under way (a task on the current runtime; none outside one).
    fn refresh_if_due(self: &Arc<Self>) {
        if self.redis.is_none() {
            return;
        }
        let Some(runtime) = self.polled.due() else {
            return;
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            if let Err(error) = this.refresh().await {
                tracing::warn!(%error, "could not read the overrides from Redis; the last ones read stay in force");
            }
            this.polled.done();
        });
    }

    /// Reloads the view when Redis's version differs from the one it was read at.
    async fn refresh(&self) -> Result<(), limiter_core::Error> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        let version = redis.version().await?;
        if version == self.view.load().version {
            return Ok(());
        }
        let (version, all) = redis.load().await?;
        let old = self.view.load();
        let mut by_policy: HashMap<String, HashMap<String, Arc<Entry>>> = HashMap::new();
        for (policy, key, adjustment) in all {
            // An unchanged override keeps the rule it built.
            let kept = old
                .by_policy
                .get(&policy)
                .and_then(|keys| keys.get(&key))
                .filter(|e| e.adjustment == adjustment)
                .cloned();
            let entry = kept.unwrap_or_else(|| {
                Arc::new(Entry {
                    adjustment,
                    scaled: Mutex::new(None),
                })
            });
            by_policy.entry(policy).or_default().insert(key, entry);
        }
        self.install(View { version, by_policy });
        Ok(())
    }
}

/// `rule` with its limits scaled by `factor`, built once per rule in force; `None` when
/// the scaled policy cannot be built (a window would hold too many units), logged.
fn scaled(entry: &Entry, rule: &Arc<EndpointRule>, factor: f64) -> Option<Arc<EndpointRule>> {
    let mut cached = entry.scaled.lock();
    if let Some((base, scaled)) = &*cached {
        if std::ptr::eq(base.as_ptr(), Arc::as_ptr(rule)) {
            return Some(Arc::clone(scaled));
        }
    }
    let built = rule
        .policy
        .scaled(factor)
        .map_err(|e| e.to_string())
        .and_then(|policy| rule.with_policy(policy).map_err(|e| e.to_string()));
    match built {
        Ok(scaled) => {
            let scaled = Arc::new(scaled);
            *cached = Some((Arc::downgrade(rule), Arc::clone(&scaled)));
            Some(scaled)
        }
        Err(error) => {
            tracing::warn!(policy = rule.policy.name(), factor, %error, "an override cannot scale this policy; its limits apply unscaled");
            None
        }
    }
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("any", &self.any.load(Ordering::Relaxed))
            .field("redis", &self.redis)
            .finish()
    }
}
