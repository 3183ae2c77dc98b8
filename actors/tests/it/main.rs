//! Actors and the saga over a real embedded journal.

use std::sync::Arc;
use std::time::Duration;

use actors::cafe::{AuthorizePayment, Authorizer, Cafe, CafeError, PaymentPolicy, PlaceOrder};
use actors::domain::menu::MenuCommand;
use actors::domain::order::{Order, OrderStatus};
use actors::domain::payment::PaymentStatus;
use actors::host::{start_arbiters, HostOptions};
use actors::saga::OrderSaga;
use events::domain::streams;
use events::sqlite::{SqliteJournal, SqliteOptions};
use events::{Causation, Journal};
use uuid::Uuid;

mod batching;
mod freshness;
mod pickup;
mod refunds;

fn journal(dir: &tempfile::TempDir) -> Arc<dyn Journal> {
    Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap())
}

fn cafe_on(journal: Arc<dyn Journal>, host: HostOptions, decline_threshold: f64) -> Arc<Cafe> {
    Arc::new(Cafe::new(
        journal,
        host,
        PaymentPolicy { decline_threshold, fraud_rounds: 10, ..PaymentPolicy::default() },
        start_arbiters(2),
    ))
}

async fn seed(cafe: &Cafe, item: &str, price: i64, store: &str, stock: i64) {
    let publish = MenuCommand::Publish {
        item_id: item.into(),
        name: item.into(),
        category: "coffee".into(),
        price_cents: price,
        nutrition: events::domain::Nutrition::default(),
        image_sha256: String::new(),
    };
    cafe.publish_menu_item(publish, Causation::new_root()).await.unwrap();
    // Opening an open store again under its name writes nothing.
    cafe.open_store(store, &format!("Store {store}"), Causation::new_root()).await.unwrap();
    if stock > 0 {
        cafe.restock(store, item, stock, Causation::new_root()).await.unwrap();
    }
}

fn order(store: &str, items: &[(&str, i64)]) -> PlaceOrder {
    PlaceOrder {
        order_id: Uuid::now_v7(),
        customer_id: "alice".into(),
        store_id: store.into(),
        items: items.iter().map(|(i, q)| (i.to_string(), *q)).collect(),
        placed_at_us: 1,
        fresh_order_id: true,
    }
}

fn start_saga(cafe: &Arc<Cafe>) -> tokio::sync::watch::Sender<bool> {
    let (stop, rx) = tokio::sync::watch::channel(false);
    actix_rt::spawn(OrderSaga::new(cafe.clone()).run(rx));
    stop
}

async fn settled(cafe: &Cafe, order_id: Uuid) -> Order {
    for _ in 0..500 {
        let order = cafe.order(order_id).await.unwrap().unwrap();
        if matches!(order.status, OrderStatus::Paid | OrderStatus::Cancelled) {
            return order;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("order {order_id} never settled");
}

#[actix_rt::test]
async fn a_paid_order_reserves_stock_and_earns_points() {
    let dir = tempfile::tempdir().unwrap();
    let cafe = cafe_on(journal(&dir), HostOptions::default(), 1.0);
    let _saga = start_saga(&cafe);
    seed(&cafe, "latte", 450, "s1", 10).await;
    let request = order("s1", &[("latte", 3)]);
    let placed = cafe.place_order(request.clone(), Causation::new_root()).await.unwrap();
    assert_eq!(placed.state.total_cents, 1350);
    assert_eq!(settled(&cafe, request.order_id).await.status, OrderStatus::Paid);
    for _ in 0..200 {
        if cafe.loyalty_account("alice").await.unwrap().points == 13 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cafe.loyalty_account("alice").await.unwrap().points, 13);
    let stock = cafe.stock("s1", "latte").await.unwrap();
    assert_eq!(stock.available, 7);
}

#[actix_rt::test]
async fn a_declined_payment_cancels_the_order_and_releases_stock() {
    let dir = tempfile::tempdir().unwrap();
    let cafe = cafe_on(journal(&dir), HostOptions::default(), 0.0);
    let _saga = start_saga(&cafe);
    seed(&cafe, "mocha", 500, "s1", 5).await;
    let request = order("s1", &[("mocha", 2)]);
    cafe.place_order(request.clone(), Causation::new_root()).await.unwrap();
    let order = settled(&cafe, request.order_id).await;
    assert_eq!((order.status, order.cancel_reason.as_deref()), (OrderStatus::Cancelled, Some("payment_declined")));
    for _ in 0..200 {
        if cafe.stock("s1", "mocha").await.unwrap().available == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cafe.stock("s1", "mocha").await.unwrap().available, 5, "the reservation was released");
    assert_eq!(cafe.loyalty_account("alice").await.unwrap().points, 0);
}

#[actix_rt::test]
async fn concurrent_orders_never_oversell_a_sku() {
    let dir = tempfile::tempdir().unwrap();
    let cafe = cafe_on(journal(&dir), HostOptions::default(), 1.0);
    let _saga = start_saga(&cafe);
    seed(&cafe, "scone", 300, "s9", 25).await;
    let orders: Vec<PlaceOrder> = (0..40).map(|_| order("s9", &[("scone", 1)])).collect();
    let placing = orders.iter().cloned().map(|o| {
        let cafe = cafe.clone();
        async move { cafe.place_order(o, Causation::new_root()).await.unwrap() }
    });
    futures::future::join_all(placing).await;
    let mut paid = 0;
    for o in &orders {
        let order = settled(&cafe, o.order_id).await;
        if order.status == OrderStatus::Paid {
            paid += 1;
        } else {
            assert!(order.cancel_reason.unwrap().starts_with("out_of_stock"));
        }
    }
    assert_eq!(paid, 25, "exactly the stock was sold");
    assert_eq!(cafe.stock("s9", "scone").await.unwrap().available, 0);
}

#[actix_rt::test]
async fn an_out_of_stock_order_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let cafe = cafe_on(journal(&dir), HostOptions::default(), 1.0);
    let _saga = start_saga(&cafe);
    seed(&cafe, "latte", 450, "s1", 1).await;
    seed(&cafe, "bagel", 250, "s1", 0).await;
    let request = order("s1", &[("latte", 1), ("bagel", 1)]);
    cafe.place_order(request.clone(), Causation::new_root()).await.unwrap();
    let order = settled(&cafe, request.order_id).await;
    assert_eq!(order.cancel_reason.as_deref(), Some("out_of_stock:bagel"));
    for _ in 0..200 {
        if cafe.stock("s1", "latte").await.unwrap().available == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cafe.stock("s1", "latte").await.unwrap().available, 1, "the latte reserved first was released");
}

async fn payment_status(cafe: &Cafe, order_id: Uuid, until: PaymentStatus) -> PaymentStatus {
    for _ in 0..500 {
        let status = cafe.payment(order_id).await.unwrap().map(|p| p.status).unwrap_or_default();
        if status == until {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cafe.payment(order_id).await.unwrap().map(|p| p.status).unwrap_or_default()
}

fn authorization(request: &PlaceOrder, amount_cents: i64) -> AuthorizePayment {
    AuthorizePayment { order_id: request.order_id, customer_id: request.customer_id.clone(), amount_cents }
}

#[actix_rt::test]
async fn an_authorization_that_lands_before_the_cancellation_is_voided_by_the_saga() {
    // As with a payment processor that scores an order before the saga finds its stock short.
    let dir = tempfile::tempdir().unwrap();
    let cafe = cafe_on(journal(&dir), HostOptions::default(), 1.0);
    seed(&cafe, "bagel", 250, "s1", 0).await;
    let request = order("s1", &[("bagel", 2)]);
    cafe.place_order(request.clone(), Causation::new_root()).await.unwrap();
    let authorized = cafe.authorize_payment(&authorization(&request, 500), Causation::new_root()).await.unwrap();
    assert_eq!(authorized.status, PaymentStatus::Authorized);

    let _saga = start_saga(&cafe);
    assert_eq!(settled(&cafe, request.order_id).await.status, OrderStatus::Cancelled);
    assert_eq!(payment_status(&cafe, request.order_id, PaymentStatus::Voided).await, PaymentStatus::Voided);
    let history = cafe.journal.read_stream(&streams::payment(request.order_id), 0, 100).await.unwrap();
    let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["PaymentAuthorized", "PaymentVoidRequested", "PaymentVoided"], "asked once, voided once");
}

#[actix_rt::test]
async fn with_a_payment_processor_an_authorization_after_the_cancellation_is_asked_to_be_voided() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal(&dir);
    let policy = PaymentPolicy { fraud_rounds: 10, decline_threshold: 1.0, authorizer: Authorizer::PaymentProcessor };
    let cafe = Arc::new(Cafe::new(journal, HostOptions::default(), policy, start_arbiters(2)));
    let _saga = start_saga(&cafe);
    seed(&cafe, "bagel", 250, "s1", 0).await;
    let request = order("s1", &[("bagel", 2)]);
    cafe.place_order(request.clone(), Causation::new_root()).await.unwrap();
    assert_eq!(settled(&cafe, request.order_id).await.status, OrderStatus::Cancelled);
    // The processor authorizes late: the saga asks for the void and leaves it to the processor.
    cafe.authorize_payment(&authorization(&request, 500), Causation::new_root()).await.unwrap();
    let asked = payment_status(&cafe, request.order_id, PaymentStatus::VoidRequested).await;
    assert_eq!(asked, PaymentStatus::VoidRequested);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        payment_status(&cafe, request.order_id, PaymentStatus::VoidRequested).await,
        PaymentStatus::VoidRequested
    );
    // The processor carries it out, once.
    let voided = cafe.void_payment(request.order_id, Causation::new_root()).await.unwrap();
    assert_eq!(voided.status, PaymentStatus::Voided);
    let again = cafe.void_payment(request.order_id, Causation::new_root()).await.unwrap();
    assert_eq!(again.status, PaymentStatus::Voided);
    let history = cafe.journal.read_stream(&streams::payment(request.order_id), 0, 100).await.unwrap();
    assert_eq!(history.len(), 3, "authorized, void asked, voided");
}

#[actix_rt::test]
async fn unknown_and_retired_items_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let cafe = cafe_on(j.clone(), HostOptions::default(), 1.0);
    seed(&cafe, "latte", 450, "s1", 1).await;
    let head = j.head_position().await.unwrap();
    let err = cafe.place_order(order("s1", &[("latte", 1), ("ghost", 1)]), Causation::new_root()).await.unwrap_err();
    assert!(matches!(&err, CafeError::NotFound { field: Some(f), .. } if f == "items[1].item_id"), "{err:?}");
    cafe.menu.execute(&streams::menu_item("latte"), MenuCommand::Retire, Causation::new_root()).await.unwrap();
    let err = cafe.place_order(order("s1", &[("latte", 1)]), Causation::new_root()).await.unwrap_err();
    assert!(matches!(&err, CafeError::Rejected { field: Some(f), .. } if f == "items[0].item_id"), "{err:?}");
    assert_eq!(j.head_position().await.unwrap(), head + 1, "only the retirement was written");
}

/// Two registries on one journal are two nodes behind a load balancer: each caches its own state,
/// the journal's version check arbitrates, and the loser reloads and decides again.
#[actix_rt::test]
async fn two_nodes_on_one_journal_never_oversell() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let node_a = cafe_on(j.clone(), HostOptions::default(), 1.0);
    let node_b = cafe_on(j.clone(), HostOptions::default(), 1.0);
    seed(&node_a, "latte", 450, "s1", 10).await;
    // Warm both nodes' caches so that each decides on a stale state once the other writes.
    node_a.stock("s1", "latte").await.unwrap();
    node_b.stock("s1", "latte").await.unwrap();
    let reserve = |node: Arc<Cafe>| async move {
        let command = actors::domain::inventory::InventoryCommand::Reserve {
            store_id: "s1".into(),
            sku: "latte".into(),
            order_id: Uuid::now_v7(),
            quantity: 1,
        };
        node.inventory.execute(&streams::inventory("s1", "latte"), command, Causation::new_root()).await.is_ok()
    };
    let attempts = (0..30).map(|i| reserve(if i % 2 == 0 { node_a.clone() } else { node_b.clone() }));
    let granted = futures::future::join_all(attempts).await.into_iter().filter(|ok| *ok).count();
    assert_eq!(granted, 10);
    let fresh = cafe_on(j, HostOptions::default(), 1.0);
    assert_eq!(fresh.stock("s1", "latte").await.unwrap().available, 0);
}

#[actix_rt::test]
async fn actors_activate_from_snapshots_and_passivate_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let host = HostOptions { snapshot_every: 10, idle_timeout: Duration::from_millis(200), ..HostOptions::default() };
    let cafe = cafe_on(j.clone(), host, 1.0);
    seed(&cafe, "latte", 450, "s1", 1).await;
    for _ in 0..24 {
        cafe.restock("s1", "latte", 1, Causation::new_root()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let snapshot = j.load_snapshot(&streams::inventory("s1", "latte")).await.unwrap().expect("a snapshot was taken");
    assert_eq!(snapshot.version, 20);
    assert!(cafe.inventory.resident() >= 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(cafe.inventory.resident(), 0, "idle actors stopped");
    // A stopped actor untracks its stream: nothing passivated lives on without its entry.
    let stopped = || async { cafe.freshness.resident() == 0 };
    testkit::wait_until("the passivated actors stopped", Duration::from_secs(2), stopped).await;
    let (stock, version) = cafe.inventory.inspect(&streams::inventory("s1", "latte")).await.unwrap();
    assert_eq!((stock.available, version), (25, 25), "reactivated from the snapshot plus 5 events");
}

#[actix_rt::test]
async fn passivating_unused_actors_stops_them_and_the_next_message_reads_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let cafe = cafe_on(j.clone(), HostOptions::default(), 1.0);
    seed(&cafe, "latte", 450, "s1", 7).await;
    assert!(cafe.inventory.resident() >= 1 && cafe.menu.resident() >= 1);
    let let_go = cafe.passivate_unused();
    assert!(let_go >= 3, "store, menu item and stock actors let go: {let_go}");
    assert_eq!(cafe.inventory.resident() + cafe.menu.resident() + cafe.stores.resident(), 0);
    let stopped = || async { cafe.freshness.resident() == 0 };
    testkit::wait_until("the passivated actors stopped", Duration::from_secs(2), stopped).await;
    let (stock, version) = cafe.inventory.inspect(&streams::inventory("s1", "latte")).await.unwrap();
    assert_eq!((stock.available, version), (7, 1), "activated again from the journal");
}

#[actix_rt::test]
async fn a_full_mailbox_refuses_instead_of_queueing_without_limit() {
    let dir = tempfile::tempdir().unwrap();
    let host = HostOptions { mailbox_capacity: 2, ..HostOptions::default() };
    let cafe = cafe_on(journal(&dir), host, 1.0);
    seed(&cafe, "latte", 450, "s1", 0).await;
    let attempts = (0..50).map(|_| {
        let cafe = cafe.clone();
        async move { cafe.restock("s1", "latte", 1, Causation::new_root()).await }
    });
    let results = futures::future::join_all(attempts).await;
    let busy = results.iter().filter(|r| matches!(r, Err(CafeError::Busy(_)))).count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(busy > 0, "some commands were refused");
    assert_eq!(ok + busy, 50);
    assert_eq!(cafe.stock("s1", "latte").await.unwrap().available, ok as u64, "refused commands wrote nothing");
}

#[actix_rt::test]
async fn orders_and_restocks_for_an_unknown_or_closed_store_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(&dir);
    let cafe = cafe_on(j.clone(), HostOptions::default(), 1.0);
    seed(&cafe, "latte", 450, "s1", 5).await;
    cafe.close_store("s1", "renovation", Causation::new_root()).await.unwrap();
    let head = j.head_position().await.unwrap();
    for store in ["nowhere", "s1"] {
        let err = cafe.place_order(order(store, &[("latte", 1)]), Causation::new_root()).await.unwrap_err();
        assert!(matches!(&err, CafeError::Rejected { field: Some(f), .. } if f == "store_id"), "{store}: {err:?}");
        let err = cafe.restock(store, "latte", 1, Causation::new_root()).await.unwrap_err();
        assert!(matches!(&err, CafeError::Rejected { field: Some(f), .. } if f == "store_id"), "{store}: {err:?}");
    }
    assert_eq!(j.head_position().await.unwrap(), head, "nothing was written");
    let reopened = cafe.open_store("s1", "Store s1", Causation::new_root()).await.unwrap();
    assert_eq!(reopened.events.len(), 1);
    cafe.place_order(order("s1", &[("latte", 1)]), Causation::new_root()).await.unwrap();
    assert_eq!(cafe.store("s1").await.unwrap().unwrap().status, actors::domain::store::StoreStatus::Open);
    assert!(cafe.store("nowhere").await.unwrap().is_none());
}
