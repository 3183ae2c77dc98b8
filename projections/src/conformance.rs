//! One conformance suite for every sink (enable the `conformance` feature): whatever the store, a
//! page applied twice changes nothing, any split into overlapping pages gives the same model, the
//! position follows the last event, and a rebuild through a shadow gives back the same model.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use events::domain::{
    streams, MenuItemPriceChanged, MenuItemPublished, MenuItemRetired, Nutrition, OrderCancelled, OrderLine, OrderPaid,
    OrderPlaced, PaymentAuthorized, PaymentCaptured, PaymentDeclined, PointsAccrued, StockReleased, StockReserved,
    StockRestocked, StockSettled, Tier, TierChanged,
};
use events::{Causation, DomainEvent, NewEvent, RecordedEvent};
use uuid::Uuid;

use crate::{Rebuildable, Sink};

/// A journal written by hand: `(stream, event)` in global order from position 1, hash-chained.
pub fn journal(events: Vec<(String, DomainEvent)>) -> Vec<RecordedEvent> {
    let mut heads = HashMap::<String, (u64, [u8; 32])>::new();
    events
        .into_iter()
        .enumerate()
        .map(|(i, (stream, e))| {
            let (v, h) = heads.entry(stream.clone()).or_insert((0, events::envelope::GENESIS_HASH));
            *v += 1;
            let mut r = NewEvent::from_domain(&e, Causation::new_root()).expect("encodes").record(&stream, *v, h);
            *h = r.hash;
            r.global_position = i as u64 + 1;
            r.recorded_at_us = 1_700_000_000_000_000 + i as i64 * 1000;
            r
        })
        .collect()
}

/// A small chain's day: a menu, restocks, orders paid and cancelled, stock, payments, points, tiers.
pub fn a_day_of_orders(orders: u32) -> Vec<RecordedEvent> {
    let mut log: Vec<(String, DomainEvent)> = Vec::new();
    let items = [("latte", "coffee", 450), ("scone", "bakery", 325), ("mocha", "coffee", 495)];
    for (item, category, price) in items {
        log.push((
            streams::menu_item(item),
            MenuItemPublished {
                item_id: item.into(),
                name: item.to_uppercase(),
                category: category.into(),
                price_cents: price,
                nutrition: Nutrition { calories: 100, caffeine_mg: 50, sugar_g: 9 },
                image_sha256: format!("{:064x}", price),
            }
            .into(),
        ));
    }
    log.push((streams::menu_item("latte"), MenuItemPriceChanged { item_id: "latte".into(), price_cents: 475 }.into()));
    log.push((streams::menu_item("mocha"), MenuItemRetired { item_id: "mocha".into() }.into()));
    for store in ["s1", "s2"] {
        for (item, _, _) in items {
            log.push((
                streams::inventory(store, item),
                StockRestocked { store_id: store.into(), sku: item.into(), quantity: 10_000 }.into(),
            ));
        }
    }
    let mut points: HashMap<String, u64> = HashMap::new();
    for i in 0..orders {
        let order_id = Uuid::from_u128(0x1000 + u128::from(i));
        let customer = format!("c{}", i % 13);
        let store = if i % 3 == 0 { "s2" } else { "s1" };
        let lines = vec![
            OrderLine { item_id: "latte".into(), quantity: 1 + i % 3, unit_price_cents: 475 },
            OrderLine { item_id: "scone".into(), quantity: 1, unit_price_cents: 325 },
        ];
        let total: i64 = lines.iter().map(OrderLine::line_total).sum();
        let placed_at_us = 1_700_000_000_000_000 + i64::from(i) * 7_000_000;
        log.push((
            streams::order(order_id),
            OrderPlaced {
                order_id,
                customer_id: customer.clone(),
                store_id: store.into(),
                lines: lines.clone(),
                total_cents: total,
                placed_at_us,
            }
            .into(),
        ));
        for l in &lines {
            log.push((
                streams::inventory(store, &l.item_id),
                StockReserved { store_id: store.into(), sku: l.item_id.clone(), order_id, quantity: l.quantity }.into(),
            ));
        }
        if i % 5 == 4 {
            log.push((
                streams::payment(order_id),
                PaymentDeclined {
                    order_id,
                    customer_id: customer.clone(),
                    amount_cents: total,
                    fraud_score: 0.99,
                    reason: "fraud_score_too_high".into(),
                }
                .into(),
            ));
            log.push((streams::order(order_id), OrderCancelled { order_id, reason: "payment_declined".into() }.into()));
            for l in &lines {
                log.push((
                    streams::inventory(store, &l.item_id),
                    StockReleased { store_id: store.into(), sku: l.item_id.clone(), order_id, quantity: l.quantity }
                        .into(),
                ));
            }
            continue;
        }
        log.push((
            streams::payment(order_id),
            PaymentAuthorized { order_id, customer_id: customer.clone(), amount_cents: total, fraud_score: 0.2 }.into(),
        ));
        log.push((streams::payment(order_id), PaymentCaptured { order_id, amount_cents: total }.into()));
        log.push((streams::order(order_id), OrderPaid { order_id, amount_cents: total }.into()));
        for l in &lines {
            log.push((
                streams::inventory(store, &l.item_id),
                StockSettled { store_id: store.into(), sku: l.item_id.clone(), order_id, quantity: l.quantity }.into(),
            ));
        }
        let earned = (total / 100) as u64;
        let before = points.get(&customer).copied().unwrap_or(0);
        points.insert(customer.clone(), before + earned);
        log.push((
            streams::loyalty(&customer),
            PointsAccrued { customer_id: customer.clone(), order_id, points: earned }.into(),
        ));
        if before < 300 && before + earned >= 300 {
            log.push((
                streams::loyalty(&customer),
                TierChanged { customer_id: customer.clone(), from: Tier::Green, to: Tier::Gold }.into(),
            ));
        }
    }
    journal(log)
}

/// Runs every case against sinks made by `make` (each call: a fresh, empty model).
pub async fn run_sink_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Sink>>,
{
    let day = a_day_of_orders(60);
    eprintln!("sink conformance: a page applied twice changes nothing");
    let once = make().await;
    once.apply(&day).await.unwrap();
    let fingerprint = once.fingerprint().await.unwrap();
    assert!(fingerprint.rows > 0, "the model holds rows");
    once.apply(&day).await.unwrap();
    once.apply(&day[..day.len() / 2]).await.unwrap();
    assert_eq!(once.fingerprint().await.unwrap(), fingerprint);
    assert_eq!(once.position().await.unwrap(), day.len() as u64, "the position is the last event's");

    eprintln!("sink conformance: overlapping pages of any size give the same model");
    let paged = make().await;
    let mut start = 0;
    while start < day.len() {
        let end = (start + 17).min(day.len());
        paged.apply(&day[start.saturating_sub(5)..end]).await.unwrap();
        start = end;
    }
    assert_eq!(paged.fingerprint().await.unwrap(), fingerprint);

    eprintln!("sink conformance: an empty page changes nothing");
    paged.apply(&[]).await.unwrap();
    assert_eq!(paged.position().await.unwrap(), day.len() as u64);
}

/// A rebuild through the shadow gives the same model, which promotion then makes live.
pub async fn run_rebuild_suite(live: Arc<dyn Rebuildable>) {
    let day = a_day_of_orders(40);
    live.apply(&day).await.unwrap();
    let before = live.fingerprint().await.unwrap();
    live.reset_shadow(0).await.unwrap();
    let shadow = live.shadow().await.unwrap();
    assert_eq!(shadow.position().await.unwrap(), 0);
    assert_eq!(shadow.fingerprint().await.unwrap().rows, 0, "a reset shadow is empty");
    shadow.apply(&day[..50]).await.unwrap();
    // An interrupted rebuild resumes from the shadow's own position.
    let resumed = live.shadow().await.unwrap();
    assert_eq!(resumed.position().await.unwrap(), 50);
    resumed.apply(&day[50..]).await.unwrap();
    assert_eq!(resumed.fingerprint().await.unwrap(), before);
    assert_eq!(live.fingerprint().await.unwrap(), before, "building the shadow left the live model alone");
    live.promote_shadow().await.unwrap();
    assert_eq!(live.fingerprint().await.unwrap(), before);
    assert_eq!(live.position().await.unwrap(), day.len() as u64);
    // The live model keeps working after a promotion, and a new shadow can be built again.
    live.apply(&day).await.unwrap();
    assert_eq!(live.fingerprint().await.unwrap(), before);
    live.reset_shadow(0).await.unwrap();
    live.discard_shadow().await.unwrap();
    assert_eq!(live.fingerprint().await.unwrap(), before);
}

/// Writes a hand-made history into a real journal: each stream's events in order, in one append per
/// stream (streams concurrently). The journal assigns its own positions and hash chains.
pub async fn write_history(journal: &dyn events::Journal, history: &[RecordedEvent]) {
    let mut by_stream: Vec<(String, Vec<NewEvent>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for e in history {
        let i = *index.entry(e.stream_id.clone()).or_insert_with(|| {
            by_stream.push((e.stream_id.clone(), Vec::new()));
            by_stream.len() - 1
        });
        by_stream[i].1.push(NewEvent {
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            recorded_at_us: e.recorded_at_us,
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            payload: e.payload.clone(),
        });
    }
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(by_stream)
        .map(|(stream_id, events)| {
            journal.append(events::AppendRequest { stream_id, expected: events::ExpectedVersion::Any, events })
        })
        .buffer_unordered(256)
        .collect()
        .await;
    for r in results {
        r.expect("history appends");
    }
}
