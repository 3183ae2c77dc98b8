//! The domain's limits and stores over HTTP, on the embedded journal and on PostgreSQL: what no read
//! model could hold is refused with a 4xx naming the field and writes nothing, and orders and
//! restocks are taken only for an open store.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test;
use gateways::http::{ApiSettings, ApiState};
use gateways::node::{Node, NodeSettings, Storage};
use gateways::telemetry::metrics_handle;
use serde_json::{json, Value};

async fn call(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
    req: test::TestRequest,
) -> (StatusCode, Value) {
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let body = test::read_body(res).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn post(path: &str, body: Value) -> test::TestRequest {
    test::TestRequest::post().uri(path).set_json(body)
}

fn get(path: &str) -> test::TestRequest {
    test::TestRequest::get().uri(path)
}

fn menu_item(item_id: &str, name: &str, price_cents: i64) -> Value {
    json!({"item_id": item_id, "name": name, "category": "coffee", "price_cents": price_cents})
}

fn order(customer: &str, store: &str, items: Value) -> Value {
    json!({"customer_id": customer, "store_id": store, "items": items})
}

async fn embedded_node(dir: &tempfile::TempDir) -> Node {
    let mut settings = NodeSettings::embedded(dir.path());
    settings.seed_demo = true;
    settings.payment.decline_threshold = 1.0;
    Node::start(settings).await.unwrap()
}

/// A node on a fresh PostgreSQL schema (journal and storefront), with the Redshift-SQL analytics
/// model on a schema of its own: the read models whose columns set the limits.
async fn postgres_node() -> Option<Node> {
    let pg = testkit::servers::postgres_url()?;
    let redshift = testkit::servers::redshift_url().await?;
    let mut settings = NodeSettings::embedded("unused");
    settings.storage = Storage::Postgres {
        url: pg,
        schema: Some(testkit::servers::fresh_schema("limits")),
        security: Default::default(),
    };
    settings.analytics =
        Some(events::postgres::PgOptions::new(redshift).with_schema(testkit::servers::fresh_schema("limits_rs")));
    settings.seed_demo = true;
    settings.payment.decline_threshold = 1.0;
    Some(Node::start(settings).await.unwrap())
}

/// Waits until every projection of the node has applied the whole journal.
async fn projections_caught_up(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        let (status, body) = call(app, get("/admin/projections")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let projections = body["projections"].as_array().unwrap();
        if !projections.is_empty() && projections.iter().all(|p| p["events_behind"] == 0) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the projections never caught up: {last}");
}

/// The issue's poison inputs, and the rest of the limits, against one node: each is a 4xx naming
/// its field, nothing is written, and the read models keep up with the orders after them.
async fn poison_is_refused_and_the_read_models_keep_up(node: &Node) {
    let app = test::init_service(gateways::app(ApiState::new(node, metrics_handle(), &ApiSettings::default()))).await;
    // What the cases need, written before the head is taken: the dearest item a menu may hold, and a closed store.
    let (s, body) = call(&app, post("/api/menu/items", menu_item("gold-latte", "Gold Latte", 100_000))).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = call(&app, post("/admin/stores/store-3/close", json!({"reason": "renovation"}))).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("closed")), "{body}");
    projections_caught_up(&app).await;
    let head = node.journal.head_position().await.unwrap();

    let gold = |quantity: i64, lines: usize| json!(vec![json!({"item_id": "gold-latte", "quantity": quantity}); lines]);
    let cases: Vec<(&str, test::TestRequest, &str)> = vec![
        ("a name with NUL", post("/api/menu/items", menu_item("nul", "Lat\u{0}te", 450)), "name"),
        ("a name with a bell", post("/api/menu/items", menu_item("bell", "Latte\u{7}", 450)), "name"),
        ("a 10 KB name", post("/api/menu/items", menu_item("long", &"x".repeat(10 * 1024), 450)), "name"),
        (
            "a category with an escape",
            post(
                "/api/menu/items",
                json!({"item_id": "esc", "name": "Esc", "category": "co\u{1b}ffee", "price_cents": 450}),
            ),
            "category",
        ),
        (
            "calories past PostgreSQL's int",
            post(
                "/api/menu/items",
                json!({"item_id": "cal", "name": "Cal", "category": "c", "price_cents": 450,
                       "nutrition": {"calories": 4_000_000_000u32}}),
            ),
            "nutrition.calories",
        ),
        ("a price over the limit", post("/api/menu/items", menu_item("dear", "Dear", 100_001)), "price_cents"),
        (
            "101 lines × 1,000 units at 100,000 cents",
            post("/api/orders", order("mallory", "store-1", gold(1000, 101))),
            "items",
        ),
        ("a total over the cap", post("/api/orders", order("mallory", "store-1", gold(11, 1))), "items"),
        (
            "a quantity over the limit",
            post("/api/orders", order("mallory", "store-1", gold(1001, 1))),
            "items[0].quantity",
        ),
        (
            "an order for an unknown store",
            post("/api/orders", order("mallory", "store-404", json!([{"item_id": "latte", "quantity": 1}]))),
            "store_id",
        ),
        (
            "an order for a closed store",
            post("/api/orders", order("mallory", "store-3", json!([{"item_id": "latte", "quantity": 1}]))),
            "store_id",
        ),
        (
            "a restock of an unknown store",
            post("/api/inventory/restock", json!({"store_id": "store-404", "sku": "latte", "quantity": 5})),
            "store_id",
        ),
        (
            "a restock of a closed store",
            post("/api/inventory/restock", json!({"store_id": "store-3", "sku": "latte", "quantity": 5})),
            "store_id",
        ),
        ("a store named with NUL", post("/admin/stores", json!({"store_id": "store-nul", "name": "Nul\u{0}"})), "name"),
    ];
    for (name, req, field) in cases {
        let (status, body) = call(&app, req).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(body["field"], field, "{name}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{name}: {body}");
    }
    assert_eq!(node.journal.head_position().await.unwrap(), head, "no refused request wrote an event");

    // Everything within the limits is still taken, and reaches the read models.
    let (s, body) = call(&app, post("/api/orders", order("ok-customer", "store-1", gold(10, 1)))).await;
    assert_eq!((s, body["total_amount"].as_str()), (StatusCode::CREATED, Some("10000.00")), "{body}");
    let id = body["order_id"].as_str().unwrap().to_owned();
    projections_caught_up(&app).await;
    let (s, listed) = call(&app, get("/api/customers/ok-customer/orders")).await;
    assert_eq!((s, listed["orders"][0]["order_id"].as_str()), (StatusCode::OK, Some(id.as_str())), "{listed}");
}

#[actix_web::test]
async fn poison_inputs_are_refused_on_the_embedded_journal() {
    let dir = tempfile::tempdir().unwrap();
    let node = embedded_node(&dir).await;
    poison_is_refused_and_the_read_models_keep_up(&node).await;
}

#[actix_web::test]
async fn poison_inputs_are_refused_on_postgresql() {
    let Some(node) = postgres_node().await else { return };
    poison_is_refused_and_the_read_models_keep_up(&node).await;
}

#[actix_web::test]
async fn stores_are_opened_closed_and_reopened_by_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let node = embedded_node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let (s, body) = call(&app, get("/api/stores/store-1")).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("open")), "the demo stores are open: {body}");

    let open = || post("/admin/stores", json!({"store_id": "store-42", "name": "Harbour"}));
    let res = test::call_service(&app, open().to_request()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers().get("location").unwrap(), "/api/stores/store-42");
    let head = node.journal.head_position().await.unwrap();
    let (s, body) = call(&app, open()).await;
    assert_eq!((s, body["name"].as_str()), (StatusCode::OK, Some("Harbour")), "opening again is idempotent: {body}");
    assert_eq!(node.journal.head_position().await.unwrap(), head);
    let (s, body) = call(&app, post("/admin/stores", json!({"store_id": "store-42", "name": "Quay"}))).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("name")), "{body}");
    let cases: Vec<(&str, test::TestRequest, StatusCode, &str)> = vec![
        ("an unknown store", get("/api/stores/store-404"), StatusCode::NOT_FOUND, "store_id"),
        ("a store id that cannot be one", get("/api/stores/a%20b"), StatusCode::BAD_REQUEST, "store_id"),
        (
            "closing an unknown store",
            post("/admin/stores/store-404/close", json!({"reason": "r"})),
            StatusCode::NOT_FOUND,
            "store_id",
        ),
        ("closing without a reason", post("/admin/stores/store-1/close", json!({})), StatusCode::BAD_REQUEST, "reason"),
        (
            "opening a store with a bad id",
            post("/admin/stores", json!({"store_id": "a/b", "name": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "store_id",
        ),
        (
            "opening a store with a 10 KB name",
            post("/admin/stores", json!({"store_id": "store-big", "name": "x".repeat(10 * 1024)})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
    ];
    for (name, req, expected, field) in cases {
        let (status, body) = call(&app, req).await;
        assert_eq!((status, body["field"].as_str()), (expected, Some(field)), "{name}: {body}");
    }
    assert_eq!(node.journal.head_position().await.unwrap(), head, "no refused request wrote an event");

    let latte = json!([{"item_id": "latte", "quantity": 1}]);
    let restock = json!({"store_id": "store-42", "sku": "latte", "quantity": 5});
    assert_eq!(call(&app, post("/api/inventory/restock", restock.clone())).await.0, StatusCode::OK);
    assert_eq!(call(&app, post("/api/orders", order("ann", "store-42", latte.clone()))).await.0, StatusCode::CREATED);

    let close = || post("/admin/stores/store-42/close", json!({"reason": "flooded"}));
    let (s, body) = call(&app, close()).await;
    assert_eq!(
        (s, body["status"].as_str(), body["close_reason"].as_str()),
        (StatusCode::OK, Some("closed"), Some("flooded"))
    );
    assert_eq!(call(&app, close()).await.0, StatusCode::OK, "closing again is idempotent");
    let (s, body) = call(&app, post("/api/orders", order("ann", "store-42", latte.clone()))).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("store_id")), "{body}");
    let (s, body) = call(&app, get("/api/stores/store-42")).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("closed")), "{body}");

    let (s, _) = call(&app, open()).await;
    assert_eq!(s, StatusCode::CREATED, "a closed store reopens");
    assert_eq!(call(&app, post("/api/orders", order("ann", "store-42", latte))).await.0, StatusCode::CREATED);
}
