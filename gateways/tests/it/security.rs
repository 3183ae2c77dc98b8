//! The security suite (#14): bearer tokens on every route but the open ones, the roles route by route
//! (own and another's resource), every kind of bad token refused with 401 and nothing written, an
//! identity provider's JWKS that rotates, is down, slow or answers garbage, and `cloudcafe serve`'s
//! defaults (a local key made in the data directory, `token issue` against it, `--auth off` only on
//! loopback).
//!
//! The other tests that drive real nodes take their tokens from here: one signing key per test
//! process ([`key_file`]), and [`admin_bearer`] etc. to sign with it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::test;
use gateways::auth::jwks::Jwks;
use gateways::auth::token::{DEFAULT_AUDIENCE, LOCAL_ISSUER};
use gateways::auth::{LocalKey, Role, Verifier};
use gateways::http::{route_guards, ApiSettings, ApiState, Guard};
use gateways::load::HttpConnection;
use gateways::node::{Node, NodeSettings};
use gateways::telemetry::metrics_handle;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct TestKey {
    file: std::path::PathBuf,
    key: LocalKey,
}

fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        // Kept for the whole test process: every node the tests start reads it.
        let dir = tempfile::tempdir().unwrap().keep();
        let file = dir.join("signing-key.pem");
        let key = LocalKey::load_or_create(&file).unwrap();
        TestKey { file, key }
    })
}

/// The signing key's file, for `serve --auth-key-file`.
pub fn key_file() -> &'static str {
    test_key().file.to_str().expect("a UTF-8 temporary path")
}

fn token(role: Role, subject: &str, store: Option<&str>) -> String {
    test_key().key.issue(LOCAL_ISSUER, DEFAULT_AUDIENCE, subject, role, store, Duration::from_secs(3600))
}

/// An admin's token (what floods and operators drive nodes with).
pub fn admin_token() -> String {
    token(Role::Admin, "test-operator", None)
}

/// `Bearer <admin token>`.
pub fn admin_bearer() -> String {
    format!("Bearer {}", admin_token())
}

fn bearer(role: Role, subject: &str, store: Option<&str>) -> String {
    format!("Bearer {}", token(role, subject, store))
}

/// A keep-alive client that sends an admin's token on every request without its own.
pub fn admin_client(addr: std::net::SocketAddr) -> HttpConnection {
    HttpConnection::with_bearer(addr, &admin_token())
}

/// API settings that verify the test key's tokens.
pub fn guarded() -> ApiSettings {
    ApiSettings { auth: Some(Arc::new(Verifier::local(&test_key().key, DEFAULT_AUDIENCE))), ..ApiSettings::default() }
}

async fn node(dir: &tempfile::TempDir) -> Node {
    let mut settings = NodeSettings::embedded(dir.path());
    settings.seed_demo = true;
    Node::start(settings).await.unwrap()
}

type Answer = (StatusCode, Value, actix_web::http::header::HeaderMap);

async fn call(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
    req: test::TestRequest,
) -> Answer {
    let res = test::call_service(app, req.to_request()).await;
    let (status, headers) = (res.status(), res.headers().clone());
    let body = test::read_body(res).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null), headers)
}

fn with(req: test::TestRequest, authorization: Option<&str>) -> test::TestRequest {
    match authorization {
        Some(value) => req.insert_header(("Authorization", value)),
        None => req,
    }
}

/// Asserts the one 401 answer: status, challenge, and the error body naming the header.
fn assert_unauthenticated(what: &str, (status, body, headers): &Answer) {
    assert_eq!(*status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(headers.get("www-authenticate").unwrap(), r#"Bearer realm="cloudcafe""#, "{what}");
    assert_eq!(body["field"], "Authorization", "{what}: {body}");
}

fn concrete(template: &str) -> String {
    template.split('/').map(|s| if s.starts_with('{') { "x-1" } else { s }).collect::<Vec<_>>().join("/")
}

#[actix_web::test]
async fn every_route_but_the_open_ones_needs_a_token_and_says_so_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &guarded()))).await;
    let head = node.cafe.journal.head_position().await.unwrap();
    let mut guarded_routes = 0;
    for (template, method, guard) in route_guards() {
        let path = concrete(template);
        let answer = call(&app, test::TestRequest::default().method(method.clone()).uri(&path)).await;
        // Every answer, refusals included: no content sniffing, no server version.
        assert_eq!(answer.2.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
        assert!(answer.2.get("server").is_none(), "{method} {path} names its server");
        if guard == Guard::Public {
            assert_ne!(answer.0, StatusCode::UNAUTHORIZED, "{method} {path} is open: {}", answer.1);
            continue;
        }
        guarded_routes += 1;
        assert_unauthenticated(&format!("{method} {path}"), &answer);
        // A method the route does not serve is refused the same way: no probing without a token.
        if !route_guards().iter().any(|(p, m, g)| *p == template && *m == Method::DELETE && *g == Guard::Public) {
            let answer = call(&app, test::TestRequest::default().method(Method::DELETE).uri(&path)).await;
            if route_guards().iter().filter(|(p, _, _)| *p == template).all(|(_, _, g)| *g != Guard::Public) {
                assert_unauthenticated(&format!("DELETE {path}"), &answer);
            }
        }
    }
    assert!(guarded_routes >= 15, "{guarded_routes}");
    assert_eq!(node.cafe.journal.head_position().await.unwrap(), head, "a refused request wrote");
}

/// Who is asking, in the matrix below.
#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    /// The customer whose resources these are.
    Alice,
    /// Another customer.
    Bob,
    /// Staff of store-1 (whose resources these are).
    Sam,
    /// Staff of store-2.
    Sue,
    Ops,
}

impl Who {
    fn authorization(self) -> Option<String> {
        match self {
            Who::Nobody => None,
            Who::Alice => Some(bearer(Role::Customer, "alice", None)),
            Who::Bob => Some(bearer(Role::Customer, "bob", None)),
            Who::Sam => Some(bearer(Role::Staff, "sam", Some("store-1"))),
            Who::Sue => Some(bearer(Role::Staff, "sue", Some("store-2"))),
            Who::Ops => Some(bearer(Role::Admin, "ops", None)),
        }
    }
}

const EVERYONE: [Who; 6] = [Who::Nobody, Who::Alice, Who::Bob, Who::Sam, Who::Sue, Who::Ops];

/// Every route × every role × own and another's resource: the status each gets, and for reads that
/// a role may do, the same answer an admin gets.
#[actix_web::test]
async fn each_role_reaches_its_own_resources_only() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &guarded()))).await;
    let order_body =
        json!({"customer_id": "alice", "store_id": "store-1", "items": [{"item_id": "latte", "quantity": 1}]});
    let place = |who: Who| {
        let req = test::TestRequest::post().uri("/api/orders").insert_header(("Idempotency-Key", "sec-1"));
        with(req, who.authorization().as_deref()).set_json(order_body.clone())
    };

    // Placing an order: the customer for themselves, or an admin; another customer and staff are
    // answered as if the customer did not exist, and nothing is written.
    for (who, expected) in [
        (Who::Nobody, StatusCode::UNAUTHORIZED),
        (Who::Bob, StatusCode::NOT_FOUND),
        (Who::Sam, StatusCode::NOT_FOUND),
        (Who::Sue, StatusCode::NOT_FOUND),
    ] {
        let head = node.cafe.journal.head_position().await.unwrap();
        let (status, body, _) = call(&app, place(who)).await;
        assert_eq!(status, expected, "{who:?} placing alice's order: {body}");
        assert_eq!(node.cafe.journal.head_position().await.unwrap(), head, "{who:?}: a refused order wrote");
    }
    let (status, body, _) = call(&app, place(Who::Alice)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let order_id = body["order_id"].as_str().unwrap().to_owned();
    let (status, replay, _) = call(&app, place(Who::Ops)).await;
    assert_eq!((status, &replay["order_id"]), (StatusCode::CREATED, &body["order_id"]), "an admin acts for a customer");

    // Wait for the payment, so that every read below has something to read.
    let payment = format!("/api/payments/{order_id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while call(&app, with(test::TestRequest::get().uri(&payment), Who::Ops.authorization().as_deref())).await.0
        != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "the order was never paid");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    use StatusCode as S;
    let (ok, hidden, forbidden, nobody) = (None, Some(S::NOT_FOUND), Some(S::FORBIDDEN), Some(S::UNAUTHORIZED));
    // (path, [expected for Nobody, Alice, Bob, Sam, Sue, Ops]); None: allowed, with the admin's answer.
    let customer_reads = [nobody, ok, hidden, hidden, hidden, ok];
    let store_reads = [nobody, forbidden, forbidden, ok, forbidden, ok];
    let reads: Vec<(String, [Option<StatusCode>; 6])> = vec![
        (format!("/api/orders/{order_id}"), customer_reads),
        (payment.clone(), customer_reads),
        ("/api/customers/alice/orders".into(), customer_reads),
        ("/api/loyalty/alice".into(), customer_reads),
        ("/api/customers/alice/preferences".into(), customer_reads),
        ("/api/inventory/stores/store-1/items/latte".into(), store_reads),
        ("/api/inventory/stores/store-1".into(), store_reads),
        ("/api/analytics/stores/store-1/minutes".into(), store_reads),
        ("/api/stores/store-1".into(), [nobody, ok, ok, ok, ok, ok]),
        ("/api/menu/items".into(), [ok; 6]),
        ("/api/menu/items?category=coffee".into(), [ok; 6]),
        ("/api/menu/items/latte".into(), [ok; 6]),
        ("/admin/projections".into(), [nobody, forbidden, forbidden, forbidden, forbidden, ok]),
        ("/admin/dashboard/data".into(), [nobody, forbidden, forbidden, forbidden, forbidden, ok]),
    ];
    for (path, expected) in reads {
        let (admin_status, admin_body, _) =
            call(&app, with(test::TestRequest::get().uri(&path), Who::Ops.authorization().as_deref())).await;
        // The embedded node has no analytics store: its answer (404, naming that) is what the
        // allowed roles must get too, and the refused ones must not.
        let no_analytics = path.contains("/analytics/") && admin_status == StatusCode::NOT_FOUND;
        assert!(admin_status.is_success() || no_analytics, "GET {path} as an admin: {admin_status} {admin_body}");
        for (who, expected) in EVERYONE.iter().zip(expected) {
            let (status, body, headers) =
                call(&app, with(test::TestRequest::get().uri(&path), who.authorization().as_deref())).await;
            match expected {
                None => assert_eq!(status, admin_status, "GET {path} as {who:?}: {body}"),
                Some(expected) => assert_eq!(status, expected, "GET {path} as {who:?}: {body}"),
            }
            if status.is_success() && (path.contains("alice") || path.contains(&order_id)) {
                // Personal data is not kept by caches between the client and the node.
                assert_eq!(headers.get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "GET {path}");
            }
        }
    }

    // Commands: (request, [expected for Nobody, Alice, Bob, Sam, Sue, Ops]), each refusal writing nothing.
    let restock = || {
        test::TestRequest::post()
            .uri("/api/inventory/restock")
            .set_json(json!({"store_id": "store-1", "sku": "latte", "quantity": 5}))
    };
    let publish = |n: usize| {
        test::TestRequest::post().uri("/api/menu/items").set_json(
            json!({"item_id": format!("sec-item-{n}"), "name": "Sec",
            "category": "coffee", "price_cents": 300, "nutrition": {"calories": 1, "caffeine_mg": 1, "sugar_g": 1},
            "image_sha256": "0".repeat(64)}),
        )
    };
    let price = || test::TestRequest::post().uri("/api/menu/items/latte/price").set_json(json!({"price_cents": 460}));
    let set_price =
        || test::TestRequest::put().uri("/api/menu/items/latte/price").set_json(json!({"price_cents": 470}));
    let retire = |n: usize| test::TestRequest::delete().uri(&format!("/api/menu/items/sec-item-{n}"));
    let open = |n: usize| {
        test::TestRequest::post().uri("/admin/stores").set_json(json!({"store_id": format!("sec-{n}"), "name": "Sec"}))
    };
    let advance = {
        let uri = format!("/api/orders/{order_id}/status");
        move || test::TestRequest::post().uri(&uri).set_json(json!({"status": "preparing"}))
    };
    let cancel = {
        let uri = format!("/api/orders/{order_id}/cancel");
        move || test::TestRequest::post().uri(&uri).set_json(json!({"reason": "changed my mind"}))
    };
    let choose = || {
        test::TestRequest::put()
            .uri("/api/customers/alice/preferences")
            .set_json(json!({"channel": "sms", "address": "+15550100002"}))
    };
    type Request = Box<dyn Fn(usize) -> test::TestRequest>;
    let commands: Vec<(&str, Request, [StatusCode; 6])> = vec![
        (
            // Only the order's store moves it: its customer is told no, anyone else does not see
            // it. (The admin asks for the status the store's staff already set: 200, nothing new.)
            "move alice's order at store-1 to preparing",
            Box::new(move |_| advance()),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::NOT_FOUND, S::OK, S::NOT_FOUND, S::OK],
        ),
        (
            // Only its customer (or an admin) cancels it, and once it is being made (the row above)
            // not even they: 409. Anyone else does not see it.
            "cancel alice's order, now preparing",
            Box::new(move |_| cancel()),
            [S::UNAUTHORIZED, S::CONFLICT, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::CONFLICT],
        ),
        (
            // Only the customer (or an admin for them) chooses how they are told; anyone else does
            // not see the customer.
            "choose how alice is notified",
            Box::new(move |_| choose()),
            [S::UNAUTHORIZED, S::OK, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::OK],
        ),
        (
            "restock store-1",
            Box::new(move |_| restock()),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::OK, S::FORBIDDEN, S::OK],
        ),
        (
            "publish an item",
            Box::new(publish),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::CREATED],
        ),
        (
            "change a price",
            Box::new(move |_| price()),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK],
        ),
        (
            "set a price",
            Box::new(move |_| set_price()),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK],
        ),
        (
            // The admin retires the item it published above (sec-item-5).
            "retire an item",
            Box::new(retire),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK],
        ),
        (
            "open a store",
            Box::new(open),
            [S::UNAUTHORIZED, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::CREATED],
        ),
    ];
    for (what, request, expected) in commands {
        for (n, (who, expected)) in EVERYONE.iter().zip(expected).enumerate() {
            // The saga may still be reacting to the row before (a move to preparing sells stock).
            let head = crate::quiet_head(node.cafe.journal.as_ref()).await;
            let (status, body, _) = call(&app, with(request(n), who.authorization().as_deref())).await;
            assert_eq!(status, expected, "{what} as {who:?}: {body}");
            if !status.is_success() {
                assert_eq!(
                    node.cafe.journal.head_position().await.unwrap(),
                    head,
                    "{what} as {who:?}: refused, yet written"
                );
            }
        }
    }
}

#[actix_web::test]
async fn bad_tokens_are_one_401_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &guarded()))).await;
    let key = &test_key().key;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = |iss: &str, aud: &str, nbf: u64, exp: u64| json!({"sub": "alice", "iss": iss, "aud": aud, "iat": now, "nbf": nbf, "exp": exp, "role": "customer"});
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let good = key.sign(&claims(LOCAL_ISSUER, DEFAULT_AUDIENCE, now, now + 600));
    let parts: Vec<&str> = good.split('.').collect();
    let as_admin =
        b64(&json!({"sub": "alice", "iss": LOCAL_ISSUER, "aud": DEFAULT_AUDIENCE, "exp": now + 600, "role": "admin"}));
    let mut many = serde_json::Map::new();
    for i in 0..10_000 {
        many.insert(format!("claim{i}"), json!(i));
    }
    many.insert("sub".into(), json!("alice"));
    let bad: Vec<(&str, String)> = vec![
        ("expired", key.sign(&claims(LOCAL_ISSUER, DEFAULT_AUDIENCE, now - 7200, now - 3600))),
        ("not yet valid", key.sign(&claims(LOCAL_ISSUER, DEFAULT_AUDIENCE, now + 3600, now + 7200))),
        ("another audience", key.sign(&claims(LOCAL_ISSUER, "another-app", now, now + 600))),
        ("another issuer", key.sign(&claims("https://idp.example.com", DEFAULT_AUDIENCE, now, now + 600))),
        ("alg none", format!("{}.{}.", b64(&json!({"alg": "none", "kid": key.kid()})), parts[1])),
        ("a tampered payload", format!("{}.{as_admin}.{}", parts[0], parts[2])),
        ("a tampered signature", format!("{}.{}.{}", parts[0], parts[1], parts[2].chars().rev().collect::<String>())),
        (
            "an unknown kid",
            LocalKey::generate().unwrap().issue(
                LOCAL_ISSUER,
                DEFAULT_AUDIENCE,
                "alice",
                Role::Customer,
                None,
                Duration::from_secs(600),
            ),
        ),
        ("ten thousand claims", key.sign(&Value::Object(many))),
        ("not a JWT", "abc.def".into()),
    ];
    let order = json!({"customer_id": "alice", "store_id": "store-1", "items": [{"item_id": "latte", "quantity": 1}]});
    let head = node.cafe.journal.head_position().await.unwrap();
    for (what, token) in &bad {
        let req =
            test::TestRequest::post().uri("/api/orders").insert_header(("Authorization", format!("Bearer {token}")));
        let answer = call(&app, req.set_json(order.clone())).await;
        assert_unauthenticated(what, &answer);
    }
    // A 64 KB header is refused before it is looked at.
    let huge = format!("Bearer {}", "a".repeat(64 * 1024));
    let (status, _, _) = call(
        &app,
        test::TestRequest::post().uri("/api/orders").insert_header(("Authorization", huge)).set_json(order.clone()),
    )
    .await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(node.cafe.journal.head_position().await.unwrap(), head, "a bad token wrote");
    let (status, body, _) = call(
        &app,
        test::TestRequest::post()
            .uri("/api/orders")
            .insert_header(("Authorization", format!("Bearer {good}")))
            .set_json(order),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "the good token: {body}");
}

/// A JWKS endpoint the test controls: what it answers can change between requests.
#[derive(Clone)]
enum Jwk {
    Keys(Value),
    Garbage,
    Silent,
}

async fn jwks_server(answer: Arc<std::sync::Mutex<Jwk>>, fetches: Arc<std::sync::atomic::AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.lock().unwrap().clone();
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = match answer {
                    Jwk::Keys(v) => v.to_string(),
                    Jwk::Garbage => "<html>oops</html>".into(),
                    Jwk::Silent => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
            });
        }
    });
    url
}

#[actix_web::test]
async fn tokens_from_an_identity_provider_follow_its_key_rotation_and_fail_closed_when_it_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let (first, second) = (LocalKey::generate().unwrap(), LocalKey::generate().unwrap());
    let set = |keys: &[&LocalKey]| {
        Jwk::Keys(json!({"keys": keys.iter().map(|k| serde_json::to_value(k.jwk()).unwrap()).collect::<Vec<_>>()}))
    };
    let answer = Arc::new(std::sync::Mutex::new(set(&[&first])));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = jwks_server(answer.clone(), fetches.clone()).await;
    let issuer = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_test";
    let jwks = Jwks::new(&url, None).unwrap().with_timings(
        Duration::from_millis(500),
        Duration::from_secs(3600),
        Duration::from_millis(200),
    );
    let verifier = Arc::new(Verifier::published(jwks, issuer, "app-client"));
    let settings = ApiSettings { auth: Some(verifier), ..ApiSettings::default() };
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &settings))).await;
    let read = |key: &LocalKey| {
        let token = key.issue(issuer, "app-client", "alice", Role::Customer, None, Duration::from_secs(600));
        test::TestRequest::get().uri("/api/loyalty/alice").insert_header(("Authorization", format!("Bearer {token}")))
    };

    let (status, body, _) = call(&app, read(&first)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = call(&app, read(&first)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1, "a cached key is used without a fetch");

    // The provider rotates: a token with the new kid makes the node fetch again.
    *answer.lock().unwrap() = set(&[&first, &second]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let (status, body, _) = call(&app, read(&second)).await;
    assert_eq!(status, StatusCode::OK, "after rotation: {body}");
    // A key the provider does not publish is 401, and does not make every request a fetch.
    let stranger = LocalKey::generate().unwrap();
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        assert_unauthenticated("an unpublished key", &call(&app, read(&stranger)).await);
    }
    assert!(fetches.load(std::sync::atomic::Ordering::SeqCst) - before <= 1, "unknown kids are rate-limited fetches");

    // Down, slow, or garbage, with keys cached: the cached keys still verify.
    *answer.lock().unwrap() = Jwk::Garbage;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(call(&app, read(&first)).await.0, StatusCode::OK);

    // A node with no keys yet and a provider that is slow, garbage or down: 503 "retry", never 500,
    // and the node stays healthy.
    for (what, provider) in [("slow", Some(Jwk::Silent)), ("garbage", Some(Jwk::Garbage)), ("down", None)] {
        let url = match provider {
            Some(p) => jwks_server(Arc::new(std::sync::Mutex::new(p)), Arc::default()).await,
            None => format!("http://{}/jwks.json", chaos::process::free_loopback_addr()),
        };
        let jwks = Jwks::new(&url, None).unwrap().with_timings(
            Duration::from_millis(500),
            Duration::from_secs(3600),
            Duration::from_secs(5),
        );
        let settings = ApiSettings {
            auth: Some(Arc::new(Verifier::published(jwks, issuer, "app-client"))),
            ..ApiSettings::default()
        };
        let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &settings))).await;
        let started = Instant::now();
        let (status, body, headers) = call(&app, read(&first)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
        assert!(headers.contains_key("retry-after"), "{what}");
        assert!(started.elapsed() < Duration::from_secs(3), "{what}: waited {:?}", started.elapsed());
        assert!(!body.to_string().contains("127.0.0.1"), "{what}: the answer names the provider: {body}");
        // The next requests do not each wait for the provider.
        let started = Instant::now();
        assert_eq!(call(&app, read(&first)).await.0, StatusCode::SERVICE_UNAVAILABLE, "{what}");
        assert!(started.elapsed() < Duration::from_millis(400), "{what}: a second wait of {:?}", started.elapsed());
        assert_eq!(call(&app, test::TestRequest::get().uri("/health")).await.0, StatusCode::OK, "{what}");
        assert_eq!(call(&app, test::TestRequest::get().uri("/api/menu/items")).await.0, StatusCode::OK, "{what}");
    }
}

/// `cloudcafe serve` with no auth flags makes a signing key in its data directory; `cloudcafe token
/// issue` signs with it; the node takes those tokens and refuses requests without one. `--auth off`
/// is refused on a non-loopback address.
#[tokio::test]
async fn serve_makes_a_key_that_token_issue_signs_with() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_cloudcafe");
    let (mut child, addr) = serve_with_auth_defaults(dir.path(), None).await;
    let key = dir.path().join("auth").join("signing-key.pem");
    assert!(key.exists(), "no key at {}", key.display());
    let issue = |role: &str, sub: &str| {
        let out = std::process::Command::new(bin)
            .args(["token", "issue", "--role", role, "--sub", sub, "--ttl", "5m", "--data-dir"])
            .arg(dir.path())
            .env_remove("CLOUDCAFE_AUTH_KEY_FILE")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (alice, ops) = (issue("customer", "alice"), issue("admin", "ops"));
    let answers = [
        status(addr, "/api/loyalty/alice", None).await,
        status(addr, "/api/loyalty/alice", Some(&alice)).await,
        status(addr, "/admin/projections", Some(&alice)).await,
        status(addr, "/admin/projections", Some(&ops)).await,
    ];
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answers, [Some(401), Some(200), Some(403), Some(200)]);

    let refused = std::process::Command::new(bin)
        .args(["serve", "--auth", "off", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// `cloudcafe serve` on a free loopback port with no auth flags (and `CLOUDCAFE_AUTH_KEY` = `key`
/// when given), once it answers `/health`.
async fn serve_with_auth_defaults(
    dir: &std::path::Path,
    key: Option<&str>,
) -> (std::process::Child, std::net::SocketAddr) {
    let addr = chaos::process::free_loopback_addr();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cloudcafe"));
    command
        .args(["serve", "--listen", &addr.to_string(), "--workers", "1", "--data-dir"])
        .arg(dir)
        .env_remove("CLOUDCAFE_AUTH")
        .env_remove("CLOUDCAFE_AUTH_KEY_FILE")
        .env_remove("CLOUDCAFE_AUTH_KEY")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(pem) = key {
        command.env("CLOUDCAFE_AUTH_KEY", pem);
    }
    let child = command.spawn().unwrap();
    testkit::wait_until("the node answers", Duration::from_secs(30), || async {
        status(addr, "/health", None).await == Some(200)
    })
    .await;
    (child, addr)
}

/// The status of `GET path` on `addr`, with `token` as the bearer when given; None if it did not answer.
async fn status(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> Option<u16> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
    HttpConnection::new(addr).request("GET", path, &headers, b"").await.ok().map(|r| r.status)
}

/// A deployment gives every node the same key in `CLOUDCAFE_AUTH_KEY` (a Secrets Manager value, as
/// Terraform's `tls_private_key` writes it): tokens it signs are taken, others are not, the node
/// writes no key of its own, `token issue` signs with the same variable, and a value that is not a
/// key stops the node at start with a message naming the variable, never the value.
#[tokio::test]
async fn serve_takes_its_signing_key_from_the_environment() {
    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEv88+OH17YEONrF8JIRqxMAKCLhHA20k7DFSRI88+ZJ\n-----END PRIVATE KEY-----\n";
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_cloudcafe");
    let (mut child, addr) = serve_with_auth_defaults(dir.path(), Some(PEM)).await;
    let deployment_key = LocalKey::from_pem(PEM).unwrap();
    let minute = Duration::from_secs(60);
    let ours = deployment_key.issue(LOCAL_ISSUER, DEFAULT_AUDIENCE, "alice", Role::Customer, None, minute);
    let foreign = test_key().key.issue(LOCAL_ISSUER, DEFAULT_AUDIENCE, "alice", Role::Customer, None, minute);
    let issued = std::process::Command::new(bin)
        .args(["token", "issue", "--role", "customer", "--sub", "alice", "--data-dir"])
        .arg(dir.path())
        .env_remove("CLOUDCAFE_AUTH_KEY_FILE")
        .env("CLOUDCAFE_AUTH_KEY", PEM)
        .output()
        .unwrap();
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let issued = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let answers = [
        status(addr, "/api/loyalty/alice", Some(&ours)).await,
        status(addr, "/api/loyalty/alice", Some(&issued)).await,
        status(addr, "/api/loyalty/alice", Some(&foreign)).await,
    ];
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answers, [Some(200), Some(200), Some(401)]);
    assert!(!dir.path().join("auth").exists(), "the node wrote a key of its own");

    let refused = std::process::Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("CLOUDCAFE_AUTH")
        .env("CLOUDCAFE_AUTH_KEY", "s3cret-but-not-a-key")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("CLOUDCAFE_AUTH_KEY") && !stderr.contains("s3cret"), "{stderr}");
}
