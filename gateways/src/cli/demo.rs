//! `cloudcafe demo`: a node on a free port, a few orders placed over HTTP, how they ended, and one
//! paid order cancelled and refunded.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateways::auth::token::{DEFAULT_AUDIENCE, LOCAL_ISSUER};
use gateways::auth::{LocalKey, Role, Verifier};
use gateways::http::ApiSettings;
use gateways::load::HttpConnection;
use gateways::node::Node;
use gateways::telemetry;

use super::serve::start_server;
use super::storage::StorageArgs;

/// The orders the demo places: customer, store and items (not all of them can be served).
const ORDERS: [(&str, &str, &str); 6] = [
    ("alice", "store-1", r#"[{"item_id":"latte","quantity":2},{"item_id":"croissant","quantity":1}]"#),
    ("bob", "store-2", r#"[{"item_id":"cold-brew","quantity":1}]"#),
    ("carol", "store-3", r#"[{"item_id":"mocha","quantity":600}]"#),
    ("erin", "store-3", r#"[{"item_id":"mocha","quantity":600}]"#),
    ("dave", "store-1", r#"[{"item_id":"unicorn-frappe","quantity":1}]"#),
    ("dave", "store-1", r#"[{"item_id":"latte","quantity":0}]"#),
];

/// Runs the demo and prints every request and answer.
pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    telemetry::metrics_handle();
    let mut settings = args.settings();
    settings.seed_demo = true;
    let node = Node::start(settings).await.context("cannot start the node")?;
    // A throwaway signing key: every request carries its customer's token, as a client's would.
    let key = LocalKey::generate()?;
    let api = ApiSettings { auth: Some(Arc::new(Verifier::local(&key, DEFAULT_AUDIENCE))), ..ApiSettings::default() };
    let bearer = |customer: &str| {
        let token = key.issue(LOCAL_ISSUER, DEFAULT_AUDIENCE, customer, Role::Customer, None, Duration::from_secs(600));
        format!("Bearer {token}")
    };
    let (server, addr) = start_server(&node, "127.0.0.1:0".parse()?, Some(1), &api, Vec::new()).await?;
    let handle = server.handle();
    actix_web::rt::spawn(server);
    println!("CloudCafe demo node listening on http://{addr} (each request carries its customer's bearer token)\n");
    let mut client = HttpConnection::new(addr);
    let mut placed = Vec::new();
    for (customer, store, items) in ORDERS {
        let body = format!(r#"{{"customer_id":"{customer}","store_id":"{store}","items":{items}}}"#);
        println!("POST /api/orders {body}");
        let auth = bearer(customer);
        let r = client.request("POST", "/api/orders", &[("Authorization", &auth)], body.as_bytes()).await?;
        println!("  -> {} {}\n", r.status, String::from_utf8_lossy(&r.body));
        if r.status == 201 {
            placed.push((customer, r.json()["order_id"].as_str().unwrap_or_default().to_owned()));
        }
    }
    let body = r#"{"customer_id":"alice","store_id":"store-1","items":[{"item_id":"latte","quantity":1}]}"#;
    println!("POST /api/orders {body}   (with bob's token)");
    let r = client.request("POST", "/api/orders", &[("Authorization", &bearer("bob"))], body.as_bytes()).await?;
    println!("  -> {} {}\n", r.status, String::from_utf8_lossy(&r.body));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (customer, id) in &placed {
        let auth = bearer(customer);
        let r = client.request("GET", &format!("/api/orders/{id}"), &[("Authorization", &auth)], b"").await?;
        let o = r.json();
        println!(
            "GET /api/orders/{id} -> {} status={} total={} {}",
            r.status, o["status"], o["total_amount"], o["cancel_reason"]
        );
    }
    let r = client.request("GET", "/api/loyalty/alice", &[("Authorization", &bearer("alice"))], b"").await?;
    println!("GET /api/loyalty/alice -> {}", String::from_utf8_lossy(&r.body));
    // Bob changes his mind before the store starts on his paid order: he gets his money back.
    if let Some((_, id)) = placed.iter().find(|(customer, _)| *customer == "bob") {
        let auth = bearer("bob");
        let body = r#"{"reason":"changed my mind"}"#;
        println!("\nPOST /api/orders/{id}/cancel {body}   (bob)");
        let path = format!("/api/orders/{id}/cancel");
        let r = client.request("POST", &path, &[("Authorization", &auth)], body.as_bytes()).await?;
        println!("  -> {} status={}", r.status, r.json()["status"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = client.request("GET", &format!("/api/payments/{id}"), &[("Authorization", &auth)], b"").await?;
        println!("GET /api/payments/{id} -> {} status={}", r.status, r.json()["status"]);
    }
    handle.stop(true).await;
    Ok(())
}
