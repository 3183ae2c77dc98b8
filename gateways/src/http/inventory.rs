//! `GET /api/inventory/stores/{store_id}/items/{sku}` and `POST /api/inventory/restock`: a store's
//! stock of one menu item.

use actix_web::{web, HttpRequest, HttpResponse};
use actors::domain::inventory::Stock;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::ApiError;
use super::extractors::{admit, json_body, path_id};
use super::schema::{ErrorJson, Internal, PayloadTooLarge, RequestTimeout, Unavailable, UnsupportedMediaType};
use super::ApiState;

/// The body of `POST /api/inventory/restock`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Restock)]
pub(super) struct RestockBody {
    /// 1-64 letters, digits, `-` or `_` (else 422).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "store-1")]
    store_id: String,
    /// A menu item's id: 1-64 letters, digits, `-` or `_` (else 422); 404 if it is not on the menu.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "latte")]
    sku: String,
    /// Units to add (else 422; the bounds are the inventory decider's).
    #[serde(deserialize_with = "super::wire::integer")]
    #[schema(minimum = 1, example = 100)]
    quantity: i64,
}

/// One store's stock of one SKU.
#[derive(Serialize, ToSchema)]
#[schema(as = Stock)]
struct StockJson {
    store_id: String,
    sku: String,
    /// Units not reserved by any order.
    available: u64,
    /// Units held for orders not yet paid or cancelled.
    reserved: u64,
}

impl From<Stock> for StockJson {
    fn from(s: Stock) -> Self {
        StockJson {
            reserved: s.reservations.values().map(|q| u64::from(*q)).sum(),
            available: s.available,
            store_id: s.store_id,
            sku: s.sku,
        }
    }
}

/// `GET /api/inventory/stores/{store_id}/items/{sku}`: 404 for a SKU that is not on the menu.
#[utoipa::path(
    get,
    path = "/api/inventory/stores/{store_id}/items/{sku}",
    tag = "inventory",
    summary = "Read a store's stock of an item",
    description = "Reads the inventory actor's state (the stock the next reservation is decided on), not a read \
        model. A store that never stocked the item has 0 available.",
    params(
        ("store_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)"),
        ("sku" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "A menu item's id: 1-64 letters, digits, `-` or `_` (else 400); 404 if it is not on the menu"),
    ),
    responses(
        (status = 200, description = "The stock", body = StockJson),
        (status = 400, description = "`store_id` or `sku` is malformed (or holds control characters)", body = ErrorJson),
        (status = 404, description = "The SKU is not on the menu", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_stock(
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (store_id, sku) = path.into_inner();
    let (store_id, sku) = (path_id(&store_id, "store_id")?, path_id(&sku, "sku")?);
    if state.cafe.menu_item(sku).await?.is_none() {
        return Err(ApiError::NotFound {
            message: format!("SKU `{sku}` is not on the menu"),
            field: Some("sku".into()),
        });
    }
    let stock = state.cafe.stock(store_id, sku).await?;
    Ok(HttpResponse::Ok().json(StockJson::from(stock)))
}

/// `POST /api/inventory/restock`: adds units and answers the stock after.
#[utoipa::path(
    post,
    path = "/api/inventory/restock",
    tag = "inventory",
    summary = "Restock a store",
    description = "Adds units of a menu item to a store's stock; answers the stock after, from the inventory actor.",
    request_body = RestockBody,
    responses(
        (status = 200, description = "The stock after the restock", body = StockJson),
        (status = 400, description = "Malformed JSON, a missing or mistyped field, or an unknown field", body = ErrorJson),
        (status = 404, description = "The SKU is not on the menu", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "Refused by the domain: a bad id or a quantity out of bounds", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn restock(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: RestockBody = json_body(&req, payload, &state).await?;
    super::auth::require(&req, &state, crate::auth::Access::Store(&body.store_id))?;
    let _permit = admit(&state)?;
    let causation = crate::logging::command_causation();
    let stock = state.cafe.restock(&body.store_id, &body.sku, body.quantity, causation).await?;
    let mut response = HttpResponse::Ok();
    if let Some(h) = super::wire::correlation(&causation, true) {
        response.insert_header(h);
    }
    Ok(response.json(StockJson::from(stock)))
}
