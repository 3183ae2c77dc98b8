//! `GET /api/inventory/stores/{store_id}/items/{sku}` and `POST /api/inventory/restock`: a store's
//! stock of one menu item.

use actix_web::{web, HttpRequest, HttpResponse};
use actors::domain::inventory::Stock;
use events::Causation;
use serde::{Deserialize, Serialize};

use super::errors::ApiError;
use super::extractors::{admit, item_id, json_body, party_id};
use super::ApiState;

/// The body of `POST /api/inventory/restock`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RestockBody {
    store_id: String,
    sku: String,
    quantity: i64,
}

/// One store's stock of one SKU.
#[derive(Serialize)]
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
pub(super) async fn get_stock(
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (store_id, sku) = path.into_inner();
    let (store_id, sku) = (party_id(&store_id, "store_id")?, item_id(&sku, "sku")?);
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
pub(super) async fn restock(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: RestockBody = json_body(&req, payload, &state).await?;
    let _permit = admit(&state)?;
    let stock = state.cafe.restock(&body.store_id, &body.sku, body.quantity, Causation::new_root()).await?;
    Ok(HttpResponse::Ok().json(StockJson::from(stock)))
}
