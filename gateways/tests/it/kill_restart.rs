//! Every order acknowledged with 201 survives a SIGKILL of the node, and retrying the requests that
//! got no answer (same Idempotency-Key) never places an order twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos::ledger::AckLedger;
use chaos::process::{free_loopback_addr, Node};

fn node(storage: &[String]) -> Node {
    let addr = free_loopback_addr();
    let mut args = vec!["serve".to_string(), "--listen".into(), addr.to_string(), "--workers".into(), "2".into()];
    args.extend(["--auth-key-file".to_string(), crate::security::key_file().to_string()]);
    args.extend_from_slice(storage);
    Node::new(env!("CARGO_BIN_EXE_cloudcafe"), args, addr)
}

async fn place(addr: std::net::SocketAddr, key: &str, customer: &str) -> Option<u16> {
    let body =
        format!(r#"{{"customer_id":"{customer}","store_id":"store-1","items":[{{"item_id":"latte","quantity":1}}]}}"#);
    let mut conn = crate::security::admin_client(addr);
    conn.request("POST", "/api/orders", &[("Idempotency-Key", key)], body.as_bytes()).await.ok().map(|r| r.status)
}

/// Writers place orders for a customer each, so that no customer's list outgrows the API's
/// 500-order page however fast the node acknowledges.
const WRITERS: usize = 8;

/// The customer that writer `w` (the key's prefix, `w-n`) orders for.
fn customer_of(base: &str, key: &str) -> String {
    format!("{base}-{}", key.split('-').next().expect("key is w-n"))
}

async fn orders_of(addr: std::net::SocketAddr, base: &str) -> Vec<String> {
    let mut all = Vec::new();
    for w in 0..WRITERS {
        let mut conn = crate::security::admin_client(addr);
        let path = format!("/api/customers/{base}-{w}/orders?limit=500");
        let r = conn.request("GET", &path, &[], b"").await.expect("list");
        assert_eq!(r.status, 200);
        let orders = r.json()["orders"].as_array().unwrap().clone();
        assert!(orders.len() < 500, "a customer's list filled a whole page: the check could miss orders");
        all.extend(orders.iter().map(|o| o["order_id"].as_str().unwrap().to_owned()));
    }
    all
}

async fn order_id_for(addr: std::net::SocketAddr, key: &str, customer: &str) -> String {
    // Re-sending the same keyed request is how a client learns the order id; it never creates a second order.
    let body =
        format!(r#"{{"customer_id":"{customer}","store_id":"store-1","items":[{{"item_id":"latte","quantity":1}}]}}"#);
    let mut conn = crate::security::admin_client(addr);
    let r = conn.request("POST", "/api/orders", &[("Idempotency-Key", key)], body.as_bytes()).await.expect("replay");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["order_id"].as_str().unwrap().to_owned()
}

async fn kill_during_orders(storage: Vec<String>) {
    let mut node = node(&storage);
    node.start(Duration::from_secs(30)).expect("node starts");
    let addr = node.addr;
    let customer = format!("chaos-{}", uuid::Uuid::new_v4().simple());
    let ledger = Arc::new(AckLedger::default());
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let ledger = ledger.clone();
            let customer = customer.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < stop_at {
                    let key = format!("{w}-{n}");
                    n += 1;
                    match place(addr, &key, &customer_of(&customer, &key)).await {
                        Some(201) => ledger.acknowledged(key),
                        Some(status) => panic!("unexpected {status} before the kill"),
                        None => {
                            ledger.unanswered(key);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    node.kill().expect("SIGKILL");
    for w in writers {
        w.await.unwrap();
    }
    assert!(ledger.acknowledged_ids().len() > 10, "orders were acknowledged before the kill");

    node.start(Duration::from_secs(30)).expect("node restarts");
    // Clients retry what got no answer, with the same key.
    for key in ledger.unanswered_ids() {
        if place(addr, &key, &customer_of(&customer, &key)).await == Some(201) {
            ledger.acknowledged(key);
        }
    }
    let mut expected = Vec::new();
    for key in ledger.acknowledged_ids() {
        expected.push(order_id_for(addr, &key, &customer_of(&customer, &key)).await);
    }
    // The storefront catches up after the restart; wait for it, then compare.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = orders_of(addr, &customer).await;
    while found.len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        found = orders_of(addr, &customer).await;
    }
    let ids = AckLedger::default();
    for id in &expected {
        ids.acknowledged(id.clone());
    }
    let verdict = ids.verify(&found);
    assert!(verdict.holds(), "{verdict:?}");
    assert_eq!(found.len(), expected.len(), "no order without an acknowledgement or retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_sigkill_on_the_embedded_journal() {
    let dir = tempfile::tempdir().unwrap();
    kill_during_orders(vec!["--data-dir".into(), dir.path().display().to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_sigkill_on_postgres() {
    let Some(url) = testkit::servers::postgres_url() else { return };
    let schema = testkit::servers::fresh_schema("kill");
    kill_during_orders(vec!["--journal".into(), url, "--pg-schema".into(), schema]).await;
}
