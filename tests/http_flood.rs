//! A flood over HTTP through the layer, with the policy file a new user writes (no
//! timeout, breaker, failure mode or overload settings): three instances on one Redis,
//! one global budget of 1,000 an hour, 3,000 requests from 600 concurrent connections.
//! At most 1,000 and at least 990 are admitted and not one answer is degraded, leases on
//! or off, standalone or Cluster. With a tiny queue bound the excess is answered 503 with
//! `Retry-After` and a problem type of its own, and nothing is admitted uncounted.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use redis_harness::{RedisCluster, RedisServer};

const LIMIT: usize = 1_000;
const REQUESTS: usize = 3_000;
/// Divides `REQUESTS`: each connection sends the same number.
const CONNECTIONS: usize = 600;

/// The file with `store` and, optionally, extra top-level sections.
fn policy_file(store: &str, extra: &str, algorithm: &str) -> String {
    format!(
        r#"
store: {store}
{extra}
enumeration: {{ enabled: false }}
headers: legacy
endpoints:
  - path: /flood
    name: flood
    scopes: [global]
    limits: [{{ name: hour, max: {LIMIT}, window: 1h, algorithm: {algorithm} }}]
"#
    )
}

/// How the requests were answered.
#[derive(Debug, Default)]
struct Answers {
    admitted: usize,
    denied: usize,
    degraded: usize,
    shed: usize,
    other: Vec<u16>,
}

/// Serves three layers from `yaml` (each its own store, as three processes would have).
async fn instances(yaml: &str) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let layer = common::layer(yaml).await;
        addrs.push(common::serve(layer, "127.0.0.1:0").await);
    }
    addrs
}

/// `REQUESTS` requests from `CONNECTIONS` connections (each its own client, so its own
/// keep-alive connection), spread over the instances and released together.
async fn flood(addrs: &[SocketAddr]) -> Answers {
    let start = Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let url = format!("http://{}/flood", addrs[c % addrs.len()]);
            let start = Arc::clone(&start);
            let requests = REQUESTS / CONNECTIONS;
            tokio::spawn(async move {
                let client = common::client();
                let mut answers = Answers::default();
                start.wait().await;
                for _ in 0..requests {
                    let response = client.get(&url).send().await.expect("the server answers");
                    let status = response.status().as_u16();
                    if response.headers().contains_key("ratelimit-degraded") {
                        answers.degraded += 1;
                    }
                    match status {
                        200 => answers.admitted += 1,
                        429 => answers.denied += 1,
                        503 => {
                            assert_eq!(response.headers()["retry-after"], "1");
                            let body = response.bytes().await.unwrap();
                            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            assert_eq!(body["type"], "tag:limiter-rs,2026:problems/overloaded");
                            assert_eq!(body["status"], 503);
                            answers.shed += 1;
                        }
                        other => answers.other.push(other),
                    }
                }
                answers
            })
        })
        .collect();
    let mut all = Answers::default();
    for task in tasks {
        let answers = task.await.expect("no panic");
        all.admitted += answers.admitted;
        all.denied += answers.denied;
        all.degraded += answers.degraded;
        all.shed += answers.shed;
        all.other.extend(answers.other);
    }
    all
}

fn assert_exact(answers: &Answers, case: &str) {
    assert!(
        answers.admitted <= LIMIT,
        "over the limit: {case}: {answers:?}"
    );
    assert!(
        answers.admitted >= LIMIT - LIMIT / 100,
        "under 99%: {case}: {answers:?}"
    );
    assert_eq!(answers.degraded, 0, "degraded: {case}: {answers:?}");
    assert_eq!(answers.shed, 0, "shed: {case}: {answers:?}");
    assert!(answers.other.is_empty(), "{case}: {answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_600_connections_is_limited_exactly_with_the_defaults() {
    let redis = RedisServer::spawn();
    for leases in ["on", "off"] {
        for algorithm in ["gcra", "sliding_window", "sliding_log", "fixed_window"] {
            let prefix = format!("{leases}-{algorithm}:");
            let store = format!(
                r#"{{ kind: redis, url: "{}", key_prefix: "{prefix}", leases: {leases} }}"#,
                redis.url()
            );
            let addrs = instances(&policy_file(&store, "", algorithm)).await;
            let answers = flood(&addrs).await;
            assert_exact(&answers, &format!("leases {leases}, {algorithm}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_a_cluster_is_limited_exactly_with_the_defaults() {
    let cluster = RedisCluster::spawn();
    let nodes = cluster.nodes();
    for leases in ["on", "off"] {
        let store = format!(
            r#"{{ kind: redis_cluster, nodes: ["{}"], key_prefix: "{leases}:", leases: {leases} }}"#,
            nodes.join("\", \"")
        );
        let addrs = instances(&policy_file(&store, "", "gcra")).await;
        let answers = flood(&addrs).await;
        assert_exact(&answers, &format!("cluster, leases {leases}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_bound_a_flood_is_shed_with_503_and_nothing_uncounted() {
    let redis = RedisServer::spawn();
    let store = format!(
        r#"{{ kind: redis, url: "{}", key_prefix: "tiny:" }}"#,
        redis.url()
    );
    let yaml = policy_file(&store, "overload: { max_queued: 2 }", "gcra");
    let addrs = instances(&yaml).await;
    let answers = flood(&addrs).await;
    assert!(answers.shed > 0, "{answers:?}");
    assert!(answers.admitted <= LIMIT, "{answers:?}");
    assert_eq!(answers.degraded, 0, "{answers:?}");
    assert!(answers.other.is_empty(), "{answers:?}");
    assert_eq!(answers.admitted + answers.denied + answers.shed, REQUESTS);
    // Redis counted exactly what was admitted: one more request sees what is left.
    let yaml = policy_file(&store, "", "gcra");
    let probe = instances(&yaml).await;
    let response = common::client()
        .get(format!("http://{}/flood", probe[0]))
        .send()
        .await
        .unwrap();
    let remaining: usize = response.headers()["x-ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let admitted_now = usize::from(response.status() == 200);
    assert_eq!(
        LIMIT - remaining - admitted_now,
        answers.admitted,
        "{answers:?}"
    );
}
