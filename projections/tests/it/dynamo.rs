//! The DynamoDB read models against a real DynamoDB API (moto in tests: `deploy/local/emulators.sh`).
//! Each case gets its own tables under a fresh prefix.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use aws_sdk_dynamodb::Client;
use events::domain::{streams, OrderCancelled, OrderLine, OrderPaid, OrderPlaced};
use events::DomainEvent;
use projections::read_models::conformance::{a_day_of_orders, journal, run_rebuild_suite, run_sink_suite};
use projections::read_models::dynamo::{ActiveOrder, DynamoSink, TableNames, ACTIVE_AFTER_COMPLETION_SECS};
use projections::read_models::storefront::sqlite::SqliteStorefront;
use projections::{CanonicalRow, Rebuildable, Sink};
use testkit::aws::{dynamodb_client, fresh_table_names};
use testkit::servers;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_sink_passes_the_sink_suite() {
    let Some(endpoint) = servers::dynamodb_endpoint() else { return };
    let client = dynamodb_client(&endpoint).await;
    run_sink_suite(|| {
        let client = client.clone();
        async move { Arc::new(DynamoSink::open(client, fresh_table_names()).await.unwrap()) as Arc<dyn Sink> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_sink_rebuilds_into_a_new_generation_and_drops_the_old_one() {
    let Some(endpoint) = servers::dynamodb_endpoint() else { return };
    let client = dynamodb_client(&endpoint).await;
    let names = fresh_table_names();
    let live = Arc::new(DynamoSink::open(client.clone(), names.clone()).await.unwrap());
    run_rebuild_suite(live.clone()).await;

    // Generation 2 (the promoted shadow) is live; 1 was retired and 3 (reset, then discarded) too.
    let mut tables = client.list_tables().into_paginator().items().send();
    let mut ours = Vec::new();
    while let Some(table) = tables.next().await {
        let table = table.unwrap();
        if table.starts_with(&names.prefix) {
            ours.push(table);
        }
    }
    ours.sort();
    let mut expected = vec![names.active_orders(2), names.offsets(), names.store_inventory(2)];
    expected.sort();
    assert_eq!(ours, expected, "only the live generation's tables are left");

    // Another handle (another process) opened before a promotion follows it.
    let other = DynamoSink::open(client.clone(), names.clone()).await.unwrap();
    let before = other.fingerprint().await.unwrap();
    let shadow = live.shadow().await.unwrap();
    shadow.apply(&a_day_of_orders(40)).await.unwrap();
    live.promote_shadow().await.unwrap();
    assert_eq!(other.fingerprint().await.unwrap(), before, "a stale handle resolves the new generation");
    assert_eq!(other.position().await.unwrap(), a_day_of_orders(40).len() as u64);
}

/// The DynamoDB models hold the same values as the SQL storefront fed the same journal, also after
/// events reach them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_models_agree_with_the_sql_storefront() {
    let Some(endpoint) = servers::dynamodb_endpoint() else { return };
    let day = a_day_of_orders(30);
    let dir = tempfile::tempdir().unwrap();
    let reference = SqliteStorefront::open(dir.path()).unwrap();
    reference.apply(&day).await.unwrap();
    let reference = reference.canonical_rows().await.unwrap();

    let client = dynamodb_client(&endpoint).await;
    let names = fresh_table_names();
    let sink = DynamoSink::open(client.clone(), names.clone()).await.unwrap();
    for page in day[..200].chunks(50) {
        sink.apply(page).await.unwrap();
    }
    // A crash after the last page's items, before its position: the restarted runner reads a bigger
    // page that starts inside what is applied (stock deltas partly in, partly not).
    rewind(&client, &names, 1, 150).await;
    sink.apply(&day[150..]).await.unwrap();
    assert_agrees(&sink, &reference).await;
    // And everything again, in small overlapping pages: every write finds its item as new or newer.
    rewind(&client, &names, 1, 0).await;
    for start in (0..day.len()).step_by(7) {
        sink.apply(&day[start.saturating_sub(3)..(start + 7).min(day.len())]).await.unwrap();
    }
    assert_eq!(sink.position().await.unwrap(), day.len() as u64);
    assert_agrees(&sink, &reference).await;
}

async fn assert_agrees(sink: &DynamoSink, reference: &[CanonicalRow]) {
    let rows = sink.canonical_rows().await.unwrap();
    let stock = |rows: &[CanonicalRow], table: &str| -> HashMap<String, String> {
        rows.iter().filter_map(|r| r.key.strip_prefix(table).map(|k| (k.to_owned(), r.content.clone()))).collect()
    };
    let expected = stock(reference, "store_inventory/");
    assert_eq!(expected.len(), 6, "two stores, three items");
    assert_eq!(stock(&rows, "store-inventory/"), expected);

    let orders = rows.iter().filter(|r| r.key.starts_with("active-orders/")).count();
    assert_eq!(orders, 30);
    assert_eq!(rows.len(), 36, "nothing else");
    for r in reference.iter().filter(|r| r.key.starts_with("orders/")) {
        let id: Uuid = r.key["orders/".len()..].parse().unwrap();
        let order = sink.active_order(id).await.unwrap().expect("every order is active for a day");
        // customer_id=..;store_id=..;status=..;total_cents=..;cancel_reason=..;created_at_us=..;lines=..
        let fields: HashMap<&str, &str> = r.content.split(';').filter_map(|f| f.split_once('=')).collect();
        assert_eq!(order.customer_id, fields["customer_id"]);
        assert_eq!(order.store_id, fields["store_id"]);
        assert_eq!(order.status, fields["status"]);
        assert_eq!(order.total_cents.to_string(), fields["total_cents"]);
        assert_eq!(order.created_at_us.to_string(), fields["created_at_us"]);
        let lines: Vec<String> =
            order.lines.iter().map(|l| format!("{}:{}:{}", l.item_id, l.quantity, l.unit_price_cents)).collect();
        assert_eq!(lines.join(","), fields["lines"]);
    }
}

fn placed(order_id: Uuid, customer: &str, at_us: i64) -> (String, DomainEvent) {
    let lines = vec![OrderLine { item_id: "latte".into(), quantity: 2, unit_price_cents: 450 }];
    (
        streams::order(order_id),
        OrderPlaced {
            order_id,
            customer_id: customer.into(),
            store_id: "s1".into(),
            lines,
            total_cents: 900,
            placed_at_us: at_us,
        }
        .into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_orders_expire_a_day_later_and_customers_see_theirs_newest_first() {
    let Some(endpoint) = servers::dynamodb_endpoint() else { return };
    let client = dynamodb_client(&endpoint).await;
    let names = fresh_table_names();
    let sink = DynamoSink::open(client.clone(), names.clone()).await.unwrap();
    let (a, b, c, d) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb), Uuid::from_u128(0xc), Uuid::from_u128(0xd));
    let log = journal(vec![
        placed(a, "alice", 1_000),
        placed(b, "alice", 3_000),
        placed(c, "alice", 2_000),
        placed(d, "bob", 4_000),
        (streams::order(a), OrderPaid { order_id: a, amount_cents: 900 }.into()),
        (streams::order(b), OrderCancelled { order_id: b, reason: "payment_declined".into() }.into()),
    ]);
    // A placed in one page and paid in the next; B placed and cancelled within one page.
    sink.apply(&log[..1]).await.unwrap();
    sink.apply(&log[1..]).await.unwrap();

    let ttl = client.describe_time_to_live().table_name(names.active_orders(1)).send().await.unwrap();
    let ttl = ttl.time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name.as_deref(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status, Some(TimeToLiveStatus::Enabled));

    let completed_at = |i: usize| log[i].recorded_at_us / 1_000_000;
    assert_eq!(ACTIVE_AFTER_COMPLETION_SECS, 86_400);
    let order = |id| {
        let sink = &sink;
        async move { sink.active_order(id).await.unwrap().unwrap() }
    };
    let (paid, cancelled, open) = (order(a).await, order(b).await, order(c).await);
    assert_eq!((paid.status.as_str(), paid.expires_at), ("paid", Some(completed_at(4) + 86_400)));
    assert_eq!((cancelled.status.as_str(), cancelled.expires_at), ("cancelled", Some(completed_at(5) + 86_400)));
    assert_eq!((open.status.as_str(), open.expires_at), ("placed", None), "open orders do not expire");

    let ids = |orders: Vec<ActiveOrder>| orders.iter().map(|o| o.order_id).collect::<Vec<_>>();
    assert_eq!(ids(sink.customer_orders("alice", 10).await.unwrap()), vec![b, c, a], "newest first");
    assert_eq!(ids(sink.customer_orders("alice", 2).await.unwrap()), vec![b, c]);
    assert_eq!(ids(sink.customer_orders("bob", 10).await.unwrap()), vec![d]);
    assert!(sink.customer_orders("carol", 10).await.unwrap().is_empty());

    // Each event seen again (as after a crash before the position was stored) changes nothing, not
    // even the expiry: it comes from the event, not the clock.
    let state = || async {
        let mut orders = Vec::new();
        for id in [a, b, c, d] {
            orders.push(sink.active_order(id).await.unwrap());
        }
        orders
    };
    let before = state().await;
    rewind(&client, &names, 1, 0).await;
    for (i, event) in log.chunks(1).enumerate() {
        sink.apply(event).await.unwrap();
        assert_eq!(state().await, before, "after event {i} again");
    }

    // A rebuild that starts past A's and B's placement never shows them, even though it sees them end.
    sink.reset_shadow(2).await.unwrap();
    let shadow = sink.shadow().await.unwrap();
    shadow.apply(&log).await.unwrap();
    let mut keys: Vec<String> = shadow.canonical_rows().await.unwrap().into_iter().map(|r| r.key).collect();
    keys.sort();
    assert_eq!(keys, vec![format!("active-orders/{c}"), format!("active-orders/{d}")]);
    sink.discard_shadow().await.unwrap();
}

/// Moves a generation's stored position back, as if the process had crashed after writing the items
/// of the pages above it but before storing its position: those events reach the tables again.
async fn rewind(client: &Client, names: &TableNames, generation: u64, position: u64) {
    client
        .put_item()
        .table_name(names.offsets())
        .item("name", AttributeValue::S(format!("{}#g{generation}", projections::read_models::dynamo::NAME)))
        .item("position", AttributeValue::N(position.to_string()))
        .send()
        .await
        .unwrap();
}
