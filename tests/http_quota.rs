//! The self-service quota route: callers read their own quota with their own
//! credentials, under their plan, for every policy a request of theirs would meet,
//! charging nothing; bad queries name the field.

mod common;

use std::net::SocketAddr;

use limiter::limiter_tower::{LimiterLayer, QuotaRoute};
use serde_json::{json, Value};

const SECRET: &str = "quota-route-secret";

fn policies() -> String {
    std::env::set_var("QUOTA_ROUTE_SECRET", SECRET);
    r#"
jwt: { algorithms: [HS256], hs_secret_env: QUOTA_ROUTE_SECRET, on_invalid: reject }
plans: { claim: plan, default: free, names: [pro] }
policies:
  - { name: quota-team, scopes: [{ claim: team }], limits: [{ name: hour, max: 100, window: 1h }] }
endpoints:
  - path: /api
    name: quota-api
    scopes: [user]
    also: [quota-team]
    limits: [{ name: hour, max: 5, window: 1h }]
    plans:
      pro: { limits: [{ name: hour, max: 50, window: 1h }] }
"#
    .to_owned()
}

async fn serve(layer: LimiterLayer) -> SocketAddr {
    let app = common::app()
        .layer(layer.clone())
        .nest("/me/quota", QuotaRoute::new(&layer).router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

fn bearer(user: &str, plan: &str) -> String {
    let token = common::hs256_claims(SECRET, json!({ "sub": user, "plan": plan, "team": "t1" }));
    format!("Bearer {token}")
}

async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, Value) {
    let mut request = common::client().get(format!("http://{addr}{path}"));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_read_their_own_quota_under_their_plan() {
    let addr = serve(common::layer(&policies()).await).await;
    let (ann, bob) = (bearer("ann", "free"), bearer("bob", "pro"));
    for _ in 0..2 {
        assert_eq!(get(addr, "/api", Some(&ann)).await.0, 200);
    }
    let remaining = |body: &Value, i: usize| {
        let w = &body["policies"][i]["windows"][0];
        (
            w["limit"].as_u64().unwrap(),
            w["remaining"].as_u64().unwrap(),
        )
    };
    for _ in 0..2 {
        let (status, body) = get(addr, "/me/quota?path=/api", Some(&ann)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["policies"][0]["policy"], "quota-api");
        assert_eq!(remaining(&body, 0), (5, 3), "read, never charged: {body}");
        assert_eq!(body["policies"][1]["policy"], "quota-team");
        assert_eq!(remaining(&body, 1), (100, 98), "{body}");
    }
    let (_, body) = get(addr, "/me/quota?path=/api&method=get", Some(&bob)).await;
    assert_eq!(remaining(&body, 0), (50, 50), "bob's plan: {body}");

    // A path no policy covers; a caller the layer would refuse; bad queries.
    let (status, body) = get(addr, "/me/quota?path=/free", Some(&ann)).await;
    assert_eq!((status, &body["limited"]), (200, &json!(false)));
    assert_eq!(get(addr, "/me/quota?path=/api", None).await.0, 401);
    for (query, field) in [
        ("", "path"),
        ("?path=api", "path"),
        ("?path=/api&method=GE%20T", "method"),
    ] {
        let (status, body) = get(addr, &format!("/me/quota{query}"), Some(&ann)).await;
        assert_eq!(
            (status, &body["field"]),
            (400, &json!(field)),
            "{query}: {body}"
        );
    }
}
