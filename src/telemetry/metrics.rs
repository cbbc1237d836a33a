//! Prometheus export of the rate limiter's metrics: the recorder (with histogram buckets
//! for sub-millisecond decisions) and a `/metrics` route.

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Every metric the workspace emits, as Prometheus names them: the tower layer's
/// ([`limiter_tower::metric_names`]) and the store wrappers' ([`limiter_core::metric_names`]).
/// A test holds this list equal to the `counter!`/`gauge!`/`histogram!` calls in the
/// sources and to the metrics the Grafana dashboard (`dashboards/ratelimit.json`) queries.
pub const METRIC_NAMES: &[&str] = &concat::<{ TOWER.len() + CORE.len() }>(TOWER, CORE);

const TOWER: &[&str] = limiter_tower::metric_names::ALL;
const CORE: &[&str] = limiter_core::metric_names::ALL;

/// `a` then `b`, as one array of length `N` (`a.len() + b.len()`).
const fn concat<const N: usize>(a: &[&'static str], b: &[&'static str]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - a.len()];
        i += 1;
    }
    out
}

/// Upper bounds (seconds) of the latency histograms: a decision takes tens of
/// microseconds in memory and a few hundred on a local Redis; the top buckets catch
/// timeouts (the store timeout defaults to 100 ms).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,
];

/// Upper bounds of the `ratelimit_batch_decisions` histogram: decisions per Redis call,
/// 1 when idle, up to `store.batch.max_batch` (256 by default) under load.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// How often the recorder's upkeep runs (see [`install_prometheus`]).
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The name of the thread that runs the recorder's upkeep.
pub const UPKEEP_THREAD: &str = "metrics-upkeep";

/// Installs the Prometheus recorder as the process's global `metrics` recorder, and a
/// thread ([`UPKEEP_THREAD`]) that runs its upkeep every [`UPKEEP_INTERVAL`] for the life
/// of the process, as the recorder does. The recorder keeps every histogram sample until
/// its upkeep or a scrape folds it into the buckets: without the thread, an instance
/// nothing scraped grew by every decision's samples (the load test's soak: +80% RSS in
/// ten minutes). Fails when a recorder is already installed.
///
/// ```
/// let handle = limiter::telemetry::install_prometheus().unwrap();
/// metrics::counter!("ratelimit_config_reloads_total", "result" => "ok").increment(1);
/// assert!(handle.render().contains("ratelimit_config_reloads_total{result=\"ok\"} 1"));
/// ```
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(limiter_core::metric_names::BATCH_DECISIONS.into()),
            BATCH_BUCKETS,
        )?
        .install_recorder()
        .inspect(|handle| {
            let handle = handle.clone();
            // A thread rather than a task: the recorder is installed before, and outlives,
            // any runtime. Failing to start it leaves the scrape to drain the samples.
            let _ = std::thread::Builder::new()
                .name(UPKEEP_THREAD.into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    handle.run_upkeep();
                });
        })
}

/// `GET /metrics` in the Prometheus text format. Merge it into a router *after* the
/// rate-limit layer was applied, so that scrapes are never limited.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    handle.render(),
                )
            }
        }),
    )
}
