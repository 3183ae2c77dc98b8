//! The storefront's queries, on every store. Each case gets a fresh, empty store. The generic sink
//! and rebuild suites (`crate::read_models::conformance`) run on it as well.

use std::future::Future;
use std::sync::Arc;

use events::domain::{
    streams, MenuItemPriceChanged, MenuItemPublished, MenuItemRetired, Nutrition, OrderCancelled, OrderLine, OrderPaid,
    OrderPlaced, PointsAccrued, StockRestocked, Tier, TierChanged,
};
use events::DomainEvent;
use uuid::Uuid;

use super::StorefrontQueries;
use crate::read_models::conformance::{a_day_of_orders, journal, run_rebuild_suite, run_sink_suite};
use crate::{Rebuildable, Sink, SinkError};

pub trait Storefront: Rebuildable + StorefrontQueries {}
impl<T: Rebuildable + StorefrontQueries> Storefront for T {}

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
    case!(an_overlapping_page_applies_only_what_is_new);
    case!(the_menu_lists_published_repriced_and_retired_items);
    case!(stock_and_loyalty_follow_the_day);
    case!(loyalty_customers_page_through_every_account);
    case!(an_undecodable_event_applies_nothing);
    run_sink_suite(|| {
        let made = make();
        async move { made.await as Arc<dyn Sink> }
    })
    .await;
    eprintln!("storefront conformance: rebuild");
    run_rebuild_suite(make().await as Arc<dyn Rebuildable>).await;
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
    // An old event does not roll a newer status back.
    s.apply(&page[..1]).await.unwrap();
    assert_eq!(s.order(a).await.unwrap().unwrap().status, "paid");
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
                nutrition: Nutrition { calories: 120, caffeine_mg: 75, sugar_g: 10 },
                image_sha256: "ab".repeat(32),
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
    assert_eq!(menu[1].nutrition.caffeine_mg, 75);
    assert_eq!(menu[1].image_sha256, "ab".repeat(32));
    assert!(menu[2].retired && !menu[1].retired);
}

pub async fn stock_and_loyalty_follow_the_day(s: Arc<dyn Storefront>) {
    let day = a_day_of_orders(30);
    s.apply(&day).await.unwrap();
    // Replaying the tail must not add stock or points twice.
    s.apply(&day[day.len() - 40..]).await.unwrap();
    let levels = s.stock_levels("s1", None, 100).await.unwrap();
    // Paged by SKU: latte, mocha, scone one at a time, then nothing.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.stock_levels("s1", after.as_deref(), 1).await.unwrap();
        let Some(last) = page.last() else { break };
        assert_eq!(page.len(), 1);
        after = Some(last.sku.clone());
        paged.extend(page);
    }
    assert_eq!(paged, levels);
    assert_eq!(levels.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>(), ["latte", "mocha", "scone"]);
    assert!(levels.iter().all(|l| l.store_id == "s1"));
    assert!(s.stock_levels("nowhere", None, 10).await.unwrap().is_empty());
    let latte = levels.iter().find(|l| l.sku == "latte").expect("latte stock");
    // s1 takes the orders with i % 3 != 0; paid ones (not declined, i % 5 != 4, nor cancelled after
    // their authorization, i % 35 == 7) keep their units: sold once their preparation started
    // (i % 4 != 0), still reserved while they wait for it (i % 8 == 0), back when their customer
    // cancelled them (i % 8 == 4).
    let paid = |i: &u32| i % 5 != 4 && i % 35 != 7;
    let units = |keep: fn(u32) -> bool| -> i64 {
        (0..30u32).filter(|i| i % 3 != 0 && paid(i) && keep(*i)).map(|i| i64::from(1 + i % 3)).sum()
    };
    let (taken, waiting) = (units(|i| i % 8 != 4), units(|i| i % 8 == 0));
    assert_eq!((taken, waiting), (33, 5));
    assert_eq!((latte.available, latte.reserved), (10_000 - taken, waiting));
    let c0 = s.loyalty("c0").await.unwrap().expect("c0 has an account");
    let earned: i64 =
        (0..30u32).filter(|i| i % 13 == 0 && paid(i)).map(|i| (i64::from(1 + i % 3) * 475 + 325) / 100).sum();
    assert_eq!(c0.points, earned);
    assert!(s.loyalty("nobody").await.unwrap().is_none());
}

pub async fn loyalty_customers_page_through_every_account(s: Arc<dyn Storefront>) {
    assert!(s.loyalty_customers(None, 10).await.unwrap().is_empty(), "no account yet");
    // Out of order, one account with a tier change only, and one customer with two accruals.
    let customers = ["c07", "c03", "c10", "c01", "c05", "c02", "c09"];
    let mut history: Vec<(String, DomainEvent)> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let accrued = PointsAccrued { customer_id: (*c).into(), order_id: Uuid::from_u128(i as u128), points: 5 };
            (streams::loyalty(c), accrued.into())
        })
        .collect();
    history.push((
        streams::loyalty("c07"),
        PointsAccrued { customer_id: "c07".into(), order_id: Uuid::from_u128(99), points: 5 }.into(),
    ));
    history.push((
        streams::loyalty("c04"),
        TierChanged { customer_id: "c04".into(), from: Tier::Green, to: Tier::Gold }.into(),
    ));
    s.apply(&journal(history)).await.unwrap();
    let mut expected: Vec<String> = customers.iter().map(|c| (*c).to_owned()).collect();
    expected.push("c04".into());
    expected.sort();
    let (mut walked, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = s.loyalty_customers(after.as_deref(), 3).await.unwrap();
        assert!(page.len() <= 3, "a page holds at most its limit: {page:?}");
        let Some(last) = page.last().cloned() else { break };
        walked.extend(page);
        after = Some(last);
        pages += 1;
    }
    assert_eq!(walked, expected, "every account once, by id");
    assert_eq!(pages, 3);
    assert_eq!(s.loyalty_customers(Some("c05"), 2).await.unwrap(), vec!["c07", "c09"]);
    assert!(s.loyalty_customers(Some("c10"), 5).await.unwrap().is_empty());
}

pub async fn an_undecodable_event_applies_nothing(s: Arc<dyn Storefront>) {
    let mut page = journal(vec![placed(Uuid::from_u128(1), "alice", 1), placed(Uuid::from_u128(2), "alice", 2)]);
    page[1].payload = vec![0xc1]; // never valid MessagePack
    assert!(matches!(s.apply(&page).await, Err(SinkError::Poison { .. })));
    assert_eq!(s.position().await.unwrap(), 0);
    assert!(s.order(Uuid::from_u128(1)).await.unwrap().is_none());
}
