//! A payment for one order: authorized or declined on a fraud score, then captured; or, when its
//! order is cancelled before the capture, voided, so that no hold is left on the customer's card;
//! or, when its order is cancelled after the capture, refunded, in full and once.
//!
//! ```text
//! None ─Authorize─► Authorized ─Capture─► Captured ─RequestRefund─► RefundRequested ─Refund─► Refunded
//!  │                   │
//!  │                   └─RequestVoid─► VoidRequested ─Void─► Voided
//!  └─Authorize─► Declined
//! ```
//!
//! A void or a refund is asked for ([`PaymentVoidRequested`], [`PaymentRefundRequested`]) and then
//! carried out ([`PaymentVoided`], [`PaymentRefunded`]) by whoever settles payments, like the
//! authorization: the payment processor when payments go through the payment queue, else the saga.
//! A refund gives back the captured amount: the command carries no amount, so it can be neither
//! more than was captured nor a second one.

use events::domain::{
    Cents, PaymentAuthorized, PaymentCaptured, PaymentDeclined, PaymentRefundRequested, PaymentRefunded,
    PaymentVoidRequested, PaymentVoided,
};
use events::DomainEvent;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::limits::{self, Invalid};
use super::{Decider, Rejection};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    #[default]
    None,
    Authorized,
    Declined,
    Captured,
    /// Its order was cancelled: the authorization is to be released (still held until [`Self::Voided`]).
    VoidRequested,
    /// The authorization was released; nothing is held.
    Voided,
    /// Its order was cancelled after the capture: the money is to go back (still taken until
    /// [`Self::Refunded`]).
    RefundRequested,
    /// The captured amount went back.
    Refunded,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub status: PaymentStatus,
    pub order_id: Uuid,
    /// Kept since the authorization (snapshots taken before it was kept read as empty).
    #[serde(default)]
    pub customer_id: String,
    pub amount_cents: Cents,
    pub fraud_score: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PaymentCommand {
    /// `fraud_score` comes from [`fraud_score`]; a score at or above `decline_threshold` declines.
    Authorize {
        order_id: Uuid,
        customer_id: String,
        amount_cents: Cents,
        fraud_score: f64,
        decline_threshold: f64,
    },
    Capture,
    /// The order will not be charged: ask for the authorization to be released. Nothing to do for a
    /// payment that holds nothing (none, declined, already voided or asked).
    RequestVoid {
        reason: String,
    },
    /// Release the authorization, as asked by [`PaymentCommand::RequestVoid`].
    Void,
    /// The order was cancelled after it was paid: ask for the captured amount to go back. Nothing to
    /// do for a payment that took nothing (none, declined, authorized only, voided) or was asked already.
    RequestRefund {
        reason: String,
    },
    /// Give the captured amount back, as asked by [`PaymentCommand::RequestRefund`].
    Refund,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// A value outside the domain's limits ([`super::limits`]).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("amount must be positive")]
    NonPositiveAmount,
    #[error("a declined payment cannot be captured")]
    CannotCaptureDeclined,
    #[error("no payment was authorized")]
    NotAuthorized,
    #[error("the payment's order was cancelled: it is voided, not captured")]
    CannotCaptureVoided,
    #[error("a captured payment cannot be voided; refund it")]
    CannotVoidCaptured,
    #[error("no void was asked for this payment")]
    VoidNotRequested,
    #[error("no refund was asked for this payment")]
    RefundNotRequested,
    #[error("the payment is refunded: it cannot be captured again")]
    CannotCaptureRefunded,
}

impl Rejection for PaymentError {
    fn field(&self) -> Option<String> {
        match self {
            PaymentError::Invalid(i) => Some(i.field.clone()),
            PaymentError::NonPositiveAmount => Some("amount_cents".into()),
            _ => None,
        }
    }
    fn is_not_found(&self) -> bool {
        matches!(self, PaymentError::NotAuthorized)
    }
}

/// A fraud score in `[0, 1)`: `rounds` chained SHA-256 hashes of the payment's facts, the CPU work a
/// real scoring model would cost. Deterministic, so a redelivered request scores the same.
pub fn fraud_score(order_id: Uuid, customer_id: &str, amount_cents: Cents, rounds: u32) -> f64 {
    let mut digest: [u8; 32] = Sha256::new()
        .chain_update(order_id.as_bytes())
        .chain_update(customer_id.as_bytes())
        .chain_update(amount_cents.to_be_bytes())
        .finalize()
        .into();
    for _ in 0..rounds {
        digest = Sha256::digest(digest).into();
    }
    let top = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (top >> 11) as f64 / (1u64 << 53) as f64
}

pub struct PaymentDecider;

impl Decider for PaymentDecider {
    type State = Payment;
    type Command = PaymentCommand;
    type Error = PaymentError;

    fn decide(payment: &Payment, command: &PaymentCommand) -> Result<Vec<DomainEvent>, PaymentError> {
        match command {
            PaymentCommand::Authorize { order_id, customer_id, amount_cents, fraud_score, decline_threshold } => {
                if *amount_cents <= 0 {
                    return Err(PaymentError::NonPositiveAmount);
                }
                if payment.status != PaymentStatus::None {
                    return Ok(vec![]);
                }
                Ok(vec![if fraud_score >= decline_threshold {
                    PaymentDeclined {
                        order_id: *order_id,
                        customer_id: customer_id.clone(),
                        amount_cents: *amount_cents,
                        fraud_score: *fraud_score,
                        reason: "fraud_score_too_high".into(),
                    }
                    .into()
                } else {
                    PaymentAuthorized {
                        order_id: *order_id,
                        customer_id: customer_id.clone(),
                        amount_cents: *amount_cents,
                        fraud_score: *fraud_score,
                    }
                    .into()
                }])
            }
            PaymentCommand::Capture => match payment.status {
                PaymentStatus::None => Err(PaymentError::NotAuthorized),
                PaymentStatus::Declined => Err(PaymentError::CannotCaptureDeclined),
                PaymentStatus::Captured => Ok(vec![]),
                PaymentStatus::VoidRequested | PaymentStatus::Voided => Err(PaymentError::CannotCaptureVoided),
                PaymentStatus::RefundRequested | PaymentStatus::Refunded => Err(PaymentError::CannotCaptureRefunded),
                PaymentStatus::Authorized => {
                    Ok(vec![PaymentCaptured { order_id: payment.order_id, amount_cents: payment.amount_cents }.into()])
                }
            },
            PaymentCommand::RequestVoid { reason } => {
                limits::check_text("reason", reason, limits::MAX_REASON_CHARS)?;
                match payment.status {
                    PaymentStatus::Captured | PaymentStatus::RefundRequested | PaymentStatus::Refunded => {
                        Err(PaymentError::CannotVoidCaptured)
                    }
                    PaymentStatus::None
                    | PaymentStatus::Declined
                    | PaymentStatus::VoidRequested
                    | PaymentStatus::Voided => Ok(vec![]),
                    PaymentStatus::Authorized => Ok(vec![PaymentVoidRequested {
                        order_id: payment.order_id,
                        customer_id: payment.customer_id.clone(),
                        amount_cents: payment.amount_cents,
                        reason: reason.clone(),
                    }
                    .into()]),
                }
            }
            PaymentCommand::Void => match payment.status {
                PaymentStatus::Voided => Ok(vec![]),
                PaymentStatus::VoidRequested => Ok(vec![PaymentVoided {
                    order_id: payment.order_id,
                    customer_id: payment.customer_id.clone(),
                    amount_cents: payment.amount_cents,
                }
                .into()]),
                PaymentStatus::Captured | PaymentStatus::RefundRequested | PaymentStatus::Refunded => {
                    Err(PaymentError::CannotVoidCaptured)
                }
                PaymentStatus::None | PaymentStatus::Declined | PaymentStatus::Authorized => {
                    Err(PaymentError::VoidNotRequested)
                }
            },
            PaymentCommand::RequestRefund { reason } => {
                limits::check_text("reason", reason, limits::MAX_REASON_CHARS)?;
                match payment.status {
                    PaymentStatus::Captured => Ok(vec![PaymentRefundRequested {
                        order_id: payment.order_id,
                        customer_id: payment.customer_id.clone(),
                        amount_cents: payment.amount_cents,
                        reason: reason.clone(),
                    }
                    .into()]),
                    PaymentStatus::None
                    | PaymentStatus::Declined
                    | PaymentStatus::Authorized
                    | PaymentStatus::VoidRequested
                    | PaymentStatus::Voided
                    | PaymentStatus::RefundRequested
                    | PaymentStatus::Refunded => Ok(vec![]),
                }
            }
            PaymentCommand::Refund => match payment.status {
                PaymentStatus::Refunded => Ok(vec![]),
                PaymentStatus::RefundRequested => Ok(vec![PaymentRefunded {
                    order_id: payment.order_id,
                    customer_id: payment.customer_id.clone(),
                    amount_cents: payment.amount_cents,
                }
                .into()]),
                PaymentStatus::None
                | PaymentStatus::Declined
                | PaymentStatus::Authorized
                | PaymentStatus::Captured
                | PaymentStatus::VoidRequested
                | PaymentStatus::Voided => Err(PaymentError::RefundNotRequested),
            },
        }
    }

    fn evolve(mut payment: Payment, event: &DomainEvent) -> Payment {
        match event {
            DomainEvent::PaymentAuthorized(e) => {
                payment.status = PaymentStatus::Authorized;
                payment.order_id = e.order_id;
                payment.customer_id = e.customer_id.clone();
                payment.amount_cents = e.amount_cents;
                payment.fraud_score = e.fraud_score;
            }
            DomainEvent::PaymentDeclined(e) => {
                payment.status = PaymentStatus::Declined;
                payment.order_id = e.order_id;
                payment.customer_id = e.customer_id.clone();
                payment.amount_cents = e.amount_cents;
                payment.fraud_score = e.fraud_score;
            }
            DomainEvent::PaymentCaptured(_) => payment.status = PaymentStatus::Captured,
            DomainEvent::PaymentVoidRequested(_) => payment.status = PaymentStatus::VoidRequested,
            DomainEvent::PaymentVoided(_) => payment.status = PaymentStatus::Voided,
            DomainEvent::PaymentRefundRequested(_) => payment.status = PaymentStatus::RefundRequested,
            DomainEvent::PaymentRefunded(_) => payment.status = PaymentStatus::Refunded,
            _ => {}
        }
        payment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::given_when_then::{given, given_no_history};

    fn authorize(score: f64, threshold: f64) -> PaymentCommand {
        PaymentCommand::Authorize {
            order_id: Uuid::from_u128(1),
            customer_id: "c1".into(),
            amount_cents: 900,
            fraud_score: score,
            decline_threshold: threshold,
        }
    }
    fn authorized() -> DomainEvent {
        PaymentAuthorized {
            order_id: Uuid::from_u128(1),
            customer_id: "c1".into(),
            amount_cents: 900,
            fraud_score: 0.1,
        }
        .into()
    }
    fn declined() -> DomainEvent {
        PaymentDeclined {
            order_id: Uuid::from_u128(1),
            customer_id: "c1".into(),
            amount_cents: 900,
            fraud_score: 0.99,
            reason: "fraud_score_too_high".into(),
        }
        .into()
    }

    #[test]
    fn a_low_score_authorizes_and_a_high_score_declines() {
        given_no_history::<PaymentDecider>().when(authorize(0.1, 0.9)).then([authorized()]);
        given_no_history::<PaymentDecider>().when(authorize(0.99, 0.9)).then([declined()]);
    }

    #[test]
    fn a_decided_payment_is_not_decided_again() {
        given::<PaymentDecider>([declined()]).when(authorize(0.1, 0.9)).then_nothing_happens();
    }

    #[test]
    fn a_declined_payment_cannot_be_captured() {
        given::<PaymentDecider>([declined()])
            .when(PaymentCommand::Capture)
            .then_rejected(|e| *e == PaymentError::CannotCaptureDeclined);
    }

    #[test]
    fn an_authorized_payment_is_captured_once() {
        given::<PaymentDecider>([authorized()]).when(PaymentCommand::Capture).then([PaymentCaptured {
            order_id: Uuid::from_u128(1),
            amount_cents: 900,
        }
        .into()]);
        given::<PaymentDecider>([
            authorized(),
            PaymentCaptured { order_id: Uuid::from_u128(1), amount_cents: 900 }.into(),
        ])
        .when(PaymentCommand::Capture)
        .then_nothing_happens();
    }

    #[test]
    fn nothing_to_capture_without_an_authorization() {
        given_no_history::<PaymentDecider>()
            .when(PaymentCommand::Capture)
            .then_rejected(|e| *e == PaymentError::NotAuthorized);
    }

    fn void_requested() -> DomainEvent {
        PaymentVoidRequested {
            order_id: Uuid::from_u128(1),
            customer_id: "c1".into(),
            amount_cents: 900,
            reason: "out_of_stock:latte".into(),
        }
        .into()
    }
    fn voided() -> DomainEvent {
        PaymentVoided { order_id: Uuid::from_u128(1), customer_id: "c1".into(), amount_cents: 900 }.into()
    }
    fn request_void() -> PaymentCommand {
        PaymentCommand::RequestVoid { reason: "out_of_stock:latte".into() }
    }

    #[test]
    fn an_authorization_whose_order_is_cancelled_is_asked_to_be_voided_once() {
        given::<PaymentDecider>([authorized()]).when(request_void()).then([void_requested()]);
        given::<PaymentDecider>([authorized(), void_requested()]).when(request_void()).then_nothing_happens();
        given::<PaymentDecider>([authorized(), void_requested(), voided()]).when(request_void()).then_nothing_happens();
    }

    #[test]
    fn a_payment_that_holds_nothing_needs_no_void() {
        given_no_history::<PaymentDecider>().when(request_void()).then_nothing_happens();
        given::<PaymentDecider>([declined()]).when(request_void()).then_nothing_happens();
    }

    #[test]
    fn a_captured_payment_is_not_voided() {
        let captured = PaymentCaptured { order_id: Uuid::from_u128(1), amount_cents: 900 }.into();
        given::<PaymentDecider>([authorized(), captured])
            .when(request_void())
            .then_rejected(|e| *e == PaymentError::CannotVoidCaptured);
    }

    #[test]
    fn a_requested_void_is_carried_out_once() {
        given::<PaymentDecider>([authorized(), void_requested()]).when(PaymentCommand::Void).then([voided()]);
        given::<PaymentDecider>([authorized(), void_requested(), voided()])
            .when(PaymentCommand::Void)
            .then_nothing_happens();
    }

    #[test]
    fn nothing_is_voided_that_was_not_asked_for() {
        given::<PaymentDecider>([authorized()])
            .when(PaymentCommand::Void)
            .then_rejected(|e| *e == PaymentError::VoidNotRequested);
        given_no_history::<PaymentDecider>()
            .when(PaymentCommand::Void)
            .then_rejected(|e| *e == PaymentError::VoidNotRequested);
    }

    #[test]
    fn a_payment_being_voided_is_never_captured() {
        given::<PaymentDecider>([authorized(), void_requested()])
            .when(PaymentCommand::Capture)
            .then_rejected(|e| *e == PaymentError::CannotCaptureVoided);
        given::<PaymentDecider>([authorized(), void_requested(), voided()])
            .when(PaymentCommand::Capture)
            .then_rejected(|e| *e == PaymentError::CannotCaptureVoided);
    }

    #[test]
    fn a_voided_payment_is_not_authorized_again() {
        given::<PaymentDecider>([authorized(), void_requested(), voided()])
            .when(authorize(0.1, 0.9))
            .then_nothing_happens();
    }

    fn captured() -> DomainEvent {
        PaymentCaptured { order_id: Uuid::from_u128(1), amount_cents: 900 }.into()
    }
    fn refund_requested() -> DomainEvent {
        PaymentRefundRequested {
            order_id: Uuid::from_u128(1),
            customer_id: "c1".into(),
            amount_cents: 900,
            reason: "customer_cancelled".into(),
        }
        .into()
    }
    fn refunded() -> DomainEvent {
        PaymentRefunded { order_id: Uuid::from_u128(1), customer_id: "c1".into(), amount_cents: 900 }.into()
    }
    fn request_refund() -> PaymentCommand {
        PaymentCommand::RequestRefund { reason: "customer_cancelled".into() }
    }

    #[test]
    fn a_captured_payment_of_a_cancelled_order_is_refunded_in_full_once() {
        let p = given::<PaymentDecider>([authorized(), captured()]).when(request_refund()).then([refund_requested()]);
        assert_eq!(p.status, PaymentStatus::RefundRequested);
        given::<PaymentDecider>([authorized(), captured(), refund_requested()])
            .when(request_refund())
            .then_nothing_happens();
        let p = given::<PaymentDecider>([authorized(), captured(), refund_requested()])
            .when(PaymentCommand::Refund)
            .then([refunded()]);
        assert_eq!((p.status, p.amount_cents), (PaymentStatus::Refunded, 900));
        // Once: a redelivered refund, or a new request, gives nothing back a second time.
        let history = || [authorized(), captured(), refund_requested(), refunded()];
        given::<PaymentDecider>(history()).when(PaymentCommand::Refund).then_nothing_happens();
        given::<PaymentDecider>(history()).when(request_refund()).then_nothing_happens();
        given::<PaymentDecider>(history())
            .when(PaymentCommand::Capture)
            .then_rejected(|e| *e == PaymentError::CannotCaptureRefunded);
        given::<PaymentDecider>(history())
            .when(request_void())
            .then_rejected(|e| *e == PaymentError::CannotVoidCaptured);
    }

    #[test]
    fn only_a_captured_payment_is_refunded_and_only_when_asked() {
        for history in [vec![], vec![authorized()], vec![authorized(), void_requested(), voided()]] {
            given::<PaymentDecider>(history.clone()).when(request_refund()).then_nothing_happens();
        }
        given::<PaymentDecider>([authorized(), captured()])
            .when(PaymentCommand::Refund)
            .then_rejected(|e| *e == PaymentError::RefundNotRequested);
        given::<PaymentDecider>([authorized(), captured()])
            .when(PaymentCommand::RequestRefund { reason: "\0".into() })
            .then_rejected(|e| matches!(e, PaymentError::Invalid(i) if i.field == "reason"));
    }

    #[test]
    fn fraud_scores_are_deterministic_and_spread_over_the_unit_interval() {
        let a = fraud_score(Uuid::from_u128(1), "c", 100, 10);
        assert_eq!(a, fraud_score(Uuid::from_u128(1), "c", 100, 10));
        let scores: Vec<f64> = (0..1000).map(|i| fraud_score(Uuid::from_u128(i), "c", 100, 1)).collect();
        assert!(scores.iter().all(|s| (0.0..1.0).contains(s)));
        let high = scores.iter().filter(|s| **s >= 0.9).count();
        assert!((50..150).contains(&high), "about a tenth score above 0.9, got {high}");
    }
}
