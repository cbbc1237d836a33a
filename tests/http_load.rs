//! 1000 concurrent simulated users over 10 endpoints on a real server: the allowed
//! counts per endpoint and per user equal the policies exactly, and nothing fails.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

const USERS: usize = 1000;
const TRIES: usize = 3;
const SECRET: &str = "e2e-load-secret";

const POLICIES: &str = r#"
jwt: { algorithms: [HS256], hs_secret_env: E2E_LOAD_SECRET }
# A thousand users from one address is what the enumeration defence blocks: off here.
enumeration: { enabled: false }
endpoints:
  - { path: /u1, name: u1, scopes: [user], limits: [{ name: h, max: 2, window: 1h }] }
  - { path: "/u2/{id}", name: u2, scopes: [user, endpoint], limits: [{ name: h, max: 2, window: 1h }] }
  - { path: /u3, name: u3, scopes: [user], cost: 2, limits: [{ name: h, max: 5, window: 1h }] }
  - { path: /ip1, name: ip1, scopes: [ip], limits: [{ name: d, max: 100, window: 1d }] }
  - { path: /ip2, name: ip2, scopes: [ip, endpoint], limits: [{ name: h, max: 50, window: 1h, algorithm: sliding_log }] }
  - { path: /key, name: key, scopes: [api_key], limits: [{ name: h, max: 2, window: 1h }] }
  - { path: /global, name: global, scopes: [global], limits: [{ name: d, max: 500, window: 1d }] }
  - { path: /multi, name: multi, scopes: [user], limits: [{ name: h, max: 2, window: 1h }, { name: d, max: 5, window: 1d, algorithm: sliding_window }] }
  - { path: /sl, name: sl, scopes: [user], limits: [{ name: h, max: 2, window: 1h, algorithm: sliding_log }] }
  - { path: /fw, name: fw, scopes: [user], limits: [{ name: y, max: 2, window: 400d, algorithm: fixed_window }] }
"#;

/// Allowed per user (per-user endpoints) or in total (shared ones). GCRA refills
/// continuously: the shared windows are a day long so that no unit comes back during a
/// slow run (500 an hour would refill one every 7.2 s).
const EXPECTED: [(&str, usize, bool); 10] = [
    ("u1", 2, true),
    ("u2", 2, true),
    ("u3", 2, true), // cost 2 of 5: two fit, the third would need 6
    ("ip1", 100, false),
    ("ip2", 50, false),
    ("key", 2, true),
    ("global", 500, false),
    ("multi", 2, true),
    ("sl", 2, true),
    ("fw", 2, true),
];

fn path(endpoint: &str, user: usize, attempt: usize) -> String {
    match endpoint {
        "u2" => format!("/u2/{}", user * 10 + attempt), // one endpoint budget over many ids
        other => format!("/{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_users_ten_endpoints_exact_counts() {
    std::env::set_var("E2E_LOAD_SECRET", SECRET);
    let addr = common::serve(common::layer(POLICIES).await, "127.0.0.1:0").await;
    let client = common::client();
    // (endpoint, user) -> allowed
    let allowed: Arc<Mutex<HashMap<(&str, usize), usize>>> = Arc::default();
    let other: Arc<Mutex<Vec<u16>>> = Arc::default();

    let mut users = tokio::task::JoinSet::new();
    for user in 0..USERS {
        let (client, allowed, other) = (client.clone(), allowed.clone(), other.clone());
        let token = common::hs256(SECRET, &format!("user-{user}"), None, 3600);
        users.spawn(async move {
            // Each user walks the endpoints in its own order, so they interleave.
            for step in 0..EXPECTED.len() * TRIES {
                let (endpoint, _, _) = EXPECTED[(step + user) % EXPECTED.len()];
                let url = format!("http://{addr}{}", path(endpoint, user, step));
                let method = if endpoint == "u3" {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::GET
                };
                let response = client
                    .request(method, url)
                    .bearer_auth(&token)
                    .header("x-api-key", format!("key-of-{user}"))
                    .send()
                    .await
                    .expect("request");
                match response.status().as_u16() {
                    200 => *allowed.lock().entry((endpoint, user)).or_default() += 1,
                    429 => {}
                    status => other.lock().push(status),
                }
            }
        });
    }
    while let Some(joined) = users.join_next().await {
        joined.expect("user task");
    }

    assert!(
        other.lock().is_empty(),
        "statuses other than 200/429: {:?}",
        other.lock()
    );
    let allowed = allowed.lock();
    for (endpoint, expected, per_user) in EXPECTED {
        if per_user {
            for user in 0..USERS {
                let got = allowed.get(&(endpoint, user)).copied().unwrap_or(0);
                assert_eq!(got, expected, "{endpoint}, user {user}");
            }
        } else {
            let total: usize = (0..USERS).filter_map(|u| allowed.get(&(endpoint, u))).sum();
            assert_eq!(total, expected, "{endpoint} in total");
        }
    }
}
