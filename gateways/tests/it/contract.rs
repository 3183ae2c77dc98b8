//! The API keeps the contract it publishes: `schemathesis` reads `GET /openapi.json` from the real
//! `cloudcafe serve` binary (embedded journal, demo menu seeded) and fuzzes every operation with
//! what the document allows and what it forbids. Any 5xx, any status, header, content type or body
//! the document does not declare, any schema-valid request refused as malformed or schema-invalid one
//! accepted, fails the test with schemathesis' report.

use std::process::Command;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::test as web_test;
use chaos::process::{free_loopback_addr, Node};
use gateways::http::{ApiSettings, ApiState};
use gateways::telemetry::metrics_handle;
use serde_json::{json, Value};

use crate::security::{admin_bearer, key_file};

/// Generated cases per operation in each phase (about 200 per operation in all, 2,500 requests,
/// 75 s against a debug build); the seed makes a failure reproducible.
const MAX_EXAMPLES: &str = "250";
const SEED: &str = "20261201";

#[test]
fn a_live_node_answers_only_what_its_openapi_document_declares() {
    let Some(schemathesis) = testkit::python::schemathesis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let addr = free_loopback_addr();
    let data_dir = dir.path().display().to_string();
    let args = [
        "serve",
        "--listen",
        &addr.to_string(),
        "--workers",
        "2",
        "--data-dir",
        &data_dir,
        "--auth-key-file",
        key_file(),
    ]
    .map(String::from)
    .to_vec();
    let mut node = Node::new(env!("CARGO_BIN_EXE_cloudcafe"), args, addr);
    node.start(Duration::from_secs(60)).expect("the node starts");

    let config = testkit::repo_root().join("deploy/local/schemathesis.toml");
    let report_dir = dir.path().join("schemathesis-report");
    let started = Instant::now();
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .args(["run", &format!("http://{addr}/openapi.json")])
        .args(["--checks", "all"])
        // On every request: the `/admin/` operations need it (their `security` names the bearer scheme),
        // and the `ignored_auth` check of `all` sends them without it too, expecting 401.
        .args(["--header", &format!("Authorization: {}", admin_bearer())])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        // One worker: hypothesis on CPython 3.11 can fail inside `ast.parse` when two threads
        // describe strategies at once ("AST constructor recursion depth mismatch"), which is no finding.
        .args(["--workers", "1", "--request-timeout", "10"])
        .arg("--report-dir")
        .arg(&report_dir)
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis");
    let report = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("schemathesis ran for {:.0?}", started.elapsed());
    node.kill().expect("stop the node");
    assert!(out.status.success(), "schemathesis found the API breaking its own contract:\n{report}");
    // A run that tested nothing would also exit 0.
    assert!(report.contains("passed") && !report.contains("No operations"), "schemathesis tested nothing:\n{report}");
    eprintln!("{report}");
}

/// What schemathesis found, each kept as a plain test: the answers the document promises.
#[actix_web::test]
async fn the_answers_schemathesis_found_wrong_now_match_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = gateways::node::NodeSettings::embedded(dir.path());
    settings.seed_demo = true;
    let node = gateways::node::Node::start(settings).await.unwrap();
    let app =
        web_test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let call = |req: web_test::TestRequest| {
        let app = &app;
        async move {
            let res = web_test::call_service(app, req.to_request()).await;
            let (status, headers) = (res.status(), res.headers().clone());
            let body: Value = serde_json::from_slice(&web_test::read_body(res).await).unwrap_or(Value::Null);
            (status, body, headers)
        }
    };

    // The document is served, and it is OpenAPI 3.1.
    let (status, doc, _) = call(web_test::TestRequest::get().uri("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");

    // A method a path does not serve: 405 with `Allow` (RFC 9110), and the JSON error body.
    let (status, body, headers) = call(web_test::TestRequest::delete().uri("/api/menu/items")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers.get("allow").unwrap(), "GET, POST");
    assert_eq!(body["error"], "method not allowed");

    // JSON Schema's `integer` includes `2.0`: the document says integer, so the node reads it as 2.
    let order =
        json!({"customer_id": "alice", "store_id": "store-1", "items": [{"item_id": "latte", "quantity": 2.0}]});
    let (status, body, _) = call(web_test::TestRequest::post().uri("/api/orders").set_json(order.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["lines"][0]["quantity"], 2);
    let half = json!({"customer_id": "alice", "store_id": "store-1", "items": [{"item_id": "latte", "quantity": 2.5}]});
    let (status, body, _) = call(web_test::TestRequest::post().uri("/api/orders").set_json(half)).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("items[0].quantity")));

    // An `Idempotency-Key` is visible ASCII: a tab in it is refused, as the document says.
    let tabbed =
        web_test::TestRequest::post().uri("/api/orders").set_json(order).insert_header(("Idempotency-Key", "a\tb"));
    let (status, body, _) = call(tabbed).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("Idempotency-Key")), "{body}");

    // A customer id that no customer can have is a bad request, not an empty list.
    let (status, body, _) = call(web_test::TestRequest::get().uri("/api/customers/a%20b/orders")).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("customer_id")), "{body}");
    let (status, _, _) = call(web_test::TestRequest::get().uri("/api/customers/alice/orders")).await;
    assert_eq!(status, StatusCode::OK);
}
