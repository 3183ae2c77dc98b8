//! The admin plane's bearer token (#11): every `/admin/` route answers 401 without the node's token
//! (but the data-less page shells of `auth::OPEN_ADMIN_PAGES`, tested with their page),
//! with the JSON error body naming `Authorization` and a `WWW-Authenticate: Bearer` challenge, and
//! changes nothing; with the token it works; the rest of the API needs none. A node built in process
//! without a token (`ApiSettings::default()`, as the other in-process tests and the embedded demo
//! build it) stays open: nothing outside the process can reach it. `cloudcafe serve` always has a
//! token, and prints the one it generates when given none.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::test;
use gateways::http::auth::needs_admin_token;
use gateways::http::{route_table, ApiSettings, ApiState};
use gateways::load::HttpConnection;
use gateways::node::{Node, NodeSettings};
use gateways::telemetry::metrics_handle;
use serde_json::{json, Value};

/// The token the tests configure (and send, where they mean to be let in).
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789";

async fn node(dir: &tempfile::TempDir) -> Node {
    let mut settings = NodeSettings::embedded(dir.path());
    settings.seed_demo = true;
    Node::start(settings).await.unwrap()
}

fn with_token() -> ApiSettings {
    ApiSettings { admin_token: Some(TEST_ADMIN_TOKEN.into()), ..ApiSettings::default() }
}

async fn call(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
    req: test::TestRequest,
) -> (StatusCode, Value, actix_web::http::header::HeaderMap) {
    let res = test::call_service(app, req.to_request()).await;
    let (status, headers) = (res.status(), res.headers().clone());
    let body = test::read_body(res).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null), headers)
}

fn open_store(authorization: Option<&str>) -> test::TestRequest {
    let req = test::TestRequest::post().uri("/admin/stores").set_json(json!({"store_id": "store-77", "name": "Quay"}));
    match authorization {
        Some(value) => req.insert_header(("Authorization", value)),
        None => req,
    }
}

/// Asserts the one 401 answer: status, challenge, and the error body naming the header.
fn assert_refused(what: &str, (status, body, headers): &(StatusCode, Value, actix_web::http::header::HeaderMap)) {
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(headers.get("www-authenticate").unwrap(), r#"Bearer realm="cloudcafe-admin""#, "{what}");
    assert_eq!(body["field"], "Authorization", "{what}: {body}");
    assert!(body["error"].is_string(), "{what}: {body}");
}

#[actix_web::test]
async fn admin_routes_refuse_a_missing_malformed_or_wrong_token_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &with_token()))).await;

    let refusals = [
        ("no header", None),
        ("another token", Some("Bearer not-the-admin-token-at-all")),
        ("the token as a prefix", Some(&format!("Bearer {TEST_ADMIN_TOKEN}x")[..])),
        ("the token without its scheme", Some(TEST_ADMIN_TOKEN)),
        ("another scheme", Some(&format!("Basic {TEST_ADMIN_TOKEN}")[..])),
        ("an empty bearer", Some("Bearer ")),
    ];
    let mut bodies = Vec::new();
    for (what, header) in refusals {
        let answer = call(&app, open_store(header)).await;
        assert_refused(what, &answer);
        bodies.push(answer.1);
    }
    // The answer never says which part was wrong.
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let (status, _, _) = call(&app, test::TestRequest::get().uri("/api/stores/store-77")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused POST /admin/stores opened the store");

    let bearer = format!("Bearer {TEST_ADMIN_TOKEN}");
    let (status, body, _) = call(&app, open_store(Some(&bearer))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body, _) = call(&app, test::TestRequest::get().uri("/api/stores/store-77")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("open")));
    let lowercase = format!("bearer {TEST_ADMIN_TOKEN}");
    let projections = test::TestRequest::get().uri("/admin/projections").insert_header(("Authorization", lowercase));
    let (status, body, _) = call(&app, projections).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["projections"].is_array(), "{body}");
}

#[actix_web::test]
async fn every_admin_route_and_method_needs_the_token_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &with_token()))).await;
    let concrete = |template: &str| {
        template.split('/').map(|s| if s.starts_with('{') { "x-1" } else { s }).collect::<Vec<_>>().join("/")
    };

    let admin: Vec<_> = route_table().into_iter().filter(|(path, _)| needs_admin_token(path)).collect();
    assert!(admin.len() >= 3, "{admin:?}");
    for (template, method) in &admin {
        let path = concrete(template);
        let answer = call(&app, test::TestRequest::default().method(method.clone()).uri(&path)).await;
        assert_refused(&format!("{method} {path}"), &answer);
        // A method the route does not serve is refused the same way: no probing without the token.
        let answer = call(&app, test::TestRequest::default().method(Method::DELETE).uri(&path)).await;
        assert_refused(&format!("DELETE {path}"), &answer);
    }

    for path in ["/health", "/ready", "/metrics", "/openapi.json", "/api/menu/items"] {
        let (status, body, _) = call(&app, test::TestRequest::get().uri(path)).await;
        assert_eq!(status, StatusCode::OK, "GET {path} needs no token: {body}");
    }
    let order = json!({"customer_id": "alice", "store_id": "store-1", "items": [{"item_id": "latte", "quantity": 1}]});
    let (status, body, _) = call(&app, test::TestRequest::post().uri("/api/orders").set_json(order)).await;
    assert_eq!(status, StatusCode::CREATED, "POST /api/orders needs no token: {body}");
}

/// In process, with no token configured, the admin routes stay open: the in-process tests and the
/// embedded demo build their API this way, and no one outside the process reaches it.
#[actix_web::test]
async fn a_node_built_in_process_without_a_token_leaves_the_admin_routes_open() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let state = ApiState::from_parts(node.cafe.clone(), node.storefront.clone(), metrics_handle(), &Default::default());
    assert!(state.admin_token.is_none());
    let app = test::init_service(gateways::app(state)).await;
    let (status, body, _) = call(&app, open_store(None)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// `cloudcafe serve` given no token generates one and prints it once on stderr, and the node takes it.
#[tokio::test]
async fn serve_without_a_token_prints_the_one_it_generated() {
    let dir = tempfile::tempdir().unwrap();
    let addr = chaos::process::free_loopback_addr();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudcafe"))
        .args(["serve", "--listen", &addr.to_string(), "--workers", "1", "--data-dir"])
        .arg(dir.path())
        .env_remove("CLOUDCAFE_ADMIN_TOKEN")
        .env_remove("CLOUDCAFE_ADMIN_TOKEN_FILE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // The reader is kept until the node is killed: a closed pipe would fail the node's next write.
    let (printed, _stderr) = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let token =
            lines.by_ref().map_while(Result::ok).find_map(|line| line.strip_prefix("admin token: ").map(str::to_owned));
        (token, lines)
    })
    .await
    .unwrap();
    let Some(token) = printed else {
        child.kill().unwrap();
        panic!("serve did not print `admin token: <token>` on stderr");
    };
    assert_eq!(token.len(), 64, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");

    testkit::wait_until("the node answers", Duration::from_secs(30), || async {
        status(addr, "/health", None).await == Some(200)
    })
    .await;
    let without = status(addr, "/admin/projections", None).await;
    let with = status(addr, "/admin/projections", Some(&token)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!((without, with), (Some(401), Some(200)));
}

/// The status of `GET path` on `addr`, with `token` as the bearer when given; None if it did not answer.
async fn status(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> Option<u16> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
    HttpConnection::new(addr).request("GET", path, &headers, b"").await.ok().map(|r| r.status)
}
