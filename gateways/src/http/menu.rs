//! `GET /api/menu/items` and `POST /api/menu/items`: listing the menu (through the cache when
//! there is one) and publishing an item.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::domain::menu::{MenuCommand, MenuItem};
use events::domain::{Cents, Nutrition};
use events::Causation;
use projections::read_models::cache::CacheKey;
use projections::read_models::storefront::MenuItemView;
use serde::{Deserialize, Serialize};

use super::errors::ApiError;
use super::extractors::{admit, json_body};
use super::ApiState;

/// The body of `POST /api/menu/items`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct MenuItemBody {
    item_id: String,
    name: String,
    category: String,
    price_cents: i64,
    #[serde(default)]
    nutrition: NutritionBody,
    /// Hex SHA-256 of the item's image.
    #[serde(default)]
    image_sha256: String,
}

/// An item's nutrition as a client sends it; each value defaults to 0.
#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct NutritionBody {
    #[serde(default)]
    calories: u32,
    #[serde(default)]
    caffeine_mg: u32,
    #[serde(default)]
    sugar_g: u32,
}

/// A menu item as the API shows it.
#[derive(Serialize)]
struct MenuItemJson {
    item_id: String,
    name: String,
    category: String,
    price_cents: Cents,
    retired: bool,
    nutrition: Nutrition,
    image_sha256: String,
}

/// The whole menu.
#[derive(Serialize)]
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
            nutrition: i.nutrition,
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
            nutrition: i.nutrition,
            image_sha256: i.image_sha256,
        }
    }
}

/// `GET /api/menu/items`: every item of the storefront's menu, retired ones included.
pub(super) async fn list_menu(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let load = || state.storefront.menu();
    let items = match &state.cache {
        Some(cache) => cache.get_or_load(&CacheKey::MenuItems, load).await?,
        None => load().await?,
    };
    Ok(HttpResponse::Ok().json(MenuJson { items: items.into_iter().map(MenuItemJson::from).collect() }))
}

/// `POST /api/menu/items`: 201 with the item as published.
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
    let published = state.cafe.publish_menu_item(command, Causation::new_root()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, "/api/menu/items"))
        .json(MenuItemJson::from(published.state)))
}
