//! A layer built in code: the same decisions and headers as the same rules read from a
//! file, and the one-line per-client limit.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{Method, Request, StatusCode};
use limiter_tower::config::load_str;
use limiter_tower::{
    AnyStore, Cost, Endpoint, HeaderStyle, Limit, LimiterLayer, Policy, PolicyRule, Scope,
};
use tower::ServiceExt;

const FILE: &str = r#"
headers: both
exemptions:
  cidrs: ["10.0.0.0/8"]
endpoints:
  - name: search
    path: /search
    methods: [get]
    scopes: [ip, endpoint]
    limits: [{ name: burst, max: 2, window: 60s }]
  - name: items
    path: /items/{id}
    scopes: [global]
    cost: 2
    limits:
      - { name: burst, max: 5, window: 60s }
      - { name: hourly, max: 7, window: 1h, algorithm: fixed_window }
default_policy:
  name: default
  scopes: [ip]
  limits: [{ name: minute, max: 3, window: 60s, algorithm: sliding_window }]
"#;

fn in_code() -> LimiterLayer {
    use limiter_tower::Algorithm;
    let search = Policy::new(
        "search",
        vec![Limit::new(2, Duration::from_secs(60)).with_name("burst")],
    )
    .expect("a valid policy");
    let items = Policy::new(
        "items",
        vec![
            Limit::new(5, Duration::from_secs(60)).with_name("burst"),
            Limit::new(7, Duration::from_secs(3600))
                .with_name("hourly")
                .with_algorithm(Algorithm::FixedWindow),
        ],
    )
    .expect("a valid policy");
    let default = Policy::new(
        "default",
        vec![Limit::new(3, Duration::from_secs(60))
            .with_name("minute")
            .with_algorithm(Algorithm::SlidingWindow)],
    )
    .expect("a valid policy");
    LimiterLayer::builder()
        .headers(HeaderStyle::Both)
        .exempt_cidrs(["10.0.0.0/8".parse().expect("a CIDR")])
        .endpoint(
            Endpoint::new("/search", search)
                .methods([Method::GET])
                .scopes([Scope::Ip, Scope::Endpoint]),
        )
        .endpoint(
            Endpoint::new("/items/{id}", items)
                .scopes([Scope::Global])
                .cost(Cost::Fixed(2)),
        )
        .default_policy(PolicyRule::new(default).scopes([Scope::Ip]))
        .build_in_memory()
        .expect("valid rules")
}

async fn from_file() -> LimiterLayer {
    let loaded = load_str(FILE, Path::new("inline.yaml")).expect("a valid file");
    let store = AnyStore::connect(loaded.rules.store())
        .await
        .expect("the memory store");
    LimiterLayer::new(loaded.rules, store)
}

fn app(layer: LimiterLayer) -> Router {
    Router::new()
        .route(
            "/search",
            get(|| async { "found" }).post(|| async { "posted" }),
        )
        .route("/items/{id}", get(|| async { "item" }))
        .route("/other", get(|| async { "other" }))
        .layer(layer)
}

/// What a client sees of one response: status and every rate-limit header.
type Seen = (StatusCode, Vec<(String, String)>);

async fn send(app: &Router, method: Method, path: &str, client: &str) -> Seen {
    let peer: SocketAddr = format!("{client}:40000").parse().expect("an address");
    let request = Request::builder()
        .method(method)
        .uri(path)
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.contains("ratelimit") || name == "retry-after"
        })
        .map(|(name, value)| {
            (
                name.to_string(),
                value.to_str().unwrap_or("<bytes>").to_owned(),
            )
        })
        .collect();
    (response.status(), headers)
}

/// Whether two responses carry the same decision. The two layers decide a moment apart,
/// each on its own clock reading, so a time in whole seconds (a `t` parameter of
/// `RateLimit`, `X-RateLimit-Reset`, `Retry-After`) may round to the next second in one
/// of them; everything else, counts included, must be identical.
fn same_decision(a: &Seen, b: &Seen) -> bool {
    let secs_apart = |x: &str, y: &str| match (x.parse::<i64>(), y.parse::<i64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1,
        _ => x == y,
    };
    let same_value = |name: &str, x: &str, y: &str| match name {
        "retry-after" | "x-ratelimit-reset" => secs_apart(x, y),
        "ratelimit" => {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split(';').collect(), y.split(';').collect());
            xs.len() == ys.len()
                && xs.iter().zip(&ys).all(|(p, q)| {
                    match (p.strip_prefix("t="), q.strip_prefix("t=")) {
                        (Some(p), Some(q)) => secs_apart(p, q),
                        _ => p == q,
                    }
                })
        }
        _ => x == y,
    };
    a.0 == b.0
        && a.1.len() == b.1.len()
        && a.1
            .iter()
            .zip(&b.1)
            .all(|((na, va), (nb, vb))| na == nb && same_value(na, va, vb))
}

#[tokio::test]
async fn a_layer_built_in_code_decides_like_the_same_file() {
    let requests = [
        (Method::GET, "/search", "192.0.2.1"),
        (Method::GET, "/search", "192.0.2.1"),
        (Method::GET, "/search", "192.0.2.1"),
        (Method::GET, "/search", "192.0.2.2"),
        (Method::POST, "/search", "192.0.2.1"),
        (Method::GET, "/items/1", "192.0.2.1"),
        (Method::GET, "/items/2", "192.0.2.3"),
        (Method::GET, "/items/3", "192.0.2.4"),
        (Method::GET, "/other", "192.0.2.5"),
        (Method::GET, "/other", "192.0.2.5"),
        (Method::GET, "/other", "192.0.2.5"),
        (Method::GET, "/other", "192.0.2.5"),
        (Method::GET, "/other", "10.1.2.3"),
        (Method::GET, "/other", "10.1.2.3"),
        (Method::GET, "/other", "10.1.2.3"),
        (Method::GET, "/other", "10.1.2.3"),
    ];
    let code = app(in_code());
    let file = app(from_file().await);
    let mut statuses = Vec::new();
    for (method, path, client) in requests {
        let from_code = send(&code, method.clone(), path, client).await;
        let from_file = send(&file, method.clone(), path, client).await;
        assert!(
            same_decision(&from_code, &from_file),
            "{method} {path} from {client}: {from_code:?} vs {from_file:?}"
        );
        statuses.push(from_code.0.as_u16());
    }
    // The rules did bite: a test of two layers that admit everything would pass too.
    assert_eq!(
        statuses,
        [200, 200, 429, 200, 200, 200, 200, 429, 200, 200, 200, 429, 200, 200, 200, 200]
    );
}

#[tokio::test]
async fn the_one_liner_limits_each_client_address() {
    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .layer(LimiterLayer::per_client_ip(2, Duration::from_secs(60)).expect("a valid limit"));
    let mut statuses = Vec::new();
    for client in ["192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2"] {
        statuses.push(send(&app, Method::GET, "/", client).await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::OK
        ]
    );
}

#[test]
fn builder_errors_name_the_field() {
    let policy = |name: &str| {
        Policy::new(name, vec![Limit::new(1, Duration::from_secs(1))]).expect("a valid policy")
    };
    let e = LimiterLayer::builder()
        .endpoint(Endpoint::new("/a", policy("a")))
        .endpoint(Endpoint::new("/b", policy("a")))
        .rules()
        .expect_err("a name used twice");
    assert_eq!(e.field(), "endpoints[1].name", "{e}");
    let e = LimiterLayer::builder()
        .endpoint(Endpoint::new("/a", policy("a")).scopes([Scope::User]))
        .rules()
        .expect_err("the user scope without a way to verify tokens");
    assert_eq!(e.field(), "jwt", "{e}");
    let e = LimiterLayer::builder()
        .ipv6_prefix(129)
        .rules()
        .expect_err("a prefix longer than an address");
    assert_eq!(e.field(), "client_ip.ipv6_prefix", "{e}");
    let e = LimiterLayer::builder()
        .failure_mode(limiter_tower::FailureMode::Local { share: 1.5 })
        .rules()
        .expect_err("a share above the whole limit");
    assert_eq!(e.field(), "failure_mode", "{e}");
    assert!(LimiterLayer::per_client_ip(0, Duration::from_secs(1)).is_err());
}

#[test]
fn the_service_shows_and_gives_back_what_it_wraps() {
    use tower::Layer;
    let layer = LimiterLayer::per_client_ip(1, Duration::from_secs(1)).expect("a valid limit");
    assert!(format!("{layer:?}").contains("memory"), "{layer:?}");
    let mut service = layer.layer(String::from("inner"));
    assert!(format!("{service:?}").contains("inner"), "{service:?}");
    service.get_mut().push('!');
    assert_eq!(service.get_ref(), "inner!");
    assert_eq!(service.into_inner(), "inner!");
}

#[tokio::test]
async fn a_full_memory_store_refuses_new_clients_even_failing_open() {
    const CAPPED: &str = r#"
store: { kind: memory, max_keys: 2 }
failure_mode: open
default_policy:
  name: default
  scopes: [ip]
  limits: [{ name: minute, max: 5, window: 60s }]
"#;
    let app = app(from(CAPPED).await);
    let mut statuses = Vec::new();
    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"] {
        statuses.push(send(&app, Method::GET, "/other", client).await.0.as_u16());
    }
    // The third client would be a third key: refused, never admitted uncounted, while
    // the tracked ones keep their limits.
    assert_eq!(statuses, [200, 200, 429, 200]);
}

async fn from(file: &str) -> LimiterLayer {
    let loaded = load_str(file, Path::new("inline.yaml")).expect("a valid file");
    let store = AnyStore::connect(loaded.rules.store())
        .await
        .expect("the memory store");
    LimiterLayer::new(loaded.rules, store)
}
