//! Hot reload on a live server: no request fails while policies are swapped under load,
//! usage survives a changed limit (in units, for GCRA too, on both stores), an invalid
//! file keeps the running policies, and the watcher follows write-and-rename,
//! ConfigMap-style symlink swaps and SIGHUP.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use limiter::limiter_tower::config::{ReloadEvent, Reloader};
use limiter::limiter_tower::LimiterLayer;
use redis_harness::RedisServer;
use tokio::sync::watch;

fn policy(max: u64) -> String {
    format!(
        "endpoints:\n  - {{ path: /a, name: a, scopes: [global], limits: [{{ name: h, max: {max}, window: 400d, algorithm: fixed_window }}] }}\n"
    )
}

async fn from_file(path: &Path) -> LimiterLayer {
    LimiterLayer::from_file(path)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn get(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Waits (bounded) until the reloader has applied `applied` files or rejected `failed`.
async fn until(
    events: &mut watch::Receiver<ReloadEvent>,
    done: impl Fn(&ReloadEvent) -> bool,
) -> ReloadEvent {
    let wait = events.wait_for(|e| done(e));
    let event = tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("reload event within 20 s")
        .expect("reloader alive");
    event.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request_and_keeps_usage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, policy(1_000_000)).unwrap();
    let layer = from_file(&path).await;
    let reloader = layer.reloader(&path);
    let addr = common::serve(layer.clone(), "127.0.0.1:0").await;
    let url = format!("http://{addr}/a");
    let client = common::client();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, url, stop, ok, bad) = (
            client.clone(),
            url.clone(),
            stop.clone(),
            ok.clone(),
            bad.clone(),
        );
        load.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(&client, &url).await {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    // Twenty swaps between two generous limits while requests run.
    for i in 0..20 {
        let before = ok.load(Ordering::Relaxed);
        std::fs::write(&path, policy(1_000_001 + i % 2)).unwrap();
        assert!(reloader.reload().unwrap(), "swap {i} applied");
        // Wait for traffic to pass under the new rules before the next swap.
        for _ in 0..10_000 {
            if ok.load(Ordering::Relaxed) > before + 16 {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "no request failed during reloads"
    );
    let served = ok.load(Ordering::Relaxed) as u64;
    assert!(served > 0);

    // The counter outlived twenty policy objects: a limit just above the usage leaves
    // exactly the difference.
    std::fs::write(&path, policy(served + 3)).unwrap();
    assert!(reloader.reload().unwrap());
    let statuses: Vec<u16> = futures_statuses(&client, &url, 5).await;
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
}

/// `max` per minute on the default algorithm (GCRA), after the `store` section given.
fn gcra_policy(store: &str, max: u64) -> String {
    format!(
        "{store}endpoints:\n  - {{ path: /a, name: a, scopes: [global], limits: [{{ name: m, max: {max}, window: 60s }}] }}\n"
    )
}

/// GCRA keeps time, not counts: the usage must be re-read in units when the rate changes.
async fn gcra_reload_keeps_units(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, gcra_policy(store, 5)).unwrap();
    let layer = from_file(&path).await;
    let reloader = layer.reloader(&path);
    let addr = common::serve(layer, "127.0.0.1:0").await;
    let (client, url) = (common::client(), format!("http://{addr}/a"));
    let statuses = futures_statuses(&client, &url, 6).await;
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429]);

    std::fs::write(&path, gcra_policy(store, 8)).unwrap();
    assert!(reloader.reload().unwrap());
    let statuses = futures_statuses(&client, &url, 4).await;
    assert_eq!(statuses, vec![200, 200, 200, 429], "5 of 8 used: 3 more");

    // 8 used: lowered to 6, none; raised back to 10, two.
    std::fs::write(&path, gcra_policy(store, 6)).unwrap();
    assert!(reloader.reload().unwrap());
    assert_eq!(get(&client, &url).await, 429);
    std::fs::write(&path, gcra_policy(store, 10)).unwrap();
    assert!(reloader.reload().unwrap());
    let statuses = futures_statuses(&client, &url, 3).await;
    assert_eq!(statuses, vec![200, 200, 429], "8 of 10 used: 2 more");
}

#[tokio::test]
async fn raised_gcra_limit_gives_its_headroom_at_once() {
    gcra_reload_keeps_units("").await;
}

#[tokio::test]
async fn raised_gcra_limit_gives_its_headroom_at_once_on_redis() {
    let redis = RedisServer::spawn();
    let store = format!(
        // A deadline no loaded test machine misses: a call past it would fail open and
        // admit a request the test expects denied.
        "store: {{ kind: redis, url: \"{}\", key_prefix: \"reload:\", timeout: 2s }}\n",
        redis.url()
    );
    gcra_reload_keeps_units(&store).await;
}

async fn futures_statuses(client: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get(client, url).await);
    }
    out
}

#[tokio::test]
async fn invalid_file_keeps_running_policies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, policy(2)).unwrap();
    let layer = from_file(&path).await;
    let reloader = layer.reloader(&path);
    let mut events = reloader.subscribe();
    let addr = common::serve(layer, "127.0.0.1:0").await;
    let (client, url) = (common::client(), format!("http://{addr}/a"));

    assert_eq!(get(&client, &url).await, 200);
    std::fs::write(
        &path,
        "endpoints:\n  - { path: /a, name: a, limits: [{ name: h, max: 0, window: 1h }] }\n",
    )
    .unwrap();
    let err = reloader.reload().expect_err("max 0 is rejected");
    assert!(err.to_string().contains("policies.yaml:2:"), "{err}");
    std::fs::write(&path, "endpoints: [ {").unwrap();
    assert!(reloader.reload().is_err());
    let event = until(&mut events, |e| e.failed == 2).await;
    assert_eq!(event.applied, 0);
    assert!(event.last_error.unwrap().contains("policies.yaml"));
    // Still the old policy: one more, then 429.
    assert_eq!(get(&client, &url).await, 200);
    assert_eq!(get(&client, &url).await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_follows_rename_and_symlink_swap() {
    let dir = tempfile::tempdir().unwrap();
    // Kubernetes ConfigMap layout: policies.yaml -> ..data/policies.yaml, ..data -> ..v1
    std::fs::create_dir(dir.path().join("..v1")).unwrap();
    std::fs::write(dir.path().join("..v1/policies.yaml"), policy(1)).unwrap();
    std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/policies.yaml", dir.path().join("policies.yaml")).unwrap();
    let path = dir.path().join("policies.yaml");

    let layer = from_file(&path).await;
    let reloader: Reloader = layer.reloader(&path);
    let mut events = reloader.subscribe();
    let _watch = reloader.watch(Duration::from_millis(50)).unwrap();
    let addr = common::serve(layer, "127.0.0.1:0").await;
    let (client, url) = (common::client(), format!("http://{addr}/a"));
    assert_eq!(get(&client, &url).await, 200);
    assert_eq!(get(&client, &url).await, 429);

    // ConfigMap update: new directory, symlink swapped atomically by rename.
    std::fs::create_dir(dir.path().join("..v2")).unwrap();
    std::fs::write(dir.path().join("..v2/policies.yaml"), policy(2)).unwrap();
    std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    until(&mut events, |e| e.applied == 1).await;
    assert_eq!(
        get(&client, &url).await,
        200,
        "limit 2 now: the usage of 1 is kept"
    );
    assert_eq!(get(&client, &url).await, 429);

    // An editor's save: write a temporary file, rename it over the path.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(dir.path().join(".policies.yaml.swp"), policy(3)).unwrap();
    std::fs::rename(dir.path().join(".policies.yaml.swp"), &path).unwrap();
    until(&mut events, |e| e.applied == 2).await;
    assert_eq!(get(&client, &url).await, 200);
    assert_eq!(get(&client, &url).await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_without_a_file_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, policy(1)).unwrap();
    let layer = from_file(&path).await;
    let reloader = layer.reloader(&path);
    let mut events = reloader.subscribe();
    // Changed before the watcher starts: only the signal can make it known.
    std::fs::write(&path, policy(2)).unwrap();
    let _watch = reloader.watch(Duration::from_millis(50)).unwrap();
    let addr = common::serve(layer, "127.0.0.1:0").await;
    let (client, url) = (common::client(), format!("http://{addr}/a"));
    assert_eq!(get(&client, &url).await, 200);
    assert_eq!(get(&client, &url).await, 429, "still the old limit of 1");

    let pid = std::process::id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    until(&mut events, |e| e.applied == 1).await;
    assert_eq!(get(&client, &url).await, 200, "limit 2 now");
    assert_eq!(get(&client, &url).await, 429);
}
