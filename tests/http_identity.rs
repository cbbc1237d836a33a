//! Who a request counts as: forged, expired or confused tokens never reach another
//! identity's budget; forwarding headers count only from trusted proxies; odd headers
//! never become a 5xx.

mod common;

use jsonwebtoken::{encode, EncodingKey, Header};
use reqwest::header::HeaderValue;
use serde_json::json;

const SECRET: &str = "identity-test-secret";
const RSA_PRIVATE: &str = include_str!("../crates/limiter-tower/tests/keys/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../crates/limiter-tower/tests/keys/rsa_public.pem");

fn policies(on_invalid: &str) -> String {
    format!(
        r#"
jwt:
  algorithms: [HS256, RS256]
  hs_secret_env: IDENTITY_TEST_SECRET
  public_keys: [{{ algorithm: RS256, pem_file: "{}/crates/limiter-tower/tests/keys/rsa_public.pem" }}]
  audience: api
  leeway: 0s
  on_invalid: {on_invalid}
client_ip:
  trusted_proxies: ["127.0.0.1/32"]
endpoints:
  - {{ path: /me, name: me, scopes: [user], limits: [{{ name: h, max: 2, window: 1h }}] }}
  - {{ path: /ip, name: ip, scopes: [ip], limits: [{{ name: h, max: 1, window: 1h }}] }}
  - {{ path: /cost, name: cost, scopes: [global], cost_header: {{ name: x-cost, max: 5 }}, limits: [{{ name: h, max: 100, window: 1h }}] }}
  - {{ path: /key, name: key, scopes: [api_key], limits: [{{ name: h, max: 1, window: 1h }}] }}
"#,
        env!("CARGO_MANIFEST_DIR")
    )
}

fn exp() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600
}

/// Tokens claiming to be alice that must not be accepted as alice.
fn attacks() -> Vec<(&'static str, String)> {
    let alice = json!({ "sub": "alice", "aud": "api", "exp": exp() });
    let b64 = |v: &serde_json::Value| {
        use std::fmt::Write;
        // base64url without padding, by hand: the test avoids another dependency.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = v.to_string().into_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                let _ = write!(out, "{}", T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    vec![
        ("expired", common::hs256(SECRET, "alice", Some("api"), -60)),
        (
            "bad signature",
            common::hs256("not-the-secret", "alice", Some("api"), 3600),
        ),
        (
            "wrong audience",
            common::hs256(SECRET, "alice", Some("other"), 3600),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({ "alg": "none", "typ": "JWT" })),
                b64(&alice)
            ),
        ),
        (
            // HS/RS confusion: HMAC keyed with the server's RSA public key.
            "hs256 keyed with the rsa public key",
            encode(
                &Header::default(),
                &alice,
                &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
            )
            .unwrap(),
        ),
        ("garbage", "x.y.z".to_owned()),
    ]
}

async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn invalid_tokens_never_use_or_spend_another_identity_budget() {
    std::env::set_var("IDENTITY_TEST_SECRET", SECRET);
    let addr = common::serve(common::layer(&policies("ip")).await, "127.0.0.1:0").await;
    let c = common::client();
    let url = format!("http://{addr}/me");
    let alice = common::hs256(SECRET, "alice", Some("api"), 3600);

    // Forged alice tokens fall back to the client address: two fit there, then 429.
    let mut fallback_allowed = 0;
    for (_, token) in attacks() {
        if status(c.get(&url).bearer_auth(&token)).await == 200 {
            fallback_allowed += 1;
        }
    }
    assert_eq!(
        fallback_allowed, 2,
        "forged tokens share the client-address budget"
    );
    // ... and none of them spent alice's budget.
    assert_eq!(status(c.get(&url).bearer_auth(&alice)).await, 200);
    assert_eq!(status(c.get(&url).bearer_auth(&alice)).await, 200);
    assert_eq!(status(c.get(&url).bearer_auth(&alice)).await, 429);

    // RS256 is accepted when really signed with the private key: a separate identity.
    let rs = encode(
        &Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({ "sub": "rsa-user", "aud": "api", "exp": exp() }),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(status(c.get(&url).bearer_auth(&rs)).await, 200);
    // A second valid user has a budget of its own.
    let bob = common::hs256(SECRET, "bob", Some("api"), 3600);
    assert_eq!(status(c.get(&url).bearer_auth(&bob)).await, 200);
}

#[tokio::test]
async fn reject_mode_answers_401_to_every_attack() {
    std::env::set_var("IDENTITY_TEST_SECRET", SECRET);
    let addr = common::serve(common::layer(&policies("reject")).await, "127.0.0.1:0").await;
    let c = common::client();
    let url = format!("http://{addr}/me");
    for (name, token) in attacks() {
        let response = c.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{name}"
        );
    }
    assert_eq!(status(c.get(&url)).await, 401, "no token");
}

#[tokio::test]
async fn forwarded_for_counts_only_through_trusted_proxies() {
    std::env::set_var("IDENTITY_TEST_SECRET", SECRET);
    let layer = common::layer(&policies("ip")).await;
    let trusted = common::serve(layer.clone(), "127.0.0.1:0").await;
    let untrusted = common::serve(layer, "[::1]:0").await;
    let c = common::client();
    let via_proxy = |xff: &'static str| {
        c.get(format!("http://{trusted}/ip"))
            .header("x-forwarded-for", xff)
    };

    assert_eq!(status(via_proxy("203.0.113.1")).await, 200);
    assert_eq!(status(via_proxy("203.0.113.1")).await, 429);
    assert_eq!(
        status(via_proxy("203.0.113.2")).await,
        200,
        "another client behind the proxy"
    );
    // A client prepending a forged hop is still counted by the hop the proxy saw.
    assert_eq!(status(via_proxy("198.51.100.7, 203.0.113.1")).await, 429);
    // A malformed header from the proxy falls back to the proxy's own address.
    assert_eq!(status(via_proxy("not-an-ip")).await, 200);
    assert_eq!(status(via_proxy("also, bad")).await, 429);

    // From an untrusted peer (::1) the header changes nothing.
    let direct = |xff: &'static str| {
        c.get(format!("http://{untrusted}/ip"))
            .header("x-forwarded-for", xff)
    };
    assert_eq!(status(direct("203.0.113.50")).await, 200);
    assert_eq!(
        status(direct("203.0.113.51")).await,
        429,
        "spoofed header ignored"
    );
}

#[tokio::test]
async fn oversized_and_non_utf8_headers_never_cause_5xx() {
    std::env::set_var("IDENTITY_TEST_SECRET", SECRET);
    let addr = common::serve(common::layer(&policies("ip")).await, "127.0.0.1:0").await;
    let c = common::client();
    let raw = |bytes: &[u8]| HeaderValue::from_bytes(bytes).unwrap();
    let huge = format!("Bearer {}", "a".repeat(60 * 1024));
    let cases: Vec<(&str, &str, HeaderValue)> = vec![
        ("/me", "authorization", raw(b"Bearer \xff\xfe\xfd")),
        (
            "/me",
            "authorization",
            HeaderValue::from_str(&huge).unwrap(),
        ),
        ("/me", "authorization", raw(b"Basic abc")),
        ("/ip", "x-forwarded-for", raw(b"\xff1.2.3.4")),
        (
            "/ip",
            "x-forwarded-for",
            HeaderValue::from_str(&"9.9.9.9, ".repeat(5000)).unwrap(),
        ),
        ("/key", "x-api-key", raw(b"\xc3\x28key")),
        (
            "/key",
            "x-api-key",
            HeaderValue::from_str(&"k".repeat(32 * 1024)).unwrap(),
        ),
        ("/cost", "x-cost", raw(b"\xff")),
        ("/cost", "x-cost", raw(b"99999999999999999999999")),
    ];
    for (path, name, value) in cases {
        let code = status(c.get(format!("http://{addr}{path}")).header(name, value)).await;
        assert!(code < 500, "{path} {name}: {code}");
        if path == "/cost" {
            assert_eq!(code, 400, "unusable cost header");
        }
    }
    // The API key header value is hashed: different keys, different budgets.
    assert_eq!(
        status(
            c.get(format!("http://{addr}/key"))
                .header("x-api-key", "k1")
        )
        .await,
        200
    );
    assert_eq!(
        status(
            c.get(format!("http://{addr}/key"))
                .header("x-api-key", "k1")
        )
        .await,
        429
    );
    assert_eq!(
        status(
            c.get(format!("http://{addr}/key"))
                .header("x-api-key", "k2")
        )
        .await,
        200
    );
}

#[tokio::test]
async fn a_server_without_connect_info_answers_500_never_one_shared_budget() {
    std::env::set_var("IDENTITY_TEST_SECRET", SECRET);
    let layer = common::layer(&policies("ip")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    // Served as a plain router: no `into_make_service_with_connect_info`.
    let app = common::app().layer(layer);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("server") });
    let c = common::client();

    // `/ip` allows one request per client; were every client one "unknown" client, the
    // second would be a 429. Each is a 500 naming the fix instead.
    for _ in 0..3 {
        let response = c.get(format!("http://{addr}/ip")).send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("ConnectInfo"), "{detail}");
    }
    // A user without a valid token would fall back to the address: the same.
    assert_eq!(status(c.get(format!("http://{addr}/me"))).await, 500);
    // A valid user, or a key that needs no address, is served.
    let alice = common::hs256(SECRET, "alice", Some("api"), 3600);
    assert_eq!(
        status(c.get(format!("http://{addr}/me")).bearer_auth(&alice)).await,
        200
    );
    assert_eq!(status(c.get(format!("http://{addr}/cost"))).await, 200);
}
