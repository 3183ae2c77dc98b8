//! The pure fold of journal events into row changes that the storefront-shaped read models share
//! (the SQL storefronts, DynamoDB's `active-orders`/`store-inventory`, DocumentDB's `menu` and
//! `order_documents`): [`changes`] reads an event once and says what it changes, each store only
//! writes that. [`PageFold`] folds a page of changes per row, so that a store that writes a page in
//! one transaction writes each row once. No I/O here: events in, changes out.

use std::collections::HashMap;

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
        DomainEvent::OrderPreparationStarted(e) => {
            Some(Change::OrderStatus { order_id: e.order_id, status: "preparing", cancel_reason: None, version })
        }
        DomainEvent::OrderReadyForPickup(e) => {
            Some(Change::OrderStatus { order_id: e.order_id, status: "ready", cancel_reason: None, version })
        }
        DomainEvent::OrderPickedUp(e) => {
            Some(Change::OrderStatus { order_id: e.order_id, status: "completed", cancel_reason: None, version })
        }
        DomainEvent::OrderAbandoned(e) => {
            Some(Change::OrderStatus { order_id: e.order_id, status: "abandoned", cancel_reason: None, version })
        }
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
        DomainEvent::PointsRevoked(p) => {
            Some(Change::Points { customer_id: p.customer_id, points: -(p.points as i64), version })
        }
        DomainEvent::TierChanged(t) => Some(Change::Tier { customer_id: t.customer_id, tier: t.to.as_str(), version }),
        _ => None,
    })
}

/// A status change of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusChange<'a> {
    pub status: &'static str,
    pub cancel_reason: Option<&'a str>,
    pub version: u64,
}

/// An order placed in the page, as the page leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedOrder<'a> {
    pub order: &'a OrderView,
    /// The newest status change the page gives the order after its placement, if any.
    pub status: Option<StatusChange<'a>>,
}

impl PlacedOrder<'_> {
    /// The row's stream version: the newest status change's, else the placement's.
    pub fn version(&self, placed_version: u64) -> u64 {
        self.status.map_or(placed_version, |s| s.version)
    }
}

/// Summed deltas of one row and the newest version among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StockDelta {
    pub available: i64,
    pub reserved: i64,
    pub last: u64,
}

/// Summed points of one customer, the newest tier the page sets, and the newest version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoyaltyDelta {
    pub points: i64,
    pub tier: Option<&'static str>,
    pub last: u64,
}

/// A page's changes folded per row, for a store that writes the page in one transaction after
/// checking that it applied none of them (its stored position is before each). The result is the
/// same as applying the changes one by one with their version guards:
///
/// - an order placed in the page carries the newest status the page gives it (newer than its
///   placement), so it is written once with its final status; status changes of orders placed
///   before the page are kept per order, newest first;
/// - a repeated placement of an order (not something the order decider does) keeps the first
///   placement's row, and adds only the lines the first did not have (a line number is written once);
/// - stock and points are summed per row with the newest version; a tier is the newest tier event's;
/// - menu changes stay one by one, in order (they are rare).
#[derive(Debug, Default)]
pub struct PageFold<'a> {
    /// Orders placed in the page, first placement of each, with the placement's version.
    pub placed: Vec<(PlacedOrder<'a>, u64)>,
    /// Per placed order: its index in `placed` and how many lines it has so far.
    placed_index: HashMap<Uuid, (usize, usize)>,
    /// The lines of the placed orders: (order, line number, line).
    pub lines: Vec<(Uuid, i32, &'a OrderLine)>,
    /// The newest status change of each order the page does not place (or of a placed one, when the
    /// change is not newer than its placement).
    pub statuses: HashMap<Uuid, StatusChange<'a>>,
    pub stock: HashMap<(&'a str, &'a str), StockDelta>,
    pub loyalty: HashMap<&'a str, LoyaltyDelta>,
    pub menu: Vec<&'a Change>,
}

impl<'a> PageFold<'a> {
    /// Folds `changes`, in global order.
    pub fn of(changes: impl IntoIterator<Item = &'a Change>) -> Self {
        let mut fold = PageFold::default();
        for change in changes {
            fold.add(change);
        }
        fold
    }

    /// Adds the change of the page's next event.
    pub fn add(&mut self, change: &'a Change) {
        match change {
            Change::OrderPlaced { order, version } => self.place(order, *version),
            Change::OrderStatus { order_id, status, cancel_reason, version } => {
                let change = StatusChange { status, cancel_reason: cancel_reason.as_deref(), version: *version };
                self.set_status(*order_id, change);
            }
            Change::Stock { store_id, sku, available, reserved, version } => {
                let d = self.stock.entry((store_id.as_str(), sku.as_str())).or_insert(StockDelta {
                    available: 0,
                    reserved: 0,
                    last: *version,
                });
                d.available += available;
                d.reserved += reserved;
                d.last = d.last.max(*version);
            }
            Change::Points { customer_id, points, version } => {
                let d = self.loyalty.entry(customer_id.as_str()).or_insert(LoyaltyDelta {
                    points: 0,
                    tier: None,
                    last: *version,
                });
                d.points += points;
                d.last = d.last.max(*version);
            }
            Change::Tier { customer_id, tier, version } => {
                let d = self.loyalty.entry(customer_id.as_str()).or_insert(LoyaltyDelta {
                    points: 0,
                    tier: None,
                    last: *version,
                });
                if *version >= d.last {
                    d.tier = Some(tier);
                }
                d.last = d.last.max(*version);
            }
            Change::MenuItem { .. } | Change::MenuPrice { .. } | Change::MenuRetired { .. } => self.menu.push(change),
        }
    }

    fn place(&mut self, order: &'a OrderView, version: u64) {
        let id = order.order_id;
        match self.placed_index.get_mut(&id) {
            Some((_, lines)) => {
                // A repeated placement: the first row stays, its line numbers too.
                for (n, line) in order.lines.iter().enumerate().skip(*lines) {
                    self.lines.push((id, n as i32, line));
                }
                *lines = (*lines).max(order.lines.len());
            }
            None => {
                // A status change that came first in the page and is newer than the placement moves
                // onto the placed row; an older one stays where a version guard will refuse it.
                let status = match self.statuses.get(&id) {
                    Some(s) if s.version > version => self.statuses.remove(&id),
                    _ => None,
                };
                self.placed_index.insert(id, (self.placed.len(), order.lines.len()));
                self.placed.push((PlacedOrder { order, status }, version));
                self.lines.extend(order.lines.iter().enumerate().map(|(n, line)| (id, n as i32, line)));
            }
        }
    }

    fn set_status(&mut self, order_id: Uuid, change: StatusChange<'a>) {
        if let Some(&(i, _)) = self.placed_index.get(&order_id) {
            let (placed, placed_version) = &mut self.placed[i];
            if change.version > placed.version(*placed_version) {
                placed.status = Some(change);
                return;
            }
        }
        let newest = self.statuses.get(&order_id).is_none_or(|s| s.version < change.version);
        if newest {
            self.statuses.insert(order_id, change);
        }
    }
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

    fn placed(id: u128, version: u64, lines: usize) -> Change {
        let line = OrderLine { item_id: "latte".into(), quantity: 1, unit_price_cents: 450 };
        Change::OrderPlaced {
            order: OrderView {
                order_id: Uuid::from_u128(id),
                customer_id: "c1".into(),
                store_id: "s1".into(),
                status: "placed".into(),
                total_cents: 450 * lines as i64,
                cancel_reason: None,
                created_at_us: 1,
                lines: vec![line; lines],
            },
            version,
        }
    }

    fn status(id: u128, status: &'static str, version: u64) -> Change {
        let cancel_reason = (status == "cancelled").then(|| "declined".to_owned());
        Change::OrderStatus { order_id: Uuid::from_u128(id), status, cancel_reason, version }
    }

    #[test]
    fn an_order_placed_and_completed_in_one_page_is_written_once_with_its_last_status() {
        let changes = [placed(1, 1, 2), status(1, "paid", 2), placed(2, 1, 1), status(2, "cancelled", 3)];
        let page = PageFold::of(&changes);
        let rows: Vec<_> = page.placed.iter().map(|(p, v)| (p.order.order_id, p.status, p.version(*v))).collect();
        assert_eq!(
            rows,
            vec![
                (Uuid::from_u128(1), Some(StatusChange { status: "paid", cancel_reason: None, version: 2 }), 2),
                (
                    Uuid::from_u128(2),
                    Some(StatusChange { status: "cancelled", cancel_reason: Some("declined"), version: 3 }),
                    3
                ),
            ]
        );
        assert_eq!(page.lines.iter().map(|l| (l.0.as_u128(), l.1)).collect::<Vec<_>>(), vec![(1, 0), (1, 1), (2, 0)]);
        assert!(page.statuses.is_empty(), "nothing left to update");
    }

    #[test]
    fn orders_placed_before_the_page_keep_their_newest_status_change() {
        let changes = [status(7, "paid", 3), status(7, "cancelled", 2), status(8, "cancelled", 2)];
        let page = PageFold::of(&changes);
        assert!(page.placed.is_empty());
        assert_eq!(page.statuses[&Uuid::from_u128(7)].status, "paid");
        assert_eq!(page.statuses[&Uuid::from_u128(8)].version, 2);
    }

    #[test]
    fn a_status_only_moves_a_placed_order_forward() {
        // A change older than the placement stays for the version-guarded update (which refuses it);
        // one before the placement in the page but newer than it moves onto the placed row.
        let changes = [status(1, "paid", 5), placed(1, 3, 1), status(1, "cancelled", 2), status(1, "cancelled", 4)];
        let page = PageFold::of(&changes);
        assert_eq!(page.placed[0].0.status.map(|s| (s.status, s.version)), Some(("paid", 5)));
        assert_eq!(page.statuses[&Uuid::from_u128(1)].version, 4);
    }

    #[test]
    fn a_repeated_placement_keeps_the_first_row_and_adds_only_new_line_numbers() {
        let changes = [placed(1, 1, 1), placed(1, 1, 3), placed(1, 1, 2)];
        let page = PageFold::of(&changes);
        assert_eq!(page.placed.len(), 1);
        assert_eq!(page.placed[0].0.order.lines.len(), 1);
        assert_eq!(page.lines.iter().map(|l| l.1).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn stock_and_points_are_summed_per_row_and_the_newest_tier_wins() {
        let stock = |available, reserved, version| Change::Stock {
            store_id: "s1".into(),
            sku: "latte".into(),
            available,
            reserved,
            version,
        };
        let changes = [
            stock(10, 0, 1),
            stock(-2, 2, 2),
            Change::Points { customer_id: "c1".into(), points: 5, version: 1 },
            Change::Tier { customer_id: "c1".into(), tier: "gold", version: 3 },
            Change::Points { customer_id: "c1".into(), points: 7, version: 2 },
        ];
        let page = PageFold::of(&changes);
        assert_eq!(page.stock[&("s1", "latte")], StockDelta { available: 8, reserved: 2, last: 2 });
        assert_eq!(page.loyalty["c1"], LoyaltyDelta { points: 12, tier: Some("gold"), last: 3 });
    }

    #[test]
    fn an_event_that_does_not_decode_is_poison() {
        let mut broken =
            journal(vec![(streams::order(order_id()), OrderPaid { order_id: order_id(), amount_cents: 1 }.into())]);
        broken[0].payload = vec![0xc1];
        assert!(matches!(changes(&broken[0]), Err(SinkError::Poison { .. })));
    }
}
