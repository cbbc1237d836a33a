//! [`Shared`]: what a layer, every service it made and its reloader share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderMap;

use limiter_core::MemoryDistinct;

use crate::decision_sink::{DecisionSink, TraceParent};
use crate::enumeration::{Counter, Enumeration, SourceGuard};
use crate::observe::Export;
use crate::over_limit::OverLimit;
use crate::overrides::Overrides;
use crate::penalty::Penalties;
use crate::rules::Rules;
use crate::store::AnyStore;

/// The rules in force, swapped whole on reload, and the store.
pub(crate) struct Shared {
    pub(crate) rules: ArcSwap<Rules>,
    pub(crate) store: AnyStore,
    /// The enumeration defence's state; it outlives reloads, which change its thresholds.
    pub(crate) guard: SourceGuard,
    /// The operators' overrides; they outlive reloads.
    pub(crate) overrides: Arc<Overrides>,
    /// The penalty box's penalties; they outlive reloads.
    pub(crate) penalties: Arc<Penalties>,
    /// The denials this instance made that still stand, for the admin route.
    pub(crate) over_limit: OverLimit,
    /// Rule sets put in force so far (1 for the first): `ratelimit_config_generation`.
    generation: AtomicU64,
    /// Where every decision is exported besides its span, if anywhere.
    sink: ArcSwapOption<Box<dyn DecisionSink>>,
}

impl Shared {
    pub(crate) fn new(rules: Rules, store: AnyStore) -> Arc<Self> {
        metrics::gauge!(crate::metric_names::CONFIG_GENERATION).set(1.0);
        // Sized once, by the rules in force at start-up.
        let max_sources = rules
            .enumeration
            .as_ref()
            .map_or(Enumeration::default().max_sources, |e| e.max_sources);
        let counter = match store.distinct() {
            Some(redis) => Counter::Redis(redis.clone()),
            None => Counter::Memory(MemoryDistinct::new(max_sources)),
        };
        Arc::new(Shared {
            guard: SourceGuard::new(counter, max_sources),
            overrides: Overrides::new(store.overrides().cloned()),
            penalties: Penalties::new(store.penalties().cloned()),
            over_limit: OverLimit::new(),
            rules: ArcSwap::from_pointee(rules),
            store,
            generation: AtomicU64::new(1),
            sink: ArcSwapOption::empty(),
        })
    }

    /// Exports every decision made from now on to `sink` (none: `None`).
    pub(crate) fn set_sink(&self, sink: Option<Box<dyn DecisionSink>>) {
        self.sink.store(sink.map(Arc::new));
    }

    /// Where a decision on a request with `headers` is exported: the sink, with the
    /// caller's trace; `None` without a sink (its `traceparent` is then never read).
    pub(crate) fn export(&self, headers: &HeaderMap) -> Option<Export> {
        let sink = self.sink.load_full()?;
        Some(Export::new(sink, TraceParent::from_headers(headers)))
    }

    /// Puts `rules` in force; requests in flight finish under the old ones.
    pub(crate) fn replace_rules(&self, rules: Rules) {
        self.rules.store(Arc::new(rules));
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!(crate::metric_names::CONFIG_GENERATION).set(generation as f64);
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("generation", &self.generation())
            .field("rules", &self.rules.load())
            .field("store", &self.store)
            .finish()
    }
}
