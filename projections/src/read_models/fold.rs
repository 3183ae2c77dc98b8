//! The pure fold of journal events into row changes that the storefront-shaped read models share
//! (the SQL storefronts, DynamoDB's `active-orders`/`store-inventory`, DocumentDB's `menu` and
//! `order_documents`): [`changes`] reads an event once and says what it changes, each store only
//! writes that. No I/O here: events in, changes out.

use events::domain::{Cents, Nutrition, OrderLine};
use events::{DomainEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SinkError;

/// An order as customers follow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    pub status: String,
    pub total_cents: Cents,
    pub cancel_reason: Option<String>,
    pub created_at_us: i64,
    pub lines: Vec<OrderLine>,
}

/// A menu item as it is listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuItemView {
    pub item_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: Cents,
    pub retired: bool,
    pub nutrition: Nutrition,
    pub image_sha256: String,
}

/// One row change. `version` is the source stream's version: a change never overwrites a newer one.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    OrderPlaced { order: OrderView, version: u64 },
    OrderStatus { order_id: Uuid, status: &'static str, cancel_reason: Option<String>, version: u64 },
    MenuItem { item: MenuItemView, version: u64 },
    MenuPrice { item_id: String, price_cents: Cents, version: u64 },
    MenuRetired { item_id: String, version: u64 },
    Stock { store_id: String, sku: String, available: i64, reserved: i64, version: u64 },
    Points { customer_id: String, points: i64, version: u64 },
    Tier { customer_id: String, tier: &'static str, version: u64 },
}

/// What an event changes in the storefront (nothing, for payments).
pub fn changes(e: &RecordedEvent) -> Result<Option<Change>, SinkError> {
    let category = events::domain::streams::category(&e.stream_id);
    if !matches!(category, "order" | "menu" | "inventory" | "loyalty") {
        return Ok(None);
    }
    let version = e.stream_version;
    let event =
        e.decode().map_err(|err| SinkError::poison_because("the event does not decode", err).at(e.global_position))?;
    let stock = |store_id: &str, sku: &str, available: i64, reserved: i64| Change::Stock {
        store_id: store_id.to_owned(),
        sku: sku.to_owned(),
        available,
        reserved,
        version,
    };
    Ok(match event {
        DomainEvent::OrderPlaced(p) => Some(Change::OrderPlaced {
            order: OrderView {
                order_id: p.order_id,
                customer_id: p.customer_id,
                store_id: p.store_id,
                status: "placed".into(),
                total_cents: p.total_cents,
                cancel_reason: None,
                created_at_us: p.placed_at_us,
                lines: p.lines,
            },
            version,
        }),
        DomainEvent::OrderPaid(p) => {
            Some(Change::OrderStatus { order_id: p.order_id, status: "paid", cancel_reason: None, version })
        }
        DomainEvent::OrderCancelled(c) => Some(Change::OrderStatus {
            order_id: c.order_id,
            status: "cancelled",
            cancel_reason: Some(c.reason),
            version,
        }),
        DomainEvent::MenuItemPublished(m) => Some(Change::MenuItem {
            item: MenuItemView {
                item_id: m.item_id,
                name: m.name,
                category: m.category,
                price_cents: m.price_cents,
                retired: false,
                nutrition: m.nutrition,
                image_sha256: m.image_sha256,
            },
            version,
        }),
        DomainEvent::MenuItemPriceChanged(m) => {
            Some(Change::MenuPrice { item_id: m.item_id, price_cents: m.price_cents, version })
        }
        DomainEvent::MenuItemRetired(m) => Some(Change::MenuRetired { item_id: m.item_id, version }),
        DomainEvent::StockRestocked(s) => Some(stock(&s.store_id, &s.sku, i64::from(s.quantity), 0)),
        DomainEvent::StockReserved(s) => {
            Some(stock(&s.store_id, &s.sku, -i64::from(s.quantity), i64::from(s.quantity)))
        }
        DomainEvent::StockReleased(s) => {
            Some(stock(&s.store_id, &s.sku, i64::from(s.quantity), -i64::from(s.quantity)))
        }
        DomainEvent::StockSettled(s) => Some(stock(&s.store_id, &s.sku, 0, -i64::from(s.quantity))),
        DomainEvent::PointsAccrued(p) => {
            Some(Change::Points { customer_id: p.customer_id, points: p.points as i64, version })
        }
        DomainEvent::TierChanged(t) => Some(Change::Tier { customer_id: t.customer_id, tier: t.to.as_str(), version }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use events::domain::{
        streams, MenuItemPriceChanged, MenuItemPublished, MenuItemRetired, OrderCancelled, OrderPaid, OrderPlaced,
        PaymentAuthorized, PointsAccrued, StockReleased, StockReserved, StockRestocked, StockSettled, Tier,
        TierChanged,
    };

    use super::*;
    use crate::workload::journal;

    fn fold(log: Vec<(String, DomainEvent)>) -> Vec<Option<Change>> {
        journal(log).iter().map(|e| changes(e).expect("folds")).collect()
    }

    fn order_id() -> Uuid {
        Uuid::from_u128(7)
    }

    #[test]
    fn an_order_is_placed_then_completed_with_its_stream_versions() {
        let id = order_id();
        let line = OrderLine { item_id: "latte".into(), quantity: 2, unit_price_cents: 450 };
        let placed = OrderPlaced {
            order_id: id,
            customer_id: "c1".into(),
            store_id: "s1".into(),
            lines: vec![line.clone()],
            total_cents: 900,
            placed_at_us: 42,
        };
        let folded = fold(vec![
            (streams::order(id), placed.into()),
            (streams::order(id), OrderPaid { order_id: id, amount_cents: 900 }.into()),
            (streams::order(id), OrderCancelled { order_id: id, reason: "changed mind".into() }.into()),
        ]);
        assert_eq!(
            folded,
            vec![
                Some(Change::OrderPlaced {
                    order: OrderView {
                        order_id: id,
                        customer_id: "c1".into(),
                        store_id: "s1".into(),
                        status: "placed".into(),
                        total_cents: 900,
                        cancel_reason: None,
                        created_at_us: 42,
                        lines: vec![line],
                    },
                    version: 1,
                }),
                Some(Change::OrderStatus { order_id: id, status: "paid", cancel_reason: None, version: 2 }),
                Some(Change::OrderStatus {
                    order_id: id,
                    status: "cancelled",
                    cancel_reason: Some("changed mind".into()),
                    version: 3,
                }),
            ]
        );
    }

    #[test]
    fn menu_events_publish_reprice_and_retire_an_item() {
        let nutrition = Nutrition { calories: 100, caffeine_mg: 50, sugar_g: 9 };
        let folded = fold(vec![
            (
                streams::menu_item("latte"),
                MenuItemPublished {
                    item_id: "latte".into(),
                    name: "Latte".into(),
                    category: "coffee".into(),
                    price_cents: 450,
                    nutrition,
                    image_sha256: "ab".into(),
                }
                .into(),
            ),
            (streams::menu_item("latte"), MenuItemPriceChanged { item_id: "latte".into(), price_cents: 475 }.into()),
            (streams::menu_item("latte"), MenuItemRetired { item_id: "latte".into() }.into()),
        ]);
        assert_eq!(
            folded,
            vec![
                Some(Change::MenuItem {
                    item: MenuItemView {
                        item_id: "latte".into(),
                        name: "Latte".into(),
                        category: "coffee".into(),
                        price_cents: 450,
                        retired: false,
                        nutrition,
                        image_sha256: "ab".into(),
                    },
                    version: 1,
                }),
                Some(Change::MenuPrice { item_id: "latte".into(), price_cents: 475, version: 2 }),
                Some(Change::MenuRetired { item_id: "latte".into(), version: 3 }),
            ]
        );
    }

    #[test]
    fn stock_events_are_deltas_of_available_and_reserved() {
        let (store, sku, id) = ("s1", "latte", order_id());
        let stream = streams::inventory(store, sku);
        let folded = fold(vec![
            (stream.clone(), StockRestocked { store_id: store.into(), sku: sku.into(), quantity: 10 }.into()),
            (
                stream.clone(),
                StockReserved { store_id: store.into(), sku: sku.into(), order_id: id, quantity: 3 }.into(),
            ),
            (
                stream.clone(),
                StockReleased { store_id: store.into(), sku: sku.into(), order_id: id, quantity: 1 }.into(),
            ),
            (
                stream.clone(),
                StockSettled { store_id: store.into(), sku: sku.into(), order_id: id, quantity: 2 }.into(),
            ),
        ]);
        let delta = |available, reserved, version| {
            Some(Change::Stock { store_id: store.into(), sku: sku.into(), available, reserved, version })
        };
        assert_eq!(folded, vec![delta(10, 0, 1), delta(-3, 3, 2), delta(1, -1, 3), delta(0, -2, 4)]);
    }

    #[test]
    fn loyalty_events_add_points_and_set_the_tier() {
        let stream = streams::loyalty("c1");
        let folded = fold(vec![
            (stream.clone(), PointsAccrued { customer_id: "c1".into(), order_id: order_id(), points: 12 }.into()),
            (stream.clone(), TierChanged { customer_id: "c1".into(), from: Tier::Green, to: Tier::Gold }.into()),
        ]);
        assert_eq!(
            folded,
            vec![
                Some(Change::Points { customer_id: "c1".into(), points: 12, version: 1 }),
                Some(Change::Tier { customer_id: "c1".into(), tier: "gold", version: 2 }),
            ]
        );
    }

    #[test]
    fn payments_change_nothing_here() {
        let id = order_id();
        let authorized =
            PaymentAuthorized { order_id: id, customer_id: "c1".into(), amount_cents: 900, fraud_score: 0.1 };
        assert_eq!(fold(vec![(streams::payment(id), authorized.into())]), vec![None]);
    }

    #[test]
    fn an_event_that_does_not_decode_is_poison() {
        let mut broken =
            journal(vec![(streams::order(order_id()), OrderPaid { order_id: order_id(), amount_cents: 1 }.into())]);
        broken[0].payload = vec![0xc1];
        assert!(matches!(changes(&broken[0]), Err(SinkError::Poison { .. })));
    }
}
