//! The `verify` step on a real embedded node: orders placed through the cafe with their
//! acknowledgements recorded pass every check once the saga has settled them, and each check fails
//! when the journal or a read model is made to break it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actors::cafe::PlaceOrder;
use events::domain::{streams, PaymentCaptured, StockReserved};
use events::journal::read_stream_to_end;
use events::{AppendRequest, Causation, DomainEvent, ExpectedVersion, Journal, NewEvent};
use gateways::node::{Node, NodeSettings};
use gateways::verify::{
    self, AckLedger, Acknowledgement, Check, VerifySettings, ACKNOWLEDGED, ORDERS_ENDED, PAYMENTS, READ_MODELS, STOCK,
};
use projections::read_models::storefront::sqlite::SqliteStorefront;
use projections::Rebuildable;
use uuid::Uuid;

/// Long enough for the saga to finish a few orders on a loaded machine; verify returns as soon as
/// nothing is moving, so this is only an upper bound.
const SETTLE: Duration = Duration::from_secs(60);

async fn node(dir: &tempfile::TempDir) -> Node {
    let mut settings = NodeSettings { seed_demo: true, ..NodeSettings::embedded(dir.path()) };
    // No payment is declined, so that every customer has paid orders (the out-of-stock order is
    // the one cancelled).
    settings.payment.decline_threshold = 1.0;
    Node::start(settings).await.unwrap()
}

/// Places orders as a flood would, recording each one's acknowledgement in `ledger`: a dozen small
/// ones for four customers, one that takes every mocha of store-1, and one that then cannot have its
/// mocha (cancelled for want of stock, its americano released). Returns the ids of the orders.
async fn place_orders(node: &Node, ledger: &AckLedger) -> Vec<Uuid> {
    let mut orders: Vec<(String, Vec<(String, i64)>)> =
        (0..12).map(|i| (format!("c{}", i % 4), vec![("latte".to_owned(), 1), ("croissant".to_owned(), 2)])).collect();
    orders.push(("c0".into(), vec![("mocha".into(), gateways::node::DEMO_STOCK)]));
    orders.push(("c1".into(), vec![("americano".into(), 1), ("mocha".into(), 5)]));
    let mut ids = Vec::new();
    for (customer_id, items) in orders {
        let causation = Causation::new_root();
        let order_id = Uuid::now_v7();
        let placed_at_us = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
        let request =
            PlaceOrder { order_id, customer_id, store_id: "store-1".into(), items, placed_at_us, fresh_order_id: true };
        let answered = node.cafe.place_order(request, causation).await.is_ok();
        assert!(answered, "order {order_id} was refused");
        ledger.record(Acknowledgement {
            stream_id: streams::order(order_id),
            event_type: "OrderPlaced".into(),
            correlation_id: Some(causation.correlation_id),
            answered,
        });
        ids.push(order_id);
    }
    ids
}

fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check `{name}` in {checks:#?}"))
}

fn storefront(dir: &tempfile::TempDir) -> Vec<Arc<dyn Rebuildable>> {
    vec![Arc::new(SqliteStorefront::open(dir.path()).unwrap())]
}

async fn verify(journal: &dyn Journal, models: &[Arc<dyn Rebuildable>], acks: &[Acknowledgement]) -> Vec<Check> {
    verify::verify(journal, models, acks, &VerifySettings { settle: SETTLE, ..VerifySettings::default() })
        .await
        .unwrap()
}

/// Appends one event to the end of `stream`, as a writer that knows its version would.
async fn append(journal: &dyn Journal, stream: &str, event: DomainEvent) {
    let version = read_stream_to_end(journal, stream, 1).await.unwrap().last().map_or(0, |e| e.stream_version);
    let event = NewEvent::from_domain(&event, Causation::new_root()).unwrap();
    let request =
        AppendRequest { stream_id: stream.to_owned(), expected: ExpectedVersion::Exact(version), events: vec![event] };
    journal.append(request).await.unwrap();
}

#[actix_rt::test]
async fn orders_settled_by_the_saga_pass_every_check_against_a_ledger_read_back_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let path = dir.path().join("acks.jsonl");
    let ledger = AckLedger::create(&path).unwrap();
    place_orders(&node, &ledger).await;
    ledger.flush().unwrap();
    let acks = AckLedger::load(&path).unwrap();
    assert_eq!(acks, ledger.entries());

    let checks = verify(node.journal.as_ref(), &storefront(&dir), &acks).await;
    for c in &checks {
        assert!(c.passed, "{c:#?}");
    }
    assert_eq!(checks.len(), 8, "{checks:#?}");
    assert_eq!(verify::exit_code(&checks), 0);
    assert!(check(&checks, ACKNOWLEDGED).detail.starts_with("14 acknowledgements checked (14 answered"));
    assert!(check(&checks, ORDERS_ENDED).detail.starts_with("14 orders: "), "{}", check(&checks, ORDERS_ENDED).detail);
    assert!(check(&checks, READ_MODELS).detail.starts_with("storefront: equal, "));
}

#[actix_rt::test]
async fn an_acknowledgement_of_an_order_never_placed_fails_only_the_first_check() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let ledger = AckLedger::in_memory();
    place_orders(&node, &ledger).await;
    let never = Uuid::now_v7();
    ledger.record(Acknowledgement {
        stream_id: streams::order(never),
        event_type: "OrderPlaced".into(),
        correlation_id: Some(Uuid::now_v7()),
        answered: true,
    });

    let checks = verify(node.journal.as_ref(), &[], &ledger.entries()).await;
    let acks = check(&checks, ACKNOWLEDGED);
    assert!(!acks.passed);
    assert!(acks.detail.contains(&streams::order(never)), "{}", acks.detail);
    assert!(checks.iter().filter(|c| c.name != ACKNOWLEDGED).all(|c| c.passed), "{checks:#?}");
    assert_eq!(verify::exit_code(&checks), verify::INVARIANT_FAILED);
}

#[actix_rt::test]
async fn a_reservation_for_no_order_fails_the_stock_check_and_a_second_capture_the_payment_check() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let ledger = AckLedger::in_memory();
    let ids = place_orders(&node, &ledger).await;
    let journal = node.journal.as_ref();
    assert!(verify(journal, &[], &ledger.entries()).await.iter().all(|c| c.passed));

    let nobody = Uuid::now_v7();
    let bogus = StockReserved { store_id: "store-1".into(), sku: "latte".into(), order_id: nobody, quantity: 1 };
    append(journal, &streams::inventory("store-1", "latte"), bogus.into()).await;
    let checks = verify(journal, &[], &ledger.entries()).await;
    let stock = check(&checks, STOCK);
    assert!(!stock.passed);
    assert!(stock.detail.contains(&format!("order {nobody}, never placed")), "{}", stock.detail);
    assert!(checks.iter().filter(|c| c.name != STOCK).all(|c| c.passed), "{checks:#?}");

    let mut paid = None;
    for id in ids {
        let order = node.cafe.order(id).await.unwrap().unwrap();
        if order.status == actors::domain::order::OrderStatus::Paid {
            paid = Some(order);
            break;
        }
    }
    let paid = paid.expect("some order was paid");
    let again = PaymentCaptured { order_id: paid.order_id, amount_cents: paid.total_cents };
    append(journal, &streams::payment(paid.order_id), again.into()).await;
    let checks = verify(journal, &[], &ledger.entries()).await;
    let payments = check(&checks, PAYMENTS);
    assert!(!payments.passed);
    assert!(payments.detail.contains(&format!("order {} captured 2 times", paid.order_id)), "{}", payments.detail);
}

#[actix_rt::test]
async fn a_row_deleted_from_the_storefront_fails_the_comparison_with_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let ledger = AckLedger::in_memory();
    place_orders(&node, &ledger).await;
    let models = storefront(&dir);
    assert!(verify(node.journal.as_ref(), &models, &ledger.entries()).await.iter().all(|c| c.passed));

    let db = rusqlite::Connection::open(dir.path().join("readmodel.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(db.execute("DELETE FROM loyalty_accounts WHERE customer_id = 'c2'", []).unwrap(), 1);
    drop(db);
    let checks = verify(node.journal.as_ref(), &models, &ledger.entries()).await;
    let models = check(&checks, READ_MODELS);
    assert!(!models.passed);
    assert!(models.detail.contains("storefront: 1 rows differ"), "{}", models.detail);
    assert!(models.detail.contains("c2"), "{}", models.detail);
    assert!(checks.iter().filter(|c| c.name != READ_MODELS).all(|c| c.passed), "{checks:#?}");
}

/// The DynamoDB tables, fed as a Kinesis consumer would feed them (no journal position to wait
/// for), compare equal with the rebuild `verify` keeps in memory, and an item changed behind the
/// sink's back is named once the settle time is over.
#[cfg(feature = "cloud")]
#[actix_rt::test]
async fn an_item_changed_in_a_stream_fed_dynamodb_model_fails_the_comparison_with_the_rebuild_in_memory() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use projections::read_models::dynamo::DynamoSink;
    use projections::Sink;

    let Some(endpoint) = testkit::servers::dynamodb_endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let ledger = AckLedger::in_memory();
    let orders = place_orders(&node, &ledger).await;
    let client = testkit::aws::dynamodb_client(&endpoint).await;
    let names = testkit::aws::fresh_table_names();
    let sink = Arc::new(DynamoSink::open(client.clone(), names.clone()).await.unwrap());
    let settings = VerifySettings { settle: SETTLE, stream_fed: vec![sink.name().to_owned()] };
    // Feeds the sink the journal while verify waits, as a consumer catching up would.
    let feed = {
        let (journal, sink) = (node.journal.clone(), sink.clone());
        tokio::spawn(async move {
            for _ in 0..40 {
                let page = journal.read_all(0, 100_000).await.unwrap();
                sink.apply(&page).await.unwrap();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let models: Vec<Arc<dyn Rebuildable>> = vec![sink.clone()];
    let checks = verify::verify(node.journal.as_ref(), &models, &ledger.entries(), &settings).await.unwrap();
    assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
    assert!(check(&checks, READ_MODELS).detail.contains("dynamodb-read-models: equal"), "{checks:#?}");
    feed.abort();

    let changed = orders[0].to_string();
    client
        .update_item()
        .table_name(names.active_orders(1))
        .key("order_id", AttributeValue::S(changed.clone()))
        .update_expression("SET #s = :s")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", AttributeValue::S("placed".into()))
        .send()
        .await
        .unwrap();
    let short = VerifySettings { settle: Duration::from_secs(3), ..settings };
    let checks = verify::verify(node.journal.as_ref(), &models, &ledger.entries(), &short).await.unwrap();
    let models = check(&checks, READ_MODELS);
    assert!(!models.passed);
    assert!(models.detail.contains("dynamodb-read-models: 1 rows differ"), "{}", models.detail);
    assert!(models.detail.contains(&changed), "{}", models.detail);
}
