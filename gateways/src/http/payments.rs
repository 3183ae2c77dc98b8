//! `GET /api/payments/{order_id}`: an order's payment, as its actor holds it.

use actix_web::{web, HttpResponse};
use actors::domain::payment::{Payment, PaymentStatus};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::errors::ApiError;
use super::extractors::parse_uuid;
use super::schema::{ErrorJson, Internal, Unavailable};
use super::ApiState;

/// Where a payment stands, as the API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PaymentStatus)]
enum PaymentStatusJson {
    None,
    Authorized,
    Declined,
    Captured,
    /// The order was cancelled; the authorization is being released (still held).
    VoidRequested,
    /// The authorization was released: nothing is held.
    Voided,
    /// The order was cancelled after the capture; the money is being given back.
    RefundRequested,
    /// The captured amount was given back.
    Refunded,
}

impl From<PaymentStatus> for PaymentStatusJson {
    fn from(status: PaymentStatus) -> Self {
        match status {
            PaymentStatus::None => PaymentStatusJson::None,
            PaymentStatus::Authorized => PaymentStatusJson::Authorized,
            PaymentStatus::Declined => PaymentStatusJson::Declined,
            PaymentStatus::Captured => PaymentStatusJson::Captured,
            PaymentStatus::VoidRequested => PaymentStatusJson::VoidRequested,
            PaymentStatus::Voided => PaymentStatusJson::Voided,
            PaymentStatus::RefundRequested => PaymentStatusJson::RefundRequested,
            PaymentStatus::Refunded => PaymentStatusJson::Refunded,
        }
    }
}

/// An order's payment.
#[derive(Serialize, ToSchema)]
#[schema(as = Payment)]
struct PaymentJson {
    order_id: Uuid,
    status: PaymentStatusJson,
    amount_cents: i64,
    /// In `[0, 1)`; at or above the node's threshold the payment was declined.
    #[schema(minimum = 0, exclusive_maximum = 1)]
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
#[utoipa::path(
    get,
    path = "/api/payments/{order_id}",
    tag = "payments",
    summary = "Read an order's payment",
    description = "Reads the payment actor's state, not a read model.",
    params(("order_id" = Uuid, Path, description = "The order's id, a UUID (else 400)")),
    responses(
        (status = 200, description = "The payment", body = PaymentJson),
        (status = 400, description = "`order_id` is not a UUID", body = ErrorJson),
        (status = 404, description = "The order has no payment (yet)", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_payment(
    req: actix_web::HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_uuid(&path, "order_id")?;
    // Whose payment it is: the order's customer, from the order's actor (only asked when the caller
    // is not one who may read every payment). Another customer's is answered as none.
    let missing = || ApiError::not_found(format!("no payment for order {order_id}"));
    if super::auth::permit(&req, &state, crate::auth::Access::Admin).is_err() {
        let owner = state.cafe.order(order_id).await?.map(|o| o.customer_id);
        let visible =
            owner.is_some_and(|c| super::auth::permit(&req, &state, crate::auth::Access::Customer(&c)).is_ok());
        if !visible {
            return Err(missing());
        }
    }
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
        assert_eq!(wire(PaymentStatus::VoidRequested), "void_requested");
        assert_eq!(wire(PaymentStatus::Voided), "voided");
        assert_eq!(wire(PaymentStatus::RefundRequested), "refund_requested");
        assert_eq!(wire(PaymentStatus::Refunded), "refunded");
    }
}
