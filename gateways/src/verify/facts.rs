//! The pure part of `verify`: the journal folded into facts, one event at a time (each aggregate with
//! its decider's own `evolve`), and the invariants checked on those facts. No I/O and no clock: the
//! caller hands in the events and the time.

use std::collections::{BTreeMap, HashMap, HashSet};

use actors::domain::inventory::{InventoryDecider, Stock};
use actors::domain::loyalty::{imported_points_order_id, points_for, tier_for, LoyaltyAccount, LoyaltyDecider};
use actors::domain::order::{Order, OrderDecider, OrderStatus};
use actors::domain::payment::{Payment, PaymentDecider, PaymentStatus};
use actors::domain::Decider;
use events::domain::{streams, Cents, CodecError, Tier};
use events::{DomainEvent, RecordedEvent};
use uuid::Uuid;

use super::{Acknowledgement, Check};

/// The names of the checks, as they appear in a report; callers find a check by its name.
pub const ACKNOWLEDGED: &str = "acknowledged commands are in the journal exactly once";
pub const ORDERS_ENDED: &str = "every order ended paid or cancelled";
pub const STOCK: &str = "no stock below zero, and available = restocked − sold per store and SKU";
pub const LOYALTY_POINTS: &str = "loyalty points equal the paid totals per customer";
pub const LOYALTY_TIERS: &str = "every loyalty tier matches its points";
pub const PAYMENTS: &str = "each order has at most one captured payment, and every paid order exactly one";
pub const HOLDS: &str = "no cancelled order's payment still holds an authorization or keeps a capture";
pub const READ_MODELS: &str = "every read model equals a rebuild";

/// How many offenders a failed check names; the rest are counted.
const NAMED: usize = 3;

/// What the journal says, folded up to [`Facts::position`].
pub struct Facts {
    acks: AckIndex,
    orders: HashMap<Uuid, OrderFacts>,
    payments: HashMap<Uuid, PaymentFacts>,
    /// By inventory stream id (`inventory-<store>:<sku>`).
    stock: HashMap<String, StockFacts>,
    /// By customer id.
    loyalty: HashMap<String, LoyaltyFacts>,
    position: u64,
    events: u64,
}

struct OrderFacts {
    order: Order,
    /// When anything about the order last happened (its own, its payment's or its stock's events).
    last_moved_us: i64,
}

#[derive(Default)]
struct PaymentFacts {
    payment: Payment,
    /// The amount of each `PaymentCaptured`, in journal order: the decider's state cannot tell one
    /// capture from two.
    captures: Vec<Cents>,
}

#[derive(Default)]
struct StockFacts {
    stock: Stock,
    restocked: u64,
    /// Reservations that asked for more than was available (the decider's fold saturates at zero).
    overdrawn: Vec<(Uuid, u32, u64)>,
    /// Orders reserved a second time here (while reserved, or after their reservation ended).
    reserved_again: Vec<Uuid>,
}

#[derive(Default)]
struct LoyaltyFacts {
    account: LoyaltyAccount,
    /// Every `PointsAccrued`: (order id, points), in journal order.
    accruals: Vec<(Uuid, u64)>,
    /// Every `PointsRevoked`: (order id, points), in journal order.
    revocations: Vec<(Uuid, u64)>,
}

/// The acknowledgements, grouped by stream, each with the journal's events that answer it counted.
#[derive(Default)]
struct AckIndex {
    by_stream: HashMap<String, Vec<AckSlot>>,
    total: u64,
}

struct AckSlot {
    event_type: String,
    correlation_id: Option<Uuid>,
    /// Acknowledgements of this command that were answered, and that were not.
    answered: u32,
    unanswered: u32,
    /// Events in the journal that match it.
    found: u32,
}

impl AckIndex {
    fn new(acks: &[Acknowledgement]) -> Self {
        let mut index = AckIndex { by_stream: HashMap::new(), total: acks.len() as u64 };
        for ack in acks {
            let slots = index.by_stream.entry(ack.stream_id.clone()).or_default();
            let slot = match slots
                .iter_mut()
                .position(|s| s.event_type == ack.event_type && s.correlation_id == ack.correlation_id)
            {
                Some(i) => &mut slots[i],
                None => {
                    slots.push(AckSlot {
                        event_type: ack.event_type.clone(),
                        correlation_id: ack.correlation_id,
                        answered: 0,
                        unanswered: 0,
                        found: 0,
                    });
                    slots.last_mut().expect("just pushed")
                }
            };
            if ack.answered {
                slot.answered += 1;
            } else {
                slot.unanswered += 1;
            }
        }
        index
    }

    fn fold(&mut self, e: &RecordedEvent) {
        let Some(slots) = self.by_stream.get_mut(e.stream_id.as_str()) else { return };
        for slot in slots.iter_mut().filter(|s| s.event_type == e.event_type) {
            let matches = match slot.correlation_id {
                Some(c) => e.correlation_id == c && e.causation_id.is_none(),
                None => true,
            };
            if matches {
                slot.found += 1;
            }
        }
    }
}

/// The checks on the facts so far, and whether the saga is still moving something they depend on
/// (an order not ended, a sale not settled, points not accrued yet): worth reading the journal again.
#[derive(Debug)]
pub struct Judgement {
    pub checks: Vec<Check>,
    pub moving: bool,
}

impl Facts {
    /// Nothing folded yet; `acks` will be looked for in the events to come.
    pub fn new(acks: &[Acknowledgement]) -> Self {
        Facts {
            acks: AckIndex::new(acks),
            orders: HashMap::new(),
            payments: HashMap::new(),
            stock: HashMap::new(),
            loyalty: HashMap::new(),
            position: 0,
            events: 0,
        }
    }

    /// The global position of the last event folded (0 before any).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Events folded so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Folds one event, in global order. Events of other categories (menu, stores, parks) only count
    /// for the acknowledgements.
    pub fn fold(&mut self, recorded: &RecordedEvent) -> Result<(), CodecError> {
        self.position = self.position.max(recorded.global_position);
        self.events += 1;
        self.acks.fold(recorded);
        if !matches!(streams::category(&recorded.stream_id), "order" | "payment" | "inventory" | "loyalty") {
            return Ok(());
        }
        let event = recorded.decode()?;
        let at = recorded.recorded_at_us;
        let moved = |orders: &mut HashMap<Uuid, OrderFacts>, order_id: Uuid| {
            if let Some(o) = orders.get_mut(&order_id) {
                o.last_moved_us = o.last_moved_us.max(at);
            }
        };
        match &event {
            DomainEvent::OrderPlaced(_)
            | DomainEvent::OrderPaid(_)
            | DomainEvent::OrderCancelled(_)
            | DomainEvent::OrderPreparationStarted(_)
            | DomainEvent::OrderReadyForPickup(_)
            | DomainEvent::OrderPickedUp(_)
            | DomainEvent::OrderAbandoned(_) => {
                let order_id = match &event {
                    DomainEvent::OrderPlaced(e) => e.order_id,
                    DomainEvent::OrderPaid(e) => e.order_id,
                    DomainEvent::OrderCancelled(e) => e.order_id,
                    DomainEvent::OrderPreparationStarted(e) => e.order_id,
                    DomainEvent::OrderReadyForPickup(e) => e.order_id,
                    DomainEvent::OrderPickedUp(e) => e.order_id,
                    DomainEvent::OrderAbandoned(e) => e.order_id,
                    _ => unreachable!("matched above"),
                };
                let facts = self
                    .orders
                    .entry(order_id)
                    .or_insert_with(|| OrderFacts { order: Order::default(), last_moved_us: at });
                facts.order = OrderDecider::evolve(std::mem::take(&mut facts.order), &event);
                facts.last_moved_us = facts.last_moved_us.max(at);
            }
            DomainEvent::PaymentAuthorized(_)
            | DomainEvent::PaymentDeclined(_)
            | DomainEvent::PaymentCaptured(_)
            | DomainEvent::PaymentVoidRequested(_)
            | DomainEvent::PaymentVoided(_)
            | DomainEvent::PaymentRefundRequested(_)
            | DomainEvent::PaymentRefunded(_) => {
                let order_id = match &event {
                    DomainEvent::PaymentAuthorized(e) => e.order_id,
                    DomainEvent::PaymentDeclined(e) => e.order_id,
                    DomainEvent::PaymentCaptured(e) => e.order_id,
                    DomainEvent::PaymentVoidRequested(e) => e.order_id,
                    DomainEvent::PaymentVoided(e) => e.order_id,
                    DomainEvent::PaymentRefundRequested(e) => e.order_id,
                    DomainEvent::PaymentRefunded(e) => e.order_id,
                    _ => unreachable!("matched above"),
                };
                let facts = self.payments.entry(order_id).or_default();
                if let DomainEvent::PaymentCaptured(e) = &event {
                    facts.captures.push(e.amount_cents);
                }
                facts.payment = PaymentDecider::evolve(std::mem::take(&mut facts.payment), &event);
                moved(&mut self.orders, order_id);
            }
            DomainEvent::StockRestocked(_)
            | DomainEvent::StockReserved(_)
            | DomainEvent::StockReleased(_)
            | DomainEvent::StockSettled(_) => {
                // Looked up by `&str` first: a stream id is allocated once per stream, not per event.
                if !self.stock.contains_key(recorded.stream_id.as_str()) {
                    self.stock.insert(recorded.stream_id.clone(), StockFacts::default());
                }
                let facts = self.stock.get_mut(recorded.stream_id.as_str()).expect("inserted above");
                match &event {
                    DomainEvent::StockRestocked(e) => facts.restocked += u64::from(e.quantity),
                    DomainEvent::StockReserved(e) => {
                        if u64::from(e.quantity) > facts.stock.available {
                            facts.overdrawn.push((e.order_id, e.quantity, facts.stock.available));
                        }
                        if facts.stock.reservations.contains_key(&e.order_id) || facts.stock.ended.contains(&e.order_id)
                        {
                            facts.reserved_again.push(e.order_id);
                        }
                    }
                    _ => {}
                }
                facts.stock = InventoryDecider::evolve(std::mem::take(&mut facts.stock), &event);
                match &event {
                    DomainEvent::StockReserved(e) => moved(&mut self.orders, e.order_id),
                    DomainEvent::StockReleased(e) => moved(&mut self.orders, e.order_id),
                    DomainEvent::StockSettled(e) => moved(&mut self.orders, e.order_id),
                    _ => {}
                }
            }
            DomainEvent::PointsAccrued(_) | DomainEvent::PointsRevoked(_) | DomainEvent::TierChanged(_) => {
                let customer_id = match &event {
                    DomainEvent::PointsAccrued(e) => &e.customer_id,
                    DomainEvent::PointsRevoked(e) => &e.customer_id,
                    DomainEvent::TierChanged(e) => &e.customer_id,
                    _ => unreachable!("matched above"),
                };
                if !self.loyalty.contains_key(customer_id.as_str()) {
                    self.loyalty.insert(customer_id.clone(), LoyaltyFacts::default());
                }
                let facts = self.loyalty.get_mut(customer_id.as_str()).expect("inserted above");
                match &event {
                    DomainEvent::PointsAccrued(e) => facts.accruals.push((e.order_id, e.points)),
                    DomainEvent::PointsRevoked(e) => facts.revocations.push((e.order_id, e.points)),
                    _ => {}
                }
                facts.account = LoyaltyDecider::evolve(std::mem::take(&mut facts.account), &event);
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks every invariant on the facts so far. `now_us` (microseconds since the epoch) dates how
    /// long an unfinished order has not moved.
    pub fn judge(&self, now_us: i64) -> Judgement {
        let (orders, orders_moving) = self.orders_ended(now_us);
        let (stock, stock_moving) = self.stock_balances();
        let (points, points_moving) = self.loyalty_points();
        let (holds, holds_moving) = self.holds_released();
        Judgement {
            checks: vec![
                self.acknowledged(),
                orders,
                stock,
                points,
                self.loyalty_tiers(),
                self.payments_captured(),
                holds,
            ],
            moving: orders_moving || stock_moving || points_moving || holds_moving,
        }
    }

    fn acknowledged(&self) -> Check {
        if self.acks.total == 0 {
            return pass(ACKNOWLEDGED, "no acknowledgements given".into());
        }
        let (mut answered, mut unanswered, mut unanswered_found) = (0u64, 0u64, 0u64);
        let (mut missing, mut duplicated) = (Vec::new(), Vec::new());
        for (stream_id, slots) in &self.acks.by_stream {
            for slot in slots {
                answered += u64::from(slot.answered);
                unanswered += u64::from(slot.unanswered);
                let what = || {
                    let correlation = slot.correlation_id.map(|c| format!(" (correlation {c})")).unwrap_or_default();
                    format!("{} on {stream_id}{correlation}", slot.event_type)
                };
                if slot.found > 1 {
                    duplicated.push(format!("{} {} times", what(), slot.found));
                } else if slot.found == 0 && slot.answered > 0 {
                    missing.push(what());
                }
                if slot.answered == 0 && slot.found > 0 {
                    unanswered_found += u64::from(slot.unanswered);
                }
            }
        }
        missing.sort();
        duplicated.sort();
        let counted = format!(
            "{} acknowledgements checked ({} answered, {} unanswered, {} of those in the journal)",
            n(self.acks.total),
            n(answered),
            n(unanswered),
            n(unanswered_found)
        );
        if missing.is_empty() && duplicated.is_empty() {
            return pass(ACKNOWLEDGED, counted);
        }
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("{} answered but not in the journal: {}", n(missing.len()), listed(&missing)));
        }
        if !duplicated.is_empty() {
            problems.push(format!("{} more than once: {}", n(duplicated.len()), listed(&duplicated)));
        }
        fail(ACKNOWLEDGED, format!("{}; {counted}", problems.join("; ")))
    }

    /// Where an unfinished order stands, from its payment and its reservations.
    fn stage(&self, order_id: Uuid, reserved: &HashSet<Uuid>) -> &'static str {
        match self.payments.get(&order_id).map(|p| p.payment.status) {
            Some(PaymentStatus::Captured) => "captured",
            Some(PaymentStatus::Authorized) => "authorized",
            Some(PaymentStatus::Declined) => "declined",
            Some(PaymentStatus::VoidRequested) => "void requested",
            Some(PaymentStatus::Voided) => "voided",
            Some(PaymentStatus::RefundRequested) => "refund requested",
            Some(PaymentStatus::Refunded) => "refunded",
            Some(PaymentStatus::None) | None if reserved.contains(&order_id) => "reserved",
            Some(PaymentStatus::None) | None => "placed",
        }
    }

    fn orders_ended(&self, now_us: i64) -> (Check, bool) {
        let (mut paid, mut cancelled) = (0u64, 0u64);
        let mut unfinished: Vec<(&Uuid, &OrderFacts)> = Vec::new();
        for (id, facts) in &self.orders {
            match facts.order.status {
                // Paid ends what the journal's checks follow; what the store does with it after is its own.
                status if status.is_paid() => paid += 1,
                OrderStatus::Cancelled => cancelled += 1,
                _ => unfinished.push((id, facts)),
            }
        }
        let total = n(self.orders.len());
        if unfinished.is_empty() {
            return (
                pass(ORDERS_ENDED, format!("{total} orders: {} paid, {} cancelled", n(paid), n(cancelled))),
                false,
            );
        }
        let reserved: HashSet<Uuid> = self.stock.values().flat_map(|s| s.stock.reservations.keys().copied()).collect();
        // The longest-stuck first.
        unfinished.sort_by_key(|(id, facts)| (facts.last_moved_us, **id));
        let named: Vec<String> = unfinished
            .iter()
            .map(|(id, facts)| {
                let still = (now_us - facts.last_moved_us).max(0) / 1_000_000;
                format!("order {id} stuck in `{}` for {still} s", self.stage(**id, &reserved))
            })
            .collect();
        let detail = format!(
            "{} of {total} orders not ended ({} paid, {} cancelled): {}",
            n(unfinished.len()),
            n(paid),
            n(cancelled),
            listed(&named)
        );
        (fail(ORDERS_ENDED, detail), true)
    }

    fn stock_balances(&self) -> (Check, bool) {
        // Sold: the lines of the orders whose preparation started, per inventory stream.
        let mut sold: HashMap<String, u64> = HashMap::new();
        // Streams where a sold order has two lines of the SKU (the saga reserves one line per SKU).
        let mut repeated: BTreeMap<String, Uuid> = BTreeMap::new();
        for (id, facts) in &self.orders {
            let order = &facts.order;
            if !order.status.is_made() {
                continue;
            }
            let mut seen = HashSet::new();
            for line in &order.lines {
                let stream = streams::inventory(&order.store_id, &line.item_id);
                if !seen.insert(line.item_id.as_str()) {
                    repeated.entry(stream.clone()).or_insert(*id);
                }
                *sold.entry(stream).or_default() += u64::from(line.quantity);
            }
        }
        let (mut overdrawn, mut unbalanced, mut unknown, mut held_by_ended) = (vec![], vec![], vec![], vec![]);
        let mut twice = Vec::new();
        let mut in_progress = 0u64;
        let (mut restocked_total, mut sold_total, mut stores) = (0u64, 0u64, HashSet::new());
        let mut keys: Vec<&String> = self.stock.keys().chain(sold.keys()).collect();
        keys.sort();
        keys.dedup();
        let empty = StockFacts::default();
        for stream in keys {
            let facts = self.stock.get(stream).unwrap_or(&empty);
            let sold_here = sold.get(stream).copied().unwrap_or(0);
            let place = stream.strip_prefix("inventory-").unwrap_or(stream);
            stores.insert(place.split_once(':').map_or(place, |(store, _)| store));
            restocked_total += facts.restocked;
            sold_total += sold_here;
            for (order_id, quantity, available) in &facts.overdrawn {
                overdrawn.push(format!("{place}: order {order_id} reserved {quantity} with {available} available"));
            }
            for order_id in &facts.reserved_again {
                twice.push(format!("{place}: order {order_id} reserved a second time"));
            }
            // Units held for orders not in preparation yet are neither available nor sold; a paid
            // order holds its units until then.
            let mut held = 0u64;
            for (order_id, quantity) in &facts.stock.reservations {
                let status = self.orders.get(order_id).map(|o| o.order.status);
                match status {
                    Some(OrderStatus::Placed) => in_progress += 1,
                    Some(OrderStatus::Paid) => {}
                    Some(OrderStatus::NotPlaced) | None => {
                        unknown.push(format!("{place}: {quantity} reserved for order {order_id}, never placed"))
                    }
                    Some(ended) => held_by_ended
                        .push(format!("{place}: {quantity} still reserved for {} order {order_id}", ended.as_str())),
                }
                if !status.is_some_and(OrderStatus::is_made) {
                    held += u64::from(*quantity);
                }
            }
            let available = i128::from(facts.stock.available) + i128::from(held);
            if available != i128::from(facts.restocked) - i128::from(sold_here) {
                let hint = repeated
                    .get(stream)
                    .map(|id| format!(" (sold order {id} has several lines of this SKU)"))
                    .unwrap_or_default();
                unbalanced.push(format!(
                    "{place}: available {}{} ≠ restocked {} − sold {}{hint}",
                    n(facts.stock.available),
                    if held > 0 { format!(" + {} reserved", n(held)) } else { String::new() },
                    n(facts.restocked),
                    n(sold_here)
                ));
            }
        }
        let summary = format!(
            "{} SKUs at {} stores: {} restocked, {} sold",
            n(self.stock.len()),
            n(stores.len()),
            n(restocked_total),
            n(sold_total)
        );
        let moving = in_progress > 0 || !held_by_ended.is_empty();
        let mut problems = Vec::new();
        for (what, list) in [
            ("below zero", &overdrawn),
            ("unbalanced", &unbalanced),
            ("reserved twice for one order", &twice),
            ("reserved for orders that do not exist", &unknown),
            ("reservations of ended orders not settled or released", &held_by_ended),
        ] {
            if !list.is_empty() {
                problems.push(format!("{} {what}: {}", n(list.len()), listed(list)));
            }
        }
        if in_progress > 0 {
            problems.push(format!("{} reservations still held by orders in progress", n(in_progress)));
        }
        if problems.is_empty() {
            (pass(STOCK, format!("{summary}, none below zero")), false)
        } else {
            (fail(STOCK, format!("{}; {summary}", problems.join("; "))), moving)
        }
    }

    fn loyalty_points(&self) -> (Check, bool) {
        // What each customer's paid orders earn: (order id, points).
        let mut earned: HashMap<&str, Vec<(Uuid, u64)>> = HashMap::new();
        for (id, facts) in &self.orders {
            if facts.order.status.is_paid() {
                let points = points_for(facts.order.total_cents);
                earned.entry(facts.order.customer_id.as_str()).or_default().push((*id, points));
            }
        }
        let mut customers: Vec<&str> = self.loyalty.keys().map(String::as_str).chain(earned.keys().copied()).collect();
        customers.sort_unstable();
        customers.dedup();
        let (mut wrong, mut missing) = (Vec::new(), Vec::new());
        let (mut paid_points, mut imported_points, mut rewarded, mut revoked) = (0u64, 0u64, 0u64, 0u64);
        // Accruals of orders cancelled since, not yet revoked: the saga takes them back next.
        let mut unrevoked = Vec::new();
        let no_facts = LoyaltyFacts::default();
        for customer in customers {
            let facts = self.loyalty.get(customer).unwrap_or(&no_facts);
            let import = imported_points_order_id(customer);
            let mut accrued: HashMap<Uuid, (u32, u64)> = HashMap::new();
            for (order_id, points) in &facts.accruals {
                let entry = accrued.entry(*order_id).or_default();
                entry.0 += 1;
                entry.1 += points;
            }
            // A revocation takes back the whole accrual of its order (its order was refunded).
            for (order_id, points) in &facts.revocations {
                match accrued.get(order_id) {
                    Some((1, got)) if got == points => {
                        accrued.remove(order_id);
                        revoked += 1;
                    }
                    _ => wrong
                        .push(format!("{customer}: {points} points revoked for order {order_id}, not what it accrued")),
                }
            }
            let imported = accrued.remove(&import).map_or(0, |(_, points)| points);
            imported_points += imported;
            let orders = earned.get(customer).map(Vec::as_slice).unwrap_or_default();
            let owed: u64 = orders.iter().map(|(_, points)| points).sum();
            paid_points += owed;
            for (order_id, points) in orders {
                match accrued.remove(order_id) {
                    None if *points > 0 => missing.push(format!("{customer}: paid order {order_id} earned no points")),
                    None => {}
                    Some((1, got)) if got == *points => rewarded += 1,
                    Some((1, got)) => wrong
                        .push(format!("{customer}: order {order_id} accrued {got} points, its total earns {points}")),
                    Some((times, _)) => wrong.push(format!("{customer}: order {order_id} accrued {times} times")),
                }
            }
            // What is left was accrued for an order that is not one of this customer's paid orders.
            let mut strays: Vec<_> = accrued.into_iter().collect();
            strays.sort();
            let mut unrevoked_points = 0;
            for (order_id, (_, points)) in strays {
                let status = self.orders.get(&order_id).map(|o| o.order.status);
                let line = format!(
                    "{customer}: {points} points for {} order {order_id}",
                    status.map_or("unknown", OrderStatus::as_str)
                );
                if status == Some(OrderStatus::Cancelled) {
                    unrevoked_points += points;
                    unrevoked.push(line);
                } else {
                    wrong.push(line);
                }
            }
            if facts.account.points != owed + imported + unrevoked_points {
                wrong.push(format!(
                    "{customer}: {} points, paid orders earn {owed} + {imported} imported",
                    facts.account.points
                ));
            }
        }
        let summary = format!(
            "{} customers: {} points for {} paid orders, {} imported, {} revoked",
            n(self.loyalty.len()),
            n(paid_points),
            n(rewarded),
            n(imported_points),
            n(revoked)
        );
        if wrong.is_empty() && missing.is_empty() && unrevoked.is_empty() {
            return (pass(LOYALTY_POINTS, summary), false);
        }
        let mut problems = Vec::new();
        if !wrong.is_empty() {
            problems.push(format!("{} wrong: {}", n(wrong.len()), listed(&wrong)));
        }
        if !missing.is_empty() {
            problems.push(format!("{} not accrued: {}", n(missing.len()), listed(&missing)));
        }
        if !unrevoked.is_empty() {
            problems.push(format!("{} not revoked: {}", n(unrevoked.len()), listed(&unrevoked)));
        }
        // A paid order's points follow it through the saga, and a cancelled one's revocation:
        // missing ones may still come.
        let moving = !missing.is_empty() || !unrevoked.is_empty();
        (fail(LOYALTY_POINTS, format!("{}; {summary}", problems.join("; "))), moving)
    }

    fn loyalty_tiers(&self) -> Check {
        let mut by_tier: BTreeMap<Tier, u64> = BTreeMap::new();
        let mut lagging = Vec::new();
        let mut accounts: Vec<(&String, &LoyaltyFacts)> = self.loyalty.iter().collect();
        accounts.sort_by_key(|(customer, _)| *customer);
        for (customer, facts) in accounts {
            let account = &facts.account;
            *by_tier.entry(account.tier).or_default() += 1;
            let due = tier_for(account.points);
            if due != account.tier {
                lagging.push(format!(
                    "{customer}: {} points, tier {} (due {})",
                    account.points,
                    account.tier.as_str(),
                    due.as_str()
                ));
            }
        }
        let tiers: Vec<String> =
            by_tier.iter().map(|(tier, count)| format!("{} {}", n(*count), tier.as_str())).collect();
        let summary = format!(
            "{} accounts: {}",
            n(self.loyalty.len()),
            if tiers.is_empty() { "none".into() } else { tiers.join(", ") }
        );
        if lagging.is_empty() {
            pass(LOYALTY_TIERS, summary)
        } else {
            fail(
                LOYALTY_TIERS,
                format!("{} tiers do not match their points: {}; {summary}", n(lagging.len()), listed(&lagging)),
            )
        }
    }

    /// A cancelled order's payment holds nothing: never authorized, declined, voided, or refunded. One
    /// still authorized or captured, or whose void or refund is asked but not yet done, keeps the
    /// check failing and `moving` (the saga and the processor are expected to give it back), so
    /// verify waits for it.
    fn holds_released(&self) -> (Check, bool) {
        let (mut voided, mut refunded, mut held) = (0u64, 0u64, Vec::new());
        let mut cancelled: Vec<(&Uuid, &OrderFacts)> =
            self.orders.iter().filter(|(_, o)| o.order.status == OrderStatus::Cancelled).collect();
        cancelled.sort_by_key(|(id, _)| **id);
        for (order_id, _) in &cancelled {
            match self.payments.get(order_id).map(|p| p.payment.status) {
                Some(PaymentStatus::Voided) => voided += 1,
                Some(PaymentStatus::Authorized) => held.push(format!("order {order_id}: payment still authorized")),
                Some(PaymentStatus::VoidRequested) => held.push(format!("order {order_id}: void asked, not done")),
                Some(PaymentStatus::Captured) => held.push(format!("order {order_id}: payment captured")),
                Some(PaymentStatus::RefundRequested) => held.push(format!("order {order_id}: refund asked, not done")),
                Some(PaymentStatus::Refunded) => refunded += 1,
                Some(PaymentStatus::None | PaymentStatus::Declined) | None => {}
            }
        }
        let summary = format!(
            "{} cancelled orders: {} authorizations voided, {} payments refunded",
            n(cancelled.len()),
            n(voided),
            n(refunded)
        );
        if held.is_empty() {
            return (pass(HOLDS, summary), false);
        }
        (fail(HOLDS, format!("{} still hold money: {}; {summary}", n(held.len()), listed(&held))), true)
    }

    /// A payment captured for an order not yet marked paid is no breach (the saga marks it paid
    /// next), and that order is still moving for [`Facts::orders_ended`].
    fn payments_captured(&self) -> Check {
        let (mut twice, mut wrong) = (Vec::new(), Vec::new());
        let (mut captured, mut declined) = (0u64, 0u64);
        let mut payments: Vec<(&Uuid, &PaymentFacts)> = self.payments.iter().collect();
        payments.sort_by_key(|(id, _)| **id);
        for (order_id, facts) in &payments {
            captured += u64::from(!facts.captures.is_empty());
            declined += u64::from(facts.payment.status == PaymentStatus::Declined);
            if facts.captures.len() > 1 {
                twice.push(format!("order {order_id} captured {} times", facts.captures.len()));
            }
        }
        let mut paid: Vec<(&Uuid, &OrderFacts)> =
            self.orders.iter().filter(|(_, o)| o.order.status.is_paid()).collect();
        paid.sort_by_key(|(id, _)| **id);
        for (order_id, facts) in &paid {
            let captures = self.payments.get(order_id).map(|p| p.captures.as_slice()).unwrap_or_default();
            match captures {
                [] => wrong.push(format!("paid order {order_id} has no captured payment")),
                [amount] if *amount != facts.order.total_cents => {
                    wrong.push(format!("paid order {order_id} captured {amount} cents of {}", facts.order.total_cents))
                }
                _ => {}
            }
        }
        let summary = format!(
            "{} payments: {} captured, {} declined; {} paid orders",
            n(self.payments.len()),
            n(captured),
            n(declined),
            n(paid.len())
        );
        if twice.is_empty() && wrong.is_empty() {
            return pass(PAYMENTS, summary);
        }
        let mut problems = Vec::new();
        if !twice.is_empty() {
            problems.push(format!("{} captured more than once: {}", n(twice.len()), listed(&twice)));
        }
        if !wrong.is_empty() {
            problems.push(format!("{} paid orders without one matching capture: {}", n(wrong.len()), listed(&wrong)));
        }
        fail(PAYMENTS, format!("{}; {summary}", problems.join("; ")))
    }
}

pub(crate) fn pass(name: &str, detail: String) -> Check {
    Check { name: name.to_owned(), passed: true, detail }
}

pub(crate) fn fail(name: &str, detail: String) -> Check {
    Check { name: name.to_owned(), passed: false, detail }
}

/// The first few offenders, and how many more there are.
pub(crate) fn listed(offenders: &[String]) -> String {
    let mut out = offenders.iter().take(NAMED).cloned().collect::<Vec<_>>().join("; ");
    if offenders.len() > NAMED {
        out.push_str(&format!("; and {} more", n(offenders.len() - NAMED)));
    }
    out
}

/// A count with thousands separators: `1,204`.
pub(crate) fn n(count: impl TryInto<u64>) -> String {
    let digits = count.try_into().unwrap_or(u64::MAX).to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::domain::{
        OrderCancelled, OrderLine, OrderPaid, OrderPlaced, OrderPreparationStarted, PaymentAuthorized, PaymentCaptured,
        PaymentDeclined, PaymentVoidRequested, PaymentVoided, PointsAccrued, StockReleased, StockReserved,
        StockRestocked, StockSettled, TierChanged,
    };
    use events::{Causation, NewEvent};

    /// A hand-made journal: each event gets its stream's next version and the next global position.
    #[derive(Default)]
    struct History {
        events: Vec<RecordedEvent>,
        versions: HashMap<String, u64>,
    }

    impl History {
        fn append(&mut self, stream: &str, event: impl Into<DomainEvent>, causation: Causation) -> RecordedEvent {
            let version = self.versions.entry(stream.to_owned()).or_default();
            *version += 1;
            let mut recorded =
                NewEvent::from_domain(&event.into(), causation).unwrap().record(stream, *version, &[0; 32]);
            recorded.global_position = self.events.len() as u64 + 1;
            self.events.push(recorded.clone());
            recorded
        }

        /// An event the saga wrote in reaction to `cause`.
        fn react(&mut self, stream: &str, event: impl Into<DomainEvent>, cause: &RecordedEvent) -> RecordedEvent {
            self.append(stream, event, Causation::following(cause))
        }

        fn restock(&mut self, sku: &str, quantity: u32) {
            let e = StockRestocked { store_id: "s1".into(), sku: sku.into(), quantity };
            self.append(&streams::inventory("s1", sku), e, Causation::new_root());
        }

        /// Places an order of `lines` (sku, quantity) at 450 cents a unit; returns its OrderPlaced.
        fn place(&mut self, order: u128, customer: &str, lines: &[(&str, u32)]) -> RecordedEvent {
            let lines: Vec<OrderLine> = lines
                .iter()
                .map(|(sku, quantity)| OrderLine { item_id: (*sku).into(), quantity: *quantity, unit_price_cents: 450 })
                .collect();
            let total_cents = lines.iter().map(OrderLine::line_total).sum();
            let placed = OrderPlaced {
                order_id: id(order),
                customer_id: customer.into(),
                store_id: "s1".into(),
                lines,
                total_cents,
                placed_at_us: 1,
            };
            self.append(&streams::order(id(order)), placed, Causation::new_root())
        }

        /// What the inventory deciders hold for an order: one reservation per SKU (the first line's).
        fn reservations(p: &OrderPlaced) -> Vec<(String, u32)> {
            let mut out: Vec<(String, u32)> = Vec::new();
            for line in &p.lines {
                if !out.iter().any(|(sku, _)| *sku == line.item_id) {
                    out.push((line.item_id.clone(), line.quantity));
                }
            }
            out
        }

        fn reserve(&mut self, placed: &RecordedEvent) {
            let DomainEvent::OrderPlaced(p) = placed.decode().unwrap() else { panic!("not a placed order") };
            for (sku, quantity) in Self::reservations(&p) {
                let e = StockReserved { store_id: "s1".into(), sku: sku.clone(), order_id: p.order_id, quantity };
                self.react(&streams::inventory("s1", &sku), e, placed);
            }
        }

        /// The saga's whole happy path after `placed`: reserve, authorize, capture, pay, accrue, and
        /// the store's start of the preparation, which settles the stock.
        fn pay(&mut self, placed: &RecordedEvent) {
            let DomainEvent::OrderPlaced(p) = placed.decode().unwrap() else { panic!("not a placed order") };
            self.reserve(placed);
            let payment = streams::payment(p.order_id);
            let authorized = PaymentAuthorized {
                order_id: p.order_id,
                customer_id: p.customer_id.clone(),
                amount_cents: p.total_cents,
                fraud_score: 0.1,
            };
            let authorized = self.react(&payment, authorized, placed);
            let captured = self.react(
                &payment,
                PaymentCaptured { order_id: p.order_id, amount_cents: p.total_cents },
                &authorized,
            );
            let paid = OrderPaid { order_id: p.order_id, amount_cents: p.total_cents };
            let paid = self.react(&streams::order(p.order_id), paid, &captured);
            self.accrue(&p.customer_id, p.order_id, points_for(p.total_cents), &paid);
            let started = OrderPreparationStarted {
                order_id: p.order_id,
                customer_id: p.customer_id.clone(),
                store_id: p.store_id.clone(),
                started_at_us: 1,
            };
            let started = self.react(&streams::order(p.order_id), started, &paid);
            for (sku, quantity) in Self::reservations(&p) {
                let e = StockSettled { store_id: "s1".into(), sku: sku.clone(), order_id: p.order_id, quantity };
                self.react(&streams::inventory("s1", &sku), e, &started);
            }
        }

        fn accrue(&mut self, customer: &str, order_id: Uuid, points: u64, cause: &RecordedEvent) {
            let e = PointsAccrued { customer_id: customer.into(), order_id, points };
            self.react(&streams::loyalty(customer), e, cause);
        }

        /// Declined: the saga cancels the order and releases what it reserved.
        fn decline(&mut self, placed: &RecordedEvent) {
            let DomainEvent::OrderPlaced(p) = placed.decode().unwrap() else { panic!("not a placed order") };
            self.reserve(placed);
            let declined = PaymentDeclined {
                order_id: p.order_id,
                customer_id: p.customer_id.clone(),
                amount_cents: p.total_cents,
                fraud_score: 0.99,
                reason: "fraud_score_too_high".into(),
            };
            let declined = self.react(&streams::payment(p.order_id), declined, placed);
            let cancelled = OrderCancelled { order_id: p.order_id, reason: "payment_declined".into() };
            let cancelled = self.react(&streams::order(p.order_id), cancelled, &declined);
            for (sku, quantity) in Self::reservations(&p) {
                let e = StockReleased { store_id: "s1".into(), sku: sku.clone(), order_id: p.order_id, quantity };
                self.react(&streams::inventory("s1", &sku), e, &cancelled);
            }
        }

        fn judge(&self, acks: &[Acknowledgement]) -> Judgement {
            let mut facts = Facts::new(acks);
            for e in &self.events {
                facts.fold(e).unwrap();
            }
            facts.judge(61_000_001)
        }
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn ack(placed: &RecordedEvent, answered: bool) -> Acknowledgement {
        Acknowledgement {
            stream_id: placed.stream_id.clone(),
            event_type: "OrderPlaced".into(),
            correlation_id: Some(placed.correlation_id),
            answered,
        }
    }

    fn check<'a>(j: &'a Judgement, name: &str) -> &'a Check {
        j.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}"))
    }

    /// Two orders, one paid and one declined, the stock restocked and the points accrued.
    fn settled_history() -> (History, RecordedEvent, RecordedEvent) {
        let mut h = History::default();
        h.restock("latte", 10);
        h.restock("mocha", 5);
        let a = h.place(1, "ann", &[("latte", 2), ("mocha", 1)]);
        h.pay(&a);
        let b = h.place(2, "ben", &[("latte", 3)]);
        h.decline(&b);
        (h, a, b)
    }

    #[test]
    fn a_settled_history_passes_every_check() {
        let (h, a, b) = settled_history();
        let j = h.judge(&[ack(&a, true), ack(&b, true)]);
        assert!(!j.moving);
        for c in &j.checks {
            assert!(c.passed, "{c:?}");
        }
        assert_eq!(j.checks.len(), 7);
        assert_eq!(check(&j, ORDERS_ENDED).detail, "2 orders: 1 paid, 1 cancelled");
        assert_eq!(check(&j, STOCK).detail, "2 SKUs at 1 stores: 15 restocked, 3 sold, none below zero");
        assert_eq!(check(&j, LOYALTY_POINTS).detail, "1 customers: 13 points for 1 paid orders, 0 imported, 0 revoked");
        assert!(check(&j, ACKNOWLEDGED).detail.starts_with("2 acknowledgements checked (2 answered"));
    }

    #[test]
    fn an_answered_command_missing_or_twice_in_the_journal_fails_and_an_unanswered_one_may_be_missing() {
        let (mut h, a, _) = settled_history();
        let never = Acknowledgement {
            stream_id: streams::order(id(99)),
            event_type: "OrderPlaced".into(),
            correlation_id: Some(id(7)),
            answered: true,
        };
        let j = h.judge(&[ack(&a, true), never.clone()]);
        let c = check(&j, ACKNOWLEDGED);
        assert!(!c.passed);
        assert!(
            c.detail.contains(&format!("1 answered but not in the journal: OrderPlaced on {}", never.stream_id)),
            "{}",
            c.detail
        );

        let unanswered = Acknowledgement { answered: false, ..never };
        assert!(check(&h.judge(&[ack(&a, true), unanswered.clone()]), ACKNOWLEDGED).passed);

        // The same request's root event twice: a duplicate, answered or not.
        let DomainEvent::OrderPlaced(again) = a.decode().unwrap() else { unreachable!() };
        h.append(&a.stream_id, again, Causation { correlation_id: a.correlation_id, causation_id: None });
        for answered in [true, false] {
            let c = check(&h.judge(&[ack(&a, answered)]), ACKNOWLEDGED).clone();
            assert!(!c.passed);
            assert!(c.detail.contains("more than once"), "{}", c.detail);
        }
        // Without a correlation id, any event of the type on the stream counts.
        let loose = Acknowledgement { correlation_id: None, ..ack(&a, true) };
        assert!(!check(&h.judge(&[loose]), ACKNOWLEDGED).passed);
    }

    #[test]
    fn the_workloads_consistent_history_passes_every_check() {
        // Written independently of these checks (projections' benchmark workload): paid, declined and
        // voided orders over 7 stores and 40 customers, every saga step in place.
        let history = projections::workload::flood_of_orders(3_000, 7, 40);
        let mut facts = Facts::new(&[]);
        for e in &history {
            facts.fold(e).unwrap();
        }
        let j = facts.judge(0);
        assert!(!j.moving);
        for c in &j.checks {
            assert!(c.passed, "{c:?}");
        }
        // Of the 2,314 paid, 290 were cancelled by their customer and refunded.
        assert_eq!(check(&j, ORDERS_ENDED).detail, "3,000 orders: 2,024 paid, 976 cancelled");
        assert_eq!(check(&j, HOLDS).detail, "976 cancelled orders: 86 authorizations voided, 290 payments refunded");
    }

    #[test]
    fn without_acknowledgements_the_first_check_says_so() {
        let (h, _, _) = settled_history();
        assert_eq!(check(&h.judge(&[]), ACKNOWLEDGED).detail, "no acknowledgements given");
    }

    #[test]
    fn events_caused_by_other_events_do_not_answer_an_acknowledgement() {
        let (h, a, _) = settled_history();
        // OrderPaid on the order's stream carries the request's correlation id but has a cause.
        let paid = Acknowledgement {
            stream_id: a.stream_id.clone(),
            event_type: "OrderPaid".into(),
            correlation_id: Some(a.correlation_id),
            answered: true,
        };
        assert!(!check(&h.judge(std::slice::from_ref(&paid)), ACKNOWLEDGED).passed);
        assert!(check(&h.judge(&[Acknowledgement { correlation_id: None, ..paid }]), ACKNOWLEDGED).passed);
    }

    #[test]
    fn an_order_that_did_not_end_is_named_with_its_stage_and_keeps_the_check_moving() {
        let (mut h, _, _) = settled_history();
        let c = h.place(3, "cid", &[("latte", 1)]);
        h.reserve(&c);
        let j = h.judge(&[]);
        assert!(j.moving);
        let orders = check(&j, ORDERS_ENDED);
        assert!(!orders.passed);
        assert!(orders.detail.starts_with("1 of 3 orders not ended"), "{}", orders.detail);
        assert!(orders.detail.contains(&format!("order {} stuck in `reserved` for ", id(3))), "{}", orders.detail);
        let stock = check(&j, STOCK);
        assert!(!stock.passed);
        assert!(stock.detail.contains("1 reservations still held by orders in progress"), "{}", stock.detail);
        // The stock balances once the reservation is counted as held: nothing is unbalanced.
        assert!(!stock.detail.contains("unbalanced"), "{}", stock.detail);
    }

    #[test]
    fn a_paid_order_not_yet_rewarded_is_still_moving_and_one_being_made_is_sold_next() {
        let mut h = History::default();
        h.restock("latte", 10);
        let a = h.place(1, "ann", &[("latte", 4)]);
        h.reserve(&a);
        let DomainEvent::OrderPlaced(p) = a.decode().unwrap() else { unreachable!() };
        let payment = streams::payment(p.order_id);
        let auth = PaymentAuthorized {
            order_id: p.order_id,
            customer_id: "ann".into(),
            amount_cents: p.total_cents,
            fraud_score: 0.1,
        };
        let auth = h.react(&payment, auth, &a);
        let captured = h.react(&payment, PaymentCaptured { order_id: p.order_id, amount_cents: p.total_cents }, &auth);
        let paid = h.react(&a.stream_id, OrderPaid { order_id: p.order_id, amount_cents: p.total_cents }, &captured);
        let j = h.judge(&[]);
        assert!(j.moving);
        assert!(check(&j, ORDERS_ENDED).passed);
        assert!(check(&j, PAYMENTS).passed);
        // A paid order waiting for the store holds its units: not available, not sold yet.
        let stock = check(&j, STOCK);
        assert!(stock.passed && stock.detail.ends_with("10 restocked, 0 sold, none below zero"), "{stock:?}");
        let points = check(&j, LOYALTY_POINTS);
        assert!(points.detail.contains("not accrued"), "{}", points.detail);
        // Its preparation started: the saga is to sell the units, and until it has, verify waits.
        let started = OrderPreparationStarted {
            order_id: p.order_id,
            customer_id: "ann".into(),
            store_id: p.store_id.clone(),
            started_at_us: 1,
        };
        h.react(&a.stream_id, started, &paid);
        let j = h.judge(&[]);
        let stock = check(&j, STOCK);
        assert!(j.moving && !stock.passed, "{stock:?}");
        assert!(stock.detail.contains("4 still reserved for preparing order"), "{}", stock.detail);
    }

    #[test]
    fn a_paid_order_reserved_and_settled_a_second_time_is_named() {
        // What a saga reaction replayed late on a node with the order's state from before it was
        // paid used to write (found by the aurora-failover experiment): 2 lattes sold, 4 gone.
        let (mut h, a, _) = settled_history();
        let again = StockReserved { store_id: "s1".into(), sku: "latte".into(), order_id: id(1), quantity: 2 };
        h.react(&streams::inventory("s1", "latte"), again, &a);
        let settled = StockSettled { store_id: "s1".into(), sku: "latte".into(), order_id: id(1), quantity: 2 };
        h.react(&streams::inventory("s1", "latte"), settled, &a);
        let j = h.judge(&[]);
        let c = check(&j, STOCK);
        assert!(!c.passed && !j.moving, "{c:?}");
        assert!(c.detail.contains("1 unbalanced: s1:latte: available 6 ≠ restocked 10 − sold 2"), "{}", c.detail);
        assert!(
            c.detail
                .contains(&format!("1 reserved twice for one order: s1:latte: order {} reserved a second time", id(1))),
            "{}",
            c.detail
        );
    }

    #[test]
    fn a_reservation_without_stock_or_order_is_below_zero_and_does_not_wait() {
        let (mut h, _, _) = settled_history();
        let bogus = StockReserved { store_id: "s1".into(), sku: "scone".into(), order_id: id(42), quantity: 3 };
        h.append(&streams::inventory("s1", "scone"), bogus, Causation::new_root());
        let j = h.judge(&[]);
        assert!(!j.moving);
        let c = check(&j, STOCK);
        assert!(!c.passed);
        assert!(
            c.detail.contains(&format!("1 below zero: s1:scone: order {} reserved 3 with 0 available", id(42))),
            "{}",
            c.detail
        );
        assert!(c.detail.contains("1 reserved for orders that do not exist"), "{}", c.detail);
    }

    #[test]
    fn a_paid_order_with_two_lines_of_one_sku_shows_up_as_unbalanced_stock() {
        let mut h = History::default();
        h.restock("latte", 10);
        // The saga reserves once per order and SKU: the second line's unit is sold but never taken.
        let a = h.place(1, "ann", &[("latte", 2), ("latte", 1)]);
        h.pay(&a);
        let j = h.judge(&[]);
        assert!(!j.moving);
        let c = check(&j, STOCK);
        assert!(!c.passed);
        assert!(c.detail.contains("s1:latte: available 8 ≠ restocked 10 − sold 3"), "{}", c.detail);
        assert!(c.detail.contains("several lines of this SKU"), "{}", c.detail);
    }

    #[test]
    fn points_accrued_twice_or_for_an_unpaid_order_fail_and_imports_count() {
        let (mut h, a, b) = settled_history();
        let DomainEvent::OrderPlaced(pa) = a.decode().unwrap() else { unreachable!() };
        let DomainEvent::OrderPlaced(pb) = b.decode().unwrap() else { unreachable!() };
        let mut imported = History { events: h.events.clone(), versions: h.versions.clone() };
        imported.accrue("ann", imported_points_order_id("ann"), 290, &a);
        // 13 + 290 = 303: gold is due, and an import writes no TierChanged.
        let j = imported.judge(&[]);
        assert!(check(&j, LOYALTY_POINTS).passed, "{:?}", check(&j, LOYALTY_POINTS));
        assert!(check(&j, LOYALTY_POINTS).detail.ends_with("290 imported, 0 revoked"));
        let tiers = check(&j, LOYALTY_TIERS);
        assert!(!tiers.passed);
        assert_eq!(
            tiers.detail,
            "1 tiers do not match their points: ann: 303 points, tier green (due gold); 1 accounts: 1 green"
        );
        let changed = TierChanged { customer_id: "ann".into(), from: Tier::Green, to: Tier::Gold };
        imported.append(&streams::loyalty("ann"), changed, Causation::new_root());
        assert!(check(&imported.judge(&[]), LOYALTY_TIERS).passed);

        h.accrue("ann", pa.order_id, points_for(pa.total_cents), &a);
        h.accrue("ben", pb.order_id, 13, &b);
        let c = check(&h.judge(&[]), LOYALTY_POINTS).clone();
        assert!(!c.passed);
        assert!(c.detail.contains(&format!("ann: order {} accrued 2 times", pa.order_id)), "{}", c.detail);
        assert!(c.detail.contains(&format!("ben: 13 points for cancelled order {}", pb.order_id)), "{}", c.detail);
        assert!(c.detail.contains("ann: 26 points, paid orders earn 13 + 0 imported"), "{}", c.detail);
    }

    #[test]
    fn a_second_capture_or_a_paid_order_without_one_fails() {
        let (mut h, a, _) = settled_history();
        let DomainEvent::OrderPlaced(p) = a.decode().unwrap() else { unreachable!() };
        let again = PaymentCaptured { order_id: p.order_id, amount_cents: p.total_cents };
        h.append(&streams::payment(p.order_id), again, Causation::new_root());
        let c = check(&h.judge(&[]), PAYMENTS).clone();
        assert!(!c.passed);
        assert!(c.detail.contains(&format!("order {} captured 2 times", p.order_id)), "{}", c.detail);

        let mut h = History::default();
        h.restock("latte", 10);
        let a = h.place(1, "ann", &[("latte", 1)]);
        h.react(&a.stream_id, OrderPaid { order_id: id(1), amount_cents: 450 }, &a);
        let c = check(&h.judge(&[]), PAYMENTS).clone();
        assert!(!c.passed);
        assert!(c.detail.contains(&format!("paid order {} has no captured payment", id(1))), "{}", c.detail);
    }

    #[test]
    fn a_cancelled_order_whose_authorization_is_not_voided_fails_until_it_is() {
        let mut h = History::default();
        h.restock("latte", 10);
        let a = h.place(1, "ann", &[("latte", 1)]);
        let payment = streams::payment(id(1));
        let authorized =
            PaymentAuthorized { order_id: id(1), customer_id: "ann".into(), amount_cents: 450, fraud_score: 0.1 };
        let authorized = h.react(&payment, authorized, &a);
        h.react(&a.stream_id, OrderCancelled { order_id: id(1), reason: "out_of_stock:latte".into() }, &a);
        let j = h.judge(&[]);
        let c = check(&j, HOLDS).clone();
        assert!(!c.passed && j.moving, "{c:?}");
        assert!(c.detail.contains(&format!("order {}: payment still authorized", id(1))), "{}", c.detail);

        let asked =
            PaymentVoidRequested { order_id: id(1), customer_id: "ann".into(), amount_cents: 450, reason: "x".into() };
        let asked = h.react(&payment, asked, &authorized);
        let c = check(&h.judge(&[]), HOLDS).clone();
        assert!(c.detail.contains("void asked, not done"), "{}", c.detail);

        h.react(&payment, PaymentVoided { order_id: id(1), customer_id: "ann".into(), amount_cents: 450 }, &asked);
        let c = check(&h.judge(&[]), HOLDS).clone();
        assert!(c.passed, "{c:?}");
        assert!(c.detail.contains("1 cancelled orders: 1 authorizations voided"), "{}", c.detail);
    }

    #[test]
    fn counts_have_thousands_separators_and_lists_say_how_many_more() {
        assert_eq!(n(0u64), "0");
        assert_eq!(n(999u64), "999");
        assert_eq!(n(1_204u64), "1,204");
        assert_eq!(n(12_345_678usize), "12,345,678");
        let many: Vec<String> = (1..=5).map(|i| format!("x{i}")).collect();
        assert_eq!(listed(&many), "x1; x2; x3; and 2 more");
        assert_eq!(listed(&many[..2]), "x1; x2");
    }
}
