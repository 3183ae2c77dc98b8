//! `GET /api/menu/items`, `POST /api/menu/items`, `POST /api/menu/items/{item_id}/price` and
//! `POST /api/menu/items/{item_id}/retire`: listing the menu (through the cache when there is one),
//! publishing an item, re-pricing it and retiring it.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::domain::limits;
use actors::domain::menu::{MenuCommand, MenuItem};
use events::domain::{Cents, Nutrition};
use projections::read_models::cache::CacheKey;
use projections::read_models::storefront::MenuItemView;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::errors::ApiError;
use super::extractors::{admit, json_body, path_id};
use super::schema::{ErrorJson, Internal, PayloadTooLarge, RequestTimeout, Unavailable, UnsupportedMediaType};
use super::ApiState;

/// The body of `POST /api/menu/items`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PublishMenuItem)]
pub(super) struct MenuItemBody {
    /// 1-64 letters, digits, `-` or `_` (else 422).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "flat-white")]
    item_id: String,
    /// Printable text: not blank, no whitespace at either end, no control character (else 422).
    #[schema(min_length = 1, example = "Flat White")]
    name: String,
    /// Printable text, as `name` (else 422).
    #[schema(min_length = 1, example = "coffee")]
    category: String,
    /// The unit price in cents (else 422).
    #[serde(deserialize_with = "super::wire::integer")]
    #[schema(example = 395)]
    price_cents: i64,
    /// Each value 0 when left out.
    #[serde(default)]
    nutrition: NutritionBody,
    /// Hex SHA-256 of the item's image: 64 lowercase hex digits, or empty (else 422).
    #[serde(default)]
    #[schema(pattern = "^([0-9a-f]{64})?$")]
    image_sha256: String,
}

/// An item's nutrition as a client sends it; each value defaults to 0.
#[derive(Deserialize, Serialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NutritionInput)]
pub(super) struct NutritionBody {
    // OpenAPI's `int32` is signed: the whole u32 range is declared instead.
    #[serde(default, deserialize_with = "super::wire::integer")]
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_i64)]
    calories: u32,
    #[serde(default, deserialize_with = "super::wire::integer")]
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_i64)]
    caffeine_mg: u32,
    #[serde(default, deserialize_with = "super::wire::integer")]
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_i64)]
    sugar_g: u32,
}

/// An item's nutrition.
#[derive(Serialize, ToSchema)]
#[schema(as = Nutrition)]
struct NutritionJson {
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_i64)]
    calories: u32,
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_i64)]
    caffeine_mg: u32,
    #[schema(value_type = i64, minimum = 0, maximum = 4_294_967_295_i64)]
    sugar_g: u32,
}

impl From<Nutrition> for NutritionJson {
    fn from(n: Nutrition) -> Self {
        NutritionJson { calories: n.calories, caffeine_mg: n.caffeine_mg, sugar_g: n.sugar_g }
    }
}

/// A menu item as the API shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = MenuItem)]
struct MenuItemJson {
    item_id: String,
    name: String,
    category: String,
    price_cents: Cents,
    /// A retired item stays listed and cannot be ordered.
    retired: bool,
    nutrition: NutritionJson,
    /// Hex SHA-256 of the item's image, or empty.
    #[schema(pattern = "^([0-9a-f]{64})?$")]
    image_sha256: String,
}

/// The whole menu.
#[derive(Serialize, ToSchema)]
#[schema(as = Menu)]
struct MenuJson {
    items: Vec<MenuItemJson>,
}

impl From<MenuItemView> for MenuItemJson {
    fn from(i: MenuItemView) -> Self {
        MenuItemJson {
            item_id: i.item_id,
            name: i.name,
            category: i.category,
            price_cents: i.price_cents,
            retired: i.retired,
            nutrition: i.nutrition.into(),
            image_sha256: i.image_sha256,
        }
    }
}

impl From<MenuItem> for MenuItemJson {
    fn from(i: MenuItem) -> Self {
        MenuItemJson {
            item_id: i.item_id,
            name: i.name,
            category: i.category,
            price_cents: i.price_cents,
            retired: i.retired,
            nutrition: i.nutrition.into(),
            image_sha256: i.image_sha256,
        }
    }
}

/// The `?category=` of the menu listing.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct MenuFilter {
    /// Only the items of this category (exactly as published, e.g. `coffee`); every item when left
    /// out. 1-50 characters, no control character, no whitespace at either end (else 422, as the
    /// same text in a published item).
    #[param(
        min_length = 1,
        max_length = 50,
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
    )]
    category: Option<String>,
}

/// The storefront's menu, through the Redis cache when the node has one (5 minutes, and dropped by
/// the storefront projection when a menu event changes it).
async fn cached_menu(state: &ApiState) -> Result<Vec<MenuItemView>, ApiError> {
    let load = || state.storefront.menu();
    Ok(match &state.cache {
        Some(cache) => cache.get_or_load(&CacheKey::MenuItems, load).await?,
        None => load().await?,
    })
}

/// `GET /api/menu/items?category=`: the storefront's menu, retired items included.
#[utoipa::path(
    get,
    path = "/api/menu/items",
    tag = "menu",
    summary = "List the menu",
    description = "Reads the storefront read model (through the Redis cache when the node has one): every item, \
        retired ones included, or only one category's. It trails the journal by the projection's lag.",
    params(MenuFilter),
    responses(
        (status = 200, description = "The menu", body = MenuJson),
        (status = 400, description = "An unknown or repeated query parameter", body = ErrorJson),
        (status = 422, description = "A `category` no item could have: blank, over 50 characters, control \
            characters, or whitespace at either end", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn list_menu(
    query: Result<web::Query<MenuFilter>, actix_web::Error>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    // `category` is text: the only way the query fails is a parameter it does not know (or twice).
    let filter = query.map_err(|_| ApiError::bad("unknown or repeated query parameter: only category", "query"))?;
    if let Some(category) = &filter.category {
        // A text the domain refuses is 422, as the same text in a published item's body is.
        limits::check_text("category", category, limits::MAX_CATEGORY_CHARS).map_err(|invalid| {
            ApiError::Unprocessable { message: invalid.to_string(), field: Some("category".into()) }
        })?;
    }
    let items = cached_menu(&state).await?;
    let items = items.into_iter().filter(|i| filter.category.as_ref().is_none_or(|c| *c == i.category));
    Ok(HttpResponse::Ok().json(MenuJson { items: items.map(MenuItemJson::from).collect() }))
}

/// `GET /api/menu/items/{item_id}`: one item, retired or not.
#[utoipa::path(
    get,
    path = "/api/menu/items/{item_id}",
    tag = "menu",
    summary = "Read a menu item",
    description = "Reads the storefront read model (through the Redis cache when the node has one); an item \
        published but not yet projected is read from its actor.",
    params(("item_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    responses(
        (status = 200, description = "The item", body = MenuItemJson),
        (status = 400, description = "A bad `item_id`", body = ErrorJson),
        (status = 404, description = "No such item was ever published", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_menu_item(
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let item_id = path_id(&path, "item_id")?;
    if let Some(item) = cached_menu(&state).await?.into_iter().find(|i| i.item_id == item_id) {
        return Ok(HttpResponse::Ok().json(MenuItemJson::from(item)));
    }
    match state.cafe.menu_item(item_id).await? {
        Some(item) => Ok(HttpResponse::Ok().json(MenuItemJson::from(item))),
        None => Err(ApiError::NotFound {
            message: format!("menu item `{item_id}` was never published"),
            field: Some("item_id".into()),
        }),
    }
}

/// `POST /api/menu/items`: 201 with the item as published.
#[utoipa::path(
    post,
    path = "/api/menu/items",
    tag = "menu",
    summary = "Publish a menu item",
    description = "Publishes an item. Publishing it again with the same details changes nothing (201); with other \
        details, 422.",
    request_body = MenuItemBody,
    responses(
        (status = 201, description = "The item as published", body = MenuItemJson,
            headers(("Location" = String, description = "`/api/menu/items`"))),
        (status = 400, description = "Malformed JSON, a missing or mistyped field, or an unknown field", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "Refused by the domain: a bad id, a blank name or category, a price out of \
            bounds, a bad image hash, or the item is already published with other details", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn publish_menu_item(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: MenuItemBody = json_body(&req, payload, &state).await?;
    let _permit = admit(&state)?;
    let command = MenuCommand::Publish {
        item_id: body.item_id,
        name: body.name,
        category: body.category,
        price_cents: body.price_cents,
        nutrition: Nutrition {
            calories: body.nutrition.calories,
            caffeine_mg: body.nutrition.caffeine_mg,
            sugar_g: body.nutrition.sugar_g,
        },
        image_sha256: body.image_sha256,
    };
    let causation = crate::logging::command_causation();
    let published = state.cafe.publish_menu_item(command, causation).await?;
    let mut response = HttpResponse::Created();
    if let Some(h) = super::wire::correlation(&causation, !published.events.is_empty()) {
        response.insert_header(h);
    }
    Ok(response.insert_header((header::LOCATION, "/api/menu/items")).json(MenuItemJson::from(published.state)))
}

/// The body of `POST /api/menu/items/{item_id}/price`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChangePrice)]
pub(super) struct PriceBody {
    /// The new unit price in cents (else 422).
    #[serde(deserialize_with = "super::wire::integer")]
    #[schema(example = 425)]
    price_cents: i64,
}

/// `POST /api/menu/items/{item_id}/price`: 200 with the item at its new price.
#[utoipa::path(
    post,
    path = "/api/menu/items/{item_id}/price",
    tag = "menu",
    summary = "Change a menu item's price",
    description = "Re-prices a published item. Orders decided after it, on any node within the staleness bound, \
        use the new price; the same price again changes nothing (200).",
    params(("item_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    request_body = PriceBody,
    responses(
        (status = 200, description = "The item at its new price", body = MenuItemJson),
        (status = 400, description = "A bad `item_id`; malformed JSON, a missing or mistyped field, or an unknown field", body = ErrorJson),
        (status = 404, description = "No such item was ever published", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "Refused by the domain: a price out of bounds, or the item is retired", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn change_price(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let item = path_id(&path, "item_id")?;
    let body: PriceBody = json_body(&req, payload, &state).await?;
    let _permit = admit(&state)?;
    let causation = crate::logging::command_causation();
    let changed = state.cafe.change_menu_price(item, body.price_cents, causation).await?;
    let mut response = HttpResponse::Ok();
    if let Some(h) = super::wire::correlation(&causation, !changed.events.is_empty()) {
        response.insert_header(h);
    }
    Ok(response.json(MenuItemJson::from(changed.state)))
}

/// `PUT /api/menu/items/{item_id}/price`: the same as the `POST`, under the plans' method.
#[utoipa::path(
    put,
    path = "/api/menu/items/{item_id}/price",
    tag = "menu",
    summary = "Set a menu item's price",
    description = "The same as `POST` on this path: re-prices a published item; the same price again changes nothing (200).",
    params(("item_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    request_body = PriceBody,
    responses(
        (status = 200, description = "The item at its new price", body = MenuItemJson),
        (status = 400, description = "A bad `item_id`; malformed JSON, a missing or mistyped field, or an unknown field", body = ErrorJson),
        (status = 404, description = "No such item was ever published", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "Refused by the domain: a price out of bounds, or the item is retired", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn set_price(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    change_price(req, path, payload, state).await
}

/// `DELETE /api/menu/items/{item_id}`: retires the item (the same as `POST …/retire`).
#[utoipa::path(
    delete,
    path = "/api/menu/items/{item_id}",
    tag = "menu",
    summary = "Retire a menu item",
    description = "The same as `POST /api/menu/items/{item_id}/retire`: the item stays listed (as retired, its \
        history intact) and can no longer be ordered; retiring it again changes nothing. No body.",
    params(("item_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    responses(
        (status = 200, description = "The item, retired", body = MenuItemJson),
        (status = 400, description = "A bad `item_id`", body = ErrorJson),
        (status = 404, description = "No such item was ever published", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn delete_menu_item(
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    retire(path, state).await
}

/// `POST /api/menu/items/{item_id}/retire`: 200 with the item, retired (again, if it was).
#[utoipa::path(
    post,
    path = "/api/menu/items/{item_id}/retire",
    tag = "menu",
    summary = "Retire a menu item",
    description = "Retires a published item: it stays listed, and orders for it decided after this, on any node \
        within the staleness bound, are 422. Retiring it again changes nothing. No body.",
    params(("item_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)")),
    responses(
        (status = 200, description = "The item, retired", body = MenuItemJson),
        (status = 400, description = "A bad `item_id`", body = ErrorJson),
        (status = 404, description = "No such item was ever published", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn retire(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let item = path_id(&path, "item_id")?;
    let _permit = admit(&state)?;
    let causation = crate::logging::command_causation();
    let retired = state.cafe.retire_menu_item(item, causation).await?;
    let mut response = HttpResponse::Ok();
    if let Some(h) = super::wire::correlation(&causation, !retired.events.is_empty()) {
        response.insert_header(h);
    }
    Ok(response.json(MenuItemJson::from(retired.state)))
}
