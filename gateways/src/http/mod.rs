//! The REST API (actix-web), as the ALB routes it: `/api/orders/*`, `/api/customers/*`,
//! `/api/menu/*`, `/api/inventory/*`, `/api/loyalty/*`, `/api/payments/*`, `/api/analytics/*`,
//! `/api/stores/*`, plus `/health`, `/ready`, `/metrics`, `/admin/projections`, `/admin/stores/*`,
//! `/admin/stress/*`, `/admin/dashboard` (the node's own dashboard page, [`dashboard`]) and
//! `/openapi.json` (the OpenAPI 3.1 document of all of them, [`openapi`]). [`configure`] builds
//! it for `main` and for tests alike.
//!
//! One module per resource holds its handlers and its request and response types; every response
//! is a typed `Serialize` struct. `errors` maps every failure to its status in one place: JSON
//! `{"error": "...", "field": "..."|null}`, 4xx for bad input (nothing is written), 503 with
//! `Retry-After` when the node is saturated or a store does not answer, 500 for a fault inside.
//! `extractors` reads bodies, paths and queries into typed input.
//!
//! Every route but the menu's reads, the health checks, `/metrics`, this document and the
//! dashboard's data-less page shell needs a bearer token (`auth`): each route of [`routes`] names
//! its [`auth::Guard`], and [`configure`] wraps every resource in the check, so none can be added
//! without saying what it needs.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::web;
use events::Journal;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::read_models::analytics::AnalyticsSink;
use projections::read_models::cache::ReadCache;
use projections::read_models::storefront::StorefrontQueries;
use tokio::sync::Semaphore;

use crate::cloudwatch::history::History;
use crate::node::Node;

mod admin;
mod analytics;
pub mod auth;
mod customers;
pub mod dashboard;
mod errors;
mod extractors;
mod inventory;
mod loyalty;
mod menu;
pub mod openapi;
mod orders;
mod payments;
mod schema;
mod stores;
pub mod stress;
mod wire;

pub use orders::order_id_for_key;

pub use auth::Guard;
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
    /// The journal-fed read models as rebuildable stores (what `verify` compares with a rebuild).
    pub read_models: Vec<Arc<dyn projections::Rebuildable>>,
    /// The floods started through `/admin/stress`.
    pub stress: stress::StressRuns,
    /// What checks bearer tokens ([`auth`]); `None` leaves every route open. `cloudcafe serve` sets
    /// one unless `--auth off` (loopback only); a state built in process for tests or the embedded
    /// demo (`ApiSettings::default()`) has none, since nothing outside the process can reach it.
    pub auth: Option<Arc<crate::auth::Verifier>>,
    /// The rate limits ([`crate::rate_limit`]); `None`: none.
    pub rate_limiter: Option<Arc<crate::rate_limit::RateLimiter>>,
    /// Whether the client's address is the last `X-Forwarded-For` entry (behind an ALB, which
    /// appends the address it saw) rather than the connection's peer.
    pub trust_forwarded_for: bool,
    /// The node's recent metric samples, which `/admin/dashboard` draws (empty unless a ticker
    /// feeds it: `cloudcafe serve` does, [`History::follow`]).
    pub history: Arc<History>,
}

/// The API's limits, as `main` sets them from its flags.
#[derive(Clone)]
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
    /// What checks bearer tokens (see [`ApiState::auth`]); `None`: open.
    pub auth: Option<Arc<crate::auth::Verifier>>,
    /// See [`ApiState::rate_limiter`].
    pub rate_limiter: Option<Arc<crate::rate_limit::RateLimiter>>,
    /// See [`ApiState::trust_forwarded_for`].
    pub trust_forwarded_for: bool,
    /// The samples the dashboard page draws; the default is an empty history nothing feeds.
    pub history: Arc<History>,
}

/// Every setting; the verifier shows its issuer and keys' origin, never a key.
impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("body_limit", &self.body_limit)
            .field("max_in_flight", &self.max_in_flight)
            .field("body_timeout", &self.body_timeout)
            .field("head_timeout", &self.head_timeout)
            .field("auth", &self.auth)
            .field("rate_limiter", &self.rate_limiter)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("history", &self.history)
            .finish()
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            body_limit: 16 * 1024,
            max_in_flight: 4096,
            body_timeout: Duration::from_secs(5),
            head_timeout: Duration::from_secs(5),
            auth: None,
            rate_limiter: None,
            trust_forwarded_for: false,
            history: Arc::default(),
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
        s.read_models.clone_from(&node.read_models);
        state
    }

    /// The state for a cafe and a storefront alone: no analytics, cache or projections. Every route
    /// is open unless `settings` give a verifier.
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
            read_models: Vec::new(),
            stress: stress::StressRuns::default(),
            auth: settings.auth.clone(),
            rate_limiter: settings.rate_limiter.clone(),
            trust_forwarded_for: settings.trust_forwarded_for,
            history: settings.history.clone(),
        })
    }
}

/// Each method a path serves: what it needs of its caller, and its handler.
type Methods = Vec<(Method, Guard, actix_web::Route)>;

/// Every route of the API: its path, and each method it serves with what the method needs of its
/// caller and its handler. [`configure`] registers exactly these, and the OpenAPI document is
/// checked against exactly these ([`route_table`]), so a route cannot be added without being
/// documented and guarded.
fn routes() -> Vec<(&'static str, Methods)> {
    use Guard::*;
    vec![
        ("/health", vec![(Method::GET, Public, web::to(admin::health))]),
        ("/ready", vec![(Method::GET, Public, web::to(admin::ready))]),
        ("/metrics", vec![(Method::GET, Public, web::to(admin::metrics))]),
        ("/openapi.json", vec![(Method::GET, Public, web::to(openapi::document))]),
        ("/api/orders", vec![(Method::POST, InHandler, web::to(orders::place_order))]),
        ("/api/orders/{order_id}", vec![(Method::GET, InHandler, web::to(orders::get_order))]),
        ("/api/orders/{order_id}/status", vec![(Method::POST, InHandler, web::to(orders::advance_order))]),
        ("/api/orders/{order_id}/cancel", vec![(Method::POST, InHandler, web::to(orders::cancel_order))]),
        (
            "/api/customers/{customer_id}/orders",
            vec![(Method::GET, CustomerInPath("customer_id"), web::to(orders::customer_orders))],
        ),
        (
            "/api/customers/{customer_id}/preferences",
            vec![
                (Method::GET, CustomerInPath("customer_id"), web::to(customers::get_preferences)),
                (Method::PUT, CustomerInPath("customer_id"), web::to(customers::set_preferences)),
            ],
        ),
        (
            "/api/inventory/stores/{store_id}",
            vec![(Method::GET, StoreInPath("store_id"), web::to(inventory::store_stock))],
        ),
        (
            "/api/inventory/stores/{store_id}/items/{sku}",
            vec![(Method::GET, StoreInPath("store_id"), web::to(inventory::get_stock))],
        ),
        ("/api/inventory/restock", vec![(Method::POST, InHandler, web::to(inventory::restock))]),
        (
            "/api/loyalty/{customer_id}",
            vec![(Method::GET, CustomerInPath("customer_id"), web::to(loyalty::get_loyalty))],
        ),
        ("/api/payments/{order_id}", vec![(Method::GET, InHandler, web::to(payments::get_payment))]),
        (
            "/api/menu/items",
            vec![
                (Method::GET, Public, web::to(menu::list_menu)),
                (Method::POST, Admin, web::to(menu::publish_menu_item)),
            ],
        ),
        (
            "/api/menu/items/{item_id}",
            vec![
                (Method::GET, Public, web::to(menu::get_menu_item)),
                (Method::DELETE, Admin, web::to(menu::delete_menu_item)),
            ],
        ),
        (
            "/api/menu/items/{item_id}/price",
            vec![(Method::POST, Admin, web::to(menu::change_price)), (Method::PUT, Admin, web::to(menu::set_price))],
        ),
        ("/api/menu/items/{item_id}/retire", vec![(Method::POST, Admin, web::to(menu::retire))]),
        (
            "/api/analytics/stores/{store_id}/minutes",
            vec![(Method::GET, StoreInPath("store_id"), web::to(analytics::store_minutes))],
        ),
        ("/api/stores/{store_id}", vec![(Method::GET, SignedIn, web::to(stores::get_store))]),
        ("/admin/stores", vec![(Method::POST, Admin, web::to(stores::open_store))]),
        ("/admin/stores/{store_id}/close", vec![(Method::POST, Admin, web::to(stores::close_store))]),
        ("/admin/projections", vec![(Method::GET, Admin, web::to(admin::projections))]),
        (
            "/admin/stress/{id}",
            vec![(Method::POST, Admin, web::to(stress::start)), (Method::GET, Admin, web::to(stress::show))],
        ),
        // A browser navigating to a page cannot send a header: the page is a shell that holds no
        // data, reads the token from its URL's fragment and sends it on its data requests.
        ("/admin/dashboard", vec![(Method::GET, Public, web::to(dashboard::page))]),
        ("/admin/dashboard/data", vec![(Method::GET, Admin, web::to(dashboard::data))]),
    ]
}

/// Every `(path, method)` the API serves with its guard, paths as templates.
pub fn route_guards() -> Vec<(&'static str, Method, Guard)> {
    routes().into_iter().flat_map(|(path, methods)| methods.into_iter().map(move |(m, g, _)| (path, m, g))).collect()
}

/// Every `(path, method)` the API serves, paths as templates (`/api/orders/{order_id}`).
pub fn route_table() -> Vec<(&'static str, Method)> {
    route_guards().into_iter().map(|(path, method, _)| (path, method)).collect()
}

/// Every route of the API on `state`; a path no route matches is 404, a method a path does not
/// serve is 405 with `Allow` naming the methods it does. Every resource is wrapped in
/// [`auth::check`] with its method's guard; a method the path does not serve gets the strictest of
/// its methods' guards before its 405 (so a route's existence is no easier to learn than its data).
pub fn configure(state: Arc<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(state));
        for (path, methods) in routes() {
            let allow = methods.iter().map(|(m, _, _)| m.as_str()).collect::<Vec<_>>().join(", ");
            let guards: Vec<(Method, Guard)> = methods.iter().map(|(m, g, _)| (m.clone(), *g)).collect();
            let mut resource = web::resource(path);
            for (method, _, route) in methods {
                resource = resource.route(route.method(method));
            }
            let not_allowed = move || {
                let allow = allow.clone();
                async move { errors::method_not_allowed(&allow) }
            };
            let resource = resource.default_service(web::to(not_allowed));
            cfg.service(resource.wrap(from_fn(move |req: actix_web::dev::ServiceRequest, next| {
                let guard = guards
                    .iter()
                    .find(|(m, _)| m == req.method())
                    .map(|(_, g)| *g)
                    .unwrap_or_else(|| strictest(guards.iter().map(|(_, g)| *g)));
                auth::check(guard, req, next)
            })));
        }
        cfg.default_service(web::to(errors::no_route));
    }
}

/// The guard that asks the most of a caller among `guards`: an admin, else any verified caller,
/// else none.
fn strictest(guards: impl Iterator<Item = Guard>) -> Guard {
    guards.fold(Guard::Public, |acc, g| match (acc, g) {
        (Guard::Admin, _) | (_, Guard::Admin) => Guard::Admin,
        (Guard::Public, Guard::Public) => Guard::Public,
        _ => Guard::SignedIn,
    })
}
