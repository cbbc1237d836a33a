//! Client clocks: rate-limit windows never read a time from the request, and the
//! optional `client_timestamp` check refuses requests whose own timestamp is too far
//! from this process's clock, either way, or malformed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use limiter_tower::config::load_str;
use limiter_tower::{AnyStore, LimiterLayer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tower::ServiceExt;

async fn app(yaml: &str) -> Router {
    let loaded = load_str(yaml, Path::new("inline.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let store = AnyStore::connect(loaded.rules.store())
        .await
        .expect("the memory store");
    Router::new()
        .route("/{*rest}", get(|| async { "ok" }))
        .layer(LimiterLayer::new(loaded.rules, store))
}

/// Status, `X-RateLimit-Remaining` and body of a GET of `path` from `client` with
/// `headers`.
async fn get_with(
    app: &Router,
    path: &str,
    client: &str,
    headers: &[(&str, String)],
) -> (StatusCode, Option<String>, String) {
    let peer: SocketAddr = format!("{client}:40000").parse().expect("an address");
    let mut request = Request::get(path).extension(ConnectInfo(peer));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request.body(Body::empty()).expect("a request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let remaining = response
        .headers()
        .get("x-ratelimit-remaining")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    let body = response.into_body().collect().await.expect("a body");
    (
        status,
        remaining,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[tokio::test]
async fn windows_never_read_a_time_from_the_request() {
    let mut yaml = String::from("headers: both\nendpoints:\n");
    let algorithms = [
        "{ name: w, max: 3, window: 1h, algorithm: gcra }",
        "{ name: w, max: 3, window: 1h, algorithm: sliding_log }",
        "{ name: w, max: 3, window: 1h, algorithm: sliding_window }",
        "{ name: w, max: 3, window: 1h, algorithm: fixed_window }",
        "{ name: w, max: 3, algorithm: calendar, period: day }",
    ];
    for (i, limit) in algorithms.iter().enumerate() {
        yaml.push_str(&format!(
            "  - {{ path: /a{i}, name: a{i}, scopes: [ip], limits: [{limit}] }}\n"
        ));
    }
    let app = app(&yaml).await;
    // What a client could claim its time is: far past, far future, nonsense.
    let claims: Vec<Vec<(&str, String)>> = vec![
        vec![("date", "Thu, 01 Jan 1970 00:00:00 GMT".into())],
        vec![
            ("date", "Fri, 31 Dec 9999 23:59:59 GMT".into()),
            ("x-request-timestamp", "99999999999".into()),
        ],
        vec![
            ("x-timestamp", "0".into()),
            ("if-modified-since", "0".into()),
        ],
        vec![("date", "not a date".into())],
        vec![(
            "x-request-timestamp",
            (unix_now() + 86_400 * 365).to_string(),
        )],
    ];
    for i in 0..algorithms.len() {
        let path = format!("/a{i}");
        for claim in &claims {
            // The same request, from a client sending no time and one claiming `claim`.
            let plain = get_with(&app, &path, "192.0.2.1", &[]).await;
            let claiming = get_with(&app, &path, "192.0.2.2", claim).await;
            assert_eq!(
                (plain.0, plain.1),
                (claiming.0, claiming.1),
                "{path} {claim:?}"
            );
        }
        // Both were limited after 3 (5 requests each): the claims bought nothing.
        let last = get_with(&app, &path, "192.0.2.2", &claims[1]).await;
        assert_eq!(last.0, StatusCode::TOO_MANY_REQUESTS, "{path}");
    }
}

const CHECKED: &str = r#"
client_timestamp:
  header: x-request-timestamp
  max_skew: 5s
endpoints:
  - { path: /a, name: a, scopes: [ip], limits: [{ name: w, max: 1000, window: 1h }] }
"#;

#[tokio::test]
async fn timestamps_within_the_skew_pass_in_every_format() {
    let app = app(CHECKED).await;
    let now = SystemTime::now();
    let formats = [
        unix_now().to_string(),
        (unix_now() - 3).to_string(),
        (unix_now() + 3).to_string(),
        OffsetDateTime::from(now).format(&Rfc3339).expect("formats"),
        httpdate::fmt_http_date(now),
    ];
    for stamp in formats {
        let (status, _, body) = get_with(
            &app,
            "/a",
            "192.0.2.1",
            &[("x-request-timestamp", stamp.clone())],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{stamp}: {body}");
    }
    let (status, _, _) = get_with(&app, "/a", "192.0.2.1", &[]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the header is not required by default"
    );
    // Requests no policy limits are checked too: the check guards against replays.
    let (status, _, _) = get_with(
        &app,
        "/unlimited",
        "192.0.2.1",
        &[("x-request-timestamp", "1".into())],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn refused(app: &Router, stamp: Option<String>) -> serde_json::Value {
    let headers: Vec<(&str, String)> = stamp
        .into_iter()
        .map(|s| ("x-request-timestamp", s))
        .collect();
    let peer: SocketAddr = "192.0.2.9:1".parse().expect("an address");
    let mut request = Request::get("/a").extension(ConnectInfo(peer));
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).expect("a request"))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{headers:?}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().get("x-ratelimit-remaining").is_none());
    let body = response.into_body().collect().await.expect("a body");
    let problem: serde_json::Value = serde_json::from_slice(&body.to_bytes()).expect("JSON");
    assert_eq!(problem["status"], 400);
    problem
}

#[tokio::test]
async fn timestamps_beyond_the_skew_either_way_are_refused() {
    let app = app(CHECKED).await;
    let future = refused(&app, Some((unix_now() + 60).to_string())).await;
    let detail = future["detail"].as_str().expect("a detail");
    assert!(detail.contains("in the future"), "{detail}");
    assert!(detail.contains("x-request-timestamp"), "{detail}");
    let past = refused(&app, Some((unix_now() - 60).to_string())).await;
    let detail = past["detail"].as_str().expect("a detail");
    assert!(detail.contains("in the past"), "{detail}");
    let past = refused(
        &app,
        Some(httpdate::fmt_http_date(
            SystemTime::now() - Duration::from_secs(3600),
        )),
    )
    .await;
    assert!(past["detail"].as_str().expect("a detail").contains("past"));
}

#[tokio::test]
async fn malformed_and_missing_required_timestamps_are_refused() {
    let checked = app(CHECKED).await;
    for bad in [
        "yesterday",
        "-1",
        "1.5e9",
        "2023-11-14 22:13:20",
        "99999999999999999999999999",
    ] {
        let problem = refused(&checked, Some(bad.to_owned())).await;
        let detail = problem["detail"].as_str().expect("a detail");
        assert!(detail.contains("must be a timestamp"), "{bad}: {detail}");
    }
    let required = app(&CHECKED.replace("max_skew: 5s", "max_skew: 5s\n  required: true")).await;
    let problem = refused(&required, None).await;
    assert!(problem["detail"]
        .as_str()
        .expect("a detail")
        .contains("is required"));
}

#[test]
fn bad_client_timestamp_sections_are_clear_errors() {
    for (section, want) in [
        (
            "client_timestamp: { header: \"bad header\" }",
            "client_timestamp.header",
        ),
        (
            "client_timestamp: { header: x-ts, max_skew: soon }",
            "max_skew",
        ),
        (
            "client_timestamp: { header: x-ts, skew: 5s }",
            "unknown field `skew`",
        ),
        ("client_timestamp: { max_skew: 5s }", "header"),
    ] {
        let e = load_str(section, Path::new("inline.yaml")).expect_err(section);
        assert!(e.to_string().contains(want), "{section}: {e}");
    }
}
