//! The key-enumeration defence through the HTTP layer, on the in-memory store and on a
//! real Redis: a burst of 10,000 different API keys from one client is detected and the
//! client is then refused with `abnormal-usage-detected`; another client keeps its full
//! budget; a honeypot key blocks its client at once. On Redis it runs with the default
//! store timeout and with a raised one.

mod common;

use std::net::SocketAddr;

use redis_harness::RedisServer;
use serde_json::Value;

const ABNORMAL: &str = "https://iana.org/assignments/http-problem-types#abnormal-usage-detected";

fn policies(store: &str) -> String {
    format!(
        r#"
store: {store}
client_ip: {{ trusted_proxies: ["127.0.0.0/8"] }}
enumeration:
  max_identities: 100
  block: 10m
  honeypot: {{ api_keys: [sk_honeypot] }}
endpoints:
  - {{ path: /api, name: api, scopes: [api_key], limits: [{{ name: hourly, max: 20, window: 1h }}] }}
"#
    )
}

async fn get(
    client: &reqwest::Client,
    addr: SocketAddr,
    from: &str,
    key: &str,
) -> reqwest::Response {
    client
        .get(format!("http://{addr}/api"))
        .header("x-forwarded-for", from)
        .header("x-api-key", key)
        .send()
        .await
        .expect("request")
}

async fn is_abnormal(response: reqwest::Response) -> bool {
    if response.status() != 429 {
        return false;
    }
    assert!(response.headers().contains_key("retry-after"));
    let body: Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("problem+json");
    body["type"] == ABNORMAL
}

async fn defends(store: &str) {
    let layer = common::layer(&policies(store)).await;
    let addr = common::serve(layer, "127.0.0.1:0").await;
    let client = common::client();
    let attacker = "203.0.113.7";

    // 10,000 different keys in a burst, 100 at a time.
    let mut refused = 0;
    for batch in 0..100 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100 {
            let client = client.clone();
            tasks.spawn(async move {
                let key = format!("guess-{batch}-{i}");
                is_abnormal(get(&client, addr, attacker, &key).await).await
            });
        }
        while let Some(abnormal) = tasks.join_next().await {
            refused += usize::from(abnormal.expect("task"));
        }
    }
    assert!(refused > 9_000, "the burst was detected: {refused} refused");

    // Later requests from that client are refused, even with a key it used before.
    // (On Redis the count comes back after the request: bounded wait for the block.)
    let mut blocked = false;
    for _ in 0..200 {
        if is_abnormal(get(&client, addr, attacker, "guess-0-0").await).await {
            blocked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(blocked, "the enumerating client stays blocked");

    // Another client keeps its whole budget.
    let other = "198.51.100.9";
    for n in 0..20 {
        let r = get(&client, addr, other, "real-key").await;
        assert_eq!(r.status(), 200, "request {n} of the other client");
    }
    let r = get(&client, addr, other, "real-key").await;
    assert_eq!(r.status(), 429);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );

    // A honeypot key blocks its client at once, for every later request.
    let curious = "192.0.2.44";
    assert_eq!(get(&client, addr, curious, "fine-key").await.status(), 200);
    assert!(is_abnormal(get(&client, addr, curious, "sk_honeypot").await).await);
    assert!(is_abnormal(get(&client, addr, curious, "fine-key").await).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory() {
    defends("{ kind: memory }").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_with_the_defaults() {
    on_redis("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_with_a_raised_timeout() {
    // Generous, for a busy test machine.
    on_redis(", timeout: 500ms").await;
}

/// On a fresh Redis, with `timeout` (a field of a flow-style `store`, or nothing).
async fn on_redis(timeout: &str) {
    let redis = RedisServer::spawn();
    defends(&format!(
        r#"{{ kind: redis, url: "{}", key_prefix: "enum:"{timeout} }}"#,
        redis.url()
    ))
    .await;
}
