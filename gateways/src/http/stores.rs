//! `POST /admin/stores`, `POST /admin/stores/{store_id}/close` and `GET /api/stores/{store_id}`:
//! opening and closing stores (an operator's routes) and reading one back. Orders and restocks are
//! taken only for an open store.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::domain::store::Store;
use events::Causation;
use serde::{Deserialize, Serialize};

use super::errors::ApiError;
use super::extractors::{admit, json_body, party_id};
use super::wire::timestamp;
use super::ApiState;

/// The body of `POST /admin/stores`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct OpenStoreBody {
    store_id: String,
    name: String,
}

/// The body of `POST /admin/stores/{store_id}/close`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CloseStoreBody {
    reason: String,
}

/// A store as the API shows it.
#[derive(Serialize)]
struct StoreJson {
    store_id: String,
    name: String,
    /// `open` or `closed`.
    status: &'static str,
    /// When it was last opened (RFC 3339).
    opened_at: String,
    /// Why it was closed, while it is closed.
    close_reason: Option<String>,
}

impl From<Store> for StoreJson {
    fn from(s: Store) -> Self {
        StoreJson {
            status: s.status.as_str(),
            opened_at: timestamp(s.opened_at_us),
            store_id: s.store_id,
            name: s.name,
            close_reason: s.close_reason,
        }
    }
}

/// `POST /admin/stores`: 201 with the store when it opened (or reopened), 200 when it was already
/// open under that name (nothing written), 422 naming the field otherwise.
pub(super) async fn open_store(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: OpenStoreBody = json_body(&req, payload, &state).await?;
    let _permit = admit(&state)?;
    let opened = state.cafe.open_store(&body.store_id, &body.name, Causation::new_root()).await?;
    let mut response = if opened.events.is_empty() { HttpResponse::Ok() } else { HttpResponse::Created() };
    Ok(response
        .insert_header((header::LOCATION, format!("/api/stores/{}", body.store_id)))
        .json(StoreJson::from(opened.state)))
}

/// `POST /admin/stores/{store_id}/close`: 200 with the store, closed (again, if it was); 404 for a
/// store never opened.
pub(super) async fn close_store(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let store_id = party_id(&path, "store_id")?;
    let body: CloseStoreBody = json_body(&req, payload, &state).await?;
    let _permit = admit(&state)?;
    let closed = state.cafe.close_store(store_id, &body.reason, Causation::new_root()).await?;
    Ok(HttpResponse::Ok().json(StoreJson::from(closed.state)))
}

/// `GET /api/stores/{store_id}`: the store as its own stream says (read from the store's actor,
/// not from a read model); 404 for a store never opened.
pub(super) async fn get_store(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let store_id = party_id(&path, "store_id")?;
    match state.cafe.store(store_id).await? {
        Some(store) => Ok(HttpResponse::Ok().json(StoreJson::from(store))),
        None => Err(ApiError::NotFound {
            message: format!("store `{store_id}` does not exist"),
            field: Some("store_id".into()),
        }),
    }
}
