use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::test;
use async_trait::async_trait;
use events::{AppendError, AppendRequest, Appended, Journal, RecordedEvent, Snapshot, StoreError};
use gateways::http::{ApiSettings, ApiState};
use gateways::node::{Node, NodeSettings};
use gateways::telemetry::metrics_handle;
use serde_json::{json, Value};

async fn node(dir: &tempfile::TempDir) -> Node {
    let mut settings = NodeSettings::embedded(dir.path());
    settings.seed_demo = true;
    settings.payment.decline_threshold = 1.0;
    Node::start(settings).await.unwrap()
}

async fn call(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
    req: test::TestRequest,
) -> (StatusCode, Value, actix_web::http::header::HeaderMap) {
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = test::read_body(res).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null), headers)
}

fn post(path: &str, body: Value) -> test::TestRequest {
    test::TestRequest::post().uri(path).set_json(body)
}

fn order_body(items: Value) -> Value {
    json!({ "customer_id": "alice", "store_id": "store-1", "items": items })
}

#[actix_web::test]
async fn an_order_is_acknowledged_after_commit_and_ends_paid() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;

    let (status, order, headers) =
        call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 2}])))).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["total_amount"], "9.00");
    let id = order["order_id"].as_str().unwrap().to_owned();
    assert_eq!(headers.get("location").unwrap(), &format!("/api/orders/{id}"));
    assert!(node.journal.head_position().await.unwrap() > 0);

    let mut status_now = String::new();
    for _ in 0..300 {
        let (s, o, _) = call(&app, test::TestRequest::get().uri(&format!("/api/orders/{id}"))).await;
        assert_eq!(s, StatusCode::OK);
        status_now = o["status"].as_str().unwrap().to_owned();
        if status_now == "paid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status_now, "paid");
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let (_, listed, _) = call(&app, test::TestRequest::get().uri("/api/customers/alice/orders")).await;
    assert_eq!(listed["orders"][0]["order_id"], id.as_str());
    let (_, stock, _) = call(&app, test::TestRequest::get().uri("/api/inventory/stores/store-1/items/latte")).await;
    assert_eq!(stock["available"], 998);
    let mut loyalty = Value::Null;
    for _ in 0..300 {
        loyalty = call(&app, test::TestRequest::get().uri("/api/loyalty/alice")).await.1;
        if loyalty["points"] == 9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(loyalty["points"], 9, "{loyalty}");
    let (_, payment, _) = call(&app, test::TestRequest::get().uri(&format!("/api/payments/{id}"))).await;
    assert_eq!(payment["status"], "captured");
    let (s, metrics, _) = {
        let res = test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
        (res.status(), String::from_utf8(test::read_body(res).await.to_vec()).unwrap(), ())
    };
    assert_eq!(s, StatusCode::OK);
    assert!(metrics.contains("commands_total"), "{metrics}");
    assert!(metrics.contains("journal_append_batch_events"), "{metrics}");
    assert!(metrics.contains("http_requests_total"), "{metrics}");
}

/// Polls `GET /api/orders/{id}` until it shows `status` (the storefront, or the actor before it).
async fn order_reaches(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
    id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (_, order, _) = call(app, test::TestRequest::get().uri(&format!("/api/orders/{id}"))).await;
        if order["status"] == status || std::time::Instant::now() > deadline {
            return order;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn store_staff_move_an_order_to_pickup_one_step_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let (status, order, _) =
        call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 1}])))).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["order_id"].as_str().unwrap().to_owned();
    let to = |status: &str| post(&format!("/api/orders/{id}/status"), json!({ "status": status }));

    // Not paid yet, or a step skipped: 409 naming where the order is, and nothing written.
    let order = order_reaches(&app, &id, "paid", Duration::from_secs(10)).await;
    assert_eq!(order["status"], "paid");
    let head = crate::quiet_head(node.journal.as_ref()).await;
    for skipped in ["ready", "completed"] {
        let (status, body, _) = call(&app, to(skipped)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{skipped}: {body}");
        assert_eq!(body["field"], "status");
        assert!(body["error"].as_str().unwrap().contains("order is paid"), "{body}");
    }
    // Not the body's shape: 400; not a step staff set: 422; each naming the field.
    for (body, field, expected) in [
        (json!({"status": "cancelled"}), "status", StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"status": "abandoned"}), "status", StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"status": 3}), "status", StatusCode::BAD_REQUEST),
        (json!({"status": "ready", "by": "sam"}), "by", StatusCode::BAD_REQUEST),
        (json!({}), "status", StatusCode::BAD_REQUEST),
    ] {
        let (status, answer, _) = call(&app, post(&format!("/api/orders/{id}/status"), body.clone())).await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    assert_eq!(node.journal.head_position().await.unwrap(), head, "refusals wrote nothing");

    for step in ["preparing", "ready"] {
        let (status, body, _) = call(&app, to(step)).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some(step)), "{body}");
        // The same step again is a retry: 200, nothing new.
        let head = crate::quiet_head(node.journal.as_ref()).await;
        let (status, _, _) = call(&app, to(step)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(node.journal.head_position().await.unwrap(), head);
    }
    let (status, body, _) = call(&app, to("preparing")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("order is ready"), "{body}");
    let (status, body, _) = call(&app, to("completed")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("completed")), "{body}");
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let (_, listed, _) = call(&app, test::TestRequest::get().uri("/api/customers/alice/orders")).await;
    assert_eq!((&listed["orders"][0]["order_id"], &listed["orders"][0]["status"]), (&json!(id), &json!("completed")));

    let ghost = uuid::Uuid::now_v7();
    let (status, body, _) = call(&app, post(&format!("/api/orders/{ghost}/status"), json!({"status": "ready"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// Polls `GET {path}` until `field` of its answer is `want`; answers the last body.
async fn reaches(
    app: &impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
    path: &str,
    field: &str,
    want: Value,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body, _) = call(app, test::TestRequest::get().uri(path)).await;
        if body[field] == want || std::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_customer_cancels_a_paid_order_and_gets_the_money_and_the_stock_back_until_it_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let latte = "/api/inventory/stores/store-1/items/latte";
    let (_, before, _) = call(&app, test::TestRequest::get().uri(latte)).await;
    let (status, order, _) =
        call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 2}])))).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["order_id"].as_str().unwrap().to_owned();
    assert_eq!(order_reaches(&app, &id, "paid", Duration::from_secs(10)).await["status"], "paid");
    assert_eq!(reaches(&app, "/api/loyalty/alice", "points", json!(9)).await["points"], 9);
    let cancel = |body: Value| post(&format!("/api/orders/{id}/cancel"), body);

    // Bad bodies name their field and write nothing.
    let head = crate::quiet_head(node.journal.as_ref()).await;
    for (body, field, expected) in [
        (json!({"reason": "x".repeat(201)}), "reason", StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"reason": "a\u{0}b"}), "reason", StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"reason": 3}), "reason", StatusCode::BAD_REQUEST),
        (json!({"refund": false}), "refund", StatusCode::BAD_REQUEST),
    ] {
        let (status, answer, _) = call(&app, cancel(body.clone())).await;
        assert_eq!((status, answer["field"].as_str()), (expected, Some(field)), "{body}: {answer}");
    }
    assert_eq!(node.journal.head_position().await.unwrap(), head, "refusals wrote nothing");

    let (status, body, _) = call(&app, cancel(json!({"reason": "changed my mind"}))).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{body}");
    let payment = reaches(&app, &format!("/api/payments/{id}"), "status", json!("refunded")).await;
    assert_eq!((&payment["status"], &payment["amount_cents"]), (&json!("refunded"), &json!(900)), "{payment}");
    assert_eq!(reaches(&app, "/api/loyalty/alice", "points", json!(0)).await["points"], 0, "the points went back");
    let stock = reaches(&app, latte, "available", before["available"].clone()).await;
    assert_eq!(stock["available"], before["available"], "the stock went back: {stock}");
    // Again: the same answer, nothing new.
    let head = crate::quiet_head(node.journal.as_ref()).await;
    let (status, body, _) = call(&app, cancel(json!({}))).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{body}");
    assert_eq!(node.journal.head_position().await.unwrap(), head);

    // Once the barista has started: 409 naming the status, and nothing changes.
    let (_, order, _) = call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 1}])))).await;
    let id = order["order_id"].as_str().unwrap().to_owned();
    assert_eq!(order_reaches(&app, &id, "paid", Duration::from_secs(10)).await["status"], "paid");
    let (status, _, _) = call(&app, post(&format!("/api/orders/{id}/status"), json!({"status": "preparing"}))).await;
    assert_eq!(status, StatusCode::OK);
    let head = crate::quiet_head(node.journal.as_ref()).await;
    let (status, body, _) = call(&app, post(&format!("/api/orders/{id}/cancel"), json!({}))).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("status")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("preparing"), "{body}");
    assert_eq!(node.journal.head_position().await.unwrap(), head);
    let ghost = uuid::Uuid::now_v7();
    let (status, _, _) = call(&app, post(&format!("/api/orders/{ghost}/cancel"), json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn a_customer_chooses_how_to_be_notified_and_a_bad_choice_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let path = "/api/customers/alice/preferences";
    let put = |body: Value| test::TestRequest::put().uri(path).set_json(body);
    let (status, body, _) = call(&app, test::TestRequest::get().uri(path)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"customer_id": "alice", "channel": "email", "address": null, "chosen": false}));

    let head = crate::quiet_head(node.journal.as_ref()).await;
    for (body, field, expected) in [
        (json!({"channel": "sms", "address": "ada@example.com"}), "address", StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"channel": "email", "address": "+15550100003"}), "address", StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"channel": "email", "address": "a\u{0}@example.com"}), "address", StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"channel": "pigeon", "address": "roof"}), "channel", StatusCode::BAD_REQUEST),
        (json!({"channel": "sms"}), "address", StatusCode::BAD_REQUEST),
        (json!({"channel": "sms", "address": "+15550100003", "cc": "x"}), "cc", StatusCode::BAD_REQUEST),
    ] {
        let (status, answer, _) = call(&app, put(body.clone())).await;
        assert_eq!((status, answer["field"].as_str()), (expected, Some(field)), "{body}: {answer}");
    }
    assert_eq!(node.journal.head_position().await.unwrap(), head, "refusals wrote nothing");

    let (status, body, headers) = call(&app, put(json!({"channel": "sms", "address": "+15550100003"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"customer_id": "alice", "channel": "sms", "address": "+15550100003", "chosen": true}));
    assert!(headers.contains_key("x-correlation-id"));
    let (_, read, _) = call(&app, test::TestRequest::get().uri(path)).await;
    assert_eq!(read, body);
    // The same choice again: the same answer, nothing written.
    let head = crate::quiet_head(node.journal.as_ref()).await;
    let (status, again, _) = call(&app, put(json!({"channel": "sms", "address": "+15550100003"}))).await;
    assert_eq!((status, &again), (StatusCode::OK, &body));
    assert_eq!(node.journal.head_position().await.unwrap(), head);
}

#[actix_web::test]
async fn a_ready_order_nobody_picks_up_is_abandoned_by_the_nodes_timer() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = NodeSettings::embedded(dir.path());
    settings.seed_demo = true;
    settings.payment.decline_threshold = 1.0;
    settings.pickup_window = Duration::from_millis(500);
    let node = Node::start(settings).await.unwrap();
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let (_, order, _) = call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 1}])))).await;
    let id = order["order_id"].as_str().unwrap().to_owned();
    assert_eq!(order_reaches(&app, &id, "paid", Duration::from_secs(10)).await["status"], "paid");
    for step in ["preparing", "ready"] {
        let (status, body, _) = call(&app, post(&format!("/api/orders/{id}/status"), json!({ "status": step }))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let order = order_reaches(&app, &id, "abandoned", Duration::from_secs(10)).await;
    assert_eq!(order["status"], "abandoned", "{order}");
    let (status, body, _) =
        call(&app, post(&format!("/api/orders/{id}/status"), json!({ "status": "completed" }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "an abandoned order is not picked up after all: {body}");
}

#[actix_web::test]
async fn an_idempotency_key_places_an_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let body = order_body(json!([{"item_id": "mocha", "quantity": 1}]));
    let keyed = |b: Value| post("/api/orders", b).insert_header(("Idempotency-Key", "retry-me-1"));
    let (s1, first, h1) = call(&app, keyed(body.clone())).await;
    let head = node.journal.head_position().await.unwrap();
    let (s2, second, h2) = call(&app, keyed(body.clone())).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(first["order_id"], second["order_id"]);
    assert_eq!(
        (h1.get("idempotent-replay").unwrap(), h2.get("idempotent-replay").unwrap()),
        (&"false".parse::<actix_web::http::header::HeaderValue>().unwrap(), &"true".parse().unwrap())
    );
    let (s3, conflict, _) = call(&app, keyed(order_body(json!([{"item_id": "mocha", "quantity": 2}])))).await;
    assert_eq!(s3, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["field"], "Idempotency-Key");
    // The replay and the conflict wrote nothing (the saga may have, for the first order).
    let orders =
        node.journal.read_all(0, 100_000).await.unwrap().into_iter().filter(|e| e.event_type == "OrderPlaced").count();
    assert_eq!(orders, 1);
    assert!(node.journal.head_position().await.unwrap() >= head);
}

#[actix_web::test]
async fn bad_input_gets_a_4xx_naming_the_problem_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let settings = ApiSettings { body_limit: 1024, ..ApiSettings::default() };
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &settings))).await;
    // Let the seeding's saga and projection settle so the head only moves if a bad request writes.
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let head = node.journal.head_position().await.unwrap();

    let raw = |body: &'static str| {
        test::TestRequest::post()
            .uri("/api/orders")
            .insert_header(("content-type", "application/json"))
            .set_payload(body)
    };
    let cases: Vec<(&str, test::TestRequest, StatusCode, Value)> = vec![
        ("malformed JSON", raw("{\"customer_id\": "), StatusCode::BAD_REQUEST, Value::Null),
        (
            "missing field",
            post("/api/orders", json!({"store_id": "store-1", "items": []})),
            StatusCode::BAD_REQUEST,
            json!("customer_id"),
        ),
        (
            "wrong type",
            post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": "two"}]))),
            StatusCode::BAD_REQUEST,
            json!("items[0].quantity"),
        ),
        (
            "unknown field",
            post("/api/orders", json!({"customer_id": "a", "store_id": "store-1", "items": [], "discount": 5})),
            StatusCode::BAD_REQUEST,
            Value::Null,
        ),
        ("no items", post("/api/orders", order_body(json!([]))), StatusCode::UNPROCESSABLE_ENTITY, json!("items")),
        (
            "zero quantity",
            post(
                "/api/orders",
                order_body(json!([{"item_id": "latte", "quantity": 1}, {"item_id": "mocha", "quantity": 0}])),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("items[1].quantity"),
        ),
        (
            "negative quantity",
            post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": -2}]))),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("items[0].quantity"),
        ),
        (
            "unknown menu item",
            post("/api/orders", order_body(json!([{"item_id": "unicorn", "quantity": 1}]))),
            StatusCode::NOT_FOUND,
            json!("items[0].item_id"),
        ),
        (
            "bad customer id",
            post(
                "/api/orders",
                json!({"customer_id": "a b/c", "store_id": "store-1", "items": [{"item_id": "latte", "quantity": 1}]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("customer_id"),
        ),
        (
            "oversized body",
            post("/api/orders", order_body(json!([{"item_id": "x".repeat(2000), "quantity": 1}]))),
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
        ),
        (
            "not JSON",
            test::TestRequest::post()
                .uri("/api/orders")
                .insert_header(("content-type", "text/plain"))
                .set_payload("hi"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Value::Null,
        ),
        (
            "restock of nothing",
            post("/api/inventory/restock", json!({"store_id": "store-1", "sku": "latte", "quantity": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("quantity"),
        ),
        (
            "restock of an unknown SKU",
            post("/api/inventory/restock", json!({"store_id": "store-1", "sku": "nope", "quantity": 3})),
            StatusCode::NOT_FOUND,
            json!("sku"),
        ),
        (
            "menu item without a price",
            post("/api/menu/items", json!({"item_id": "tea", "name": "Tea", "category": "tea", "price_cents": -1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("price_cents"),
        ),
        (
            "menu item with a bad id",
            post("/api/menu/items", json!({"item_id": "t e a", "name": "Tea", "category": "tea", "price_cents": 100})),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("item_id"),
        ),
        (
            "order id that is not a UUID",
            test::TestRequest::get().uri("/api/orders/42"),
            StatusCode::BAD_REQUEST,
            json!("order_id"),
        ),
        (
            "unknown order",
            test::TestRequest::get().uri("/api/orders/00000000-0000-0000-0000-000000000001"),
            StatusCode::NOT_FOUND,
            Value::Null,
        ),
        (
            "bad limit",
            test::TestRequest::get().uri("/api/customers/alice/orders?limit=0"),
            StatusCode::BAD_REQUEST,
            json!("limit"),
        ),
        ("unknown route", test::TestRequest::get().uri("/api/nothing"), StatusCode::NOT_FOUND, Value::Null),
        ("wrong method", test::TestRequest::delete().uri("/api/orders"), StatusCode::METHOD_NOT_ALLOWED, Value::Null),
    ];
    for (name, req, expected, field) in cases {
        let (status, body, _) = call(&app, req).await;
        assert_eq!(status, expected, "{name}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{name}: an error message in {body}");
        if !field.is_null() {
            assert_eq!(body["field"], field, "{name}: {body}");
        }
    }
    assert_eq!(node.journal.head_position().await.unwrap(), head, "no bad request wrote an event");
}

#[actix_web::test]
async fn the_menu_can_be_extended_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let item = json!({"item_id": "flat-white", "name": "Flat White", "category": "coffee", "price_cents": 465});
    let (s, _, _) = call(&app, post("/api/menu/items", item.clone())).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, _) = call(
        &app,
        post(
            "/api/menu/items",
            json!({"item_id": "flat-white", "name": "Flat White", "category": "coffee", "price_cents": 500}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "a second publish with other details is refused");
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let (_, menu, _) = call(&app, test::TestRequest::get().uri("/api/menu/items")).await;
    let ids: Vec<&str> = menu["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"flat-white") && ids.contains(&"latte"), "{ids:?}");
    let (s, _, _) = call(&app, post("/admin/stores", json!({"store_id": "store-9", "name": "Ninth"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, stock, _) =
        call(&app, post("/api/inventory/restock", json!({"store_id": "store-9", "sku": "flat-white", "quantity": 12})))
            .await;
    assert_eq!((s, stock["available"].as_u64()), (StatusCode::OK, Some(12)));
}

#[actix_web::test]
async fn a_menu_item_is_repriced_and_retired_and_the_storefront_follows() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let price = |cents: Value| post("/api/menu/items/latte/price", json!({ "price_cents": cents }));
    let head = node.journal.head_position().await.unwrap();
    // Refusals write nothing: an unknown item, a bad id, a price out of bounds, a mistyped body.
    let (s, body, _) = call(&app, post("/api/menu/items/ghost/price", json!({"price_cents": 100}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, body, _) = call(&app, post("/api/menu/items/a%00b/retire", json!({}))).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("item_id")), "{body}");
    let (s, body, _) = call(&app, price(json!(0))).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("price_cents")), "{body}");
    let (s, body, _) = call(&app, price(json!(100_001))).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("price_cents")), "{body}");
    let (s, body, _) = call(&app, price(json!("4.75"))).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("price_cents")), "{body}");
    assert_eq!(node.journal.head_position().await.unwrap(), head, "no refusal wrote anything");

    let (s, item, _) = call(&app, price(json!(475))).await;
    assert_eq!((s, item["price_cents"].as_i64()), (StatusCode::OK, Some(475)), "{item}");
    let (s, order, _) = call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 2}])))).await;
    assert_eq!((s, order["total_amount"].as_str()), (StatusCode::CREATED, Some("9.50")), "{order}");
    let (s, item, _) = call(&app, test::TestRequest::post().uri("/api/menu/items/latte/retire")).await;
    assert_eq!((s, item["retired"].as_bool()), (StatusCode::OK, Some(true)), "{item}");
    let (s, _, _) = call(&app, test::TestRequest::post().uri("/api/menu/items/latte/retire")).await;
    assert_eq!(s, StatusCode::OK, "retiring again changes nothing");
    let (s, body, _) = call(&app, price(json!(500))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "a retired item keeps its price: {body}");
    let (s, body, _) = call(&app, price(json!(0))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body, _) = call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 1}])))).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("items[0].item_id")), "{body}");

    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let (_, menu, _) = call(&app, test::TestRequest::get().uri("/api/menu/items")).await;
    let latte = menu["items"].as_array().unwrap().iter().find(|i| i["item_id"] == "latte").unwrap().clone();
    assert_eq!((latte["price_cents"].as_i64(), latte["retired"].as_bool()), (Some(475), Some(true)), "{latte}");
}

#[actix_web::test]
async fn the_menu_is_read_by_category_and_by_item_and_changed_with_put_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let get = |path: &str| test::TestRequest::get().uri(path);
    let ids = |menu: &Value| -> Vec<String> {
        menu["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap().to_owned()).collect()
    };

    let (s, bakery, _) = call(&app, get("/api/menu/items?category=bakery")).await;
    assert_eq!((s, ids(&bakery)), (StatusCode::OK, vec!["blueberry-muffin".to_owned(), "croissant".to_owned()]));
    let (_, coffee, _) = call(&app, get("/api/menu/items?category=coffee")).await;
    assert_eq!(ids(&coffee).len(), 5, "{coffee}");
    assert!(coffee["items"].as_array().unwrap().iter().all(|i| i["category"] == "coffee"), "{coffee}");
    let (s, none, _) = call(&app, get("/api/menu/items?category=juice")).await;
    assert_eq!((s, ids(&none).len()), (StatusCode::OK, 0), "an unknown category is an empty list");
    let head = node.journal.head_position().await.unwrap();
    let refused = StatusCode::UNPROCESSABLE_ENTITY;
    for (query, status, field) in [
        ("category=", refused, "category"),
        ("category=%20coffee", refused, "category"),
        ("category=co%00ffee", refused, "category"),
        ("category=coffee%0A", refused, "category"),
        (&*format!("category={}", "x".repeat(51)), refused, "category"),
        ("categry=coffee", StatusCode::BAD_REQUEST, "query"),
        ("category=coffee&category=tea", StatusCode::BAD_REQUEST, "query"),
    ] {
        let (s, body, _) = call(&app, get(&format!("/api/menu/items?{query}"))).await;
        assert_eq!((s, body["field"].as_str()), (status, Some(field)), "?{query}: {body}");
    }

    let (s, latte, _) = call(&app, get("/api/menu/items/latte")).await;
    assert_eq!(
        (s, latte["name"].as_str(), latte["price_cents"].as_i64()),
        (StatusCode::OK, Some("Caffè Latte"), Some(450))
    );
    let (s, body, _) = call(&app, get("/api/menu/items/ghost")).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::NOT_FOUND, Some("item_id")), "{body}");
    let (s, body, _) = call(&app, test::TestRequest::delete().uri("/api/menu/items/ghost")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let put = |cents: Value| {
        test::TestRequest::put().uri("/api/menu/items/latte/price").set_json(json!({ "price_cents": cents }))
    };
    let (s, body, _) = call(&app, put(json!(0))).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("price_cents")), "{body}");
    assert_eq!(node.journal.head_position().await.unwrap(), head, "no refusal wrote anything");

    // A published item is served at once, from its actor, before the storefront has it.
    let item = json!({"item_id": "oat-flat-white", "name": "Oat Flat White", "category": "coffee", "price_cents": 495});
    assert_eq!(call(&app, post("/api/menu/items", item)).await.0, StatusCode::CREATED);
    let (s, fresh, _) = call(&app, get("/api/menu/items/oat-flat-white")).await;
    assert_eq!((s, fresh["price_cents"].as_i64()), (StatusCode::OK, Some(495)), "{fresh}");

    let (s, item, _) = call(&app, put(json!(480))).await;
    assert_eq!((s, item["price_cents"].as_i64()), (StatusCode::OK, Some(480)), "{item}");
    let (s, item, _) = call(&app, test::TestRequest::delete().uri("/api/menu/items/oat-flat-white")).await;
    assert_eq!((s, item["retired"].as_bool()), (StatusCode::OK, Some(true)), "{item}");
    let (s, _, _) = call(&app, test::TestRequest::delete().uri("/api/menu/items/oat-flat-white")).await;
    assert_eq!(s, StatusCode::OK, "retiring again changes nothing");
    let body =
        json!({"customer_id": "alice", "store_id": "store-1", "items": [{"item_id": "oat-flat-white", "quantity": 1}]});
    let (s, body, _) = call(&app, post("/api/orders", body)).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("items[0].item_id")), "{body}");

    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let (_, latte, _) = call(&app, get("/api/menu/items/latte")).await;
    assert_eq!(latte["price_cents"].as_i64(), Some(480), "the read model follows the PUT: {latte}");
    let (_, coffee, _) = call(&app, get("/api/menu/items?category=coffee")).await;
    let oat = coffee["items"].as_array().unwrap().iter().find(|i| i["item_id"] == "oat-flat-white").cloned();
    assert_eq!(oat.map(|i| i["retired"].clone()), Some(json!(true)), "retired, still listed: {coffee}");
}

#[actix_web::test]
async fn a_stores_stock_is_listed_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let (s, _, _) = call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 3}])))).await;
    assert_eq!(s, StatusCode::CREATED);
    // Wait until the storefront has the order's reservation.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
        let (_, page, _) = call(&app, test::TestRequest::get().uri("/api/inventory/stores/store-1?limit=500")).await;
        let latte = page["items"].as_array().unwrap().iter().find(|i| i["sku"] == "latte").cloned().unwrap_or_default();
        // Reserved for the order until its preparation starts.
        if latte["available"] == 997 && latte["reserved"] == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the reservation never reached the store's stock: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut skus = Vec::new();
    let mut path = "/api/inventory/stores/store-1?limit=3".to_owned();
    loop {
        let (s, page, _) = call(&app, test::TestRequest::get().uri(&path)).await;
        assert_eq!((s, page["store_id"].as_str()), (StatusCode::OK, Some("store-1")), "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3, "{page}");
        skus.extend(items.iter().map(|i| i["sku"].as_str().unwrap().to_owned()));
        match page["next_after"].as_str() {
            Some(after) => path = format!("/api/inventory/stores/store-1?limit=3&after={after}"),
            None => break,
        }
    }
    let mut menu: Vec<String> = gateways::node::DEMO_MENU.iter().map(|m| m.0.to_owned()).collect();
    menu.sort();
    assert_eq!(skus, menu, "every SKU once, in order, across the pages");
    let (s, empty, _) = call(&app, test::TestRequest::get().uri("/api/inventory/stores/store-404")).await;
    assert_eq!((s, empty["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{empty}");
    // The saga may still be paying the order: the refusals below are alone to move the head after this.
    let head = crate::quiet_head(node.journal.as_ref()).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("after=a%00b", "after"),
        ("page=2", "query"),
    ] {
        let (s, body, _) =
            call(&app, test::TestRequest::get().uri(&format!("/api/inventory/stores/store-1?{query}"))).await;
        assert_eq!((s, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "?{query}: {body}");
    }
    assert_eq!(node.journal.head_position().await.unwrap(), head);
}

#[actix_web::test]
async fn a_saturated_node_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let settings = ApiSettings { max_in_flight: 0, ..ApiSettings::default() };
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &settings))).await;
    let (s, body, headers) =
        call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 1}])))).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers.get("retry-after").unwrap(), "1");
}

/// A journal whose database is gone: every call fails as a dropped connection would.
struct Unreachable;

#[async_trait]
impl Journal for Unreachable {
    async fn append(&self, _: AppendRequest) -> Result<Appended, AppendError> {
        Err(StoreError::unavailable("connection refused").into())
    }
    async fn read_stream(&self, _: &str, _: u64, _: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
    async fn read_all(&self, _: u64, _: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
    async fn head_position(&self) -> Result<u64, StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
    async fn save_snapshot(&self, _: Snapshot) -> Result<(), StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
    async fn load_snapshot(&self, _: &str) -> Result<Option<Snapshot>, StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
    async fn load_checkpoint(&self, _: &str) -> Result<u64, StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
    async fn save_checkpoint(&self, _: &str, _: u64) -> Result<(), StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::unavailable("connection refused"))
    }
    fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
}

#[actix_web::test]
async fn an_unreachable_journal_gives_503_not_a_hang_and_not_internals() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let cafe = Arc::new(actors::cafe::Cafe::new(
        Arc::new(Unreachable),
        actors::host::HostOptions::default(),
        actors::cafe::PaymentPolicy::default(),
        actors::host::start_arbiters(1),
    ));
    let state = ApiState::from_parts(cafe, node.storefront.clone(), metrics_handle(), &ApiSettings::default());
    let app = test::init_service(gateways::app(state)).await;
    let started = std::time::Instant::now();
    let (s, body, headers) =
        call(&app, post("/api/orders", order_body(json!([{"item_id": "latte", "quantity": 1}])))).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.get("retry-after").is_some());
    assert!(!body.to_string().contains("refused"), "internals stay in the log: {body}");
    let (s, _, _) = call(&app, test::TestRequest::get().uri("/ready")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, _, _) = call(&app, test::TestRequest::get().uri("/health")).await;
    assert_eq!(s, StatusCode::OK, "liveness has no dependencies");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[actix_web::test]
async fn projections_report_their_lag_and_analytics_needs_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let (s, body, _) = call(&app, test::TestRequest::get().uri("/admin/projections")).await;
    assert_eq!(s, StatusCode::OK);
    let storefront = &body["projections"][0];
    assert_eq!(storefront["name"], "storefront");
    assert_eq!(storefront["position"], storefront["head"]);
    assert_eq!(storefront["events_behind"], 0);
    let (s, body, _) = call(&app, test::TestRequest::get().uri("/api/analytics/stores/store-1/minutes")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("analytics"));
}

#[actix_web::test]
async fn analytics_serves_minute_windows_from_the_redshift_model() {
    let Some(pg) = testkit::servers::postgres_url() else { return };
    let Some(redshift) = testkit::servers::redshift_url().await else { return };
    let mut settings = NodeSettings::embedded("unused");
    settings.storage = gateways::node::Storage::Postgres {
        url: pg,
        schema: Some(testkit::servers::fresh_schema("api")),
        security: Default::default(),
    };
    settings.analytics =
        Some(events::postgres::PgOptions::new(redshift).with_schema(testkit::servers::fresh_schema("api_rs")));
    settings.seed_demo = true;
    settings.payment.decline_threshold = 1.0;
    let node = Node::start(settings).await.unwrap();
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    for customer in ["ann", "ben", "ann"] {
        let body =
            json!({"customer_id": customer, "store_id": "store-2", "items": [{"item_id": "latte", "quantity": 1}]});
        let (s, _, _) = call(&app, post("/api/orders", body)).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let mut windows = Value::Null;
    for _ in 0..300 {
        let (s, body, _) = call(&app, test::TestRequest::get().uri("/api/analytics/stores/store-2/minutes")).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let count: i64 = body["minutes"].as_array().unwrap().iter().map(|m| m["order_count"].as_i64().unwrap()).sum();
        windows = body;
        if count == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let minutes = windows["minutes"].as_array().unwrap();
    let total: i64 = minutes.iter().map(|m| m["revenue_cents"].as_i64().unwrap()).sum();
    assert_eq!(total, 3 * 450, "{windows}");
    assert!(minutes.iter().all(|m| m["unique_customers"].as_i64().unwrap() <= 2));
    let (s, body, _) =
        call(&app, test::TestRequest::get().uri("/api/analytics/stores/store-2/minutes?from=yesterday")).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from")));
    let (s, body, _) = call(
        &app,
        test::TestRequest::get()
            .uri("/api/analytics/stores/store-2/minutes?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from")));
}

#[actix_web::test]
async fn with_a_redis_cache_reads_stay_fresh() {
    let Some(redis) = testkit::servers::redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = NodeSettings::embedded(dir.path());
    settings.seed_demo = true;
    let namespace = format!("api:{}", uuid::Uuid::new_v4().simple());
    settings.cache = Some((redis, projections::read_models::cache::CacheSettings { namespace, ..Default::default() }));
    let node = Node::start(settings).await.unwrap();
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let count = |v: &Value| v["items"].as_array().unwrap().len();
    let (_, before, _) = call(&app, test::TestRequest::get().uri("/api/menu/items")).await;
    let (_, cached, _) = call(&app, test::TestRequest::get().uri("/api/menu/items")).await;
    assert_eq!(count(&before), count(&cached));
    let item = json!({"item_id": "flat-white", "name": "Flat White", "category": "coffee", "price_cents": 465});
    assert_eq!(call(&app, post("/api/menu/items", item)).await.0, StatusCode::CREATED);
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let (_, after, _) = call(&app, test::TestRequest::get().uri("/api/menu/items")).await;
    assert_eq!(count(&after), count(&before) + 1, "the cached menu was invalidated by MenuItemPublished");
}

/// A request with a raw body and content type.
fn raw_post(path: &str, content_type: Option<&str>, body: &'static str) -> test::TestRequest {
    let req = test::TestRequest::post().uri(path).set_payload(body);
    match content_type {
        Some(ct) => req.insert_header(("content-type", ct)),
        None => req,
    }
}

#[actix_web::test]
async fn only_strict_json_is_accepted_and_nothing_malformed_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    let head = node.journal.head_position().await.unwrap();
    let json = Some("application/json");

    let cases: Vec<(&str, test::TestRequest, StatusCode, Value)> = vec![
        (
            "trailing garbage",
            raw_post(
                "/api/orders",
                json,
                r#"{"customer_id":"alice","store_id":"store-1","items":[{"item_id":"latte","quantity":1}]} garbage"#,
            ),
            StatusCode::BAD_REQUEST,
            Value::Null,
        ),
        (
            "two objects",
            raw_post(
                "/api/orders",
                json,
                r#"{"customer_id":"alice","store_id":"store-1","items":[{"item_id":"latte","quantity":1}]}{"customer_id":"bob","store_id":"store-1","items":[{"item_id":"latte","quantity":1}]}"#,
            ),
            StatusCode::BAD_REQUEST,
            Value::Null,
        ),
        (
            "an order as a positional array",
            raw_post("/api/orders", json, r#"["alice","store-1",[{"item_id":"latte","quantity":1}]]"#),
            StatusCode::BAD_REQUEST,
            Value::Null,
        ),
        (
            "an order line as a positional array",
            raw_post("/api/orders", json, r#"{"customer_id":"alice","store_id":"store-1","items":[["latte",1]]}"#),
            StatusCode::BAD_REQUEST,
            json!("items[0]"),
        ),
        (
            "a restock as a positional array",
            raw_post("/api/inventory/restock", json, r#"["store-1","latte",5]"#),
            StatusCode::BAD_REQUEST,
            Value::Null,
        ),
        (
            "a menu item as a positional array",
            raw_post("/api/menu/items", json, r#"["tea","Tea","tea",100]"#),
            StatusCode::BAD_REQUEST,
            Value::Null,
        ),
        (
            "a nutrition as a positional array",
            raw_post(
                "/api/menu/items",
                json,
                r#"{"item_id":"tea","name":"Tea","category":"tea","price_cents":100,"nutrition":[1,2,3]}"#,
            ),
            StatusCode::BAD_REQUEST,
            json!("nutrition"),
        ),
        (
            "a repeated key",
            raw_post(
                "/api/orders",
                json,
                r#"{"customer_id":"alice","customer_id":"bob","store_id":"store-1","items":[{"item_id":"latte","quantity":1}]}"#,
            ),
            StatusCode::BAD_REQUEST,
            json!("customer_id"),
        ),
        (
            "a repeated key in a line",
            raw_post(
                "/api/orders",
                json,
                r#"{"customer_id":"alice","store_id":"store-1","items":[{"item_id":"latte","quantity":1,"quantity":9}]}"#,
            ),
            StatusCode::BAD_REQUEST,
            json!("items[0].quantity"),
        ),
        (
            "a repeated key in a restock",
            raw_post(
                "/api/inventory/restock",
                json,
                r#"{"store_id":"store-1","sku":"latte","quantity":1,"quantity":1}"#,
            ),
            StatusCode::BAD_REQUEST,
            json!("quantity"),
        ),
        (
            "application/jsonp",
            raw_post("/api/orders", Some("application/jsonp"), order_text()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!("Content-Type"),
        ),
        (
            "no content type",
            raw_post("/api/inventory/restock", None, r#"{"store_id":"store-1","sku":"latte","quantity":1}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!("Content-Type"),
        ),
        (
            "a JSON-like content type",
            raw_post(
                "/api/menu/items",
                Some("text/json"),
                r#"{"item_id":"tea","name":"Tea","category":"tea","price_cents":100}"#,
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!("Content-Type"),
        ),
    ];
    for (name, req, expected, field) in cases {
        let (status, body, _) = call(&app, req).await;
        assert_eq!(status, expected, "{name}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{name}: an error message in {body}");
        assert_eq!(body["field"], field, "{name}: {body}");
    }
    assert_eq!(node.journal.head_position().await.unwrap(), head, "no malformed request wrote an event");

    // What strict JSON still accepts: `+json` types, parameters, any case.
    for ct in ["application/json; charset=utf-8", "Application/JSON", "application/vnd.cloudcafe+json"] {
        let (status, body, _) = call(&app, raw_post("/api/orders", Some(ct), order_text())).await;
        assert_eq!(status, StatusCode::CREATED, "{ct}: {body}");
    }
}

fn order_text() -> &'static str {
    r#"{"customer_id":"alice","store_id":"store-1","items":[{"item_id":"latte","quantity":1}]}"#
}

/// Every route whose path carries a customer id, a store id, a SKU or an order id, with `bad` in it.
fn id_routes(bad: &str) -> Vec<(String, &'static str)> {
    vec![
        (format!("/api/customers/{bad}/orders"), "customer_id"),
        (format!("/api/loyalty/{bad}"), "customer_id"),
        (format!("/api/inventory/stores/{bad}/items/latte"), "store_id"),
        (format!("/api/inventory/stores/{bad}"), "store_id"),
        (format!("/api/menu/items/{bad}"), "item_id"),
        (format!("/api/inventory/stores/store-1/items/{bad}"), "sku"),
        (format!("/api/analytics/stores/{bad}/minutes"), "store_id"),
        (format!("/api/orders/{bad}"), "order_id"),
        (format!("/api/payments/{bad}"), "order_id"),
    ]
}

/// Ids a client can put in a path that no store may see: NUL, control characters, over-long.
fn hostile_ids() -> Vec<String> {
    vec!["a%00b".into(), "%1b%5b31m".into(), "a%0Ab".into(), "a%7Fb".into(), "x".repeat(10_000)]
}

async fn ids_are_checked_before_any_store(node: &Node) {
    let app = test::init_service(gateways::app(ApiState::new(node, metrics_handle(), &ApiSettings::default()))).await;
    let head = node.journal.head_position().await.unwrap();
    for bad in hostile_ids() {
        for (path, field) in id_routes(&bad) {
            let (status, body, _) = call(&app, test::TestRequest::get().uri(&path)).await;
            let shown = &path[..path.len().min(80)];
            assert_eq!(status, StatusCode::BAD_REQUEST, "{shown}: {body}");
            assert_eq!(body["field"], field, "{shown}: {body}");
        }
    }
    assert_eq!(node.journal.head_position().await.unwrap(), head, "no id check wrote an event");
}

#[actix_web::test]
async fn ids_in_paths_are_checked_before_they_reach_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(5)).await);
    ids_are_checked_before_any_store(&node).await;
}

#[actix_web::test]
async fn on_postgres_a_nul_in_an_id_is_a_400_not_an_outage() {
    let Some(pg) = testkit::servers::postgres_url() else { return };
    let mut settings = NodeSettings::embedded("unused");
    settings.storage = gateways::node::Storage::Postgres {
        url: pg,
        schema: Some(testkit::servers::fresh_schema("api_ids")),
        security: Default::default(),
    };
    settings.seed_demo = true;
    let node = Node::start(settings).await.unwrap();
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(10)).await);
    ids_are_checked_before_any_store(&node).await;
    // And a well-formed id still reads (the store answers, nothing is unavailable).
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    let (status, body, _) = call(&app, test::TestRequest::get().uri("/api/customers/nobody/orders")).await;
    assert_eq!((status, body["orders"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{body}");
}
