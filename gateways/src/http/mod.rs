//! The REST API (actix-web), as the ALB routes it: `/api/orders/*`, `/api/customers/*`,
//! `/api/menu/*`, `/api/inventory/*`, `/api/loyalty/*`, `/api/payments/*`, `/api/analytics/*`,
//! `/api/stores/*`, plus `/health`, `/ready`, `/metrics`, `/admin/projections` and `/admin/stores/*`.
//! [`configure`] builds it for `main` and for tests alike.
//!
//! One module per resource holds its handlers and its request and response types; every response
//! is a typed `Serialize` struct. `errors` maps every failure to its status in one place: JSON
//! `{"error": "...", "field": "..."|null}`, 4xx for bad input (nothing is written), 503 with
//! `Retry-After` when the node is saturated or a store does not answer, 500 for a fault inside.
//! `extractors` reads bodies, paths and queries into typed input.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use events::Journal;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::read_models::analytics::AnalyticsSink;
use projections::read_models::cache::ReadCache;
use projections::read_models::storefront::StorefrontQueries;
use tokio::sync::Semaphore;

use crate::node::Node;

mod admin;
mod analytics;
mod errors;
mod extractors;
mod inventory;
mod loyalty;
mod menu;
mod orders;
mod payments;
mod stores;
mod wire;

pub use errors::ApiError;

/// What the handlers share.
pub struct ApiState {
    pub cafe: Arc<actors::cafe::Cafe>,
    pub journal: Arc<dyn Journal>,
    pub storefront: Arc<dyn StorefrontQueries>,
    pub metrics: PrometheusHandle,
    /// Commands in flight on this node (counted once their body has arrived); past it, 503.
    pub admission: Semaphore,
    pub body_limit: usize,
    /// How long a request body may take to arrive before 408.
    pub body_timeout: Duration,
    pub analytics: Option<Arc<AnalyticsSink>>,
    pub cache: Option<Arc<ReadCache>>,
    pub projections: Vec<Arc<dyn projections::Sink>>,
    /// The projections' stalls, while this node runs them.
    pub stalls: events::follow::Stalls,
    /// Read models this node feeds from Kinesis, by name.
    pub stream_fed: Vec<(String, Arc<dyn projections::StreamFedLag>)>,
}

/// The API's limits, as `main` sets them from its flags.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Commands being handled at once (their body read) before new ones get 503.
    pub max_in_flight: usize,
    /// How long a request body may take to arrive, from its head, before 408 and a closed
    /// connection: a client that trickles its body cannot hold a connection for long.
    pub body_timeout: Duration,
    /// How long a connection's first request head may take to arrive before 408 (actix's
    /// `client_request_timeout`).
    pub head_timeout: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            body_limit: 16 * 1024,
            max_in_flight: 4096,
            body_timeout: Duration::from_secs(5),
            head_timeout: Duration::from_secs(5),
        }
    }
}

impl ApiState {
    /// The state for a node: its cafe, read models, cache and projections.
    pub fn new(node: &Node, metrics: PrometheusHandle, settings: &ApiSettings) -> Arc<Self> {
        let mut state = Self::from_parts(node.cafe.clone(), node.storefront.clone(), metrics, settings);
        let s = Arc::get_mut(&mut state).expect("just built");
        s.analytics.clone_from(&node.analytics);
        s.cache.clone_from(&node.cache);
        s.projections.clone_from(&node.projections);
        s.stalls = node.stalls.clone();
        state
    }

    /// The state for a cafe and a storefront alone: no analytics, cache or projections.
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
            body_timeout: settings.body_timeout,
            analytics: None,
            cache: None,
            projections: Vec::new(),
            stalls: events::follow::Stalls::default(),
            stream_fed: Vec::new(),
        })
    }
}

/// Every route of the API on `state`; a path no route matches is 404, a method a path does not
/// serve is 405.
pub fn configure(state: Arc<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    use errors::method_not_allowed;
    move |cfg| {
        cfg.app_data(web::Data::from(state))
            .service(web::resource("/health").get(admin::health).default_service(web::to(method_not_allowed)))
            .service(web::resource("/ready").get(admin::ready).default_service(web::to(method_not_allowed)))
            .service(web::resource("/metrics").get(admin::metrics).default_service(web::to(method_not_allowed)))
            .service(
                web::resource("/api/orders").post(orders::place_order).default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/orders/{order_id}")
                    .get(orders::get_order)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/customers/{customer_id}/orders")
                    .get(orders::customer_orders)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/inventory/stores/{store_id}/items/{sku}")
                    .get(inventory::get_stock)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/inventory/restock")
                    .post(inventory::restock)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/loyalty/{customer_id}")
                    .get(loyalty::get_loyalty)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/payments/{order_id}")
                    .get(payments::get_payment)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/menu/items")
                    .get(menu::list_menu)
                    .post(menu::publish_menu_item)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/analytics/stores/{store_id}/minutes")
                    .get(analytics::store_minutes)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/api/stores/{store_id}")
                    .get(stores::get_store)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/admin/stores").post(stores::open_store).default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/admin/stores/{store_id}/close")
                    .post(stores::close_store)
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/admin/projections")
                    .get(admin::projections)
                    .default_service(web::to(method_not_allowed)),
            )
            .default_service(web::to(errors::no_route));
    }
}
