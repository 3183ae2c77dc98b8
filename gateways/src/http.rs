//! The REST API (actix-web), as the ALB routes it: `/api/orders/*`, `/api/customers/*`,
//! `/api/menu/*`, `/api/inventory/*`, `/api/loyalty/*`, `/api/payments/*`, plus `/health`, `/ready`
//! and `/metrics`. [`configure`] builds it for `main` and for tests alike.
//!
//! Errors are JSON `{"error": "...", "field": "..."|null}`: 4xx for bad input (nothing is written),
//! 503 with `Retry-After` when the node is saturated or the journal does not answer.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use actors::cafe::{CafeError, PlaceOrder};
use actors::domain::inventory::Stock;
use actors::domain::menu::MenuCommand;
use actors::domain::order::Order;
use events::domain::OrderLine;
use events::{Causation, Journal};
use futures::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::read_models::storefront::{OrderView, StorefrontQueries};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::node::Node;

/// What the handlers share.
pub struct ApiState {
    pub cafe: Arc<actors::cafe::Cafe>,
    pub journal: Arc<dyn Journal>,
    pub storefront: Arc<dyn StorefrontQueries>,
    pub metrics: PrometheusHandle,
    /// Commands in flight on this node; past it, 503.
    pub admission: Semaphore,
    pub body_limit: usize,
    pub analytics: Option<Arc<projections::read_models::analytics::AnalyticsSink>>,
    pub cache: Option<Arc<projections::read_models::cache::ReadCache>>,
    pub projections: Vec<Arc<dyn projections::Sink>>,
    /// Read models this node feeds from Kinesis, by name.
    pub stream_fed: Vec<(String, Arc<dyn projections::StreamFedLag>)>,
}

#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Commands being handled at once before new ones get 503.
    pub max_in_flight: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings { body_limit: 16 * 1024, max_in_flight: 4096 }
    }
}

impl ApiState {
    pub fn new(node: &Node, metrics: PrometheusHandle, settings: &ApiSettings) -> Arc<Self> {
        let mut state = Self::from_parts(node.cafe.clone(), node.storefront.clone(), metrics, settings);
        let s = Arc::get_mut(&mut state).expect("just built");
        s.analytics.clone_from(&node.analytics);
        s.cache.clone_from(&node.cache);
        s.projections.clone_from(&node.projections);
        state
    }

    pub fn from_parts(
        cafe: Arc<actors::cafe::Cafe>,
        storefront: Arc<dyn StorefrontQueries>,
        metrics: PrometheusHandle,
        settings: &ApiSettings,
    ) -> Arc<Self> {
        Arc::new(ApiState {
            journal: cafe.journal.clone(),
            cafe,
            storefront,
            metrics,
            admission: Semaphore::new(settings.max_in_flight),
            body_limit: settings.body_limit,
            analytics: None,
            cache: None,
            projections: Vec::new(),
            stream_fed: Vec::new(),
        })
    }
}

pub fn configure(state: Arc<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(state))
            .service(web::resource("/health").get(health).default_service(web::to(method_not_allowed)))
            .service(web::resource("/ready").get(ready).default_service(web::to(method_not_allowed)))
            .service(web::resource("/metrics").get(metrics).default_service(web::to(method_not_allowed)))
            .service(web::resource("/api/orders").post(place_order).default_service(web::to(method_not_allowed)))
            .service(
                web::resource("/api/orders/{order_id}").get(get_order).default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/customers/{customer_id}/orders")
                    .get(customer_orders)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/inventory/stores/{store_id}/items/{sku}")
                    .get(get_stock)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(web::resource("/api/inventory/restock").post(restock).default_service(web::to(method_not_allowed)))
            .service(
                web::resource("/api/loyalty/{customer_id}")
                    .get(get_loyalty)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/payments/{order_id}").get(get_payment).default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/menu/items")
                    .get(list_menu)
                    .post(publish_menu_item)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/analytics/stores/{store_id}/minutes")
                    .get(store_minutes)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/admin/projections").get(admin_projections).default_service(web::to(method_not_allowed)),
            )
            .default_service(web::to(not_found));
    }
}

// ---- errors ----------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String, field: Option<String> },
    #[error("{message}")]
    Unprocessable { message: String, field: Option<String> },
    #[error("{message}")]
    NotFound { message: String, field: Option<String> },
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("{message}")]
    Conflict { message: String, field: Option<String> },
    #[error("{0}")]
    Unavailable(String),
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    fn bad(message: impl Into<String>, field: &str) -> Self {
        ApiError::BadRequest { message: message.into(), field: Some(field.into()) }
    }
    fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. }
            | ApiError::Unprocessable { field, .. }
            | ApiError::NotFound { field, .. }
            | ApiError::Conflict { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Unavailable(detail) = self {
            // The detail goes to the log, not to the client.
            tracing::warn!(detail, "answering 503");
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            return response.json(json!({ "error": "service temporarily unavailable, retry later", "field": null }));
        }
        response.json(json!({ "error": self.to_string(), "field": self.field() }))
    }
}

impl From<CafeError> for ApiError {
    fn from(e: CafeError) -> Self {
        match e {
            CafeError::NotFound { message, field } => ApiError::NotFound { message, field },
            CafeError::Rejected { message, field } if field.as_deref() == Some("Idempotency-Key") => {
                ApiError::Conflict { message, field }
            }
            CafeError::Rejected { message, field } => ApiError::Unprocessable { message, field },
            CafeError::Busy(m) => ApiError::Unavailable(m),
            CafeError::Unavailable(cause) => ApiError::Unavailable(cause.to_string()),
        }
    }
}

impl From<projections::SinkError> for ApiError {
    fn from(e: projections::SinkError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound { message: format!("no route for {} {}", req.method(), req.path()), field: None }
        .error_response()
}

async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

/// Reads a JSON body up to the limit and decodes it, naming the field that is wrong.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        if len > limit {
            return Err(ApiError::TooLarge(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest { message: format!("cannot read body: {e}"), field: None })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let mut de = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("malformed JSON: {inner}")
            }
            _ => inner.to_string(),
        };
        let field = missing_field(&message)
            .map(|f| if path == "." { f.clone() } else { format!("{path}.{f}") })
            .or_else(|| (path != ".").then_some(path));
        ApiError::BadRequest { message, field }
    })
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

fn parse_uuid(raw: &str, field: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::bad(format!("{field} must be a UUID"), field))
}

fn admit(state: &ApiState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    state.admission.try_acquire().map_err(|_| ApiError::Unavailable("too many commands in flight".into()))
}

// ---- bodies ----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceOrderBody {
    customer_id: String,
    store_id: String,
    items: Vec<ItemBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    item_id: String,
    quantity: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestockBody {
    store_id: String,
    sku: String,
    quantity: i64,
}

#[derive(Deserialize)]
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NutritionBody {
    #[serde(default)]
    calories: u32,
    #[serde(default)]
    caffeine_mg: u32,
    #[serde(default)]
    sugar_g: u32,
}

#[derive(Serialize)]
struct OrderJson {
    order_id: Uuid,
    customer_id: String,
    store_id: String,
    status: String,
    total_cents: i64,
    total_amount: String,
    cancel_reason: Option<String>,
    created_at: String,
    lines: Vec<OrderLine>,
}

fn amount(cents: i64) -> String {
    format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
}

fn timestamp(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
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

fn stock_json(s: &Stock) -> serde_json::Value {
    json!({
        "store_id": s.store_id,
        "sku": s.sku,
        "available": s.available,
        "reserved": s.reservations.values().map(|q| u64::from(*q)).sum::<u64>(),
    })
}

// ---- handlers --------------------------------------------------------------------------------

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.journal.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Ok(Err(e)) => Err(ApiError::Unavailable(e.to_string())),
        Err(_) => Err(ApiError::Unavailable("journal did not answer within 2s".into())),
    }
}

async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

/// Orders placed with the same key by the same customer are one order.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x5c1f_0c0a_fe00_4d1e_9a11_0000_0000_0001);

async fn place_order(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let _permit = admit(&state)?;
    let body: PlaceOrderBody = json_body(&req, payload, state.body_limit).await?;
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

async fn get_order(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let order_id = parse_uuid(&path, "order_id")?;
    if let Some(view) = state.storefront.order(order_id).await? {
        return Ok(HttpResponse::Ok().json(OrderJson::from(view)));
    }
    // Not projected yet: the order's own actor is authoritative (read-your-writes after a 201).
    match state.cafe.order(order_id).await? {
        Some(order) => Ok(HttpResponse::Ok().json(OrderJson::from(order))),
        None => Err(ApiError::NotFound { message: format!("order {order_id} does not exist"), field: None }),
    }
}

#[derive(Deserialize)]
struct Page {
    limit: Option<usize>,
}

async fn customer_orders(
    path: web::Path<String>,
    query: Result<web::Query<Page>, actix_web::Error>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.map_err(|_| ApiError::bad("limit must be a number from 1 to 500", "limit"))?.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad("limit must be a number from 1 to 500", "limit"));
    }
    let orders = state.storefront.customer_orders(&path, limit).await?;
    Ok(HttpResponse::Ok().json(json!({
        "customer_id": path.into_inner(),
        "orders": orders.into_iter().map(OrderJson::from).collect::<Vec<_>>(),
    })))
}

async fn get_stock(path: web::Path<(String, String)>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let (store_id, sku) = path.into_inner();
    if state.cafe.menu_item(&sku).await?.is_none() {
        return Err(ApiError::NotFound {
            message: format!("SKU `{sku}` is not on the menu"),
            field: Some("sku".into()),
        });
    }
    let stock = state.cafe.stock(&store_id, &sku).await?;
    Ok(HttpResponse::Ok().json(stock_json(&stock)))
}

async fn restock(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let _permit = admit(&state)?;
    let body: RestockBody = json_body(&req, payload, state.body_limit).await?;
    let stock = state.cafe.restock(&body.store_id, &body.sku, body.quantity, Causation::new_root()).await?;
    Ok(HttpResponse::Ok().json(stock_json(&stock)))
}

/// The loyalty read model (through the cache when there is one); a customer it does not know yet is
/// answered by their account's actor, so a fresh account reads as zero points rather than 404.
async fn get_loyalty(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let customer = path.into_inner();
    let load = || state.storefront.loyalty(&customer);
    let projected = match &state.cache {
        Some(cache) => {
            cache.get_or_load(&projections::read_models::cache::CacheKey::Loyalty(customer.clone()), load).await?
        }
        None => load().await?,
    };
    let (points, tier) = match projected {
        Some(balance) => (balance.points.max(0) as u64, balance.tier),
        None => {
            let account = state.cafe.loyalty_account(&customer).await?;
            (account.points, account.tier.as_str().to_owned())
        }
    };
    Ok(HttpResponse::Ok().json(json!({ "customer_id": customer, "points": points, "tier": tier })))
}

async fn get_payment(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let order_id = parse_uuid(&path, "order_id")?;
    let payment = state
        .cafe
        .payment(order_id)
        .await?
        .ok_or_else(|| ApiError::NotFound { message: format!("no payment for order {order_id}"), field: None })?;
    Ok(HttpResponse::Ok().json(json!({
        "order_id": order_id,
        "status": format!("{:?}", payment.status).to_lowercase(),
        "amount_cents": payment.amount_cents,
        "fraud_score": payment.fraud_score,
    })))
}

async fn list_menu(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let load = || state.storefront.menu();
    let items = match &state.cache {
        Some(cache) => cache.get_or_load(&projections::read_models::cache::CacheKey::MenuItems, load).await?,
        None => load().await?,
    };
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

async fn publish_menu_item(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let _permit = admit(&state)?;
    let body: MenuItemBody = json_body(&req, payload, state.body_limit).await?;
    let command = MenuCommand::Publish {
        item_id: body.item_id,
        name: body.name,
        category: body.category,
        price_cents: body.price_cents,
        nutrition: events::domain::Nutrition {
            calories: body.nutrition.calories,
            caffeine_mg: body.nutrition.caffeine_mg,
            sugar_g: body.nutrition.sugar_g,
        },
        image_sha256: body.image_sha256,
    };
    let done = state.cafe.publish_menu_item(command, Causation::new_root()).await?;
    let item = done.state;
    Ok(HttpResponse::Created().insert_header((header::LOCATION, "/api/menu/items")).json(json!({
        "item_id": item.item_id,
        "name": item.name,
        "category": item.category,
        "price_cents": item.price_cents,
        "retired": item.retired,
        "nutrition": item.nutrition,
        "image_sha256": item.image_sha256,
    })))
}

#[derive(Deserialize)]
struct MinuteRange {
    from: Option<String>,
    to: Option<String>,
}

fn parse_time(raw: &str, field: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_micros())
        .map_err(|_| ApiError::bad(format!("{field} must be an RFC 3339 time, e.g. 2026-11-21T08:00:00Z"), field))
}

/// 1-minute windows of one store from the analytics model; `from`/`to` default to the last hour.
async fn store_minutes(
    path: web::Path<String>,
    query: Result<web::Query<MinuteRange>, actix_web::Error>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|_| ApiError::bad("from and to must be RFC 3339 times", "from"))?;
    let analytics = state.analytics.as_ref().ok_or_else(|| ApiError::NotFound {
        message: "this node has no analytics store (start it with --analytics-url or a PostgreSQL journal)".into(),
        field: None,
    })?;
    let to = match &query.to {
        Some(t) => parse_time(t, "to")?,
        None => events::envelope::now_us(),
    };
    let from = match &query.from {
        Some(f) => parse_time(f, "from")?,
        None => to - 3_600_000_000,
    };
    if from >= to {
        return Err(ApiError::bad("from must be before to", "from"));
    }
    if to - from > 31 * 24 * 3_600_000_000 {
        return Err(ApiError::bad("a range may span at most 31 days", "to"));
    }
    let minutes = analytics.store_minutes(&path, from, to).await?;
    let windows: Vec<serde_json::Value> = minutes
        .iter()
        .map(|m| {
            json!({
                "minute": timestamp(m.minute_us),
                "order_count": m.order_count,
                "revenue_cents": m.revenue_cents,
                "unique_customers": m.unique_customers,
                "avg_order_value_cents": m.avg_order_value_cents,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(
        json!({ "store_id": path.into_inner(), "from": timestamp(from), "to": timestamp(to), "minutes": windows }),
    ))
}

/// Each projection's position and how far it trails the journal.
async fn admin_projections(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::new();
    for p in &state.projections {
        let lag = crate::node::projection_lag(state.journal.as_ref(), p.as_ref())
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        out.push(lag);
    }
    let head = state.journal.head_position().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    for (name, lag) in &state.stream_fed {
        out.push(crate::node::ProjectionLag::fed_from_kinesis(name, head, lag.as_ref()));
    }
    Ok(HttpResponse::Ok().json(json!({ "projections": out })))
}
