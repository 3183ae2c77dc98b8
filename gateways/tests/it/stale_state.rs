//! Three `cloudcafe serve` processes on one PostgreSQL journal never act on state older than the
//! staleness bound: what one node changes on the menu (publish, re-price, retire) reaches the others' orders,
//! and after a race for one SKU every node shows the same stock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::domain::inventory::InventoryDecider;
use actors::host::{activate, HostOptions};
use chaos::process::{free_loopback_addr, Node};
use events::domain::streams;
use events::postgres::{PgJournal, PgOptions};
use events::Journal;
use serde_json::Value;
use testkit::names::short_id;
use testkit::{servers, wait_until};

/// Units of the raced SKU, and the orders racing for them (one unit each).
const UNITS: i64 = 40;
const ORDERS: usize = 120;

fn serve(url: &str, schema: &str) -> Node {
    let addr = free_loopback_addr();
    let args = [
        "serve",
        "--listen",
        &addr.to_string(),
        "--workers",
        "1",
        "--journal",
        url,
        "--pg-schema",
        schema,
        "--decline-threshold",
        "1.0",
        "--fraud-rounds",
        "10",
        "--auth-key-file",
        crate::security::key_file(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Node::new(env!("CARGO_BIN_EXE_cloudcafe"), args, addr)
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut conn = crate::security::admin_client(addr);
    let r = conn.request(method, path, &[], body.as_bytes()).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, if r.body.is_empty() { Value::Null } else { r.json() })
}

async fn order(addr: SocketAddr, customer: &str, item: &str) -> (u16, Value) {
    let body =
        format!(r#"{{"customer_id":"{customer}","store_id":"store-1","items":[{{"item_id":"{item}","quantity":1}}]}}"#);
    call(addr, "POST", "/api/orders", &body).await
}

async fn stock(addr: SocketAddr, sku: &str) -> (u16, Value) {
    call(addr, "GET", &format!("/api/inventory/stores/store-1/items/{sku}"), "").await
}

async fn publish(addr: SocketAddr, item: &str, price_cents: i64) {
    let body = format!(r#"{{"item_id":"{item}","name":"{item}","category":"coffee","price_cents":{price_cents}}}"#);
    let (status, answer) = call(addr, "POST", "/api/menu/items", &body).await;
    assert_eq!(status, 201, "{answer}");
}

async fn restock(addr: SocketAddr, sku: &str, quantity: i64) -> (u16, Value) {
    call(
        addr,
        "POST",
        "/api/inventory/restock",
        &format!(r#"{{"store_id":"store-1","sku":"{sku}","quantity":{quantity}}}"#),
    )
    .await
}

#[actix_rt::test]
async fn three_nodes_on_one_journal_agree_within_the_staleness_bound() {
    let Some(url) = servers::postgres_url() else { return };
    let schema = servers::fresh_schema("stale");
    let mut nodes: Vec<Node> = (0..3).map(|_| serve(&url, &schema)).collect();
    // One after the other: the first seeds the demo menu into the empty journal.
    for node in &mut nodes {
        node.start(Duration::from_secs(60)).expect("node starts");
    }
    let [a, b, c] = [nodes[0].addr, nodes[1].addr, nodes[2].addr];
    let bound = HostOptions::default().staleness_bound;
    let id = short_id();
    let item = format!("stale-{id}");

    // B and C look the item up before anyone published it.
    for node in [b, c] {
        assert_eq!(order(node, "early", &item).await.0, 404);
        assert_eq!(stock(node, &item).await.0, 404);
        assert_eq!(restock(node, &item, 5).await.0, 404);
    }

    // Published on A: B and C take orders for it, and restocks, once the bound has passed.
    publish(a, &item, 500).await;
    tokio::time::sleep(bound).await;
    for node in [b, c] {
        let (status, placed) = order(node, "after-publish", &item).await;
        assert_eq!((status, placed["total_amount"].as_str()), (201, Some("5.00")), "{placed}");
        assert_eq!(restock(node, &item, 5).await.0, 200);
    }

    // Re-priced on A: every node prices new orders at the new price once the bound has passed.
    let (status, repriced) = call(a, "POST", &format!("/api/menu/items/{item}/price"), r#"{"price_cents":650}"#).await;
    assert_eq!((status, repriced["price_cents"].as_i64()), (200, Some(650)), "{repriced}");
    tokio::time::sleep(bound).await;
    for node in [a, b, c] {
        let (status, placed) = order(node, "after-reprice", &item).await;
        assert_eq!((status, placed["total_amount"].as_str()), (201, Some("6.50")), "{placed}");
    }
    // Retired on B: no node sells it any more.
    let (status, retired) = call(b, "POST", &format!("/api/menu/items/{item}/retire"), "").await;
    assert_eq!((status, retired["retired"].as_bool()), (200, Some(true)), "{retired}");
    tokio::time::sleep(bound).await;
    for node in [a, b, c] {
        let (status, refused) = order(node, "after-retire", &item).await;
        assert_eq!(status, 422, "a retired item is not sold: {refused}");
    }

    // A race: every node shows the stock first (so each holds the stream's actor), then 120 orders
    // for 40 units arrive spread over the three.
    let sku = format!("race-{id}");
    publish(a, &sku, 300).await;
    assert_eq!(restock(a, &sku, UNITS).await.0, 200);
    tokio::time::sleep(bound).await;
    for node in [a, b, c] {
        let (status, shown) = stock(node, &sku).await;
        assert_eq!((status, shown["available"].as_u64()), (200, Some(UNITS as u64)), "{shown}");
    }
    let racing = (0..ORDERS).map(|i| {
        let (node, sku) = ([a, b, c][i % 3], sku.clone());
        async move {
            let (status, placed) = order(node, &format!("racer-{}", i % 7), &sku).await;
            assert_eq!(status, 201, "{placed}");
        }
    });
    futures::future::join_all(racing).await;

    let journal: Arc<dyn Journal> =
        Arc::new(PgJournal::connect(PgOptions::new(&url).with_schema(&schema)).await.unwrap());
    // The race is over when the journal's own stock has nothing left and a unit held for each of
    // 40 orders (paid, all of them, and not yet being made).
    let stream = streams::inventory("store-1", &sku);
    let raced = Instant::now();
    wait_until("the saga reserves a unit for each of 40 orders", Duration::from_secs(30), || async {
        let (truth, _) = activate::<InventoryDecider>(journal.as_ref(), &stream).await.unwrap();
        truth.available == 0 && truth.reservations.len() == UNITS as usize
    })
    .await;
    eprintln!("the race settled in {:?}", raced.elapsed());
    tokio::time::sleep(bound).await;
    for node in [a, b, c] {
        let (status, shown) = stock(node, &sku).await;
        assert_eq!(status, 200);
        assert_eq!(
            (shown["available"].as_u64(), shown["reserved"].as_u64()),
            (Some(0), Some(UNITS as u64)),
            "node {node} shows the journal's stock: {shown}"
        );
    }

    // Each node reports how far its freshness follower trails the journal.
    for node in [a, b, c] {
        let mut conn = crate::security::admin_client(node);
        let metrics = conn.request("GET", "/metrics", &[], b"").await.unwrap();
        let text = String::from_utf8_lossy(&metrics.body);
        let lag = text
            .lines()
            .find_map(|l| l.strip_prefix("follower_lag_seconds{follower=\"freshness\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no freshness lag on {node}"));
        // Set after each poll: about one read's duration while the follower keeps up.
        assert!(lag.is_finite() && lag < 1.0, "node {node}'s freshness follower lags {lag} s");
    }
}
