//! Two nodes on one journal see each other's writes within the staleness bound, and reads of
//! streams that do not exist keep no actor in memory.

use std::sync::Arc;
use std::time::Duration;

use actors::cafe::{Cafe, CafeError, PaymentPolicy, PlaceOrder};
use actors::domain::menu::MenuCommand;
use actors::freshness::FreshnessFollower;
use actors::host::{start_arbiters, HostOptions};
use events::domain::streams;
use events::postgres::{PgJournal, PgOptions};
use events::sqlite::{SqliteJournal, SqliteOptions};
use events::{Causation, Journal};
use futures::StreamExt;
use tokio::sync::watch;
use uuid::Uuid;

/// One node's use cases on `journal`, with its freshness follower running until the sender drops.
fn node(journal: Arc<dyn Journal>, follow: bool) -> (Arc<Cafe>, watch::Sender<bool>) {
    let host = HostOptions::default();
    let policy = PaymentPolicy { decline_threshold: 1.0, fraud_rounds: 10, ..PaymentPolicy::default() };
    let cafe = Arc::new(Cafe::new(journal.clone(), host.clone(), policy, start_arbiters(1)));
    let (stop, stopped) = watch::channel(false);
    if follow {
        let follower = FreshnessFollower::new(journal, cafe.freshness.clone(), host.freshness_poll);
        actix_rt::spawn(follower.run(stopped));
    }
    (cafe, stop)
}

fn bound() -> Duration {
    HostOptions::default().staleness_bound
}

fn publish(item: &str, price: i64) -> MenuCommand {
    MenuCommand::Publish {
        item_id: item.into(),
        name: item.into(),
        category: "coffee".into(),
        price_cents: price,
        nutrition: events::domain::Nutrition::default(),
        image_sha256: String::new(),
    }
}

fn order(store: &str, item: &str) -> PlaceOrder {
    PlaceOrder {
        order_id: Uuid::now_v7(),
        customer_id: "bob".into(),
        store_id: store.into(),
        items: vec![(item.to_owned(), 1)],
        placed_at_us: 1,
        fresh_order_id: true,
    }
}

/// Orders are taken only in an open store.
async fn open_s1(cafe: &Cafe) {
    cafe.open_store("s1", "Store 1", Causation::new_root()).await.unwrap();
}

async fn change(cafe: &Cafe, item: &str, command: MenuCommand) {
    cafe.menu.execute(&streams::menu_item(item), command, Causation::new_root()).await.unwrap();
}

/// Node B looked the item up before it existed, ordered it, showed its stock: every change node A
/// makes reaches B's decisions once the bound has passed.
async fn changes_on_one_node_reach_the_others_decisions_within_the_bound(a: Arc<dyn Journal>, b: Arc<dyn Journal>) {
    let (node_a, _follow_a) = node(a, true);
    let (node_b, _follow_b) = node(b, true);
    let item = format!("flat-white-{}", &Uuid::new_v4().simple().to_string()[..8]);
    open_s1(&node_a).await;

    assert!(node_b.menu_item(&item).await.unwrap().is_none());
    let refused = node_b.place_order(order("s1", &item), Causation::new_root()).await.unwrap_err();
    assert!(matches!(refused, CafeError::NotFound { .. }), "{refused:?}");

    node_a.publish_menu_item(publish(&item, 400), Causation::new_root()).await.unwrap();
    tokio::time::sleep(bound()).await;
    let placed = node_b.place_order(order("s1", &item), Causation::new_root()).await;
    assert_eq!(placed.expect("B sees the item A published").state.total_cents, 400);

    change(&node_a, &item, MenuCommand::ChangePrice { price_cents: 525 }).await;
    tokio::time::sleep(bound()).await;
    let placed = node_b.place_order(order("s1", &item), Causation::new_root()).await.unwrap();
    assert_eq!(placed.state.total_cents, 525, "B prices with A's new price");

    assert_eq!(node_b.stock("s1", &item).await.unwrap().available, 0);
    node_a.restock("s1", &item, 7, Causation::new_root()).await.unwrap();
    tokio::time::sleep(bound()).await;
    assert_eq!(node_b.stock("s1", &item).await.unwrap().available, 7, "B shows A's restock");

    change(&node_a, &item, MenuCommand::Retire).await;
    tokio::time::sleep(bound()).await;
    let refused = node_b.place_order(order("s1", &item), Causation::new_root()).await.unwrap_err();
    assert!(
        matches!(&refused, CafeError::Rejected { field: Some(f), .. } if f == "items[0].item_id"),
        "B refuses the item A retired: {refused:?}"
    );
}

#[actix_rt::test]
async fn two_nodes_on_one_embedded_journal_see_each_others_writes_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    changes_on_one_node_reach_the_others_decisions_within_the_bound(journal.clone(), journal).await;
}

async fn pg_journal(url: &str, schema: &str) -> Arc<dyn Journal> {
    let mut options = PgOptions::new(url).with_schema(schema);
    options.pool_size = 4;
    options.writers = 1;
    Arc::new(PgJournal::connect(options).await.unwrap())
}

/// Two processes' worth of journal: each `PgJournal` only hears of the other's commits by polling.
#[actix_rt::test]
async fn two_nodes_on_one_postgres_journal_see_each_others_writes_within_the_bound() {
    let Some(url) = testkit::servers::postgres_url() else { return };
    let schema = testkit::servers::fresh_schema("fresh");
    let a = pg_journal(&url, &schema).await;
    let b = pg_journal(&url, &schema).await;
    changes_on_one_node_reach_the_others_decisions_within_the_bound(a, b).await;
}

/// The bound holds when the follower does not: a node whose follower stopped reads the journal
/// before it decides, once the follower's last poll is older than the bound.
#[actix_rt::test]
async fn a_node_whose_follower_lags_past_the_bound_reads_the_journal_before_deciding() {
    let Some(url) = testkit::servers::postgres_url() else { return };
    let schema = testkit::servers::fresh_schema("lag");
    let (node_a, _follow_a) = node(pg_journal(&url, &schema).await, true);
    let (node_b, follow_b) = node(pg_journal(&url, &schema).await, true);
    open_s1(&node_a).await;
    node_a.publish_menu_item(publish("cortado", 300), Causation::new_root()).await.unwrap();
    tokio::time::sleep(bound()).await;
    let placed = node_b.place_order(order("s1", "cortado"), Causation::new_root()).await.unwrap();
    assert_eq!(placed.state.total_cents, 300);

    follow_b.send(true).unwrap();
    tokio::time::sleep(bound() + Duration::from_millis(50)).await;
    change(&node_a, "cortado", MenuCommand::ChangePrice { price_cents: 350 }).await;
    let placed = node_b.place_order(order("s1", "cortado"), Causation::new_root()).await.unwrap();
    assert_eq!(placed.state.total_cents, 350, "no follower vouches for B's cache: B read the journal");
    change(&node_a, "cortado", MenuCommand::Retire).await;
    let refused = node_b.place_order(order("s1", "cortado"), Causation::new_root()).await.unwrap_err();
    assert!(matches!(refused, CafeError::Rejected { .. }), "{refused:?}");
}

/// Node B prices from its catalogue once it has read the item and the store: what node A changes
/// later reaches B's catalogue through B's follower (not through B's actors), within the bound.
#[actix_rt::test]
async fn a_nodes_catalogue_follows_what_another_node_changes() {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    let (node_a, _follow_a) = node(journal.clone(), true);
    let (node_b, _follow_b) = node(journal, true);
    tokio::time::sleep(bound()).await;
    open_s1(&node_a).await;
    node_a.publish_menu_item(publish("mocha", 400), Causation::new_root()).await.unwrap();
    assert!(node_b.freshness.catalogue().is_empty());
    assert_eq!(node_b.place_order(order("s1", "mocha"), Causation::new_root()).await.unwrap().state.total_cents, 400);
    assert_eq!(node_b.freshness.catalogue().len(), 2, "B keeps the store and the item it read");

    change(&node_a, "mocha", MenuCommand::ChangePrice { price_cents: 525 }).await;
    tokio::time::sleep(bound()).await;
    let placed = node_b.place_order(order("s1", "mocha"), Causation::new_root()).await.unwrap();
    assert_eq!(placed.state.total_cents, 525, "B's follower folded A's new price");

    change(&node_a, "mocha", MenuCommand::Retire).await;
    tokio::time::sleep(bound()).await;
    let refused = node_b.place_order(order("s1", "mocha"), Causation::new_root()).await.unwrap_err();
    assert!(matches!(refused, CafeError::Rejected { .. }), "B's follower folded the retirement: {refused:?}");

    node_a.close_store("s1", "flood", Causation::new_root()).await.unwrap();
    node_a.publish_menu_item(publish("chai", 300), Causation::new_root()).await.unwrap();
    tokio::time::sleep(bound()).await;
    let refused = node_b.place_order(order("s1", "chai"), Causation::new_root()).await.unwrap_err();
    assert!(matches!(refused, CafeError::Rejected { .. }), "B's follower folded the closing: {refused:?}");
    assert_eq!(node_b.freshness.catalogue().len(), 3);
}

/// Looking up thousands of orders, payments, customers and store items that do not exist leaves
/// no actor behind; one that exists stays.
#[actix_rt::test]
async fn reads_of_streams_that_do_not_exist_keep_no_actor() {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    let (cafe, _follow) = node(journal, true);
    const LOOKUPS: usize = 2000;
    futures::stream::iter(0..LOOKUPS)
        .for_each_concurrent(32, |i| {
            let cafe = cafe.clone();
            async move {
                assert!(cafe.order(Uuid::now_v7()).await.unwrap().is_none());
                assert!(cafe.payment(Uuid::now_v7()).await.unwrap().is_none());
                assert_eq!(cafe.loyalty_account(&format!("nobody-{i}")).await.unwrap().points, 0);
                assert_eq!(cafe.stock("s1", &format!("ghost-{i}")).await.unwrap().available, 0);
                assert!(cafe.menu_item(&format!("ghost-{i}")).await.unwrap().is_none());
            }
        })
        .await;
    let resident = cafe.orders.resident()
        + cafe.payments.resident()
        + cafe.loyalty.resident()
        + cafe.inventory.resident()
        + cafe.menu.resident();
    assert_eq!(resident, 0, "{} lookups of nothing left {resident} actors", LOOKUPS * 5);
    assert_eq!(cafe.freshness.resident(), 0, "nor anything for the freshness follower to look up");

    cafe.publish_menu_item(publish("latte", 450), Causation::new_root()).await.unwrap();
    open_s1(&cafe).await;
    cafe.place_order(order("s1", "latte"), Causation::new_root()).await.unwrap();
    assert_eq!((cafe.menu.resident(), cafe.orders.resident()), (1, 1), "streams that exist keep their actor");
}
