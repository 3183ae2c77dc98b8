//! A read model that meets an event it cannot apply: on PostgreSQL, an order whose total does not fit
//! the storefront's `DECIMAL(10,2)`, written straight into the journal (no decider would accept it).
//! The projection reports the stall (position and error) instead of retrying quietly, later events
//! wait behind it, and parking the event (as `cloudcafe projections park` does) lets them through;
//! replay makes the same choice and still compares equal.

use std::process::Command;
use std::time::{Duration, Instant};

use chaos::process::{free_loopback_addr, Node};
use events::domain::{OrderLine, OrderPlaced};
use events::follow::Stalls;
use events::{AppendRequest, Causation, ExpectedVersion, Journal, NewEvent};
use gateways::node::{open_stores, Storage};
use gateways::parks::{park, ParkError, ParkRequest};
use projections::read_models::replay::{rebuild, ReplayOptions, ReplayOutcome};
use projections::read_models::runner::ProjectionRunner;
use tokio::sync::watch;
use uuid::Uuid;

use crate::security::{admin_client, key_file};

/// More cents than `DECIMAL(10,2)` holds (its largest is 99,999,999.99).
const TOO_MUCH: i64 = 1_000_000_000_000;

/// Appends an order for `customer` totalling `total_cents` straight into the journal; its position.
async fn append_order(journal: &dyn Journal, customer: &str, total_cents: i64) -> u64 {
    let order_id = Uuid::now_v7();
    let placed = OrderPlaced {
        order_id,
        customer_id: customer.to_owned(),
        store_id: "store-1".into(),
        lines: vec![OrderLine { item_id: "latte".into(), quantity: 1, unit_price_cents: total_cents }],
        total_cents,
        placed_at_us: events::envelope::now_us(),
    };
    let event = NewEvent::from_domain(&placed.into(), Causation::new_root()).unwrap();
    let request = AppendRequest {
        stream_id: events::domain::streams::order(order_id),
        expected: ExpectedVersion::NoStream,
        events: vec![event],
    };
    journal.append(request).await.unwrap().last_position
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprojectable_event_stalls_the_postgres_storefront_visibly_until_it_is_parked() {
    let Some(url) = testkit::servers::postgres_url() else { return };
    let storage =
        Storage::Postgres { url, schema: Some(testkit::servers::fresh_schema("stall")), security: Default::default() };
    let (journal, store) = open_stores(&storage).await.unwrap();
    let customer = format!("stall-{}", Uuid::new_v4().simple());
    let first = append_order(journal.as_ref(), &customer, 450).await;
    let poison = append_order(journal.as_ref(), &customer, TOO_MUCH).await;
    let second = append_order(journal.as_ref(), &customer, 500).await;

    let stalls = Stalls::default();
    let runner = ProjectionRunner::new(journal.clone(), store.clone())
        .with_stalls(stalls.clone())
        .with_max_backoff(Duration::from_millis(200));
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(runner.run(stopped));

    wait_until("the storefront reports its stall", || async { stalls.get("projection:storefront").is_some() }).await;
    let stall = stalls.get("projection:storefront").unwrap();
    assert_eq!((stall.position, stall.event_type.as_str()), (poison, "OrderPlaced"), "{stall:?}");
    assert!(stall.stream_id.starts_with("order-"), "{stall:?}");
    assert!(stall.error.contains("22003"), "the error names PostgreSQL's refusal: {}", stall.error);
    assert_eq!(store.position().await.unwrap(), first, "what precedes the poison is applied, nothing after it");
    let later = append_order(journal.as_ref(), &customer, 600).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let listed = store.customer_orders(&customer, 10).await.unwrap();
    assert_eq!(listed.len(), 1, "later events do not flow past the stall: {listed:?}");
    assert_eq!(
        stalls.get("projection:storefront").map(|s| s.since_us),
        Some(stall.since_us),
        "one stall, not one per retry"
    );

    let request = |position, force| ParkRequest {
        position,
        reason: "total beyond DECIMAL(10,2), written by a test".into(),
        parked_by: "stalls-test".into(),
        force,
    };
    let refused = park(journal.as_ref(), store.as_ref(), &request(second, false)).await;
    assert!(matches!(refused, Err(ParkError::NotStalled { .. })), "only the stalled event is parked: {refused:?}");
    let parked = park(journal.as_ref(), store.as_ref(), &request(poison, false)).await.unwrap();
    assert_eq!((parked.position, parked.projection.as_str()), (poison, "storefront"));
    let again = park(journal.as_ref(), store.as_ref(), &request(poison, false)).await;
    assert!(matches!(again, Err(ParkError::AlreadyParked(_))), "{again:?}");

    wait_until("the later orders reach the storefront", || async {
        store.customer_orders(&customer, 10).await.unwrap().len() == 3
    })
    .await;
    let totals: Vec<i64> = store.customer_orders(&customer, 10).await.unwrap().iter().map(|o| o.total_cents).collect();
    assert!(totals.contains(&500) && totals.contains(&600) && !totals.contains(&TOO_MUCH), "{totals:?}");
    wait_until("the stall clears", || async { stalls.get("projection:storefront").is_none() }).await;
    let head = journal.head_position().await.unwrap();
    wait_until("the storefront reaches the head", || async { store.position().await.unwrap() == head }).await;
    assert!(head > later, "the park itself is in the journal");
    stop.send(true).unwrap();
    running.await.unwrap();

    let options = ReplayOptions { dry_run: true, ..ReplayOptions::default() };
    let outcome = rebuild(journal.as_ref(), store.as_ref(), &options, &mut |_| {}).await.unwrap();
    assert!(matches!(outcome, ReplayOutcome::Equal { .. }), "replay skips the parked event too: {outcome:?}");
}

fn cloudcafe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cloudcafe")).args(args).env("RUST_LOG", "warn").output().unwrap()
}

async fn get(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let r = admin_client(addr).request("GET", path, &[], b"").await.expect("GET");
    assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn storefront(projections: &serde_json::Value) -> serde_json::Value {
    projections["projections"].as_array().unwrap().iter().find(|p| p["name"] == "storefront").unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_reports_a_stall_and_projections_park_unblocks_it() {
    let Some(url) = testkit::servers::postgres_url() else { return };
    let schema = testkit::servers::fresh_schema("stallcli");
    let addr = free_loopback_addr();
    let storage = ["--journal", url.as_str(), "--pg-schema", schema.as_str()];
    let mut args: Vec<String> =
        ["serve", "--listen", &addr.to_string(), "--workers", "2", "--auth-key-file", key_file()]
            .map(String::from)
            .to_vec();
    args.extend(storage.iter().map(|s| s.to_string()));
    let mut node = Node::new(env!("CARGO_BIN_EXE_cloudcafe"), args, addr);
    node.start(Duration::from_secs(30)).expect("node starts");

    let (journal, _) = open_stores(&Storage::Postgres {
        url: url.clone(),
        schema: Some(schema.clone()),
        security: Default::default(),
    })
    .await
    .unwrap();
    let customer = format!("cli-{}", Uuid::new_v4().simple());
    let poison = append_order(journal.as_ref(), &customer, TOO_MUCH).await;
    wait_until("/admin/projections shows the stall", || async {
        !storefront(&get(addr, "/admin/projections").await)["stalled"].is_null()
    })
    .await;
    let stalled = storefront(&get(addr, "/admin/projections").await)["stalled"].clone();
    assert_eq!(stalled["position"], poison, "{stalled}");
    assert_eq!(stalled["event_type"], "OrderPlaced", "{stalled}");
    assert!(stalled["error"].as_str().unwrap().contains("22003"), "{stalled}");
    assert!(stalled["since"].as_str().is_some_and(|s| s.ends_with('Z')), "{stalled}");

    let body =
        format!(r#"{{"customer_id":"{customer}","store_id":"store-1","items":[{{"item_id":"latte","quantity":1}}]}}"#);
    let placed = admin_client(addr).request("POST", "/api/orders", &[], body.as_bytes()).await.unwrap();
    assert_eq!(placed.status, 201, "{}", String::from_utf8_lossy(&placed.body));
    let order_id = placed.json()["order_id"].as_str().unwrap().to_owned();
    let orders_path = format!("/api/customers/{customer}/orders");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(addr, &orders_path).await["orders"].as_array().unwrap().len(), 0, "nothing flows past a stall");

    let position = poison.to_string();
    let mut park_args = vec!["projections", "park", "--projection", "storefront", "--reason", "total too large"];
    park_args.extend(storage);
    let wrong = (poison + 1).to_string();
    let refused = cloudcafe(&[&park_args[..], &["--position", &wrong]].concat());
    assert!(!refused.status.success(), "a position the projection is not stalled on is refused");
    let out = cloudcafe(&[&park_args[..], &["--position", &position]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("parked event {poison}")));

    wait_until("the order placed after the poison reaches the customer's list", || async {
        get(addr, &orders_path).await["orders"].as_array().unwrap().iter().any(|o| o["order_id"] == order_id.as_str())
    })
    .await;
    wait_until("the stall clears", || async {
        storefront(&get(addr, "/admin/projections").await)["stalled"].is_null()
    })
    .await;
    let listed = cloudcafe(&[&["projections", "parks", "--projection", "storefront"][..], &storage].concat());
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&format!("position {poison} (OrderPlaced")) && listed.contains("total too large"),
        "{listed}"
    );
    node.kill().unwrap();
}
