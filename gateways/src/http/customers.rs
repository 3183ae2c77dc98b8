//! `GET|PUT /api/customers/{customer_id}/preferences`: how a customer is told about their orders.

use actix_web::{web, HttpRequest, HttpResponse};
use actors::domain::customer::Preferences;
use events::domain::NotificationChannel;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::ApiError;
use super::extractors::{admit, json_body, path_id};
use super::schema::{ErrorJson, Internal, PayloadTooLarge, RequestTimeout, Unavailable, UnsupportedMediaType};
use super::ApiState;

/// Where a customer's notifications (order confirmed, payment declined, ready for pickup,
/// refunded) go.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NotificationPreferences)]
pub(super) struct PreferencesBody {
    /// `email` (through Amazon SES) or `sms` (through Amazon SNS).
    #[schema(value_type = String, pattern = "^(email|sms)$", example = "sms")]
    channel: NotificationChannel,
    /// An email address for `email`; a phone number in E.164 form (`+` and 8-15 digits) for `sms`
    /// (else 422 naming `address`).
    #[schema(example = "+15551234567")]
    address: String,
}

/// A customer's preferences as the API shows them.
#[derive(Serialize, ToSchema)]
#[schema(as = CustomerPreferences)]
struct PreferencesJson {
    customer_id: String,
    /// `email` or `sms`.
    #[schema(value_type = String, pattern = "^(email|sms)$")]
    channel: NotificationChannel,
    /// `null` when the customer never chose: notifications are emailed to the address the
    /// deployment derives from the customer id (`--notification-email-domain`).
    address: Option<String>,
    /// Whether the customer chose.
    chosen: bool,
}

impl PreferencesJson {
    fn new(customer_id: String, preferences: Option<Preferences>) -> Self {
        match preferences {
            Some(p) => PreferencesJson { customer_id, channel: p.channel, address: Some(p.address), chosen: true },
            None => PreferencesJson { customer_id, channel: NotificationChannel::Email, address: None, chosen: false },
        }
    }
}

/// `GET`: the customer's choice, or the default.
#[utoipa::path(
    get,
    path = "/api/customers/{customer_id}/preferences",
    tag = "customers",
    summary = "Read how a customer is notified",
    description = "Read from the customer actor's state. A customer who never chose (`chosen: false`, `address: null`) \
        is emailed at the address the deployment derives from the customer id.",
    params(("customer_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    responses(
        (status = 200, description = "The preferences", body = PreferencesJson),
        (status = 400, description = "`customer_id` is malformed", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_preferences(
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let customer = path_id(&path, "customer_id")?.to_owned();
    crate::logging::record_customer(&customer);
    let preferences = state.cafe.customer_preferences(&customer).await?;
    Ok(HttpResponse::Ok().json(PreferencesJson::new(customer, preferences)))
}

/// `PUT`: choose the channel and the address.
#[utoipa::path(
    put,
    path = "/api/customers/{customer_id}/preferences",
    tag = "customers",
    summary = "Choose how a customer is notified",
    description = "Decided by the customer actor (`CustomerPreferencesSet`); the same choice again changes nothing (200). \
        Notifications already queued go where the preference says when they are delivered.",
    params(("customer_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    request_body = PreferencesBody,
    responses(
        (status = 200, description = "The preferences now", body = PreferencesJson),
        (status = 400, description = "A bad `customer_id`; malformed JSON, a missing or mistyped field (a `channel` other than `email` or `sms`), or an unknown field", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "An `address` that is not an email address (`email`) or an E.164 phone number (`sms`)", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn set_preferences(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let customer = path_id(&path, "customer_id")?.to_owned();
    crate::logging::record_customer(&customer);
    let body: PreferencesBody = json_body(&req, payload, &state).await?;
    let _permit = admit(&state)?;
    let causation = crate::logging::command_causation();
    let set = state.cafe.set_customer_preferences(&customer, body.channel, &body.address, causation).await?;
    let mut response = HttpResponse::Ok();
    if let Some(h) = super::wire::correlation(&causation, !set.events.is_empty()) {
        response.insert_header(h);
    }
    Ok(response.json(PreferencesJson::new(customer, set.state.preferences)))
}
