//! A payment for one order: authorized or declined on a fraud score, then captured.

use events::domain::{Cents, PaymentAuthorized, PaymentCaptured, PaymentDeclined};
use events::DomainEvent;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Decider, Rejection};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    #[default]
    None,
    Authorized,
    Declined,
    Captured,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub status: PaymentStatus,
    pub order_id: Uuid,
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
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("amount must be positive")]
    NonPositiveAmount,
    #[error("a declined payment cannot be captured")]
    CannotCaptureDeclined,
    #[error("no payment was authorized")]
    NotAuthorized,
}

impl Rejection for PaymentError {
    fn field(&self) -> Option<String> {
        matches!(self, PaymentError::NonPositiveAmount).then(|| "amount_cents".into())
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
                PaymentStatus::Authorized => {
                    Ok(vec![PaymentCaptured { order_id: payment.order_id, amount_cents: payment.amount_cents }.into()])
                }
            },
        }
    }

    fn evolve(mut payment: Payment, event: &DomainEvent) -> Payment {
        match event {
            DomainEvent::PaymentAuthorized(e) => {
                payment.status = PaymentStatus::Authorized;
                payment.order_id = e.order_id;
                payment.amount_cents = e.amount_cents;
                payment.fraud_score = e.fraud_score;
            }
            DomainEvent::PaymentDeclined(e) => {
                payment.status = PaymentStatus::Declined;
                payment.order_id = e.order_id;
                payment.amount_cents = e.amount_cents;
                payment.fraud_score = e.fraud_score;
            }
            DomainEvent::PaymentCaptured(_) => payment.status = PaymentStatus::Captured,
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
