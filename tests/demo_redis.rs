//! config/demo.yaml on a real Redis, as the demo runs it with `REDIS_URL` set: the file's
//! store as written, batched, with leases and the local cache of denials.
//!
//! One test per binary: it sets an environment variable, sound only while no other
//! thread runs.

mod common;

use std::path::Path;
use std::time::Duration;

use limiter::limiter_tower::config::{load, StoreConfig};
use limiter::limiter_tower::{AnyStore, LimiterLayer};
use redis_harness::RedisServer;

#[test]
fn the_demo_file_runs_on_redis_with_its_store_settings() {
    std::env::set_var("DEMO_JWT_SECRET", "test-secret");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let redis = RedisServer::spawn();
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.yaml");
        let loaded = load(&file).unwrap_or_else(|e| panic!("{e}"));
        let mut setup = loaded.rules.store().clone();
        match &mut setup.store {
            // What `${REDIS_URL}` expands to in the demo's Redis mode.
            StoreConfig::Redis { url, .. } => *url = redis.url(),
            other => panic!("the demo file names a Redis store: {other:?}"),
        }
        let store = AnyStore::connect(&setup).await.unwrap();
        assert_eq!(store.kind(), "redis");
        assert!(store.is_batched(), "batching");
        assert!(store.local_cache().is_some(), "the local cache of denials");
        assert!(store.lease_stats().is_some(), "leases");
        let layer = LimiterLayer::new(loaded.rules, store);
        let addr = common::serve(layer.clone(), "127.0.0.1:0").await;
        let client = common::client();
        for _ in 0..50 {
            let r = client
                .get(format!("http://{addr}/status"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(!r.headers().contains_key("ratelimit-degraded"));
        }
        let stats = layer.store().lease_stats().unwrap();
        assert!(stats.local_admissions > 0, "/status is leased: {stats:?}");
        assert!(stats.oldest_use <= Duration::from_millis(100), "{stats:?}");
        // Its keys are where the file puts them.
        let keys: Vec<String> = redis.cmd(&["KEYS", "demo:*"]);
        assert!(!keys.is_empty(), "keys under demo:");
    });
}
