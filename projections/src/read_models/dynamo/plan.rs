//! A page of events as the DynamoDB writes to make (pure: events in, writes out; no DynamoDB).
//!
//! The events of one item are folded into one write. An order placed and ended within the page is
//! final (cancelled, completed and abandoned end an order's stream: the order decider emits nothing
//! after them), so it needs no condition and goes out in `BatchWriteItem`s of [`BATCH_LIMIT`]. An order placed
//! and not completed is one conditional put of the whole item; an order only completed is one
//! conditional status update. The inventory deltas of one stock item stay in stream order, for one
//! `UpdateItem` that adds their sum.

use std::collections::HashMap;

use events::RecordedEvent;
use uuid::Uuid;

use super::codec::{order_item, Item};
use super::ACTIVE_AFTER_COMPLETION_SECS;
use crate::read_models::fold::{changes, Change, OrderView};
use crate::SinkError;

/// DynamoDB's limit of items per `BatchWriteItem`.
pub(super) const BATCH_LIMIT: usize = 25;

/// One write of a page; no two writes of a page touch the same item.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Write {
    /// Orders placed and completed within the page: final, so written without a condition.
    FinalOrders(Vec<Item>),
    /// An order placed within the page and not completed in it.
    Order { item: Item, version: u64 },
    /// An order completed in this page and placed in an earlier one.
    OrderStatus { order_id: Uuid, status: &'static str, expires_at: i64, version: u64 },
    /// The deltas of one stock item, in stream order.
    Stock { store_id: String, sku: String, deltas: Vec<StockDelta> },
}

/// One inventory event of a stock item: its stream version and its deltas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StockDelta {
    pub version: u64,
    pub available: i64,
    pub reserved: i64,
}

/// What a page does to one order.
enum OrderFold {
    /// Placed in this page: the whole item as of `version`.
    Whole { order: OrderView, expires_at: Option<i64>, version: u64 },
    /// Only completed in this page.
    Completed { status: &'static str, expires_at: i64, version: u64 },
}

/// A page folded into writes: one per item, with the orders that are final batched.
///
/// Folding is exact because a page is a contiguous range of the global order, so it holds every
/// event of a stream between the first and the last of that stream it holds.
pub(super) fn plan<'a>(events: impl Iterator<Item = &'a RecordedEvent>) -> Result<Vec<Write>, SinkError> {
    let mut orders: Vec<(Uuid, OrderFold)> = Vec::new();
    let mut order_index: HashMap<Uuid, usize> = HashMap::new();
    let mut stock: Vec<(String, String, Vec<StockDelta>)> = Vec::new();
    let mut stock_index: HashMap<(String, String), usize> = HashMap::new();
    for e in events {
        match changes(e)? {
            Some(Change::OrderPlaced { order, version }) => {
                let order_id = order.order_id;
                let fold = OrderFold::Whole { order, expires_at: None, version };
                match order_index.get(&order_id) {
                    Some(&i) => orders[i].1 = fold,
                    None => {
                        order_index.insert(order_id, orders.len());
                        orders.push((order_id, fold));
                    }
                }
            }
            Some(Change::OrderStatus { order_id, status, version, .. }) => {
                let expires = e.recorded_at_us.div_euclid(1_000_000) + ACTIVE_AFTER_COMPLETION_SECS;
                match order_index.get(&order_id) {
                    Some(&i) => match &mut orders[i].1 {
                        OrderFold::Whole { order, expires_at, version: v } => {
                            order.status = status.to_owned();
                            *expires_at = Some(expires);
                            *v = version;
                        }
                        completed => *completed = OrderFold::Completed { status, expires_at: expires, version },
                    },
                    None => {
                        order_index.insert(order_id, orders.len());
                        orders.push((order_id, OrderFold::Completed { status, expires_at: expires, version }));
                    }
                }
            }
            Some(Change::Stock { store_id, sku, available, reserved, version }) => {
                let delta = StockDelta { version, available, reserved };
                match stock_index.get(&(store_id.clone(), sku.clone())) {
                    Some(&i) => stock[i].2.push(delta),
                    None => {
                        stock_index.insert((store_id.clone(), sku.clone()), stock.len());
                        stock.push((store_id, sku, vec![delta]));
                    }
                }
            }
            _ => {}
        }
    }
    let mut finals = Vec::new();
    let mut writes = Vec::new();
    for (order_id, fold) in orders {
        match fold {
            OrderFold::Whole { order, expires_at, version } if is_final(&order.status) => {
                finals.push(order_item(&order, expires_at, version));
            }
            OrderFold::Whole { order, expires_at, version } => {
                writes.push(Write::Order { item: order_item(&order, expires_at, version), version });
            }
            OrderFold::Completed { status, expires_at, version } => {
                writes.push(Write::OrderStatus { order_id, status, expires_at, version });
            }
        }
    }
    writes.extend(stock.into_iter().map(|(store_id, sku, deltas)| Write::Stock { store_id, sku, deltas }));
    let mut batched: Vec<Write> = Vec::with_capacity(writes.len() + finals.len() / BATCH_LIMIT + 1);
    let mut finals = finals.into_iter().peekable();
    while finals.peek().is_some() {
        batched.push(Write::FinalOrders(finals.by_ref().take(BATCH_LIMIT).collect()));
    }
    batched.extend(writes);
    Ok(batched)
}

/// Cancelled, completed (picked up) and abandoned end an order's stream: the order decider emits
/// nothing after them. A paid order is prepared next, so a redelivered page must not put it back.
fn is_final(status: &str) -> bool {
    matches!(status, "cancelled" | "completed" | "abandoned")
}

#[cfg(test)]
mod tests {
    use events::domain::{
        streams, MenuItemRetired, OrderCancelled, OrderLine, OrderPaid, OrderPlaced, PaymentCaptured, PointsAccrued,
        StockReserved, StockRestocked,
    };
    use events::DomainEvent;

    use super::*;
    use crate::workload::journal;

    fn placed(i: u128) -> (String, DomainEvent) {
        let order_id = Uuid::from_u128(i);
        let lines = vec![OrderLine { item_id: "latte".into(), quantity: 1, unit_price_cents: 450 }];
        let event = OrderPlaced {
            order_id,
            customer_id: "c1".into(),
            store_id: "s1".into(),
            lines,
            total_cents: 450,
            placed_at_us: 1_000,
        };
        (streams::order(order_id), event.into())
    }

    fn paid(i: u128) -> (String, DomainEvent) {
        let order_id = Uuid::from_u128(i);
        (streams::order(order_id), OrderPaid { order_id, amount_cents: 450 }.into())
    }

    fn cancelled(i: u128) -> (String, DomainEvent) {
        let order_id = Uuid::from_u128(i);
        (streams::order(order_id), OrderCancelled { order_id, reason: "declined".into() }.into())
    }

    fn view(i: u128, status: &str) -> OrderView {
        OrderView {
            order_id: Uuid::from_u128(i),
            customer_id: "c1".into(),
            store_id: "s1".into(),
            status: status.into(),
            total_cents: 450,
            cancel_reason: None,
            created_at_us: 1_000,
            lines: vec![OrderLine { item_id: "latte".into(), quantity: 1, unit_price_cents: 450 }],
        }
    }

    fn planned(events: &[RecordedEvent]) -> Vec<Write> {
        plan(events.iter()).expect("plans")
    }

    /// When an order completed by the event `completing` expires.
    fn expiry(completing: &RecordedEvent) -> i64 {
        completing.recorded_at_us.div_euclid(1_000_000) + ACTIVE_AFTER_COMPLETION_SECS
    }

    #[test]
    fn an_order_placed_and_cancelled_in_one_page_is_final_and_batched_without_a_condition() {
        let page = journal(vec![placed(1), cancelled(1)]);
        let mut order = view(1, "cancelled");
        order.cancel_reason = Some("declined".into());
        assert_eq!(planned(&page), vec![Write::FinalOrders(vec![order_item(&order, Some(expiry(&page[1])), 2)])]);
    }

    #[test]
    fn a_paid_order_is_not_final_it_is_prepared_next() {
        let page = journal(vec![placed(1), paid(1)]);
        let item = order_item(&view(1, "paid"), Some(expiry(&page[1])), 2);
        assert_eq!(planned(&page), vec![Write::Order { item, version: 2 }]);
    }

    #[test]
    fn an_order_placed_and_not_completed_is_one_conditional_put() {
        let page = journal(vec![placed(1)]);
        assert_eq!(planned(&page), vec![Write::Order { item: order_item(&view(1, "placed"), None, 1), version: 1 }]);
    }

    #[test]
    fn an_order_completed_in_a_later_page_is_a_status_update() {
        let order_id = Uuid::from_u128(1);
        let cancelled = (streams::order(order_id), OrderCancelled { order_id, reason: "declined".into() }.into());
        let history = journal(vec![placed(1), cancelled]);
        assert_eq!(
            planned(&history[1..]),
            vec![Write::OrderStatus { order_id, status: "cancelled", expires_at: expiry(&history[1]), version: 2 }]
        );
    }

    #[test]
    fn final_orders_go_out_in_batches_of_the_service_limit() {
        let mut log = Vec::new();
        for i in 0..(BATCH_LIMIT as u128 + 3) {
            log.push(placed(i));
            log.push(cancelled(i));
        }
        let writes = planned(&journal(log));
        let sizes: Vec<usize> = writes
            .iter()
            .map(|w| match w {
                Write::FinalOrders(items) => items.len(),
                other => panic!("only final orders expected, got {other:?}"),
            })
            .collect();
        assert_eq!(sizes, vec![BATCH_LIMIT, 3]);
    }

    #[test]
    fn the_deltas_of_one_stock_item_make_one_write_in_stream_order() {
        let order_id = Uuid::from_u128(9);
        let latte = streams::inventory("s1", "latte");
        let scone = streams::inventory("s1", "scone");
        let page = journal(vec![
            (latte.clone(), StockRestocked { store_id: "s1".into(), sku: "latte".into(), quantity: 10 }.into()),
            (scone.clone(), StockRestocked { store_id: "s1".into(), sku: "scone".into(), quantity: 4 }.into()),
            (latte, StockReserved { store_id: "s1".into(), sku: "latte".into(), order_id, quantity: 2 }.into()),
        ]);
        assert_eq!(
            planned(&page),
            vec![
                Write::Stock {
                    store_id: "s1".into(),
                    sku: "latte".into(),
                    deltas: vec![
                        StockDelta { version: 1, available: 10, reserved: 0 },
                        StockDelta { version: 2, available: -2, reserved: 2 },
                    ],
                },
                Write::Stock {
                    store_id: "s1".into(),
                    sku: "scone".into(),
                    deltas: vec![StockDelta { version: 1, available: 4, reserved: 0 }],
                },
            ]
        );
    }

    #[test]
    fn events_these_models_do_not_hold_make_no_writes() {
        let order_id = Uuid::from_u128(1);
        let page = journal(vec![
            (streams::menu_item("mocha"), MenuItemRetired { item_id: "mocha".into() }.into()),
            (streams::payment(order_id), PaymentCaptured { order_id, amount_cents: 450 }.into()),
            (streams::loyalty("c1"), PointsAccrued { customer_id: "c1".into(), order_id, points: 4 }.into()),
        ]);
        assert!(planned(&page).is_empty());
    }
}
