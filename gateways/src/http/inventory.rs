//! `GET /api/inventory/stores/{store_id}/items/{sku}` and `POST /api/inventory/restock`: a store's
//! stock of one menu item; `GET /api/inventory/stores/{store_id}`: a store's stock, paged by SKU.

use actix_web::{web, HttpRequest, HttpResponse};
use actors::domain::inventory::Stock;
use actors::domain::limits;
use projections::read_models::storefront::StockLevel;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

impl From<StockLevel> for StockJson {
    fn from(s: StockLevel) -> Self {
        StockJson {
            store_id: s.store_id,
            sku: s.sku,
            available: u64::try_from(s.available).unwrap_or(0),
            reserved: u64::try_from(s.reserved).unwrap_or(0),
        }
    }
}

/// The most SKUs one page of a store's stock holds, and how many when `limit` is left out.
const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 100;

/// The `?limit=&after=` of a store's stock.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StockPage {
    /// How many SKUs: 1-500, 100 when left out (else 400). Read as text, so that a bad value is
    /// named as `limit` rather than failing the whole query.
    #[param(value_type = Option<usize>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The last SKU of the previous page (its `next_after`): this page starts after it.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    after: Option<String>,
}

/// A page of a store's stock.
#[derive(Serialize, ToSchema)]
#[schema(as = StoreStock)]
struct StoreStockJson {
    store_id: String,
    /// By SKU.
    items: Vec<StockJson>,
    /// Pass as `after` for the next page; `null` on the last page.
    next_after: Option<String>,
}

/// `GET /api/inventory/stores/{store_id}?limit=&after=`: a store's stock, SKU by SKU.
#[utoipa::path(
    get,
    path = "/api/inventory/stores/{store_id}",
    tag = "inventory",
    summary = "List a store's stock",
    description = "Reads the storefront read model (it trails the journal by the projection's lag): every SKU the \
        store ever stocked, with its available and reserved units, in SKU order, a page at a time (keyset paging: \
        pass `next_after` as `after`). A store that never stocked anything has an empty list.",
    params(
        ("store_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)"),
        StockPage,
    ),
    responses(
        (status = 200, description = "A page of the store's stock", body = StoreStockJson),
        (status = 400, description = "A bad `store_id`, `limit` or `after`, or an unknown parameter", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn store_stock(
    path: web::Path<String>,
    query: Result<web::Query<StockPage>, actix_web::Error>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let store_id = path_id(&path, "store_id")?;
    // Every field is text: the only way the query fails is a parameter it does not know (or twice).
    let page =
        query.map_err(|_| ApiError::bad("unknown or repeated query parameter: only limit and after", "query"))?;
    let limit = match &page.limit {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::bad(format!("limit must be a number from 1 to {MAX_PAGE}"), "limit"))?,
    };
    if let Some(after) = &page.after {
        if !limits::is_id(after) {
            return Err(ApiError::bad("after must be a SKU: 1-64 letters, digits, `-` or `_`", "after"));
        }
    }
    let levels = state.storefront.stock_levels(store_id, page.after.as_deref(), limit).await?;
    let next_after = (levels.len() == limit).then(|| levels.last().map(|l| l.sku.clone())).flatten();
    Ok(HttpResponse::Ok().json(StoreStockJson {
        store_id: store_id.to_owned(),
        items: levels.into_iter().map(StockJson::from).collect(),
        next_after,
    }))
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
