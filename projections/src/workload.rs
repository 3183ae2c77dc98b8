//! Synthetic but consistent histories of a coffee chain, for benchmarks, replay tests and stress:
//! menus, restocks, orders paid and cancelled, paid orders prepared, picked up or abandoned, stock
//! reservations, payments, points and tiers.

use std::collections::HashMap;

use events::domain::{
    streams, MenuItemPriceChanged, MenuItemPublished, MenuItemRetired, Nutrition, OrderAbandoned, OrderCancelled,
    OrderLine, OrderPaid, OrderPickedUp, OrderPlaced, OrderPreparationStarted, OrderReadyForPickup, PaymentAuthorized,
    PaymentCaptured, PaymentDeclined, PaymentRefundRequested, PaymentRefunded, PaymentVoidRequested, PaymentVoided,
    PointsAccrued, PointsRevoked, StockReleased, StockReserved, StockRestocked, StockSettled, Tier, TierChanged,
};
use events::{Causation, DomainEvent, NewEvent, RecordedEvent};
use uuid::Uuid;

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
/// Order `i` goes to store `s2` when `i % 3 == 0` (else `s1`), from customer `c{i % 13}`, and is
/// declined when `i % 5 == 4`; when `i % 35 == 7` it is authorized, then cancelled, and its
/// authorization voided.
pub fn a_day_of_orders(orders: u32) -> Vec<RecordedEvent> {
    history(orders, &["s1", "s2"], |i| if i % 3 == 0 { 1 } else { 0 }, 13)
}

/// A flood across many stores and customers, as a chain's real traffic spreads: order `i` goes to
/// store `i % stores` from customer `i % customers`. About 8.6 events per order.
pub fn flood_of_orders(orders: u32, stores: u32, customers: u32) -> Vec<RecordedEvent> {
    let names: Vec<String> = (0..stores.max(1)).map(|s| format!("store-{s}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let n = names.len() as u32;
    history(orders, &names, move |i| (i % n) as usize, customers.max(1))
}

/// The saga's release of a cancelled order's reservations, line by line.
fn release(log: &mut Vec<(String, DomainEvent)>, store: &str, order_id: Uuid, lines: &[OrderLine]) {
    for l in lines {
        let released = StockReleased { store_id: store.into(), sku: l.item_id.clone(), order_id, quantity: l.quantity };
        log.push((streams::inventory(store, &l.item_id), released.into()));
    }
}

fn history(orders: u32, stores: &[&str], store_of: impl Fn(u32) -> usize, customers: u32) -> Vec<RecordedEvent> {
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
    for &store in stores {
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
        let customer = format!("c{}", i % customers);
        let store = stores[store_of(i)];
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
            release(&mut log, store, order_id, &lines);
            continue;
        }
        log.push((
            streams::payment(order_id),
            PaymentAuthorized { order_id, customer_id: customer.clone(), amount_cents: total, fraud_score: 0.2 }.into(),
        ));
        if i % 35 == 7 {
            let reason = "out_of_stock:latte".to_owned();
            log.push((streams::order(order_id), OrderCancelled { order_id, reason: reason.clone() }.into()));
            let customer_id = customer.clone();
            let asked = PaymentVoidRequested { order_id, customer_id, amount_cents: total, reason };
            log.push((streams::payment(order_id), asked.into()));
            let voided = PaymentVoided { order_id, customer_id: customer.clone(), amount_cents: total };
            log.push((streams::payment(order_id), voided.into()));
            release(&mut log, store, order_id, &lines);
            continue;
        }
        log.push((streams::payment(order_id), PaymentCaptured { order_id, amount_cents: total }.into()));
        log.push((streams::order(order_id), OrderPaid { order_id, amount_cents: total }.into()));
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
        // A paid order's life at the counter: a quarter wait to be made (an eighth of all are then
        // cancelled by their customer and refunded), a quarter are being made, a quarter were picked
        // up, and of the last quarter half wait at the counter, half were abandoned.
        let stage = i % 4;
        let (at, store_id) = (placed_at_us + 60_000_000, store.to_owned());
        if i % 8 == 4 {
            let reason = "customer_cancelled".to_owned();
            log.push((streams::order(order_id), OrderCancelled { order_id, reason: reason.clone() }.into()));
            release(&mut log, store, order_id, &lines);
            let customer_id = customer.clone();
            let asked = PaymentRefundRequested { order_id, customer_id, amount_cents: total, reason };
            log.push((streams::payment(order_id), asked.into()));
            let refunded = PaymentRefunded { order_id, customer_id: customer.clone(), amount_cents: total };
            log.push((streams::payment(order_id), refunded.into()));
            let now = before;
            points.insert(customer.clone(), now);
            let revoked = PointsRevoked { customer_id: customer.clone(), order_id, points: earned };
            log.push((streams::loyalty(&customer), revoked.into()));
            if before + earned >= 300 && now < 300 {
                let down = TierChanged { customer_id: customer.clone(), from: Tier::Gold, to: Tier::Green };
                log.push((streams::loyalty(&customer), down.into()));
            }
            continue;
        }
        if stage >= 1 {
            let (customer_id, store_id) = (customer.clone(), store_id.clone());
            let started = OrderPreparationStarted { order_id, customer_id, store_id, started_at_us: at };
            log.push((streams::order(order_id), started.into()));
            for l in &lines {
                let (sku, quantity) = (l.item_id.clone(), l.quantity);
                let settled = StockSettled { store_id: store.into(), sku, order_id, quantity };
                log.push((streams::inventory(store, &l.item_id), settled.into()));
            }
        }
        if stage >= 2 {
            let (customer_id, store_id) = (customer.clone(), store_id.clone());
            let ready_at_us = at + 120_000_000;
            let ready = OrderReadyForPickup {
                order_id,
                customer_id,
                store_id,
                ready_at_us,
                pickup_by_us: ready_at_us + 1_800_000_000,
            };
            log.push((streams::order(order_id), ready.into()));
        }
        let customer_id = customer.clone();
        if stage == 2 {
            let picked = OrderPickedUp { order_id, customer_id, store_id, picked_up_at_us: at + 300_000_000 };
            log.push((streams::order(order_id), picked.into()));
        } else if stage == 3 && i % 8 == 7 {
            let abandoned = OrderAbandoned { order_id, customer_id, store_id, abandoned_at_us: at + 2_000_000_000 };
            log.push((streams::order(order_id), abandoned.into()));
        }
    }
    journal(log)
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
