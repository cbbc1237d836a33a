//! `/metrics` after real traffic (batched, with leases on a hot key, a burst past the
//! queue bound): every metric of the workspace is exported under its Prometheus name,
//! scrapes are never limited, and no label value comes from a request (paths, headers,
//! tokens, addresses): each one is from a fixed set or the policy file. The case runs
//! with the default store timeout and breaker, and with both raised.
//!
//! The Prometheus recorder is process-global and the counts checked are exact: each run
//! has a process of its own.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use limiter::limiter_core::BreakerState;
use limiter::telemetry::{install_prometheus, metrics_router, METRIC_NAMES, UPKEEP_THREAD};
use redis_harness::RedisServer;

/// Strings each request carries somewhere; none may reach a label.
const SECRETS: [&str; 4] = [
    "PATHSECRET41",
    "APIKEYSECRET42",
    "TOKENSECRET43",
    "203.0.113.44",
];

/// The store's `timeout` and the `breaker` of a run.
#[derive(Clone, Copy, Debug)]
enum Bounds {
    /// None set: what users get.
    Defaults,
    /// Generous: a busy test machine must not open the breaker by slowness alone.
    Raised,
}

/// The policy file: one decision at most waits for Redis (`overload.max_queued`), so
/// that a burst is shed.
fn policies(url: &str, bounds: Bounds) -> String {
    let (timeout, breaker) = match bounds {
        Bounds::Defaults => ("", ""),
        Bounds::Raised => (", timeout: 500ms", "breaker: { slow_calls: 1000000 }"),
    };
    format!(
        r#"
store: {{ kind: redis, url: "{url}", key_prefix: "metrics:"{timeout}, local_cache: {{ max_keys: 100 }}, leases: {{ lifetime: 500ms }}, memory_guard: {{ max_fraction: 0.5, interval: 10ms }} }}
{breaker}
overload: {{ max_queued: 1 }}
failure_mode: closed
client_ip: {{ trusted_proxies: ["127.0.0.1/32"] }}
enumeration: {{ honeypot: {{ api_keys: [honeypot-key] }} }}
default_policy: {{ name: fallback-policy, scopes: [ip], leases: off, limits: [{{ name: m, max: 1, window: 1h }}] }}
endpoints:
  - {{ path: "/items/{{id}}", name: items, scopes: [api_key, endpoint], leases: off, limits: [{{ name: h, max: 3, window: 1h }}] }}
  - {{ path: /hot, name: hot, scopes: [global], limits: [{{ name: h, max: 1000000, window: 1h }}] }}
  - {{ path: /burst, name: burst, scopes: [global], leases: off, limits: [{{ name: h, max: 1000000, window: 1h }}] }}
  - {{ path: /settled, name: settled, scopes: [global], usage: {{ charge_statuses: [401] }}, limits: [{{ name: h, max: 1000, window: 1h }}] }}
"#
    )
}

async fn serve(
    yaml: &str,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> (limiter::limiter_tower::LimiterLayer, SocketAddr) {
    let layer = common::layer(yaml).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // As in the demo: /metrics is merged after the layer, so it is never limited.
    let app = common::app()
        .layer(layer.clone())
        .merge(metrics_router(metrics))
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (layer, addr)
}

async fn traffic(client: &reqwest::Client, addr: SocketAddr) -> u16 {
    let [path, key, token, ip] = SECRETS;
    client
        .get(format!("http://{addr}/items/{path}"))
        .header("x-api-key", key)
        .bearer_auth(token)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Requests one hot key enough for leases to be taken (`/hot`, one budget for all).
async fn hot_traffic(client: &reqwest::Client, addr: SocketAddr) {
    for _ in 0..20 {
        hot(client, addr).await;
    }
}

/// One request for the hot key, admitted.
async fn hot(client: &reqwest::Client, addr: SocketAddr) {
    let r = client
        .get(format!("http://{addr}/hot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Bursts of concurrent requests on `/burst` until one is shed: how many were shed.
async fn burst(client: &reqwest::Client, addr: SocketAddr) -> usize {
    let mut shed = 0;
    for _ in 0..20 {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let client = client.clone();
            tasks.spawn(async move {
                let r = client
                    .get(format!("http://{addr}/burst"))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            });
        }
        while let Some(status) = tasks.join_next().await {
            match status.unwrap() {
                200 => {}
                503 => shed += 1,
                other => panic!("status {other}"),
            }
        }
        if shed > 0 {
            break;
        }
    }
    shed
}

/// Waits until `done` holds of the layer's lease counts.
async fn leases(
    layer: &limiter::limiter_tower::LimiterLayer,
    done: impl Fn(&limiter::limiter_core::LeaseStats) -> bool,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = layer.store().lease_stats().expect("leases are configured");
        if done(&stats) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `name{a="x",b="y"} value` → (name, [(a, x), (b, y)]).
fn parse(line: &str) -> (String, Vec<(String, String)>) {
    let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
    let Some((name, labels)) = series.split_once('{') else {
        return (series.to_owned(), Vec::new());
    };
    let labels = labels
        .trim_end_matches('}')
        .split("\",")
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect();
    (name.to_owned(), labels)
}

/// Set in the process [`in_own_process`] starts: its test runs the case.
const IN_OWN_PROCESS: &str = "METRICS_ENDPOINT_IN_OWN_PROCESS";

#[test]
fn metrics_are_named_by_convention_and_labelled_only_by_config_with_the_defaults() {
    in_own_process(
        "metrics_are_named_by_convention_and_labelled_only_by_config_with_the_defaults",
        Bounds::Defaults,
    );
}

#[test]
fn metrics_are_named_by_convention_and_labelled_only_by_config_with_raised_bounds() {
    in_own_process(
        "metrics_are_named_by_convention_and_labelled_only_by_config_with_raised_bounds",
        Bounds::Raised,
    );
}

/// Runs the case with `bounds` in a process of its own: this test binary again, running
/// only `test` (the caller), with [`IN_OWN_PROCESS`] set.
fn in_own_process(test: &str, bounds: Bounds) {
    if std::env::var_os(IN_OWN_PROCESS).is_some() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        return runtime.block_on(metrics_are_named_by_convention_and_labelled_only_by_config(
            bounds,
        ));
    }
    let run = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact"])
        .env(IN_OWN_PROCESS, "1")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

async fn metrics_are_named_by_convention_and_labelled_only_by_config(bounds: Bounds) {
    let handle = install_prometheus().expect("the only recorder of this process");
    // Histogram samples are folded into buckets whether or not anything scrapes. (A new
    // thread carries its parent's name until it has started and named itself.)
    let threads = || -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    };
    let mut named = false;
    for _ in 0..500 {
        named = threads().iter().any(|name| name == UPKEEP_THREAD);
        if named {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(named, "the recorder's upkeep thread runs: {:?}", threads());
    let mut redis = RedisServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policies.yaml");
    std::fs::write(&file, policies(&redis.url(), bounds)).unwrap();
    let (layer, addr) = serve(&policies(&redis.url(), bounds), handle).await;
    let client = common::client();

    // Allowed, denied by the store, denied by the local cache; then an unmatched route
    // under the default policy.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(traffic(&client, addr).await);
        }
        v
    };
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let r = client
        .get(format!("http://{addr}/elsewhere/TOKENSECRET43"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Decisions handed to an OTLP exporter whose collector is not there: its batch fails
    // (ratelimit_decision_spans_dropped_total{reason="export_failed"}).
    #[cfg(feature = "otel")]
    {
        let url = common::unreachable_traces_url();
        let exporter = limiter::telemetry::decisions::OtlpDecisions::builder("metrics-test")
            .endpoint(&url)
            .build()
            .unwrap();
        let exporter = std::sync::Arc::new(exporter);
        layer.set_decision_sink(Some(Box::new(std::sync::Arc::clone(&exporter))));
        hot(&client, addr).await;
        layer.set_decision_sink(None);
        tokio::task::spawn_blocking(move || exporter.shutdown())
            .await
            .unwrap();
    }

    // Charged only if refused with 401: this 200 is refunded after the response
    // (ratelimit_settlements_total{result="refunded"}).
    let r = client
        .get(format!("http://{addr}/settled"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A hot key: leases taken, and once they expire their unused units given back.
    hot_traffic(&client, addr).await;
    leases(&layer, |s| {
        s.leases > 0 && s.outstanding == 0 && s.refunded_units > 0
    })
    .await;

    // A burst past the queue bound: the excess is shed with 503, never admitted
    // uncounted (ratelimit_shed_decisions_total).
    let shed = burst(&client, addr).await;
    assert!(shed > 0, "no request of the bursts was shed");

    // A honeypot key: its client is blocked (ratelimit_abuse_blocks_total).
    let r = client
        .get(format!("http://{addr}/items/1"))
        .header("x-api-key", "honeypot-key")
        .header("x-forwarded-for", "192.0.2.99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);

    // Redis memory above half its maxmemory: a new client is refused by the memory
    // guard, decided by the failure mode (ratelimit_memory_guard_refusals_total).
    let used: String = redis.cmd(&["INFO", "memory"]);
    let used: u64 = used
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let _: () = redis.cmd(&["CONFIG", "SET", "maxmemory", &(used * 3 / 2).to_string()]);
    let (mut refused, mut admitted_before) = (false, 0);
    for i in 0..500 {
        let r = client
            .get(format!("http://{addr}/elsewhere"))
            .header("x-forwarded-for", format!("198.51.100.{}", i % 250 + 1))
            .send()
            .await
            .unwrap();
        if r.status() == 429 && r.headers().contains_key("ratelimit-degraded") {
            refused = true;
            break;
        }
        assert_eq!(
            r.status(),
            200,
            "a new client before the guard reads memory"
        );
        admitted_before += 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(refused, "the memory guard never refused a new key");
    let _: () = redis.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    // Until the guard has read memory again, new keys (the hot key's lapsed one below
    // among them) are still refused: wait for a new client to be admitted.
    let mut readmitted = false;
    for i in 0..500 {
        let r = client
            .get(format!("http://{addr}/elsewhere"))
            .header("x-forwarded-for", format!("203.0.113.{}", i % 250 + 1))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            readmitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(readmitted, "the memory guard never let new keys in again");

    // Reloads: one applied, one rejected.
    let reloader = layer.reloader(&file);
    std::fs::write(
        &file,
        policies(&redis.url(), bounds).replace("max: 3", "max: 4"),
    )
    .unwrap();
    assert!(reloader.reload().unwrap(), "changed file applied");
    std::fs::write(&file, "endpoints: 7").unwrap();
    assert!(reloader.reload().is_err());
    assert_eq!(layer.generation(), 2);

    // Redis gone, with a lease out (whose refund then fails): degraded decisions until
    // the breaker opens.
    hot_traffic(&client, addr).await;
    assert!(layer.store().lease_stats().unwrap().outstanding > 0);
    redis.kill();
    for _ in 0..20 {
        if layer.store().breaker_state() == Some(BreakerState::Open) {
            break;
        }
        assert_eq!(traffic(&client, addr).await, 429, "closed mode");
    }
    assert_eq!(layer.store().breaker_state(), Some(BreakerState::Open));
    assert_eq!(traffic(&client, addr).await, 429);
    leases(&layer, |s| s.outstanding == 0 && s.failed_refunds > 0).await;

    // Scrapes are not limited (the default policy allows one request an hour).
    let mut text = String::new();
    for _ in 0..3 {
        let r = client
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            !r.headers().contains_key("ratelimit"),
            "scrapes are not limited"
        );
        text = r.text().await.unwrap();
    }

    let series: Vec<_> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(parse)
        .collect();
    let names: BTreeSet<String> = series
        .iter()
        .map(|(n, _)| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s).filter(|base| METRIC_NAMES.contains(base)))
                .unwrap_or(n)
                .to_owned()
        })
        .collect();
    for name in METRIC_NAMES {
        // Only the OTLP decision exporter (feature `otel`) drops decision spans.
        let exported = *name != limiter::limiter_tower::metric_names::DECISION_SPANS_DROPPED_TOTAL;
        if exported || cfg!(feature = "otel") {
            assert!(names.contains(*name), "{name} missing from:\n{text}");
        }
    }
    for name in &names {
        assert!(name.starts_with("ratelimit_"), "{name}");
        assert!(
            METRIC_NAMES.contains(&name.as_str()),
            "{name} is not in METRIC_NAMES"
        );
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.get(3) {
            Some(&"counter") => assert!(parts[2].ends_with("_total"), "{line}"),
            // Durations in seconds; batch sizes in decisions.
            Some(&"histogram") => assert!(
                parts[2].ends_with("_seconds") || parts[2] == "ratelimit_batch_decisions",
                "{line}"
            ),
            _ => {}
        }
    }

    // Every label value is from a closed set or the policy file.
    let allowed: BTreeSet<&str> = [
        "items",
        "hot",
        "burst",
        "settled",
        "fallback-policy", // policy names
        "allowed",
        "denied",
        "degraded_allowed",
        "degraded_denied",
        "shed", // results
        "queue_full",
        "queue_time", // shed reasons
        "memory",
        "redis",
        "redis_cluster", // stores
        "open",
        "closed",
        "local",
        "half_open", // modes, breaker states
        "timeout",
        "unavailable",
        "protocol",
        "full", // store errors
        "ok",
        "failed", // reloads
        "honeypot",
        "identities",
        "failed_auth", // abuse block reasons
        "refunded",
        "charged",       // settlements ("failed" above)
        "export_failed", // decision spans dropped ("queue_full" above)
    ]
    .into();
    for (name, labels) in &series {
        for (key, value) in labels {
            for secret in SECRETS {
                assert!(!value.contains(secret), "{name}: {key}={value}");
            }
            if key == "le" {
                assert!(
                    value == "+Inf" || value.parse::<f64>().is_ok(),
                    "{name}: le={value}"
                );
            } else {
                assert!(
                    allowed.contains(value.as_str()),
                    "{name}: {key}={value} is not a fixed value"
                );
            }
        }
    }
    for expected in [
        r#"ratelimit_decisions_total{policy="items",result="allowed"} 3"#,
        r#"ratelimit_decisions_total{policy="items",result="denied"} 2"#,
        r#"ratelimit_local_cache_hits_total{policy="items"} 1"#,
        &format!(r#"ratelimit_decisions_total{{policy="burst",result="shed"}} {shed}"#),
        &format!(
            r#"ratelimit_decisions_total{{policy="fallback-policy",result="allowed"}} {}"#,
            // One before the guard's part, those before it tripped, one after it cleared.
            2 + admitted_before
        ),
        r#"ratelimit_config_reloads_total{result="ok"} 1"#,
        r#"ratelimit_config_reloads_total{result="failed"} 1"#,
        "ratelimit_config_generation 2",
        "ratelimit_breaker_state 2",
        r#"ratelimit_decision_duration_seconds_bucket{store="redis",le="0.000025"}"#,
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(
        text.contains(r#"ratelimit_decisions_total{policy="items",result="degraded_denied"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ratelimit_fallback_decisions_total{mode="closed"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ratelimit_shed_decisions_total{reason="queue_full"}"#),
        "{text}"
    );
}
