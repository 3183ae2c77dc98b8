//! One suite for every storefront store. Each case gets a fresh, empty store.

use std::future::Future;
use std::sync::Arc;

use events::domain::{
    streams, MenuItemPriceChanged, MenuItemPublished, MenuItemRetired, OrderCancelled, OrderLine, OrderPaid,
    OrderPlaced, StockRestocked,
};
use events::{Causation, DomainEvent, NewEvent, RecordedEvent};
use uuid::Uuid;

use super::StorefrontQueries;
use crate::{Sink, SinkError};

pub trait Storefront: Sink + StorefrontQueries {}
impl<T: Sink + StorefrontQueries> Storefront for T {}

/// A small journal written by hand: `(stream, event)` in global order from position 1.
pub fn journal(events: Vec<(String, DomainEvent)>) -> Vec<RecordedEvent> {
    let mut versions = std::collections::HashMap::<String, (u64, [u8; 32])>::new();
    events
        .into_iter()
        .enumerate()
        .map(|(i, (stream, e))| {
            let (v, h) = versions.entry(stream.clone()).or_insert((0, events::envelope::GENESIS_HASH));
            *v += 1;
            let mut r = NewEvent::from_domain(&e, Causation::new_root()).unwrap().record(&stream, *v, h);
            *h = r.hash;
            r.global_position = i as u64 + 1;
            r
        })
        .collect()
}

fn placed(order: Uuid, customer: &str, at: i64) -> (String, DomainEvent) {
    (
        streams::order(order),
        OrderPlaced {
            order_id: order,
            customer_id: customer.into(),
            store_id: "s1".into(),
            lines: vec![
                OrderLine { item_id: "latte".into(), quantity: 2, unit_price_cents: 450 },
                OrderLine { item_id: "scone".into(), quantity: 1, unit_price_cents: 325 },
            ],
            total_cents: 1225,
            placed_at_us: at,
        }
        .into(),
    )
}

pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Storefront>>,
{
    macro_rules! case {
        ($name:ident) => {
            eprintln!("storefront conformance: {}", stringify!($name));
            $name(make().await).await;
        };
    }
    case!(orders_follow_their_events);
    case!(a_page_applied_twice_changes_nothing);
    case!(an_overlapping_page_applies_only_what_is_new);
    case!(the_menu_lists_published_repriced_and_retired_items);
    case!(an_undecodable_event_applies_nothing);
}

pub async fn orders_follow_their_events(s: Arc<dyn Storefront>) {
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let page = journal(vec![
        placed(a, "alice", 1_000_000),
        placed(b, "alice", 2_000_000),
        (
            streams::inventory("s1", "latte"),
            StockRestocked { store_id: "s1".into(), sku: "latte".into(), quantity: 1 }.into(),
        ),
        (streams::order(a), OrderPaid { order_id: a, amount_cents: 1225 }.into()),
        (streams::order(b), OrderCancelled { order_id: b, reason: "payment_declined".into() }.into()),
    ]);
    s.apply(&page).await.unwrap();
    assert_eq!(s.position().await.unwrap(), 5);
    let order = s.order(a).await.unwrap().expect("projected");
    assert_eq!((order.status.as_str(), order.total_cents, order.lines.len()), ("paid", 1225, 2));
    assert_eq!(order.lines[1], OrderLine { item_id: "scone".into(), quantity: 1, unit_price_cents: 325 });
    assert_eq!(order.created_at_us, 1_000_000);
    let listed = s.customer_orders("alice", 10).await.unwrap();
    assert_eq!(listed.iter().map(|o| o.order_id).collect::<Vec<_>>(), vec![b, a], "newest first");
    assert_eq!(listed[0].cancel_reason.as_deref(), Some("payment_declined"));
    assert!(s.customer_orders("bob", 10).await.unwrap().is_empty());
    assert!(s.order(Uuid::from_u128(9)).await.unwrap().is_none());
}

pub async fn a_page_applied_twice_changes_nothing(s: Arc<dyn Storefront>) {
    let a = Uuid::from_u128(1);
    let page =
        journal(vec![placed(a, "alice", 1), (streams::order(a), OrderPaid { order_id: a, amount_cents: 1225 }.into())]);
    s.apply(&page).await.unwrap();
    let before = s.order(a).await.unwrap();
    s.apply(&page).await.unwrap();
    s.apply(&page[..1]).await.unwrap();
    assert_eq!(s.order(a).await.unwrap(), before);
    assert_eq!(s.order(a).await.unwrap().unwrap().status, "paid", "an old event did not roll the status back");
    assert_eq!(s.position().await.unwrap(), 2);
}

pub async fn an_overlapping_page_applies_only_what_is_new(s: Arc<dyn Storefront>) {
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let all = journal(vec![
        placed(a, "alice", 1),
        placed(b, "bob", 2),
        (streams::order(b), OrderPaid { order_id: b, amount_cents: 1225 }.into()),
    ]);
    s.apply(&all[..2]).await.unwrap();
    s.apply(&all[1..]).await.unwrap();
    assert_eq!(s.position().await.unwrap(), 3);
    assert_eq!(s.order(b).await.unwrap().unwrap().status, "paid");
    assert_eq!(s.order(b).await.unwrap().unwrap().lines.len(), 2);
}

pub async fn the_menu_lists_published_repriced_and_retired_items(s: Arc<dyn Storefront>) {
    let publish = |id: &str, category: &str| {
        (
            streams::menu_item(id),
            DomainEvent::from(MenuItemPublished {
                item_id: id.into(),
                name: id.to_uppercase(),
                category: category.into(),
                price_cents: 400,
            }),
        )
    };
    let page = journal(vec![
        publish("latte", "coffee"),
        publish("scone", "bakery"),
        publish("mocha", "coffee"),
        (streams::menu_item("latte"), MenuItemPriceChanged { item_id: "latte".into(), price_cents: 475 }.into()),
        (streams::menu_item("mocha"), MenuItemRetired { item_id: "mocha".into() }.into()),
    ]);
    s.apply(&page).await.unwrap();
    let menu = s.menu().await.unwrap();
    assert_eq!(menu.iter().map(|m| m.item_id.as_str()).collect::<Vec<_>>(), vec!["scone", "latte", "mocha"]);
    assert_eq!(menu[1].price_cents, 475);
    assert!(menu[2].retired && !menu[1].retired);
}

pub async fn an_undecodable_event_applies_nothing(s: Arc<dyn Storefront>) {
    let mut page = journal(vec![placed(Uuid::from_u128(1), "alice", 1), placed(Uuid::from_u128(2), "alice", 2)]);
    page[1].payload = vec![0xc1]; // never valid MessagePack
    assert!(matches!(s.apply(&page).await, Err(SinkError::Poison(_))));
    assert_eq!(s.position().await.unwrap(), 0);
    assert!(s.order(Uuid::from_u128(1)).await.unwrap().is_none());
}
