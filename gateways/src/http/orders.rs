//! `POST /api/orders`, `GET /api/orders/{order_id}` and `GET /api/customers/{customer_id}/orders`:
//! placing an order (idempotent under an `Idempotency-Key`) and reading orders back.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::cafe::PlaceOrder;
use actors::domain::order::Order;
use events::domain::OrderLine;
use events::Causation;
use projections::read_models::storefront::OrderView;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::errors::ApiError;
use super::extractors::{admit, json_body, parse_uuid, party_id};
use super::wire::{amount, timestamp};
use super::ApiState;

/// Orders placed with the same key by the same customer are one order.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x5c1f_0c0a_fe00_4d1e_9a11_0000_0000_0001);

/// The body of `POST /api/orders`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PlaceOrderBody {
    customer_id: String,
    store_id: String,
    items: Vec<ItemBody>,
}

/// One line of an order as the client asks for it (the price comes from the menu).
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    item_id: String,
    quantity: i64,
}

/// The `?limit=` of a customer's orders.
#[derive(Deserialize)]
pub(super) struct Page {
    limit: Option<usize>,
}

/// An order as the API shows it, whether read from the storefront or from the order's actor.
#[derive(Serialize)]
struct OrderJson {
    order_id: Uuid,
    customer_id: String,
    store_id: String,
    /// `placed`, `paid` or `cancelled` (`not_placed` never leaves the actor).
    status: String,
    total_cents: i64,
    /// The total as a decimal string, e.g. `"9.00"`.
    total_amount: String,
    cancel_reason: Option<String>,
    created_at: String,
    lines: Vec<OrderLine>,
}

/// A customer's orders, newest first.
#[derive(Serialize)]
struct CustomerOrdersJson {
    customer_id: String,
    orders: Vec<OrderJson>,
}

impl From<OrderView> for OrderJson {
    fn from(o: OrderView) -> Self {
        OrderJson {
            order_id: o.order_id,
            customer_id: o.customer_id,
            store_id: o.store_id,
            status: o.status,
            total_amount: amount(o.total_cents),
            total_cents: o.total_cents,
            cancel_reason: o.cancel_reason,
            created_at: timestamp(o.created_at_us),
            lines: o.lines,
        }
    }
}

impl From<Order> for OrderJson {
    fn from(o: Order) -> Self {
        OrderJson {
            order_id: o.order_id,
            customer_id: o.customer_id,
            store_id: o.store_id,
            status: o.status.as_str().into(),
            total_amount: amount(o.total_cents),
            total_cents: o.total_cents,
            cancel_reason: o.cancel_reason,
            created_at: timestamp(o.placed_at_us),
            lines: o.lines,
        }
    }
}

/// `POST /api/orders`: 201 once `OrderPlaced` is committed; a retry under the same
/// `Idempotency-Key` answers the same order with `Idempotent-Replay: true`.
pub(super) async fn place_order(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: PlaceOrderBody = json_body(&req, payload, &state).await?;
    let _permit = admit(&state)?;
    let fresh_order_id = req.headers().get("idempotency-key").is_none();
    let order_id = match req.headers().get("idempotency-key") {
        None => Uuid::now_v7(),
        Some(key) => {
            let key = key.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 128).ok_or_else(|| {
                ApiError::bad("Idempotency-Key must be 1-128 visible ASCII characters", "Idempotency-Key")
            })?;
            Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, format!("{}\u{0}{key}", body.customer_id).as_bytes())
        }
    };
    let request = PlaceOrder {
        order_id,
        customer_id: body.customer_id,
        store_id: body.store_id,
        items: body.items.into_iter().map(|i| (i.item_id, i.quantity)).collect(),
        placed_at_us: events::envelope::now_us(),
        fresh_order_id,
    };
    let placed = state.cafe.place_order(request, Causation::new_root()).await?;
    let replayed = placed.events.is_empty();
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/orders/{order_id}")))
        .insert_header(("Idempotent-Replay", if replayed { "true" } else { "false" }))
        .json(OrderJson::from(placed.state)))
}

/// `GET /api/orders/{order_id}`: the storefront's view, or the order's actor until it is projected.
pub(super) async fn get_order(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let order_id = parse_uuid(&path, "order_id")?;
    if let Some(view) = state.storefront.order(order_id).await? {
        return Ok(HttpResponse::Ok().json(OrderJson::from(view)));
    }
    // Not projected yet: the order's own actor is authoritative (read-your-writes after a 201).
    match state.cafe.order(order_id).await? {
        Some(order) => Ok(HttpResponse::Ok().json(OrderJson::from(order))),
        None => Err(ApiError::not_found(format!("order {order_id} does not exist"))),
    }
}

/// `GET /api/customers/{customer_id}/orders?limit=`: newest first, 50 unless `limit` (1-500) says.
pub(super) async fn customer_orders(
    path: web::Path<String>,
    query: Result<web::Query<Page>, actix_web::Error>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.map_err(|_| ApiError::bad("limit must be a number from 1 to 500", "limit"))?.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad("limit must be a number from 1 to 500", "limit"));
    }
    let customer_id = party_id(&path, "customer_id")?;
    let orders = state.storefront.customer_orders(customer_id, limit).await?;
    Ok(HttpResponse::Ok().json(CustomerOrdersJson {
        customer_id: customer_id.to_owned(),
        orders: orders.into_iter().map(OrderJson::from).collect(),
    }))
}
