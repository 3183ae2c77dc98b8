//! A node whose every store is reached over TLS with a CA made at test time: the journal and the
//! storefront (PostgreSQL, verify-full, a password given apart from the URL), the analytics model
//! (a second PostgreSQL standing in for Redshift) and the Redis cache (`rediss://`).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test;
use events::postgres::{PgOptions, PgSecurity, PgTls};
use events::secret::Password;
use events::tls::SslMode;
use gateways::http::{ApiSettings, ApiState};
use gateways::node::{Node, NodeSettings, Storage};
use gateways::telemetry::metrics_handle;
use projections::read_models::cache::CacheSettings;
use serde_json::{json, Value};
use testkit::tls::{PrivatePostgres, TestCa, TlsRedis, CERT_HOST};

const PASSWORD: &str = "not-in-any-url";

fn verified(ca: &TestCa, password: Option<&str>) -> PgSecurity {
    PgSecurity {
        tls: PgTls { mode: Some(SslMode::VerifyFull), ca_file: Some(ca.ca_file.clone()) },
        password: password.map(Password::new),
        password_source: None,
    }
}

#[actix_web::test]
async fn a_node_runs_with_every_store_over_verified_tls() {
    let Some(ca) = TestCa::generate() else { return };
    let Some(journal) = PrivatePostgres::start_tls_with_password(&ca, PASSWORD) else { return };
    let Some(redshift) = PrivatePostgres::start_tls(&ca) else { return };
    let Some(redis) = TlsRedis::start(&ca) else { return };

    // A wrong password is refused, and the refusal does not show the password.
    let mut wrong = NodeSettings::embedded("unused");
    wrong.storage = Storage::Postgres {
        url: journal.url_as(CERT_HOST),
        schema: Some("cloudcafe".into()),
        security: verified(&ca, Some("wrong-password")),
    };
    let Err(e) = Node::start(wrong).await else { panic!("a wrong password was taken") };
    let text = events::error_chain(&e);
    assert!(text.contains("password authentication failed") && !text.contains("wrong-password"), "{text}");

    let mut settings = NodeSettings::embedded("unused");
    settings.storage = Storage::Postgres {
        url: journal.url_as(CERT_HOST),
        schema: Some("cloudcafe".into()),
        security: verified(&ca, Some(PASSWORD)),
    };
    settings.analytics =
        Some(PgOptions::new(redshift.url_as(CERT_HOST)).with_schema("analytics").with_security(verified(&ca, None)));
    let cache = CacheSettings {
        ca_file: Some(ca.ca_file.clone()),
        timeout: Duration::from_secs(2),
        ..CacheSettings::default()
    };
    settings.cache = Some((redis.url(), cache));
    settings.seed_demo = true;
    settings.payment.decline_threshold = 1.0;
    let node = Node::start(settings).await.unwrap();
    let app = test::init_service(gateways::app(ApiState::new(&node, metrics_handle(), &ApiSettings::default()))).await;
    assert!(gateways::node::storefront_caught_up(&node, Duration::from_secs(10)).await);

    let order = json!({"customer_id": "ann", "store_id": "store-1", "items": [{"item_id": "latte", "quantity": 1}]});
    let response =
        test::call_service(&app, test::TestRequest::post().uri("/api/orders").set_json(order).to_request()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let menu = test::call_service(&app, test::TestRequest::get().uri("/api/menu/items").to_request()).await;
    assert_eq!(menu.status(), StatusCode::OK);
    let menu: Value = test::read_body_json(menu).await;
    assert!(!menu["items"].as_array().unwrap().is_empty());

    let mut orders = 0;
    for _ in 0..300 {
        let response = test::call_service(
            &app,
            test::TestRequest::get().uri("/api/analytics/stores/store-1/minutes").to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = test::read_body_json(response).await;
        orders = body["minutes"].as_array().unwrap().iter().map(|m| m["order_count"].as_i64().unwrap()).sum();
        if orders == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(orders, 1, "the analytics model over TLS saw the order");
}
