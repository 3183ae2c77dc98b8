//! `GET /api/payments/{order_id}`: an order's payment, as its actor holds it.

use actix_web::{web, HttpResponse};
use actors::domain::payment::{Payment, PaymentStatus};
use serde::Serialize;
use uuid::Uuid;

use super::errors::ApiError;
use super::extractors::parse_uuid;
use super::ApiState;

/// Where a payment stands, as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum PaymentStatusJson {
    None,
    Authorized,
    Declined,
    Captured,
}

impl From<PaymentStatus> for PaymentStatusJson {
    fn from(status: PaymentStatus) -> Self {
        match status {
            PaymentStatus::None => PaymentStatusJson::None,
            PaymentStatus::Authorized => PaymentStatusJson::Authorized,
            PaymentStatus::Declined => PaymentStatusJson::Declined,
            PaymentStatus::Captured => PaymentStatusJson::Captured,
        }
    }
}

/// An order's payment.
#[derive(Serialize)]
struct PaymentJson {
    order_id: Uuid,
    status: PaymentStatusJson,
    amount_cents: i64,
    /// In `[0, 1)`; at or above the node's threshold the payment was declined.
    fraud_score: f64,
}

impl PaymentJson {
    fn new(order_id: Uuid, payment: Payment) -> Self {
        PaymentJson {
            order_id,
            status: payment.status.into(),
            amount_cents: payment.amount_cents,
            fraud_score: payment.fraud_score,
        }
    }
}

/// `GET /api/payments/{order_id}`: 404 until the order's payment exists.
pub(super) async fn get_payment(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let order_id = parse_uuid(&path, "order_id")?;
    let payment = state
        .cafe
        .payment(order_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no payment for order {order_id}")))?;
    Ok(HttpResponse::Ok().json(PaymentJson::new(order_id, payment)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_statuses_keep_their_wire_names() {
        let wire = |s: PaymentStatus| serde_json::to_value(PaymentStatusJson::from(s)).unwrap();
        assert_eq!(wire(PaymentStatus::None), "none");
        assert_eq!(wire(PaymentStatus::Authorized), "authorized");
        assert_eq!(wire(PaymentStatus::Declined), "declined");
        assert_eq!(wire(PaymentStatus::Captured), "captured");
    }
}
