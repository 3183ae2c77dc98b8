//! `POST /admin/stores`, `POST /admin/stores/{store_id}/close` and `GET /api/stores/{store_id}`:
//! opening and closing stores (an operator's routes) and reading one back. Orders and restocks are
//! taken only for an open store.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::domain::store::Store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::errors::ApiError;
use super::extractors::{admit, json_body, path_id};
use super::schema::{
    ErrorJson, Internal, PayloadTooLarge, RequestTimeout, Unauthorized, Unavailable, UnsupportedMediaType,
};
use super::wire::timestamp;
use super::ApiState;

/// The body of `POST /admin/stores`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OpenStore)]
pub(super) struct OpenStoreBody {
    /// 1-64 letters, digits, `-` or `_` (else 422).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "store-4")]
    store_id: String,
    /// Printable text: not blank, no whitespace at either end, no control character (else 422).
    #[schema(min_length = 1, example = "Harbour Street")]
    name: String,
}

/// The body of `POST /admin/stores/{store_id}/close`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CloseStore)]
pub(super) struct CloseStoreBody {
    /// Printable text: not blank, no whitespace at either end, no control character (else 422).
    #[schema(min_length = 1, example = "refit")]
    reason: String,
}

/// A store as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = Store)]
struct StoreJson {
    store_id: String,
    name: String,
    /// `open` or `closed`.
    #[schema(value_type = String, pattern = "^(open|closed)$")]
    status: &'static str,
    /// When it was last opened (RFC 3339).
    #[schema(format = DateTime)]
    opened_at: String,
    /// Why it was closed, while it is closed; null while it is open.
    #[schema(required = true)]
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
#[utoipa::path(
    post,
    path = "/admin/stores",
    tag = "stores",
    summary = "Open a store",
    description = "Opens (or reopens) a store: orders and restocks are taken only for an open store.",
    request_body = OpenStoreBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The store was already open under this name; nothing was written", body = StoreJson,
            headers(("Location" = String, description = "`/api/stores/{store_id}`"))),
        (status = 201, description = "The store, opened", body = StoreJson,
            headers(("Location" = String, description = "`/api/stores/{store_id}`"))),
        (status = 400, description = "Malformed JSON, a missing or mistyped field, or an unknown field", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "Refused by the domain: a bad id, or a name or reason that is blank, too long or holds control characters", body = ErrorJson),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn open_store(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: OpenStoreBody = json_body(&req, payload, &state).await?;
    let _permit = admit(&state)?;
    let causation = crate::logging::command_causation();
    let opened = state.cafe.open_store(&body.store_id, &body.name, causation).await?;
    let mut response = if opened.events.is_empty() { HttpResponse::Ok() } else { HttpResponse::Created() };
    if let Some(h) = super::wire::correlation(&causation, !opened.events.is_empty()) {
        response.insert_header(h);
    }
    Ok(response
        .insert_header((header::LOCATION, format!("/api/stores/{}", body.store_id)))
        .json(StoreJson::from(opened.state)))
}

/// `POST /admin/stores/{store_id}/close`: 200 with the store, closed (again, if it was); 404 for a
/// store never opened.
#[utoipa::path(
    post,
    path = "/admin/stores/{store_id}/close",
    tag = "stores",
    summary = "Close a store",
    description = "Closes a store: later orders and restocks for it are 422.",
    params(("store_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    request_body = CloseStoreBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The store, closed", body = StoreJson),
        (status = 404, description = "No store was ever opened with this id", body = ErrorJson),
        (status = 400, description = "A bad `store_id`; malformed JSON, a missing or mistyped field, or an unknown field", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "Refused by the domain: a bad id, or a name or reason that is blank, too long or holds control characters", body = ErrorJson),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn close_store(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let store_id = path_id(&path, "store_id")?;
    let body: CloseStoreBody = json_body(&req, payload, &state).await?;
    let _permit = admit(&state)?;
    let closed = state.cafe.close_store(store_id, &body.reason, crate::logging::command_causation()).await?;
    Ok(HttpResponse::Ok().json(StoreJson::from(closed.state)))
}

/// `GET /api/stores/{store_id}`: the store as its own stream says (read from the store's actor,
/// not from a read model); 404 for a store never opened.
#[utoipa::path(
    get,
    path = "/api/stores/{store_id}",
    tag = "stores",
    summary = "Read a store",
    description = "Reads the store actor's state, not a read model.",
    params(("store_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    responses(
        (status = 200, description = "The store", body = StoreJson),
        (status = 400, description = "`store_id` is malformed", body = ErrorJson),
        (status = 404, description = "No store was ever opened with this id", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_store(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let store_id = path_id(&path, "store_id")?;
    match state.cafe.store(store_id).await? {
        Some(store) => Ok(HttpResponse::Ok().json(StoreJson::from(store))),
        None => Err(ApiError::NotFound {
            message: format!("store `{store_id}` does not exist"),
            field: Some("store_id".into()),
        }),
    }
}
