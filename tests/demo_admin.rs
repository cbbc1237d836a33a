//! The demo as users run it (the `demo` example's binary, on its in-memory store): its
//! admin routes refuse a caller without the admin token or with a wrong one, answer
//! with it, and name the field of a bad override; its quota route answers a caller.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The demo's binary, built by `cargo test` beside this test's.
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let binary = target.join("examples").join("demo");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds the examples",
        binary.display()
    );
    binary
}

/// Kills the demo however the test ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

#[tokio::test]
async fn the_demos_admin_routes_are_closed_without_the_token() {
    let addr = free_addr();
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/demo.yaml");
    let child = Command::new(demo_binary())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ])
        .env_remove("REDIS_URL")
        .env("DEMO_JWT_SECRET", "demo-admin-test")
        .env("DEMO_ADMIN_TOKEN", "the-admin-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let _demo = Demo(child);
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.get(url("/health")).send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let usage = "/admin/usage/me/user:alice";
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(client.get(url(usage)).send().await.unwrap()), 401);
    let wrong = client
        .get(url(usage))
        .header("authorization", "Bearer guess");
    assert_eq!(status(wrong.send().await.unwrap()), 401);
    let override_path = "/admin/overrides/work/user:carol";
    let unauthenticated = client
        .put(url(override_path))
        .body(r#"{"block": true, "seconds": 60}"#);
    assert_eq!(status(unauthenticated.send().await.unwrap()), 401);

    let admin = |request: reqwest::RequestBuilder| {
        request.header("authorization", "Bearer the-admin-token")
    };
    assert_eq!(
        status(admin(client.get(url(usage))).send().await.unwrap()),
        200
    );
    let bad = admin(client.put(url(override_path)))
        .body(r#"{"factor": -1, "seconds": 60}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let problem: serde_json::Value = serde_json::from_str(&bad.text().await.unwrap()).unwrap();
    assert_eq!(problem["field"], "factor");
    let set = admin(client.put(url(override_path))).body(r#"{"factor": 2, "seconds": 60}"#);
    assert_eq!(status(set.send().await.unwrap()), 204);

    let quota = client
        .get(url("/me/quota?path=/v1/work"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        quota.status().as_u16(),
        200,
        "counted by address without a token"
    );
}
