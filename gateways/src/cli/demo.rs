//! `cloudcafe demo`: a node on a free port, a few orders placed over HTTP, and how they ended.

use std::time::Duration;

use anyhow::Context;
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
    let (server, addr) =
        start_server(&node, "127.0.0.1:0".parse()?, Some(1), &ApiSettings::default(), Vec::new()).await?;
    let handle = server.handle();
    actix_web::rt::spawn(server);
    println!("CloudCafe demo node listening on http://{addr}\n");
    let mut client = HttpConnection::new(addr);
    let mut placed = Vec::new();
    for (customer, store, items) in ORDERS {
        let body = format!(r#"{{"customer_id":"{customer}","store_id":"{store}","items":{items}}}"#);
        println!("POST /api/orders {body}");
        let r = client.request("POST", "/api/orders", &[], body.as_bytes()).await?;
        println!("  -> {} {}\n", r.status, String::from_utf8_lossy(&r.body));
        if r.status == 201 {
            placed.push(r.json()["order_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in placed {
        let r = client.request("GET", &format!("/api/orders/{id}"), &[], b"").await?;
        let o = r.json();
        println!(
            "GET /api/orders/{id} -> {} status={} total={} {}",
            r.status, o["status"], o["total_amount"], o["cancel_reason"]
        );
    }
    let r = client.request("GET", "/api/loyalty/alice", &[], b"").await?;
    println!("GET /api/loyalty/alice -> {}", String::from_utf8_lossy(&r.body));
    handle.stop(true).await;
    Ok(())
}
