//! A customer's loyalty account: points for paid orders, tiers at thresholds.

use std::collections::BTreeSet;

use events::domain::{Cents, PointsAccrued, PointsRevoked, Tier, TierChanged};
use events::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Decider, Rejection};

/// Points at which a customer reaches Gold and Platinum.
pub const GOLD_AT: u64 = 300;
pub const PLATINUM_AT: u64 = 1200;

pub fn tier_for(points: u64) -> Tier {
    match points {
        p if p >= PLATINUM_AT => Tier::Platinum,
        p if p >= GOLD_AT => Tier::Gold,
        _ => Tier::Green,
    }
}

/// Where points imported from the previous loyalty system are recorded: a `PointsAccrued` whose
/// `order_id` is this id for its customer (derived, so a check can tell an import from an order).
pub fn imported_points_order_id(customer_id: &str) -> Uuid {
    const IMPORTS: Uuid = Uuid::from_u128(0x6c6f_7961_6c74_795f_696d_706f_7274_0001);
    Uuid::new_v5(&IMPORTS, customer_id.as_bytes())
}

/// One point per whole currency unit spent.
pub fn points_for(amount_cents: Cents) -> u64 {
    (amount_cents.max(0) / 100) as u64
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltyAccount {
    pub customer_id: String,
    pub points: u64,
    pub tier: Tier,
    pub rewarded_orders: BTreeSet<Uuid>,
    /// Rewarded orders whose points were taken back (they stay in `rewarded_orders`, so that a
    /// replayed accrual gives nothing again).
    #[serde(default)]
    pub revoked_orders: BTreeSet<Uuid>,
}

impl Default for LoyaltyAccount {
    fn default() -> Self {
        LoyaltyAccount {
            customer_id: String::new(),
            points: 0,
            tier: Tier::Green,
            rewarded_orders: BTreeSet::new(),
            revoked_orders: BTreeSet::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoyaltyCommand {
    /// `order_paid` is what the order's own stream says; only a paid order earns points.
    Accrue { customer_id: String, order_id: Uuid, amount_cents: Cents, order_paid: bool },
    /// The hourly batch: bring the tier in line with the points and the thresholds. Points imported
    /// from the previous system arrive without a tier change, so until this runs their tier lags.
    Recalculate { customer_id: String },
    /// The order was cancelled after it was paid: the points it earned (`amount_cents` is its
    /// total, as for the accrual) are taken back, once; the tier follows the points down.
    Revoke { customer_id: String, order_id: Uuid, amount_cents: Cents },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoyaltyError {
    #[error("order {0} is not paid: points accrue on paid orders only")]
    OrderNotPaid(Uuid),
}

impl Rejection for LoyaltyError {}

pub struct LoyaltyDecider;

impl Decider for LoyaltyDecider {
    type State = LoyaltyAccount;
    type Command = LoyaltyCommand;
    type Error = LoyaltyError;

    fn decide(account: &LoyaltyAccount, command: &LoyaltyCommand) -> Result<Vec<DomainEvent>, LoyaltyError> {
        let (customer_id, order_id, amount_cents, order_paid) = match command {
            LoyaltyCommand::Accrue { customer_id, order_id, amount_cents, order_paid } => {
                (customer_id, order_id, amount_cents, order_paid)
            }
            LoyaltyCommand::Revoke { customer_id, order_id, amount_cents } => {
                if !account.rewarded_orders.contains(order_id) || account.revoked_orders.contains(order_id) {
                    return Ok(vec![]);
                }
                let points = points_for(*amount_cents).min(account.points);
                let mut events: Vec<DomainEvent> =
                    vec![PointsRevoked { customer_id: customer_id.clone(), order_id: *order_id, points }.into()];
                let new_tier = tier_for(account.points - points);
                if new_tier != account.tier {
                    events.push(
                        TierChanged { customer_id: customer_id.clone(), from: account.tier, to: new_tier }.into(),
                    );
                }
                return Ok(events);
            }
            LoyaltyCommand::Recalculate { customer_id } => {
                let due = tier_for(account.points);
                return Ok(if due == account.tier {
                    vec![]
                } else {
                    vec![TierChanged { customer_id: customer_id.clone(), from: account.tier, to: due }.into()]
                });
            }
        };
        if !order_paid {
            return Err(LoyaltyError::OrderNotPaid(*order_id));
        }
        let points = points_for(*amount_cents);
        if account.rewarded_orders.contains(order_id) || points == 0 {
            return Ok(vec![]);
        }
        let mut events: Vec<DomainEvent> =
            vec![PointsAccrued { customer_id: customer_id.clone(), order_id: *order_id, points }.into()];
        let new_tier = tier_for(account.points + points);
        if new_tier != account.tier {
            events.push(TierChanged { customer_id: customer_id.clone(), from: account.tier, to: new_tier }.into());
        }
        Ok(events)
    }

    fn evolve(mut account: LoyaltyAccount, event: &DomainEvent) -> LoyaltyAccount {
        match event {
            DomainEvent::PointsAccrued(e) => {
                account.customer_id.clone_from(&e.customer_id);
                account.points += e.points;
                account.rewarded_orders.insert(e.order_id);
            }
            DomainEvent::PointsRevoked(e) => {
                account.points = account.points.saturating_sub(e.points);
                account.revoked_orders.insert(e.order_id);
            }
            DomainEvent::TierChanged(e) => account.tier = e.to,
            _ => {}
        }
        account
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::given_when_then::{given, given_no_history};

    fn accrue(order: u128, cents: Cents, paid: bool) -> LoyaltyCommand {
        LoyaltyCommand::Accrue {
            customer_id: "c1".into(),
            order_id: Uuid::from_u128(order),
            amount_cents: cents,
            order_paid: paid,
        }
    }
    fn accrued(order: u128, points: u64) -> DomainEvent {
        PointsAccrued { customer_id: "c1".into(), order_id: Uuid::from_u128(order), points }.into()
    }

    fn revoke(order: u128, cents: Cents) -> LoyaltyCommand {
        LoyaltyCommand::Revoke { customer_id: "c1".into(), order_id: Uuid::from_u128(order), amount_cents: cents }
    }
    fn revoked(order: u128, points: u64) -> DomainEvent {
        PointsRevoked { customer_id: "c1".into(), order_id: Uuid::from_u128(order), points }.into()
    }

    #[test]
    fn a_refunded_order_gives_its_points_back_once_and_never_earns_them_again() {
        let a = given::<LoyaltyDecider>([accrued(1, 12), accrued(2, 5)]).when(revoke(1, 1299)).then([revoked(1, 12)]);
        assert_eq!(a.points, 5);
        let history = || [accrued(1, 12), accrued(2, 5), revoked(1, 12)];
        given::<LoyaltyDecider>(history()).when(revoke(1, 1299)).then_nothing_happens();
        given::<LoyaltyDecider>(history()).when(accrue(1, 1299, true)).then_nothing_happens();
        // Nothing earned, nothing to give back.
        given::<LoyaltyDecider>([accrued(2, 5)]).when(revoke(1, 1299)).then_nothing_happens();
    }

    #[test]
    fn the_tier_follows_the_points_down_when_they_are_taken_back() {
        let gold: DomainEvent = TierChanged { customer_id: "c1".into(), from: Tier::Green, to: Tier::Gold }.into();
        let a = given::<LoyaltyDecider>([accrued(1, 250), accrued(2, 60), gold])
            .when(revoke(2, 6000))
            .then([revoked(2, 60), TierChanged { customer_id: "c1".into(), from: Tier::Gold, to: Tier::Green }.into()]);
        assert_eq!((a.points, a.tier), (250, Tier::Green));
    }

    #[test]
    fn a_paid_order_earns_a_point_per_currency_unit() {
        let a = given_no_history::<LoyaltyDecider>().when(accrue(1, 1299, true)).then([accrued(1, 12)]);
        assert_eq!(a.points, 12);
    }

    #[test]
    fn points_accrue_on_paid_orders_only() {
        given_no_history::<LoyaltyDecider>()
            .when(accrue(1, 1299, false))
            .then_rejected(|e| *e == LoyaltyError::OrderNotPaid(Uuid::from_u128(1)));
    }

    #[test]
    fn an_order_earns_points_once() {
        given::<LoyaltyDecider>([accrued(1, 12)]).when(accrue(1, 1299, true)).then_nothing_happens();
    }

    #[test]
    fn tiers_change_at_thresholds() {
        given::<LoyaltyDecider>([accrued(1, GOLD_AT - 1)])
            .when(accrue(2, 100, true))
            .then([accrued(2, 1), TierChanged { customer_id: "c1".into(), from: Tier::Green, to: Tier::Gold }.into()]);
        let gold: DomainEvent = TierChanged { customer_id: "c1".into(), from: Tier::Green, to: Tier::Gold }.into();
        given::<LoyaltyDecider>([accrued(1, GOLD_AT), gold.clone()]).when(accrue(2, 100, true)).then([accrued(2, 1)]);
        let a = given::<LoyaltyDecider>([accrued(1, GOLD_AT), gold])
            .when(accrue(3, (PLATINUM_AT - GOLD_AT) as i64 * 100, true))
            .then([
                accrued(3, PLATINUM_AT - GOLD_AT),
                TierChanged { customer_id: "c1".into(), from: Tier::Gold, to: Tier::Platinum }.into(),
            ]);
        assert_eq!(a.tier, Tier::Platinum);
    }

    fn recalculate() -> LoyaltyCommand {
        LoyaltyCommand::Recalculate { customer_id: "c1".into() }
    }
    fn changed(from: Tier, to: Tier) -> DomainEvent {
        TierChanged { customer_id: "c1".into(), from, to }.into()
    }
    /// Points imported from the previous system: accrued without the tier following them.
    fn imported(points: u64) -> DomainEvent {
        PointsAccrued { customer_id: "c1".into(), order_id: imported_points_order_id("c1"), points }.into()
    }

    #[test]
    fn recalculating_raises_a_tier_that_lags_its_points() {
        given::<LoyaltyDecider>([imported(GOLD_AT)]).when(recalculate()).then([changed(Tier::Green, Tier::Gold)]);
        let a = given::<LoyaltyDecider>([imported(PLATINUM_AT + 5)])
            .when(recalculate())
            .then([changed(Tier::Green, Tier::Platinum)]);
        assert_eq!(a.tier, Tier::Platinum);
    }

    #[test]
    fn recalculating_lowers_a_tier_above_its_points() {
        // A tier above what the points earn (e.g. lowered thresholds reverted): brought down.
        given::<LoyaltyDecider>([accrued(1, GOLD_AT - 1), changed(Tier::Green, Tier::Platinum)])
            .when(recalculate())
            .then([changed(Tier::Platinum, Tier::Green)]);
        given::<LoyaltyDecider>([accrued(1, GOLD_AT), changed(Tier::Green, Tier::Platinum)])
            .when(recalculate())
            .then([changed(Tier::Platinum, Tier::Gold)]);
    }

    #[test]
    fn recalculating_a_current_tier_changes_nothing() {
        given_no_history::<LoyaltyDecider>().when(recalculate()).then_nothing_happens();
        given::<LoyaltyDecider>([accrued(1, 12)]).when(recalculate()).then_nothing_happens();
        given::<LoyaltyDecider>([accrued(1, GOLD_AT), changed(Tier::Green, Tier::Gold)])
            .when(recalculate())
            .then_nothing_happens();
    }

    #[test]
    fn recalculating_twice_changes_the_tier_once() {
        let after_first = given::<LoyaltyDecider>([imported(PLATINUM_AT)])
            .when(recalculate())
            .then([changed(Tier::Green, Tier::Platinum)]);
        assert_eq!(after_first.tier, Tier::Platinum);
        let history = [imported(PLATINUM_AT), changed(Tier::Green, Tier::Platinum)];
        given::<LoyaltyDecider>(history).when(recalculate()).then_nothing_happens();
    }
}
