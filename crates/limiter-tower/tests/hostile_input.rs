//! Hostile header values through the whole layer: whatever bytes a client sends in the
//! headers the layer reads, it answers 200, 400, 401 or 429, never panics and never
//! 5xx. The one documented 500 is a server fault: no client address (`ConnectInfo`)
//! where a policy counts by it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use limiter_tower::{
    ClientTimestamp, Cost, Endpoint, ForwardedHeader, Jwt, Limit, LimiterLayer, Policy, PolicyRule,
    Scope, TokenFallback,
};
use proptest::prelude::*;
use tower::ServiceExt;

fn policy(name: &str) -> Policy {
    Policy::new(name, vec![Limit::new(1_000_000, Duration::from_secs(3600))]).expect("a policy")
}

fn app(fallback: TokenFallback) -> Router {
    let layer = LimiterLayer::builder()
        .endpoint(Endpoint::new("/me", policy("me")).scopes([Scope::User, Scope::Endpoint]))
        .endpoint(Endpoint::new("/ip", policy("ip")).scopes([Scope::Ip]))
        .endpoint(Endpoint::new("/key", policy("key")).scopes([Scope::ApiKey]))
        .endpoint(Endpoint::new(
            "/cost",
            PolicyRule::new(policy("cost"))
                .scopes([Scope::Global])
                .cost(Cost::Header {
                    name: HeaderName::from_static("x-cost"),
                    default: 1,
                    max: 10,
                }),
        ))
        .trusted_proxies(
            ["127.0.0.0/8".parse::<IpNet>().expect("a network")],
            ForwardedHeader::XForwardedFor,
        )
        .jwt(
            Jwt::new([Algorithm::HS256])
                .hmac_secret(b"hostile-input-secret")
                .on_invalid(fallback),
        )
        .client_timestamp(
            ClientTimestamp::new(HeaderName::from_static("x-request-timestamp"))
                .max_skew(Duration::from_secs(5)),
        )
        .build_in_memory()
        .expect("a layer");
    Router::new()
        .route("/{*rest}", get(|| async { "ok" }))
        .layer(layer)
}

const HEADERS: [&str; 8] = [
    "authorization",
    "x-forwarded-for",
    "forwarded",
    "x-api-key",
    "x-cost",
    "x-request-timestamp",
    "date",
    "cookie",
];

/// Header values: any bytes a header may carry, and near-misses of what the layer
/// parses (bearer tokens, address lists, numbers, dates).
fn value() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff];
    let any = proptest::collection::vec(byte, 0..300);
    let shaped = (
        prop::sample::select(vec![
            &b"Bearer "[..],
            b"bearer  ",
            b"Basic ",
            b"1.2.3.4, ",
            b"for=",
            b"for=\"[",
            b"eyJhbGciOiJub25lIn0.",
            b"",
            b"-",
            b"Tue, 14 Nov 2023 ",
            b"2023-11-14T",
        ]),
        proptest::collection::vec(
            prop::sample::select(b"0123456789.,:;=[]\"abcxyzAZ-_ \xff".to_vec()),
            0..64,
        ),
    )
        .prop_map(|(head, tail)| [head, &tail].concat());
    prop_oneof![any, shaped]
}

fn request(path: &str, headers: &[(usize, Vec<u8>)], peer: Option<SocketAddr>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(peer) = peer {
        request = request.extension(ConnectInfo(peer));
    }
    for (name, value) in headers {
        // Bytes a header cannot carry (controls) never reach a service.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            request = request.header(HEADERS[*name % HEADERS.len()], value);
        }
    }
    request.body(Body::empty()).expect("a request")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_header_bytes_get_a_4xx_or_a_2xx(
        path in prop::sample::select(vec!["/me", "/ip", "/key", "/cost", "/other"]),
        headers in proptest::collection::vec((0usize..HEADERS.len(), value()), 0..6),
        reject in any::<bool>(),
        peer in prop::sample::select(vec!["127.0.0.1:1", "192.0.2.7:2", "[2001:db8::1]:3"]),
    ) {
        let fallback = if reject { TokenFallback::Reject } else { TokenFallback::Ip };
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let peer: SocketAddr = peer.parse().expect("an address");
        let response = runtime
            .block_on(app(fallback).oneshot(request(path, &headers, Some(peer))))
            .expect("infallible");
        let status = response.status();
        prop_assert!(
            [200, 400, 401, 429].contains(&status.as_u16()),
            "{} {:?}: {}", path, headers, status
        );
        if status != StatusCode::OK {
            prop_assert_eq!(&response.headers()["content-type"], "application/problem+json");
        }
    }
}

#[tokio::test]
async fn without_connect_info_an_ip_key_is_a_500_never_a_shared_budget() {
    let app = app(TokenFallback::Ip);
    let token_less = [(0usize, b"Bearer nonsense".to_vec())];
    for (path, headers) in [("/ip", &[][..]), ("/me", &token_less[..]), ("/key", &[])] {
        for _ in 0..3 {
            let response = app
                .clone()
                .oneshot(request(path, headers, None))
                .await
                .expect("infallible");
            assert_eq!(
                response.status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{path}"
            );
            let body = response.into_body().collect().await.expect("a body");
            let problem: serde_json::Value =
                serde_json::from_slice(&body.to_bytes()).expect("a problem body");
            assert_eq!(problem["status"], 500);
            let detail = problem["detail"].as_str().expect("a detail");
            assert!(
                detail.contains("into_make_service_with_connect_info"),
                "{detail}"
            );
        }
    }
    // Keys that need no address still work without it.
    for path in ["/cost", "/other"] {
        let response = app
            .clone()
            .oneshot(request(path, &[], None))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}
