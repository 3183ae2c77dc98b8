//! An order: placed with priced lines, then paid or cancelled; a paid order is prepared, waits at
//! the counter, and is picked up, or abandoned once its pickup deadline has passed.
//!
//! ```text
//! placed ─► paid ─► preparing ─► ready ─┬─► completed (picked up)
//!   │                                   └─► abandoned (the pickup timer, after the deadline)
//!   └─► cancelled
//! ```

use events::domain::{
    Cents, OrderAbandoned, OrderCancelled, OrderLine, OrderPaid, OrderPickedUp, OrderPlaced, OrderPreparationStarted,
    OrderReadyForPickup,
};
use events::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::limits::{self, Invalid};
use super::store::StoreStatus;
use super::{Decider, Rejection};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    #[default]
    NotPlaced,
    Placed,
    Paid,
    Preparing,
    Ready,
    /// Picked up.
    Completed,
    /// Not picked up by the pickup deadline.
    Abandoned,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::NotPlaced => "not_placed",
            OrderStatus::Placed => "placed",
            OrderStatus::Paid => "paid",
            OrderStatus::Preparing => "preparing",
            OrderStatus::Ready => "ready",
            OrderStatus::Completed => "completed",
            OrderStatus::Abandoned => "abandoned",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Its preparation started: its stock is sold, and it can no longer be cancelled.
    pub fn is_made(self) -> bool {
        matches!(self, OrderStatus::Preparing | OrderStatus::Ready | OrderStatus::Completed | OrderStatus::Abandoned)
    }

    /// Paid, or any status a paid order moves on to.
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid
                | OrderStatus::Preparing
                | OrderStatus::Ready
                | OrderStatus::Completed
                | OrderStatus::Abandoned
        )
    }
}

/// The statuses store staff move a paid order through, one step at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Preparing,
    Ready,
    /// Picked up by the customer.
    Completed,
}

impl Progress {
    pub fn status(self) -> OrderStatus {
        match self {
            Progress::Preparing => OrderStatus::Preparing,
            Progress::Ready => OrderStatus::Ready,
            Progress::Completed => OrderStatus::Completed,
        }
    }

    /// The status an order must have for staff to move it here.
    pub fn from(self) -> OrderStatus {
        match self {
            Progress::Preparing => OrderStatus::Paid,
            Progress::Ready => OrderStatus::Preparing,
            Progress::Completed => OrderStatus::Ready,
        }
    }

    pub fn parse(status: &str) -> Option<Progress> {
        match status {
            "preparing" => Some(Progress::Preparing),
            "ready" => Some(Progress::Ready),
            "completed" => Some(Progress::Completed),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub status: OrderStatus,
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    pub lines: Vec<OrderLine>,
    pub total_cents: Cents,
    pub placed_at_us: i64,
    pub cancel_reason: Option<String>,
    /// Set once the order is ready: when it is abandoned if nobody picks it up.
    #[serde(default)]
    pub pickup_by_us: Option<i64>,
}

/// A requested line with what the menu said about its item when the order was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedLine {
    pub item_id: String,
    pub quantity: i64,
    pub unit_price_cents: Cents,
    pub retired: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OrderCommand {
    /// `store` is what the store's own stream says when the order is taken.
    Place {
        order_id: Uuid,
        customer_id: String,
        store_id: String,
        store: StoreStatus,
        lines: Vec<RequestedLine>,
        placed_at_us: i64,
    },
    MarkPaid {
        amount_cents: Cents,
    },
    Cancel {
        reason: String,
    },
    /// Store staff move the order one step on. Moving it to the status it has already changes
    /// nothing (a retried request). `pickup_window_us` sets the deadline of a `Ready`.
    Advance {
        to: Progress,
        at_us: i64,
        pickup_window_us: i64,
    },
    /// The pickup timer: a ready order whose deadline has passed by `now_us` is abandoned; any
    /// other order is left as it is (picked up meanwhile, or not due yet).
    Abandon {
        now_us: i64,
    },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// A value outside the domain's limits ([`super::limits`]).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("line {line}: menu item {item_id} is retired and cannot be ordered")]
    ItemRetired { line: usize, item_id: String },
    /// Stock is reserved per order and item: one item on two lines would sell more than it reserves.
    #[error("line {line}: menu item {item_id} is on an earlier line; order it on one line with the whole quantity")]
    RepeatedItem { line: usize, item_id: String },
    #[error("store {0} does not exist")]
    UnknownStore(String),
    #[error("store {0} is closed")]
    StoreClosed(String),
    #[error("order {0} was already placed with different contents")]
    AlreadyPlacedDifferently(Uuid),
    #[error("order does not exist")]
    NotPlaced,
    #[error("order is {0}, it cannot be paid")]
    CannotPay(&'static str),
    #[error("paid amount {paid} differs from the order total {total}")]
    WrongAmount { paid: Cents, total: Cents },
    #[error("order is {0}, it is too late to cancel it")]
    TooLateToCancel(&'static str),
    /// Staff asked for a step the order is not at: `current` is where it is.
    #[error("order is {current}; it cannot move to {to} (only from {from})")]
    CannotMove { current: &'static str, to: &'static str, from: &'static str },
}

impl Rejection for OrderError {
    fn field(&self) -> Option<String> {
        match self {
            OrderError::Invalid(i) => Some(i.field.clone()),
            OrderError::ItemRetired { line, .. } | OrderError::RepeatedItem { line, .. } => {
                Some(format!("items[{line}].item_id"))
            }
            OrderError::UnknownStore(_) | OrderError::StoreClosed(_) => Some("store_id".into()),
            OrderError::AlreadyPlacedDifferently(_) => Some("Idempotency-Key".into()),
            OrderError::CannotMove { .. } | OrderError::TooLateToCancel(_) => Some("status".into()),
            _ => None,
        }
    }
    fn is_not_found(&self) -> bool {
        matches!(self, OrderError::NotPlaced)
    }
    fn is_conflict(&self) -> bool {
        matches!(
            self,
            OrderError::AlreadyPlacedDifferently(_) | OrderError::CannotMove { .. } | OrderError::TooLateToCancel(_)
        )
    }
}

/// The most of one item a single order may ask for.
pub const MAX_QUANTITY: i64 = *limits::LINE_QUANTITY.end();

pub struct OrderDecider;

impl Decider for OrderDecider {
    type State = Order;
    type Command = OrderCommand;
    type Error = OrderError;

    fn decide(order: &Order, command: &OrderCommand) -> Result<Vec<DomainEvent>, OrderError> {
        match command {
            OrderCommand::Place { order_id, customer_id, store_id, store, lines, placed_at_us } => {
                limits::check_id("customer_id", customer_id)?;
                limits::check_id("store_id", store_id)?;
                limits::check_line_count("items", lines.len())?;
                let mut priced = Vec::with_capacity(lines.len());
                for (line, l) in lines.iter().enumerate() {
                    limits::check_id(&format!("items[{line}].item_id"), &l.item_id)?;
                    limits::check_line_quantity(&format!("items[{line}].quantity"), l.quantity)?;
                    // The price comes from the menu: the item is what the client can change.
                    limits::check_unit_price(&format!("items[{line}].item_id"), l.unit_price_cents)?;
                    if l.retired {
                        return Err(OrderError::ItemRetired { line, item_id: l.item_id.clone() });
                    }
                    if lines[..line].iter().any(|earlier| earlier.item_id == l.item_id) {
                        return Err(OrderError::RepeatedItem { line, item_id: l.item_id.clone() });
                    }
                    priced.push(OrderLine {
                        item_id: l.item_id.clone(),
                        quantity: l.quantity as u32,
                        unit_price_cents: l.unit_price_cents,
                    });
                }
                let total_cents = limits::check_order_total(
                    "items",
                    priced.iter().map(|l| (i64::from(l.quantity), l.unit_price_cents)),
                )?;
                if order.status != OrderStatus::NotPlaced {
                    // A retried request (same idempotency key) places nothing new, even if the
                    // store closed since: the order was taken while it was open.
                    let same = order.customer_id == *customer_id
                        && order.store_id == *store_id
                        && order
                            .lines
                            .iter()
                            .map(|l| (&l.item_id, l.quantity))
                            .eq(priced.iter().map(|l| (&l.item_id, l.quantity)));
                    return if same { Ok(vec![]) } else { Err(OrderError::AlreadyPlacedDifferently(*order_id)) };
                }
                match store {
                    StoreStatus::Open => {}
                    StoreStatus::Unknown => return Err(OrderError::UnknownStore(store_id.clone())),
                    StoreStatus::Closed => return Err(OrderError::StoreClosed(store_id.clone())),
                }
                Ok(vec![OrderPlaced {
                    order_id: *order_id,
                    customer_id: customer_id.clone(),
                    store_id: store_id.clone(),
                    lines: priced,
                    total_cents,
                    placed_at_us: *placed_at_us,
                }
                .into()])
            }
            OrderCommand::MarkPaid { amount_cents } => match order.status {
                OrderStatus::NotPlaced => Err(OrderError::NotPlaced),
                OrderStatus::Paid
                | OrderStatus::Preparing
                | OrderStatus::Ready
                | OrderStatus::Completed
                | OrderStatus::Abandoned => Ok(vec![]),
                OrderStatus::Cancelled => Err(OrderError::CannotPay("cancelled")),
                OrderStatus::Placed if *amount_cents != order.total_cents => {
                    Err(OrderError::WrongAmount { paid: *amount_cents, total: order.total_cents })
                }
                OrderStatus::Placed => {
                    Ok(vec![OrderPaid { order_id: order.order_id, amount_cents: *amount_cents }.into()])
                }
            },
            OrderCommand::Cancel { reason } => {
                limits::check_text("reason", reason, limits::MAX_REASON_CHARS)?;
                match order.status {
                    OrderStatus::NotPlaced => Err(OrderError::NotPlaced),
                    OrderStatus::Cancelled => Ok(vec![]),
                    // The saga gives the money, the stock and the points back.
                    OrderStatus::Placed | OrderStatus::Paid => {
                        Ok(vec![OrderCancelled { order_id: order.order_id, reason: reason.clone() }.into()])
                    }
                    late @ (OrderStatus::Preparing
                    | OrderStatus::Ready
                    | OrderStatus::Completed
                    | OrderStatus::Abandoned) => Err(OrderError::TooLateToCancel(late.as_str())),
                }
            }
            OrderCommand::Advance { to, at_us, pickup_window_us } => {
                if order.status == OrderStatus::NotPlaced {
                    return Err(OrderError::NotPlaced);
                }
                if order.status == to.status() {
                    return Ok(vec![]);
                }
                if order.status != to.from() {
                    return Err(OrderError::CannotMove {
                        current: order.status.as_str(),
                        to: to.status().as_str(),
                        from: to.from().as_str(),
                    });
                }
                let (order_id, customer_id, store_id) =
                    (order.order_id, order.customer_id.clone(), order.store_id.clone());
                Ok(vec![match to {
                    Progress::Preparing => {
                        OrderPreparationStarted { order_id, customer_id, store_id, started_at_us: *at_us }.into()
                    }
                    Progress::Ready => OrderReadyForPickup {
                        order_id,
                        customer_id,
                        store_id,
                        ready_at_us: *at_us,
                        pickup_by_us: at_us.saturating_add((*pickup_window_us).max(0)),
                    }
                    .into(),
                    Progress::Completed => {
                        OrderPickedUp { order_id, customer_id, store_id, picked_up_at_us: *at_us }.into()
                    }
                }])
            }
            OrderCommand::Abandon { now_us } => match (order.status, order.pickup_by_us) {
                (OrderStatus::NotPlaced, _) => Err(OrderError::NotPlaced),
                (OrderStatus::Ready, Some(deadline)) if *now_us >= deadline => Ok(vec![OrderAbandoned {
                    order_id: order.order_id,
                    customer_id: order.customer_id.clone(),
                    store_id: order.store_id.clone(),
                    abandoned_at_us: *now_us,
                }
                .into()]),
                _ => Ok(vec![]),
            },
        }
    }

    fn evolve(mut order: Order, event: &DomainEvent) -> Order {
        match event {
            DomainEvent::OrderPlaced(e) => {
                order.status = OrderStatus::Placed;
                order.order_id = e.order_id;
                order.customer_id.clone_from(&e.customer_id);
                order.store_id.clone_from(&e.store_id);
                order.lines.clone_from(&e.lines);
                order.total_cents = e.total_cents;
                order.placed_at_us = e.placed_at_us;
            }
            DomainEvent::OrderPaid(_) => order.status = OrderStatus::Paid,
            DomainEvent::OrderCancelled(e) => {
                order.status = OrderStatus::Cancelled;
                order.cancel_reason = Some(e.reason.clone());
            }
            DomainEvent::OrderPreparationStarted(_) => order.status = OrderStatus::Preparing,
            DomainEvent::OrderReadyForPickup(e) => {
                order.status = OrderStatus::Ready;
                order.pickup_by_us = Some(e.pickup_by_us);
            }
            DomainEvent::OrderPickedUp(_) => order.status = OrderStatus::Completed,
            DomainEvent::OrderAbandoned(_) => order.status = OrderStatus::Abandoned,
            _ => {}
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::given_when_then::{given, given_no_history};
    use crate::domain::limits::{Problem, MAX_LINES_PER_ORDER, MAX_ORDER_TOTAL_CENTS};

    fn id() -> Uuid {
        Uuid::from_u128(7)
    }
    fn line(item: &str, quantity: i64, price: Cents) -> RequestedLine {
        RequestedLine { item_id: item.into(), quantity, unit_price_cents: price, retired: false }
    }
    fn place_in(store: StoreStatus, lines: Vec<RequestedLine>) -> OrderCommand {
        OrderCommand::Place {
            order_id: id(),
            customer_id: "c1".into(),
            store_id: "s1".into(),
            store,
            lines,
            placed_at_us: 5,
        }
    }
    fn place(lines: Vec<RequestedLine>) -> OrderCommand {
        place_in(StoreStatus::Open, lines)
    }
    fn invalid(field: &str, problem: Problem) -> impl FnOnce(&OrderError) -> bool + '_ {
        move |e| {
            matches!(e, OrderError::Invalid(i) if i.field == field && i.problem == problem)
                && e.field().unwrap() == field
        }
    }
    fn placed() -> DomainEvent {
        OrderPlaced {
            order_id: id(),
            customer_id: "c1".into(),
            store_id: "s1".into(),
            lines: vec![OrderLine { item_id: "latte".into(), quantity: 2, unit_price_cents: 450 }],
            total_cents: 900,
            placed_at_us: 5,
        }
        .into()
    }

    #[test]
    fn an_order_is_placed_with_its_total() {
        let order = given_no_history::<OrderDecider>().when(place(vec![line("latte", 2, 450)])).then([placed()]);
        assert_eq!(order.status, OrderStatus::Placed);
        assert_eq!(order.total_cents, 900);
    }

    #[test]
    fn an_order_needs_at_least_one_item() {
        given_no_history::<OrderDecider>().when(place(vec![])).then_rejected(invalid("items", Problem::NoLines));
    }

    #[test]
    fn quantities_must_be_positive() {
        given_no_history::<OrderDecider>()
            .when(place(vec![line("latte", 1, 450), line("mocha", 0, 500)]))
            .then_rejected(invalid("items[1].quantity", Problem::OutOfRange { min: 1, max: 1000 }));
        given_no_history::<OrderDecider>()
            .when(place(vec![line("latte", -3, 450)]))
            .then_rejected(invalid("items[0].quantity", Problem::OutOfRange { min: 1, max: 1000 }));
        given_no_history::<OrderDecider>()
            .when(place(vec![line("latte", 1001, 1)]))
            .then_rejected(invalid("items[0].quantity", Problem::OutOfRange { min: 1, max: 1000 }));
    }

    #[test]
    fn prices_must_be_positive() {
        given_no_history::<OrderDecider>()
            .when(place(vec![line("latte", 1, 0)]))
            .then_rejected(invalid("items[0].item_id", Problem::OutOfRange { min: 1, max: 100_000 }));
    }

    #[test]
    fn a_retired_menu_item_cannot_be_ordered() {
        let mut retired = line("pumpkin", 1, 500);
        retired.retired = true;
        given_no_history::<OrderDecider>()
            .when(place(vec![line("latte", 1, 450), retired]))
            .then_rejected(|e| matches!(e, OrderError::ItemRetired { line: 1, .. }));
    }

    #[test]
    fn an_item_is_ordered_on_one_line_only() {
        given_no_history::<OrderDecider>()
            .when(place(vec![line("latte", 1, 450), line("mocha", 1, 495), line("latte", 2, 450)]))
            .then_rejected(|e| {
                matches!(e, OrderError::RepeatedItem { line: 2, item_id } if item_id == "latte")
                    && e.field().as_deref() == Some("items[2].item_id")
            });
    }

    #[test]
    fn a_customer_and_a_store_are_required() {
        given_no_history::<OrderDecider>()
            .when(OrderCommand::Place {
                order_id: id(),
                customer_id: " ".into(),
                store_id: "s".into(),
                store: StoreStatus::Open,
                lines: vec![line("a", 1, 1)],
                placed_at_us: 0,
            })
            .then_rejected(|e| e.field().as_deref() == Some("customer_id"));
    }

    #[test]
    fn an_order_that_no_read_model_could_hold_is_refused() {
        // The issue's poison order: 101 lines of 1,000 units at 100,000 cents.
        let poison = (0..101).map(|i| line(&format!("item-{i}"), 1000, 100_000)).collect();
        given_no_history::<OrderDecider>()
            .when(place(poison))
            .then_rejected(invalid("items", Problem::TooManyLines { max: MAX_LINES_PER_ORDER }));
        let fifty = (0..MAX_LINES_PER_ORDER).map(|i| line(&format!("item-{i}"), 1, 100)).collect();
        let order = given_no_history::<OrderDecider>().when(place(fifty)).then_events();
        assert_eq!(order.len(), 1);
        // Within every per-line limit, over the total: 10 lines of 1,000 units at $1.01.
        let dear = (0..10).map(|i| line(&format!("item-{i}"), 1000, 101)).collect();
        given_no_history::<OrderDecider>()
            .when(place(dear))
            .then_rejected(invalid("items", Problem::TotalTooLarge { total: 1_010_000, max: MAX_ORDER_TOTAL_CENTS }));
        // Exactly the cap is allowed.
        let at_cap = vec![line("a", 1000, 500), line("b", 1000, 500)];
        let order = given_no_history::<OrderDecider>().when(place(at_cap)).then_events();
        assert!(matches!(&order[0], DomainEvent::OrderPlaced(p) if p.total_cents == MAX_ORDER_TOTAL_CENTS));
    }

    #[test]
    fn ids_follow_the_id_syntax() {
        given_no_history::<OrderDecider>()
            .when(place(vec![line("lat\0te", 1, 450)]))
            .then_rejected(invalid("items[0].item_id", Problem::BadId));
        let mut command = place(vec![line("latte", 1, 450)]);
        if let OrderCommand::Place { store_id, .. } = &mut command {
            *store_id = "x".repeat(65);
        }
        given_no_history::<OrderDecider>().when(command).then_rejected(invalid("store_id", Problem::BadId));
    }

    #[test]
    fn only_an_open_store_takes_orders() {
        given_no_history::<OrderDecider>()
            .when(place_in(StoreStatus::Unknown, vec![line("latte", 2, 450)]))
            .then_rejected(|e| {
                matches!(e, OrderError::UnknownStore(s) if s == "s1") && e.field().unwrap() == "store_id"
            });
        given_no_history::<OrderDecider>()
            .when(place_in(StoreStatus::Closed, vec![line("latte", 2, 450)]))
            .then_rejected(|e| matches!(e, OrderError::StoreClosed(_)) && e.field().unwrap() == "store_id");
        // A retry of an order taken while the store was open still answers that order.
        given::<OrderDecider>([placed()])
            .when(place_in(StoreStatus::Closed, vec![line("latte", 2, 450)]))
            .then_nothing_happens();
    }

    #[test]
    fn a_cancellation_reason_is_printable_and_short() {
        given::<OrderDecider>([placed()])
            .when(OrderCommand::Cancel { reason: "x".repeat(201) })
            .then_rejected(invalid("reason", Problem::TooLong { max: 200 }));
        given::<OrderDecider>([placed()])
            .when(OrderCommand::Cancel { reason: "out\0".into() })
            .then_rejected(invalid("reason", Problem::ControlCharacter(0)));
    }

    #[test]
    fn placing_the_same_order_again_changes_nothing() {
        given::<OrderDecider>([placed()]).when(place(vec![line("latte", 2, 450)])).then_nothing_happens();
    }

    #[test]
    fn reusing_an_order_id_for_different_contents_is_refused() {
        given::<OrderDecider>([placed()])
            .when(place(vec![line("latte", 3, 450)]))
            .then_rejected(|e| matches!(e, OrderError::AlreadyPlacedDifferently(_)));
    }

    #[test]
    fn a_placed_order_is_paid_for_its_total_once() {
        given::<OrderDecider>([placed()]).when(OrderCommand::MarkPaid { amount_cents: 900 }).then([OrderPaid {
            order_id: id(),
            amount_cents: 900,
        }
        .into()]);
        given::<OrderDecider>([placed()])
            .when(OrderCommand::MarkPaid { amount_cents: 100 })
            .then_rejected(|e| matches!(e, OrderError::WrongAmount { .. }));
        given::<OrderDecider>([placed(), OrderPaid { order_id: id(), amount_cents: 900 }.into()])
            .when(OrderCommand::MarkPaid { amount_cents: 900 })
            .then_nothing_happens();
    }

    #[test]
    fn a_cancelled_order_cannot_be_paid_and_a_paid_one_can_be_cancelled_until_it_is_prepared() {
        let cancelled: DomainEvent = OrderCancelled { order_id: id(), reason: "payment_declined".into() }.into();
        given::<OrderDecider>([placed(), cancelled.clone()])
            .when(OrderCommand::MarkPaid { amount_cents: 900 })
            .then_rejected(|e| matches!(e, OrderError::CannotPay("cancelled")));
        given::<OrderDecider>([placed(), cancelled])
            .when(OrderCommand::Cancel { reason: "again".into() })
            .then_nothing_happens();
        let order = given::<OrderDecider>([placed(), OrderPaid { order_id: id(), amount_cents: 900 }.into()])
            .when(OrderCommand::Cancel { reason: "customer_cancelled".into() })
            .then([OrderCancelled { order_id: id(), reason: "customer_cancelled".into() }.into()]);
        assert!(!order.status.is_paid());
    }

    fn paid() -> DomainEvent {
        OrderPaid { order_id: id(), amount_cents: 900 }.into()
    }
    fn advance(to: Progress, at_us: i64) -> OrderCommand {
        OrderCommand::Advance { to, at_us, pickup_window_us: 600 }
    }
    fn preparing() -> DomainEvent {
        OrderPreparationStarted { order_id: id(), customer_id: "c1".into(), store_id: "s1".into(), started_at_us: 10 }
            .into()
    }
    fn ready() -> DomainEvent {
        OrderReadyForPickup {
            order_id: id(),
            customer_id: "c1".into(),
            store_id: "s1".into(),
            ready_at_us: 20,
            pickup_by_us: 620,
        }
        .into()
    }

    #[test]
    fn staff_move_a_paid_order_through_preparing_and_ready_to_picked_up() {
        given::<OrderDecider>([placed(), paid()]).when(advance(Progress::Preparing, 10)).then([preparing()]);
        let order =
            given::<OrderDecider>([placed(), paid(), preparing()]).when(advance(Progress::Ready, 20)).then([ready()]);
        assert_eq!((order.status, order.pickup_by_us), (OrderStatus::Ready, Some(620)));
        let order = given::<OrderDecider>([placed(), paid(), preparing(), ready()])
            .when(advance(Progress::Completed, 30))
            .then([OrderPickedUp {
                order_id: id(),
                customer_id: "c1".into(),
                store_id: "s1".into(),
                picked_up_at_us: 30,
            }
            .into()]);
        assert_eq!(order.status, OrderStatus::Completed);
        assert!(order.status.is_paid());
    }

    #[test]
    fn asking_for_the_status_an_order_already_has_changes_nothing() {
        given::<OrderDecider>([placed(), paid(), preparing()])
            .when(advance(Progress::Preparing, 99))
            .then_nothing_happens();
        given::<OrderDecider>([placed(), paid(), preparing(), ready()])
            .when(advance(Progress::Ready, 99))
            .then_nothing_happens();
    }

    #[test]
    fn a_step_out_of_order_is_a_conflict_naming_the_current_status() {
        let refused = |current: &'static str| {
            move |e: &OrderError| {
                matches!(e, OrderError::CannotMove { current: c, .. } if *c == current)
                    && e.is_conflict()
                    && e.field().as_deref() == Some("status")
            }
        };
        given::<OrderDecider>([placed()]).when(advance(Progress::Preparing, 1)).then_rejected(refused("placed"));
        given::<OrderDecider>([placed(), paid()]).when(advance(Progress::Ready, 1)).then_rejected(refused("paid"));
        given::<OrderDecider>([placed(), paid()]).when(advance(Progress::Completed, 1)).then_rejected(refused("paid"));
        given::<OrderDecider>([placed(), paid(), preparing(), ready()])
            .when(advance(Progress::Preparing, 1))
            .then_rejected(refused("ready"));
        let cancelled: DomainEvent = OrderCancelled { order_id: id(), reason: "payment_declined".into() }.into();
        given::<OrderDecider>([placed(), cancelled])
            .when(advance(Progress::Preparing, 1))
            .then_rejected(refused("cancelled"));
        given_no_history::<OrderDecider>().when(advance(Progress::Preparing, 1)).then_rejected(|e| e.is_not_found());
    }

    #[test]
    fn a_ready_order_is_abandoned_only_once_its_pickup_deadline_has_passed() {
        let history = || [placed(), paid(), preparing(), ready()];
        given::<OrderDecider>(history()).when(OrderCommand::Abandon { now_us: 619 }).then_nothing_happens();
        let order =
            given::<OrderDecider>(history()).when(OrderCommand::Abandon { now_us: 620 }).then([OrderAbandoned {
                order_id: id(),
                customer_id: "c1".into(),
                store_id: "s1".into(),
                abandoned_at_us: 620,
            }
            .into()]);
        assert_eq!(order.status, OrderStatus::Abandoned);
        // Picked up before the timer came round: nothing to abandon; nor anything not ready.
        let picked: DomainEvent =
            OrderPickedUp { order_id: id(), customer_id: "c1".into(), store_id: "s1".into(), picked_up_at_us: 600 }
                .into();
        given::<OrderDecider>([placed(), paid(), preparing(), ready(), picked])
            .when(OrderCommand::Abandon { now_us: 10_000 })
            .then_nothing_happens();
        given::<OrderDecider>([placed(), paid()]).when(OrderCommand::Abandon { now_us: 10_000 }).then_nothing_happens();
        // An abandoned order cannot be picked up after all.
        given::<OrderDecider>(
            history().into_iter().chain([OrderAbandoned {
                order_id: id(),
                customer_id: "c1".into(),
                store_id: "s1".into(),
                abandoned_at_us: 620,
            }
            .into()]),
        )
        .when(advance(Progress::Completed, 700))
        .then_rejected(|e| matches!(e, OrderError::CannotMove { current: "abandoned", .. }));
    }

    #[test]
    fn an_order_in_preparation_or_later_cannot_be_cancelled() {
        given::<OrderDecider>([placed(), paid(), preparing()])
            .when(OrderCommand::Cancel { reason: "changed my mind".into() })
            .then_rejected(|e| *e == OrderError::TooLateToCancel("preparing") && e.is_conflict());
    }

    #[test]
    fn an_unknown_order_cannot_be_paid() {
        given_no_history::<OrderDecider>()
            .when(OrderCommand::MarkPaid { amount_cents: 1 })
            .then_rejected(|e| e.is_not_found());
    }
}
