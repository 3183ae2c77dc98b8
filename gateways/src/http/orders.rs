//! `POST /api/orders`, `GET /api/orders/{order_id}` and `GET /api/customers/{customer_id}/orders`:
//! placing an order (idempotent under an `Idempotency-Key`) and reading orders back.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::cafe::PlaceOrder;
use actors::domain::order::{Order, Progress};
use actors::host::Executed;
use events::domain::OrderLine;
use events::Causation;
use projections::read_models::storefront::OrderView;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::errors::ApiError;
use super::extractors::{admit, json_body, parse_uuid, path_id};
use super::schema::{ErrorJson, Internal, PayloadTooLarge, RequestTimeout, Unavailable, UnsupportedMediaType};
use super::wire::{amount, timestamp};
use super::ApiState;
use crate::auth::Access;

/// Orders placed with the same key by the same customer are one order.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x5c1f_0c0a_fe00_4d1e_9a11_0000_0000_0001);

/// The order a customer's `Idempotency-Key` names: the same key of the same customer is the same
/// order on every node, so a client that knows its key knows the order's id (and stream) before
/// any answer arrives.
pub fn order_id_for_key(customer_id: &str, key: &str) -> Uuid {
    Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, format!("{customer_id}\u{0}{key}").as_bytes())
}

/// The body of `POST /api/orders`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PlaceOrder)]
pub(super) struct PlaceOrderBody {
    /// 1-64 letters, digits, `-` or `_` (else 422).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "alice")]
    customer_id: String,
    /// 1-64 letters, digits, `-` or `_` (else 422).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "store-1")]
    store_id: String,
    /// At least one line (else 422).
    #[schema(min_items = 1)]
    items: Vec<ItemBody>,
}

/// One line of an order as the client asks for it (the price comes from the menu).
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OrderItem)]
pub(super) struct ItemBody {
    /// A menu item's id: 1-64 letters, digits, `-` or `_` (else 422); 404 if it is not on the menu.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "latte")]
    item_id: String,
    /// Units of the item (else 422; the bounds are the order decider's).
    #[serde(deserialize_with = "super::wire::integer")]
    #[schema(minimum = 1, example = 2)]
    quantity: i64,
}

/// The `?limit=` of a customer's orders.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Page {
    /// How many orders, newest first: 1-500, 50 when left out (else 400).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// One line of an order, priced when the order was placed.
#[derive(Serialize, ToSchema)]
#[schema(as = OrderLine)]
struct OrderLineJson {
    item_id: String,
    #[schema(minimum = 1)]
    quantity: u32,
    /// The item's price when the order was placed.
    unit_price_cents: i64,
}

impl From<OrderLine> for OrderLineJson {
    fn from(l: OrderLine) -> Self {
        OrderLineJson { item_id: l.item_id, quantity: l.quantity, unit_price_cents: l.unit_price_cents }
    }
}

/// An order as the API shows it, whether read from the storefront or from the order's actor.
#[derive(Serialize, ToSchema)]
#[schema(as = Order)]
struct OrderJson {
    order_id: Uuid,
    customer_id: String,
    store_id: String,
    /// `placed`, `paid`, `preparing`, `ready`, `completed` (picked up), `abandoned` (not picked up
    /// in time) or `cancelled` (`not_placed` never leaves the actor).
    #[schema(schema_with = super::schema::order_status)]
    status: String,
    total_cents: i64,
    /// The total as a decimal string, e.g. `"9.00"`.
    #[schema(pattern = r"^-?[0-9]+\.[0-9]{2}$", example = "9.00")]
    total_amount: String,
    /// Why the order was cancelled; null unless it was.
    #[schema(required = true)]
    cancel_reason: Option<String>,
    /// When the order was placed, RFC 3339 UTC with milliseconds.
    #[schema(format = DateTime)]
    created_at: String,
    lines: Vec<OrderLineJson>,
}

/// A customer's orders, newest first.
#[derive(Serialize, ToSchema)]
#[schema(as = CustomerOrders)]
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
            lines: o.lines.into_iter().map(OrderLineJson::from).collect(),
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
            lines: o.lines.into_iter().map(OrderLineJson::from).collect(),
        }
    }
}

/// `POST /api/orders`: 201 once `OrderPlaced` is committed; a retry under the same
/// `Idempotency-Key` answers the same order with `Idempotent-Replay: true`.
#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    summary = "Place an order",
    description = "Places an order at the menu's current prices. Answers once `OrderPlaced` is committed to the \
        journal; payment and stock reservation follow asynchronously (the order saga). A retry with the same \
        `Idempotency-Key` (for the same customer) answers the same order and writes nothing.",
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128,
            pattern = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$",
            description = "1-128 visible ASCII characters (else 400); the same key by the same customer is the same order"),
    ),
    request_body = PlaceOrderBody,
    responses(
        (status = 201, description = "The order, as placed (or as it stands, for a replayed key)", body = OrderJson,
            headers(
                ("Location" = String, description = "`/api/orders/{order_id}`"),
                ("Idempotent-Replay" = String, description = "`true` when the key had already placed this order, else `false`"),
            )),
        (status = 400, description = "Malformed JSON, a missing or mistyped field, an unknown field, or a bad `Idempotency-Key`", body = ErrorJson),
        (status = 404, description = "An item is not on the menu (`field` names the line)", body = ErrorJson),
        (status = 409, description = "The `Idempotency-Key` was used for an order with other contents", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "Refused by the domain: a bad id, no lines, a quantity out of bounds, a retired item, an item on two lines", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn place_order(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let answer = take_order(req, payload, state).await;
    // The plans' OrderCreationDuration: the whole request, body included, by how it ended.
    let outcome = match &answer {
        Ok(_) => "placed",
        Err(e) if actix_web::ResponseError::status_code(e).is_client_error() => "rejected",
        Err(_) => "failed",
    };
    events::metric::ORDER_CREATION_DURATION.histogram(&[("outcome", outcome)]).record(started.elapsed().as_secs_f64());
    answer
}

async fn take_order(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: PlaceOrderBody = json_body(&req, payload, &state).await?;
    super::auth::require(&req, &state, crate::auth::Access::Customer(&body.customer_id))?;
    let _permit = admit(&state)?;
    let fresh_order_id = req.headers().get("idempotency-key").is_none();
    let order_id = match req.headers().get("idempotency-key") {
        None => Uuid::now_v7(),
        Some(key) => {
            // `to_str` lets a tab through; the key is visible ASCII and spaces only, as documented.
            let visible = |k: &&str| k.bytes().all(|b| (0x20..0x7f).contains(&b));
            let key =
                key.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 128).filter(visible).ok_or_else(|| {
                    ApiError::bad("Idempotency-Key must be 1-128 visible ASCII characters", "Idempotency-Key")
                })?;
            order_id_for_key(&body.customer_id, key)
        }
    };
    crate::logging::record_customer(&body.customer_id);
    let request = PlaceOrder {
        order_id,
        customer_id: body.customer_id,
        store_id: body.store_id,
        items: body.items.into_iter().map(|i| (i.item_id, i.quantity)).collect(),
        placed_at_us: events::envelope::now_us(),
        fresh_order_id,
    };
    let causation = crate::logging::command_causation();
    // Per order at debug only (a node places thousands a second); a 503 or a 500 logs its own line.
    let placed = match state.cafe.place_order(request, causation).await {
        Ok(placed) => placed,
        Err(e) => {
            let e = ApiError::from(e);
            tracing::debug!(%order_id, status = actix_web::ResponseError::status_code(&e).as_u16(), reason = %e, "order not placed");
            return Err(e);
        }
    };
    let replayed = placed.events.is_empty();
    tracing::debug!(%order_id, replayed, total_cents = placed.state.total_cents, "order placed");
    let mut response = HttpResponse::Created();
    if let Some(h) = super::wire::correlation(&causation, !replayed) {
        response.insert_header(h);
    }
    Ok(response
        .insert_header((header::LOCATION, format!("/api/orders/{order_id}")))
        .insert_header(("Idempotent-Replay", if replayed { "true" } else { "false" }))
        .json(OrderJson::from(placed.state)))
}

/// `GET /api/orders/{order_id}`: the storefront's view, or the order's actor until it is projected.
#[utoipa::path(
    get,
    path = "/api/orders/{order_id}",
    tag = "orders",
    summary = "Read an order",
    description = "Reads the storefront read model; an order it has not projected yet is read from the order \
        actor's state (so a 201 is always readable back at once).",
    params(("order_id" = Uuid, Path, description = "The order's id, a UUID (else 400)")),
    responses(
        (status = 200, description = "The order", body = OrderJson),
        (status = 400, description = "`order_id` is not a UUID", body = ErrorJson),
        (status = 404, description = "No order has this id", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_order(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_uuid(&path, "order_id")?;
    let missing = || ApiError::not_found(format!("order {order_id} does not exist"));
    // Another customer's order is answered as one that does not exist.
    let visible = |customer_id: &str| super::auth::permit(&req, &state, Access::Customer(customer_id)).is_ok();
    if let Some(view) = state.storefront.order(order_id).await? {
        return if visible(&view.customer_id) {
            Ok(HttpResponse::Ok().json(OrderJson::from(view)))
        } else {
            Err(missing())
        };
    }
    // Not projected yet: the order's own actor is authoritative (read-your-writes after a 201).
    match state.cafe.order(order_id).await? {
        Some(order) if visible(&order.customer_id) => Ok(HttpResponse::Ok().json(OrderJson::from(order))),
        _ => Err(missing()),
    }
}

/// The body of `POST /api/orders/{order_id}/status`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AdvanceOrder)]
pub(super) struct StatusBody {
    /// The next status: `preparing` (from `paid`), `ready` (from `preparing`) or `completed`
    /// (picked up, from `ready`); any other text is 422.
    #[schema(schema_with = super::schema::order_progress)]
    status: String,
}

/// `POST /api/orders/{order_id}/status`: store staff move an order one step towards pickup.
#[utoipa::path(
    post,
    path = "/api/orders/{order_id}/status",
    tag = "orders",
    summary = "Move an order towards pickup",
    description = "Store staff (of the order's store) or an admin move a paid order to `preparing`, then `ready`, then \
        `completed` when the customer picks it up. A ready order not picked up within the node's pickup window \
        (`--pickup-window-secs`) is `abandoned` by the pickup timer. Asking for the status the order already has \
        changes nothing (200); any other step out of turn is 409 naming the current status.",
    params(("order_id" = Uuid, Path, description = "The order's id, a UUID (else 400)")),
    request_body = StatusBody,
    responses(
        (status = 200, description = "The order at its new status", body = OrderJson),
        (status = 400, description = "`order_id` is not a UUID; malformed JSON, a missing or mistyped field, or an unknown field", body = ErrorJson),
        (status = 403, description = "The order's own customer, or staff of another store: only the store's staff move an order", body = ErrorJson),
        (status = 404, description = "No order has this id (or the caller may not see it)", body = ErrorJson),
        (status = 409, description = "The order is not at the step before this one (`field` is `status`; the message names the current status)", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "`status` is not a step staff set (`field` is `status`)", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn advance_order(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_uuid(&path, "order_id")?;
    let body: StatusBody = json_body(&req, payload, &state).await?;
    let to = Progress::parse(&body.status).ok_or_else(|| ApiError::Unprocessable {
        message: "status must be one of preparing, ready, completed: the others are not set by staff".into(),
        field: Some("status".into()),
    })?;
    let missing = || ApiError::not_found(format!("order {order_id} does not exist"));
    let order = state.cafe.order(order_id).await?.ok_or_else(missing)?;
    // The store's staff move it; its customer learns they may not; anyone else, that it is not there.
    if super::auth::permit(&req, &state, Access::Store(&order.store_id)).is_err() {
        return Err(match super::auth::permit(&req, &state, Access::Customer(&order.customer_id)) {
            Ok(()) => ApiError::Forbidden,
            Err(_) => missing(),
        });
    }
    let _permit = admit(&state)?;
    let causation = crate::logging::command_causation();
    let moved = state.cafe.advance_order(order_id, to, events::envelope::now_us(), causation).await?;
    Ok(order_changed(&causation, moved))
}

/// The 200 of a command on an existing order: the order as it now stands, with the correlation
/// header when the command wrote events.
fn order_changed(causation: &Causation, done: Executed<Order>) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    if let Some(h) = super::wire::correlation(causation, !done.events.is_empty()) {
        response.insert_header(h);
    }
    response.json(OrderJson::from(done.state))
}

/// The body of `POST /api/orders/{order_id}/cancel`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CancelOrder)]
pub(super) struct CancelBody {
    /// Why, in the customer's words (at most 200 characters, no control characters; else 422).
    /// Without it: `cancelled_by_customer`.
    #[schema(example = "changed my mind")]
    reason: Option<String>,
}

/// `POST /api/orders/{order_id}/cancel`: the customer cancels an order that is not being made yet.
#[utoipa::path(
    post,
    path = "/api/orders/{order_id}/cancel",
    tag = "orders",
    summary = "Cancel an order",
    description = "The order's customer (or an admin) cancels it while it is `placed` or `paid`. Answers once \
        `OrderCancelled` is committed; the order saga then releases its stock, voids its authorization or refunds \
        its captured payment (`GET /api/payments/{order_id}` shows `refund_requested`, then `refunded`), and takes \
        back the points it earned. Cancelling a cancelled order changes nothing (200). Once its preparation has \
        started: 409 naming its status.",
    params(("order_id" = Uuid, Path, description = "The order's id, a UUID (else 400)")),
    request_body = CancelBody,
    responses(
        (status = 200, description = "The order, cancelled", body = OrderJson),
        (status = 400, description = "`order_id` is not a UUID; malformed JSON, a mistyped field, or an unknown field", body = ErrorJson),
        (status = 404, description = "No order has this id (or it is another customer's)", body = ErrorJson),
        (status = 409, description = "The order is being made, ready or completed: too late to cancel", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "A `reason` too long or with control characters (`field` is `reason`)", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn cancel_order(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_uuid(&path, "order_id")?;
    let body: CancelBody = json_body(&req, payload, &state).await?;
    let missing = || ApiError::not_found(format!("order {order_id} does not exist"));
    let order = state.cafe.order(order_id).await?.ok_or_else(missing)?;
    // Another customer's order (or staff's attempt) is answered as one that does not exist.
    if super::auth::permit(&req, &state, Access::Customer(&order.customer_id)).is_err() {
        return Err(missing());
    }
    let _permit = admit(&state)?;
    let causation = crate::logging::command_causation();
    let reason = body.reason.unwrap_or_else(|| "cancelled_by_customer".into());
    let cancelled = state.cafe.cancel_order(order_id, reason, causation).await?;
    Ok(order_changed(&causation, cancelled))
}

/// `GET /api/customers/{customer_id}/orders?limit=`: newest first, 50 unless `limit` (1-500) says.
#[utoipa::path(
    get,
    path = "/api/customers/{customer_id}/orders",
    tag = "orders",
    summary = "List a customer's orders",
    description = "Reads the storefront read model (it trails the journal by the projection's lag; \
        `/admin/projections` shows it): the customer's newest orders first. A customer with no orders has an empty list.",
    params(
        ("customer_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$",
            description = "1-64 letters, digits, `-` or `_` (else 400)"),
        Page,
    ),
    responses(
        (status = 200, description = "The customer's orders, newest first", body = CustomerOrdersJson),
        (status = 400, description = "A bad `customer_id` or `limit`", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn customer_orders(
    path: web::Path<String>,
    query: Result<web::Query<Page>, actix_web::Error>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.map_err(|_| ApiError::bad("limit must be a number from 1 to 500", "limit"))?.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad("limit must be a number from 1 to 500", "limit"));
    }
    let customer_id = path_id(&path, "customer_id")?;
    crate::logging::record_customer(customer_id);
    let orders = state.storefront.customer_orders(customer_id, limit).await?;
    Ok(HttpResponse::Ok().json(CustomerOrdersJson {
        customer_id: customer_id.to_owned(),
        orders: orders.into_iter().map(OrderJson::from).collect(),
    }))
}
