//! Stock of one SKU in one store: restocked, reserved for orders, released when an order is
//! cancelled, settled (sold) when its preparation starts.

use std::collections::{BTreeMap, VecDeque};

use events::domain::{StockReleased, StockReserved, StockRestocked};
use events::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::limits::{self, Invalid};
use super::store::StoreStatus;
use super::{Decider, Rejection};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    pub store_id: String,
    pub sku: String,
    /// Units free to reserve.
    pub available: u64,
    /// Units held for orders whose preparation has not started and that are not cancelled, by order.
    pub reservations: BTreeMap<Uuid, u32>,
    /// The last [`ENDED_REMEMBERED`] orders whose reservation here ended (settled or released),
    /// oldest first. A `Reserve` for one of them is a reaction replayed late (the saga's page
    /// handled again by a node that held the saga a moment too long, reading an order's state from
    /// before it was paid) and changes nothing; without this it would hold the units a second time.
    #[serde(default)]
    pub ended: VecDeque<Uuid>,
}

/// How many ended reservations a stock stream remembers: far more than can end on one SKU of one
/// store while two saga holders overlap (about a second).
pub const ENDED_REMEMBERED: usize = 256;

impl Stock {
    fn end(&mut self, order_id: Uuid) {
        if self.ended.len() == ENDED_REMEMBERED {
            self.ended.pop_front();
        }
        self.ended.push_back(order_id);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InventoryCommand {
    /// `store` is what the store's own stream says when the restock is asked for.
    Restock {
        store_id: String,
        sku: String,
        store: StoreStatus,
        quantity: i64,
    },
    Reserve {
        store_id: String,
        sku: String,
        order_id: Uuid,
        quantity: u32,
    },
    Release {
        order_id: Uuid,
    },
    /// The order's preparation started: its reservation becomes a sale and is forgotten.
    Settle {
        order_id: Uuid,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// A value outside the domain's limits ([`super::limits`]).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("quantity must be positive")]
    NonPositiveQuantity,
    #[error("store {0} does not exist")]
    UnknownStore(String),
    #[error("store {0} is closed")]
    StoreClosed(String),
    #[error("out of stock: {requested} requested, {available} available")]
    OutOfStock { requested: u32, available: u64 },
}

impl Rejection for InventoryError {
    fn field(&self) -> Option<String> {
        match self {
            InventoryError::Invalid(i) => Some(i.field.clone()),
            InventoryError::NonPositiveQuantity => Some("quantity".into()),
            InventoryError::UnknownStore(_) | InventoryError::StoreClosed(_) => Some("store_id".into()),
            InventoryError::OutOfStock { .. } => None,
        }
    }
}

/// The most one restock may add.
pub const MAX_RESTOCK: i64 = *limits::RESTOCK_QUANTITY.end();

pub struct InventoryDecider;

impl Decider for InventoryDecider {
    type State = Stock;
    type Command = InventoryCommand;
    type Error = InventoryError;

    fn decide(stock: &Stock, command: &InventoryCommand) -> Result<Vec<DomainEvent>, InventoryError> {
        match command {
            InventoryCommand::Restock { store_id, sku, store, quantity } => {
                limits::check_id("store_id", store_id)?;
                limits::check_id("sku", sku)?;
                let on_hand = stock.available + stock.reservations.values().map(|q| u64::from(*q)).sum::<u64>();
                limits::check_restock("quantity", *quantity, on_hand)?;
                match store {
                    StoreStatus::Open => {}
                    StoreStatus::Unknown => return Err(InventoryError::UnknownStore(store_id.clone())),
                    StoreStatus::Closed => return Err(InventoryError::StoreClosed(store_id.clone())),
                }
                Ok(vec![
                    StockRestocked { store_id: store_id.clone(), sku: sku.clone(), quantity: *quantity as u32 }.into()
                ])
            }
            InventoryCommand::Reserve { store_id, sku, order_id, quantity } => {
                if *quantity == 0 {
                    return Err(InventoryError::NonPositiveQuantity);
                }
                if stock.reservations.contains_key(order_id) || stock.ended.contains(order_id) {
                    return Ok(vec![]);
                }
                if u64::from(*quantity) > stock.available {
                    return Err(InventoryError::OutOfStock { requested: *quantity, available: stock.available });
                }
                Ok(vec![StockReserved {
                    store_id: store_id.clone(),
                    sku: sku.clone(),
                    order_id: *order_id,
                    quantity: *quantity,
                }
                .into()])
            }
            InventoryCommand::Release { order_id } => Ok(match stock.reservations.get(order_id) {
                Some(quantity) => vec![StockReleased {
                    store_id: stock.store_id.clone(),
                    sku: stock.sku.clone(),
                    order_id: *order_id,
                    quantity: *quantity,
                }
                .into()],
                None => vec![],
            }),
            InventoryCommand::Settle { order_id } => Ok(match stock.reservations.get(order_id) {
                Some(quantity) => vec![events::domain::StockSettled {
                    store_id: stock.store_id.clone(),
                    sku: stock.sku.clone(),
                    order_id: *order_id,
                    quantity: *quantity,
                }
                .into()],
                None => vec![],
            }),
        }
    }

    fn evolve(mut stock: Stock, event: &DomainEvent) -> Stock {
        match event {
            DomainEvent::StockRestocked(e) => {
                stock.store_id.clone_from(&e.store_id);
                stock.sku.clone_from(&e.sku);
                stock.available += u64::from(e.quantity);
            }
            DomainEvent::StockReserved(e) => {
                stock.store_id.clone_from(&e.store_id);
                stock.sku.clone_from(&e.sku);
                stock.available = stock.available.saturating_sub(u64::from(e.quantity));
                stock.reservations.insert(e.order_id, e.quantity);
            }
            DomainEvent::StockReleased(e) if stock.reservations.remove(&e.order_id).is_some() => {
                stock.available += u64::from(e.quantity);
                stock.end(e.order_id);
            }
            DomainEvent::StockSettled(e) if stock.reservations.remove(&e.order_id).is_some() => {
                stock.end(e.order_id);
            }
            _ => {}
        }
        stock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::given_when_then::{given, given_no_history};
    use crate::domain::limits::Problem;
    use events::domain::StockSettled;

    fn restock(store: StoreStatus, quantity: i64) -> InventoryCommand {
        InventoryCommand::Restock { store_id: "s1".into(), sku: "latte".into(), store, quantity }
    }
    fn restocked(n: u32) -> DomainEvent {
        StockRestocked { store_id: "s1".into(), sku: "latte".into(), quantity: n }.into()
    }
    fn reserve(order: u128, n: u32) -> InventoryCommand {
        InventoryCommand::Reserve {
            store_id: "s1".into(),
            sku: "latte".into(),
            order_id: Uuid::from_u128(order),
            quantity: n,
        }
    }
    fn reserved(order: u128, n: u32) -> DomainEvent {
        StockReserved { store_id: "s1".into(), sku: "latte".into(), order_id: Uuid::from_u128(order), quantity: n }
            .into()
    }

    #[test]
    fn restocking_adds_available_units() {
        let s = given_no_history::<InventoryDecider>().when(restock(StoreStatus::Open, 5)).then([restocked(5)]);
        assert_eq!(s.available, 5);
    }

    #[test]
    fn only_an_open_store_is_restocked() {
        given_no_history::<InventoryDecider>()
            .when(restock(StoreStatus::Unknown, 5))
            .then_rejected(|e| *e == InventoryError::UnknownStore("s1".into()) && e.field().unwrap() == "store_id");
        given_no_history::<InventoryDecider>()
            .when(restock(StoreStatus::Closed, 5))
            .then_rejected(|e| *e == InventoryError::StoreClosed("s1".into()) && e.field().unwrap() == "store_id");
    }

    #[test]
    fn a_restock_and_the_stock_it_leaves_stay_within_limits() {
        given_no_history::<InventoryDecider>()
            .when(restock(StoreStatus::Open, MAX_RESTOCK))
            .then([restocked(1_000_000)]);
        given_no_history::<InventoryDecider>()
            .when(restock(StoreStatus::Open, MAX_RESTOCK + 1))
            .then_rejected(|e| matches!(e, InventoryError::Invalid(i) if i.field == "quantity"));
        let full: Vec<DomainEvent> = (0..1000).map(|_| restocked(1_000_000)).collect();
        given::<InventoryDecider>(full)
            .when(restock(StoreStatus::Open, 1))
            .then_rejected(|e| matches!(e, InventoryError::Invalid(i) if i.problem == Problem::StockTooLarge { max: limits::MAX_STOCK_UNITS }));
    }

    #[test]
    fn a_restock_needs_a_positive_quantity() {
        given_no_history::<InventoryDecider>()
            .when(restock(StoreStatus::Open, -1))
            .then_rejected(|e| e.field().unwrap() == "quantity");
    }

    #[test]
    fn stock_cannot_go_below_zero() {
        given::<InventoryDecider>([restocked(3), reserved(1, 2)])
            .when(reserve(2, 2))
            .then_rejected(|e| *e == InventoryError::OutOfStock { requested: 2, available: 1 });
        let s = given::<InventoryDecider>([restocked(3), reserved(1, 2)]).when(reserve(2, 1)).then([reserved(2, 1)]);
        assert_eq!(s.available, 0);
    }

    #[test]
    fn reserving_twice_for_one_order_holds_stock_once() {
        given::<InventoryDecider>([restocked(3), reserved(1, 2)]).when(reserve(1, 2)).then_nothing_happens();
    }

    #[test]
    fn releasing_returns_the_reserved_units_once() {
        let released: DomainEvent =
            StockReleased { store_id: "s1".into(), sku: "latte".into(), order_id: Uuid::from_u128(1), quantity: 2 }
                .into();
        let s = given::<InventoryDecider>([restocked(3), reserved(1, 2)])
            .when(InventoryCommand::Release { order_id: Uuid::from_u128(1) })
            .then([released.clone()]);
        assert_eq!(s.available, 3);
        given::<InventoryDecider>([restocked(3), reserved(1, 2), released])
            .when(InventoryCommand::Release { order_id: Uuid::from_u128(1) })
            .then_nothing_happens();
    }

    #[test]
    fn a_late_reservation_for_an_order_whose_reservation_ended_changes_nothing() {
        let settled: DomainEvent =
            StockSettled { store_id: "s1".into(), sku: "latte".into(), order_id: Uuid::from_u128(1), quantity: 2 }
                .into();
        let released: DomainEvent =
            StockReleased { store_id: "s1".into(), sku: "latte".into(), order_id: Uuid::from_u128(2), quantity: 3 }
                .into();
        let history = [restocked(10), reserved(1, 2), reserved(2, 3), settled, released];
        given::<InventoryDecider>(history.clone()).when(reserve(1, 2)).then_nothing_happens();
        given::<InventoryDecider>(history).when(reserve(2, 3)).then_nothing_happens();
    }

    #[test]
    fn a_stream_remembers_only_the_latest_ended_reservations() {
        let mut history = vec![restocked(1000)];
        for order in 0..=ENDED_REMEMBERED as u128 {
            history.push(reserved(order, 1));
            history.push(
                StockSettled {
                    store_id: "s1".into(),
                    sku: "latte".into(),
                    order_id: Uuid::from_u128(order),
                    quantity: 1,
                }
                .into(),
            );
        }
        let stock = given::<InventoryDecider>(history.clone()).when(reserve(1, 1)).then([]);
        assert_eq!(stock.ended.len(), ENDED_REMEMBERED);
        // The oldest has been forgotten: an order id is not reused, so this only bounds the state.
        given::<InventoryDecider>(history).when(reserve(0, 1)).then([reserved(0, 1)]);
    }

    #[test]
    fn a_settled_reservation_stays_sold() {
        let settled: DomainEvent = events::domain::StockSettled {
            store_id: "s1".into(),
            sku: "latte".into(),
            order_id: Uuid::from_u128(1),
            quantity: 2,
        }
        .into();
        let s = given::<InventoryDecider>([restocked(3), reserved(1, 2)])
            .when(InventoryCommand::Settle { order_id: Uuid::from_u128(1) })
            .then([settled.clone()]);
        assert_eq!((s.available, s.reservations.len()), (1, 0));
        given::<InventoryDecider>([restocked(3), reserved(1, 2), settled])
            .when(InventoryCommand::Release { order_id: Uuid::from_u128(1) })
            .then_nothing_happens();
    }
}
