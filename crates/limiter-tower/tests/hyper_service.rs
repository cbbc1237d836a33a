//! The layer around plain tower services served by hyper, without axum: a body type the
//! layer can write its 429 in (`Full<Bytes>`, the default `SameBody`), and one it cannot
//! (`Empty<Bytes>`, through `any_body`).

use std::convert::Infallible;
use std::path::Path;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use limiter_tower::config::load_str;
use limiter_tower::{AnyStore, LimiterLayer};
use tokio::net::{TcpListener, TcpStream};
use tower::{service_fn, Layer};

const TWO: &str = "endpoints:\n  - { name: all, path: /, scopes: [global], limits: [{ name: burst, max: 2, window: 60s }] }\n";

async fn layer() -> LimiterLayer {
    let loaded = load_str(TWO, Path::new("inline.yaml")).expect("a valid file");
    let store = AnyStore::connect(loaded.rules.store())
        .await
        .expect("the memory store");
    LimiterLayer::new(loaded.rules, store)
}

/// Serves `service` with hyper on a loopback port, one connection at a time, until the
/// test ends; returns the address.
async fn serve<S, B>(service: S) -> std::net::SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Three GETs of `/` on one connection: status, `RateLimit` field and body of each.
async fn three_gets(addr: std::net::SocketAddr) -> Vec<(StatusCode, Option<String>, Bytes)> {
    let stream = TcpStream::connect(addr).await.expect("connected");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("a handshake");
    tokio::spawn(connection);
    let mut answers = Vec::new();
    for _ in 0..3 {
        let request = Request::get("/")
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .expect("a request");
        let response = sender.send_request(request).await.expect("a response");
        let status = response.status();
        let field = response
            .headers()
            .get("ratelimit")
            .map(|v| v.to_str().expect("ASCII").to_owned());
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        answers.push((status, field, body));
    }
    answers
}

fn assert_two_then_429(answers: &[(StatusCode, Option<String>, Bytes)], allowed_body: &[u8]) {
    assert_eq!(answers[0].0, StatusCode::OK);
    assert_eq!(answers[0].1.as_deref(), Some("\"burst\";r=1;t=30"));
    assert_eq!(&answers[0].2[..], allowed_body);
    assert_eq!(answers[1].0, StatusCode::OK);
    assert_eq!(answers[2].0, StatusCode::TOO_MANY_REQUESTS);
    assert!(answers[2]
        .1
        .as_deref()
        .unwrap_or("")
        .starts_with("\"burst\";r=0;t="));
    let problem: serde_json::Value =
        serde_json::from_slice(&answers[2].2).expect("a problem+json body");
    assert_eq!(problem["violated-policies"], serde_json::json!(["burst"]));
}

#[tokio::test]
async fn a_hyper_service_keeps_its_own_body_type() {
    let service = service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    // The service's response type is still `Response<Full<Bytes>>`.
    let limited: tower::util::BoxCloneService<_, Response<Full<Bytes>>, _> =
        tower::util::BoxCloneService::new(layer().await.layer(service));
    let answers = three_gets(serve(limited).await).await;
    assert_two_then_429(&answers, b"hello");
}

#[tokio::test]
async fn a_body_the_layer_cannot_write_in_is_wrapped() {
    let service = service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    });
    let limited = layer().await.any_body().layer(service);
    let answers = three_gets(serve(limited).await).await;
    assert_two_then_429(&answers, b"");
}
