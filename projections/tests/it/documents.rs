//! The DocumentDB read models against a real MongoDB wire-protocol server (SecantusDB in tests:
//! `deploy/local/emulators.sh`). Each case gets its own database.

use std::collections::HashMap;
use std::sync::Arc;

use events::domain::{
    streams, MenuItemPriceChanged, MenuItemPublished, Nutrition, OrderCancelled, OrderLine, OrderPaid, OrderPlaced,
};
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Client, Database};
use projections::read_models::conformance::{a_day_of_orders, journal, run_rebuild_suite, run_sink_suite};
use projections::read_models::documents::{DocumentSink, MENU, NAME, OFFSETS, ORDER_DOCUMENTS, SHADOW_SUFFIX};
use projections::read_models::storefront::sqlite::SqliteStorefront;
use projections::{CanonicalRow, Rebuildable, Sink};
use testkit::servers;
use uuid::Uuid;

pub(crate) async fn client(uri: &str) -> Client {
    Client::with_uri_str(uri).await.unwrap()
}

/// A database no other test uses.
pub(crate) fn fresh_db(client: &Client) -> Database {
    client.database(&format!("t_{}", &Uuid::new_v4().simple().to_string()[..12]))
}

/// Moves the stored position back, as if the process had crashed after writing the documents of the
/// pages above it but before storing its position: those events reach the collections again.
async fn rewind(db: &Database, position: i64) {
    db.collection::<Document>(OFFSETS)
        .update_one(doc! { "_id": NAME }, doc! { "$set": { "position": position } })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_sink_passes_the_sink_suite() {
    let Some(uri) = servers::mongodb_uri() else { return };
    let client = client(&uri).await;
    run_sink_suite(|| {
        let db = fresh_db(&client);
        async move { Arc::new(DocumentSink::open(db).await.unwrap()) as Arc<dyn Sink> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_sink_passes_the_rebuild_suite() {
    let Some(uri) = servers::mongodb_uri() else { return };
    let client = client(&uri).await;
    let db = fresh_db(&client);
    run_rebuild_suite(Arc::new(DocumentSink::open(db.clone()).await.unwrap())).await;
    let mut collections = db.list_collection_names().await.unwrap();
    collections.sort();
    assert_eq!(collections, vec![MENU, ORDER_DOCUMENTS, OFFSETS], "no shadow collection is left");
}

/// The documents hold the same values as the SQL storefront fed the same journal, also after events
/// reach them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_agree_with_the_sql_storefront() {
    let Some(uri) = servers::mongodb_uri() else { return };
    let day = a_day_of_orders(30);
    let dir = tempfile::tempdir().unwrap();
    let reference = SqliteStorefront::open(dir.path()).unwrap();
    reference.apply(&day).await.unwrap();
    let reference = reference.canonical_rows().await.unwrap();

    let client = client(&uri).await;
    let db = fresh_db(&client);
    let sink = DocumentSink::open(db.clone()).await.unwrap();
    for page in day[..200].chunks(50) {
        sink.apply(page).await.unwrap();
    }
    // A crash after the last page's documents, before its position.
    rewind(&db, 150).await;
    sink.apply(&day[150..]).await.unwrap();
    assert_agrees(&sink, &reference).await;
    // And everything again, in small overlapping pages.
    rewind(&db, 0).await;
    for start in (0..day.len()).step_by(7) {
        sink.apply(&day[start.saturating_sub(3)..(start + 7).min(day.len())]).await.unwrap();
    }
    assert_eq!(sink.position().await.unwrap(), day.len() as u64);
    assert_agrees(&sink, &reference).await;
}

async fn assert_agrees(sink: &DocumentSink, reference: &[CanonicalRow]) {
    let rows = sink.canonical_rows().await.unwrap();
    let table = |rows: &[CanonicalRow], prefix: &str| -> HashMap<String, String> {
        rows.iter().filter_map(|r| r.key.strip_prefix(prefix).map(|k| (k.to_owned(), r.content.clone()))).collect()
    };
    let menu = table(reference, "menu_items/");
    assert_eq!(menu.len(), 3);
    assert_eq!(table(&rows, "menu/"), menu);
    let orders = table(reference, "orders/");
    assert_eq!(orders.len(), 30);
    assert_eq!(table(&rows, "order_documents/"), orders);
    assert_eq!(rows.len(), 33, "nothing else");
}

/// A document the store refuses (a menu item whose name makes it larger than a document may be: the
/// deciders' limits keep such events out, an old journal or another writer might not) is poison, so
/// the projection reports a stall instead of retrying quietly; the model and its position are as
/// before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_the_store_refuses_is_poison_not_an_outage() {
    let Some(uri) = servers::mongodb_uri() else { return };
    let client = client(&uri).await;
    let db = fresh_db(&client);
    let sink = DocumentSink::open(db.clone()).await.unwrap();
    let published = |item_id: &str, name: String| {
        let e = MenuItemPublished {
            item_id: item_id.into(),
            name,
            category: "coffee".into(),
            price_cents: 450,
            nutrition: Nutrition::default(),
            image_sha256: String::new(),
        };
        (streams::menu_item(item_id), e.into())
    };
    let log = journal(vec![published("latte", "Latte".into()), published("huge", "x".repeat(17 * 1024 * 1024))]);
    sink.apply(&log[..1]).await.unwrap();
    let refused = sink.apply(&log[1..]).await.unwrap_err();
    assert!(refused.is_poison(), "a refused document is poison, not an outage: {refused:?}");
    assert!(std::error::Error::source(&refused).is_some(), "the driver's error is kept as the cause");
    assert_eq!(sink.position().await.unwrap(), log[0].global_position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_document_holds_its_lines_and_final_status() {
    let Some(uri) = servers::mongodb_uri() else { return };
    let client = client(&uri).await;
    let db = fresh_db(&client);
    let sink = DocumentSink::open(db.clone()).await.unwrap();
    let (a, b, c) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb), Uuid::from_u128(0xc));
    let placed = |order_id: Uuid, at_us: i64| {
        let lines = vec![
            OrderLine { item_id: "latte".into(), quantity: 2, unit_price_cents: 475 },
            OrderLine { item_id: "scone".into(), quantity: 1, unit_price_cents: 325 },
        ];
        let e = OrderPlaced {
            order_id,
            customer_id: "alice".into(),
            store_id: "s1".into(),
            lines,
            total_cents: 1275,
            placed_at_us: at_us,
        };
        (streams::order(order_id), e.into())
    };
    let price = |cents| {
        (streams::menu_item("latte"), MenuItemPriceChanged { item_id: "latte".into(), price_cents: cents }.into())
    };
    let log = journal(vec![
        (
            streams::menu_item("latte"),
            MenuItemPublished {
                item_id: "latte".into(),
                name: "Latte".into(),
                category: "coffee".into(),
                price_cents: 450,
                nutrition: Nutrition { calories: 190, caffeine_mg: 150, sugar_g: 17 },
                image_sha256: "ab".repeat(32),
            }
            .into(),
        ),
        placed(a, 1_000),
        price(475),
        placed(b, 3_000),
        placed(c, 2_000),
        (streams::order(a), OrderPaid { order_id: a, amount_cents: 1275 }.into()),
        (streams::order(b), OrderCancelled { order_id: b, reason: "payment_declined".into() }.into()),
        price(500),
    ]);
    sink.apply(&log[..2]).await.unwrap();
    sink.apply(&log[2..]).await.unwrap();

    // The document as a mobile app reads it, straight from the collection.
    let raw = db.collection::<Document>(ORDER_DOCUMENTS).find_one(doc! { "_id": b.to_string() }).await.unwrap();
    let raw = raw.expect("the order's document");
    assert_eq!(raw.get_str("status").unwrap(), "cancelled");
    assert_eq!(raw.get_str("cancel_reason").unwrap(), "payment_declined");
    assert_eq!(raw.get_i64("version").unwrap(), 2);
    let lines = raw.get_array("lines").unwrap();
    assert_eq!(lines.len(), 2);
    let Bson::Document(first) = &lines[0] else { panic!("a line is a document: {lines:?}") };
    assert_eq!(first.get_str("item_id").unwrap(), "latte");
    assert_eq!(first.get_i64("quantity").unwrap(), 2);
    assert_eq!(first.get_i64("unit_price_cents").unwrap(), 475);

    let order = sink.order(a).await.unwrap().unwrap();
    assert_eq!((order.status.as_str(), order.cancel_reason, order.lines.len()), ("paid", None, 2));
    assert_eq!(sink.order(c).await.unwrap().unwrap().status, "placed");
    assert_eq!(sink.order(Uuid::from_u128(0xeeee)).await.unwrap(), None);
    let ids: Vec<Uuid> = sink.customer_orders("alice", 10).await.unwrap().iter().map(|o| o.order_id).collect();
    assert_eq!(ids, vec![b, c, a], "newest first");
    assert_eq!(sink.customer_orders("alice", 1).await.unwrap()[0].order_id, b);
    let menu = sink.menu().await.unwrap();
    assert_eq!((menu.len(), menu[0].price_cents, menu[0].nutrition.caffeine_mg), (1, 500, 150));

    // Each event seen again (as after a crash before the position was stored) changes nothing: an
    // upsert of a placement meets E11000, an older price matches no document.
    let before = sink.canonical_rows().await.unwrap();
    rewind(&db, 0).await;
    for (i, event) in log.chunks(1).enumerate() {
        sink.apply(event).await.unwrap();
        assert_eq!(sink.canonical_rows().await.unwrap(), before, "after event {i} again");
    }

    // A rebuild that starts past A's and B's placement (and latte's publication) never shows them,
    // even though it sees them change later.
    sink.reset_shadow(4).await.unwrap();
    let shadow = sink.shadow().await.unwrap();
    shadow.apply(&log).await.unwrap();
    let mut keys: Vec<String> = shadow.canonical_rows().await.unwrap().into_iter().map(|r| r.key).collect();
    keys.sort();
    assert_eq!(keys, vec![format!("{ORDER_DOCUMENTS}/{c}")]);
    sink.discard_shadow().await.unwrap();
}

/// Promotion renames one collection at a time; one interrupted after the first rename finishes on retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_promotion_resumes() {
    let Some(uri) = servers::mongodb_uri() else { return };
    let client = client(&uri).await;
    let db = fresh_db(&client);
    let live = DocumentSink::open(db.clone()).await.unwrap();
    let day = a_day_of_orders(10);
    live.apply(&day[..40]).await.unwrap();
    live.reset_shadow(0).await.unwrap();
    let shadow = live.shadow().await.unwrap();
    shadow.apply(&day).await.unwrap();
    let rebuilt = shadow.fingerprint().await.unwrap();
    // The first rename of a promotion, then a crash.
    let name = db.name();
    client
        .database("admin")
        .run_command(doc! {
            "renameCollection": format!("{name}.{MENU}{SHADOW_SUFFIX}"),
            "to": format!("{name}.{MENU}"),
            "dropTarget": true,
        })
        .await
        .unwrap();
    live.promote_shadow().await.unwrap();
    assert_eq!(live.fingerprint().await.unwrap(), rebuilt);
    assert_eq!(live.position().await.unwrap(), day.len() as u64);
    assert!(live.promote_shadow().await.is_err(), "nothing left to promote");
}
