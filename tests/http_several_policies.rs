//! Several policies per request over HTTP: a user's 10 an hour inside their team's 25 (the
//! team read from a token claim). Three users of one team, 1,000 concurrent requests
//! across two instances: 25 admitted in all, each user at most 10, and every user's
//! counter holds exactly what was admitted for them (no partial charge by a denied
//! request); memory, Redis, Redis with leases, and a Cluster. A 429 names the policy
//! that denied; an admitted response reports the most restrictive quota.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use limiter::limiter_tower::LimiterLayer;
use redis_harness::{RedisCluster, RedisServer};
use serde_json::json;

const SECRET: &str = "several-policies-secret";

fn policies(store: &str, tag: &str) -> String {
    std::env::set_var("SEVERAL_POLICIES_SECRET", SECRET);
    format!(
        r#"
store: {store}
jwt: {{ algorithms: [HS256], hs_secret_env: SEVERAL_POLICIES_SECRET }}
policies:
  - name: team-{tag}
    scopes: [{{ claim: team }}]
    limits: [{{ name: hour, max: 25, window: 1h, algorithm: fixed_window }}]
endpoints:
  - path: /work
    name: user-{tag}
    scopes: [user]
    limits: [{{ name: hour, max: 10, window: 1h, algorithm: fixed_window }}]
    also: [team-{tag}]
"#
    )
}

fn bearer(user: &str, team: &str) -> String {
    let token = common::hs256_claims(SECRET, json!({ "sub": user, "team": team }));
    format!("Bearer {token}")
}

/// Units used under `policy` by `key`, as the store holds them.
async fn used(layer: &LimiterLayer, policy: &str, key: &str) -> u64 {
    let now = layer.peek(policy, key).await.expect("peek");
    now.windows()[0].limit() - now.windows()[0].remaining()
}

async fn team_on(store: &str, tag: &str) {
    let yaml = policies(store, tag);
    let first = common::layer(&yaml).await;
    // Two instances share a Redis; in memory, two servers share one layer.
    let second = if tag == "memory" {
        first.clone()
    } else {
        common::layer(&yaml).await
    };
    let layers = [first, second];
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for layer in &layers {
        addrs.push(common::serve(layer.clone(), "127.0.0.1:0").await);
    }
    let users = ["ann", "bob", "cy"];
    let client = common::client();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..1_000 {
        let user = users[i % 3];
        let request = client
            .get(format!("http://{}/work", addrs[i % 2]))
            .header("authorization", bearer(user, "red"));
        calls.spawn(async move {
            let response = request.send().await.expect("answer");
            let status = response.status().as_u16();
            let degraded = response.headers().contains_key("ratelimit-degraded");
            let body = response.text().await.expect("body");
            assert!(!degraded, "a failure mode answered while Redis is healthy");
            (user, status, body)
        });
    }
    let mut admitted: HashMap<&str, u64> = HashMap::new();
    let mut denied_by: HashMap<String, u64> = HashMap::new();
    while let Some(answer) = calls.join_next().await {
        let (user, status, body) = answer.expect("task");
        match status {
            200 => *admitted.entry(user).or_default() += 1,
            429 => {
                let problem: serde_json::Value = serde_json::from_str(&body).expect("problem");
                let policy = problem["policy"].as_str().expect("policy named").to_owned();
                *denied_by.entry(policy).or_default() += 1;
            }
            other => panic!("{tag}: unexpected {other}: {body}"),
        }
    }
    let total: u64 = admitted.values().sum();
    assert_eq!(total, 25, "{tag}: the team's 25 exactly: {admitted:?}");
    for user in users {
        let n = admitted.get(user).copied().unwrap_or(0);
        assert!(n <= 10, "{tag}: {user} admitted {n}");
        assert_eq!(
            used(&layers[0], &format!("user-{tag}"), &format!("user:{user}")).await,
            n,
            "{tag}: {user}'s counter holds a partial charge"
        );
    }
    assert_eq!(
        used(&layers[1], &format!("team-{tag}"), "claim.team:red").await,
        25,
        "{tag}"
    );
    assert!(
        denied_by
            .keys()
            .all(|p| *p == format!("user-{tag}") || *p == format!("team-{tag}")),
        "{tag}: {denied_by:?}"
    );
    assert_eq!(denied_by.values().sum::<u64>(), 975, "{tag}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_inside_a_team_admit_the_teams_limit_exactly() {
    team_on("{ kind: memory }", "memory").await;
    let server = RedisServer::spawn();
    team_on(
        &format!("{{ kind: redis, url: \"{}\" }}", server.url()),
        "redis",
    )
    .await;
    team_on(
        &format!(
            "{{ kind: redis, url: \"{}\", leases: {{ lifetime: 100ms }} }}",
            server.url()
        ),
        "leases",
    )
    .await;
    let cluster = RedisCluster::spawn();
    let nodes: Vec<String> = cluster.nodes().iter().map(|n| format!("\"{n}\"")).collect();
    team_on(
        &format!("{{ kind: redis_cluster, nodes: [{}] }}", nodes.join(", ")),
        "cluster",
    )
    .await;
}

/// Headers of an admitted response report the policy with the smallest share left: the
/// user's (1 of 10 used) first, the team's once it is the tighter one.
#[tokio::test]
async fn an_admitted_response_reports_the_most_restrictive_quota() {
    let layer = common::layer(&policies("{ kind: memory }", "headers")).await;
    let addr = common::serve(layer, "127.0.0.1:0").await;
    let client = common::client();
    let call = |user: &'static str| {
        client
            .get(format!("http://{addr}/work"))
            .header("authorization", bearer(user, "blue"))
            .send()
    };
    let first = call("dee").await.unwrap();
    let policy = first.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    // 9 of 10 left for dee, 24 of 25 for the team: the user's is tighter.
    assert!(policy.contains("q=10;"), "{policy}");
    for _ in 0..9 {
        assert_eq!(call("eve").await.unwrap().status(), 200);
    }
    // dee: 8 of 10 left; the team: 14 of 25, the smaller share.
    let next = call("dee").await.unwrap();
    let policy = next.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("q=25;"), "{policy}");
}
