//! What a flood drives: the actors of a node started inside the command ([`ActorTarget`]), or
//! running nodes over HTTP ([`HttpTarget`]), behind one [`Target`] trait so that every scenario runs
//! on both. A target executes [`Operation`]s and says, for each command, what the system
//! acknowledged (an [`Acknowledgement`] for the ack ledger), or why it failed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::cafe::{Cafe, CafeError, PlaceOrder};
use actors::domain::menu::MenuCommand;
use async_trait::async_trait;
use events::domain::{streams, Nutrition};
use events::follow::Stalls;
use events::Causation;
use projections::read_models::analytics::AnalyticsSink;
use projections::read_models::storefront::StorefrontQueries;
use projections::Sink;
use serde::Deserialize;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::load::{HttpConnection, HttpResponse};
use crate::node::{projection_lag, Node};
use crate::verify::Acknowledgement;

/// A menu item as a flood publishes it.
#[derive(Clone, Debug)]
pub struct MenuItemSpec {
    pub item_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: i64,
    pub nutrition: Nutrition,
    /// Hex SHA-256 of the item's image bytes.
    pub image_sha256: String,
}

/// One thing a flood asks of the system.
#[derive(Clone, Debug)]
pub enum Operation {
    OpenStore {
        store_id: String,
        name: String,
    },
    PublishItem(MenuItemSpec),
    ChangePrice {
        item_id: String,
        price_cents: i64,
    },
    RetireItem {
        item_id: String,
    },
    Restock {
        store_id: String,
        sku: String,
        quantity: i64,
    },
    /// A client-chosen order id (sent over HTTP as the `Idempotency-Key` that derives it).
    PlaceOrder {
        order_id: Uuid,
        customer_id: String,
        store_id: String,
        items: Vec<(String, i64)>,
    },
    /// A read: the customer's loyalty account (through its actor).
    LoyaltyBalance {
        customer_id: String,
    },
    /// A read: the customer's order history (a read model).
    CustomerOrders {
        customer_id: String,
    },
    /// A read: a store's one-minute analytics windows (the analytics model).
    StoreMinutes {
        store_id: String,
    },
}

impl Operation {
    /// The operation's name in reports: a bounded set.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::OpenStore { .. } => "open_store",
            Operation::PublishItem(_) => "publish_item",
            Operation::ChangePrice { .. } => "change_price",
            Operation::RetireItem { .. } => "retire_item",
            Operation::Restock { .. } => "restock",
            Operation::PlaceOrder { .. } => "place_order",
            Operation::LoyaltyBalance { .. } => "loyalty_balance",
            Operation::CustomerOrders { .. } => "customer_orders",
            Operation::StoreMinutes { .. } => "store_minutes",
        }
    }

    /// The stream and event an acknowledged command leaves, for the ack ledger; `None` for a read.
    fn written(&self, target: &dyn Target) -> Option<(String, &'static str)> {
        Some(match self {
            Operation::OpenStore { store_id, .. } => (streams::store(store_id), "StoreOpened"),
            Operation::PublishItem(item) => (streams::menu_item(&item.item_id), "MenuItemPublished"),
            Operation::ChangePrice { item_id, .. } => (streams::menu_item(item_id), "MenuItemPriceChanged"),
            Operation::RetireItem { item_id } => (streams::menu_item(item_id), "MenuItemRetired"),
            Operation::Restock { store_id, sku, .. } => (streams::inventory(store_id, sku), "StockRestocked"),
            Operation::PlaceOrder { order_id, customer_id, .. } => {
                (streams::order(target.order_id(customer_id, *order_id)), "OrderPlaced")
            }
            _ => return None,
        })
    }

    /// The acknowledgement of this command, answered or not, under `correlation_id` when known.
    ///
    /// Without a correlation id, only a command that can happen once per stream is checkable
    /// (an order, a store's opening, an item's publication or retirement): a restock or a price
    /// change with an unknown correlation id is left out of the ledger.
    pub fn acknowledgement(
        &self,
        target: &dyn Target,
        correlation_id: Option<Uuid>,
        answered: bool,
    ) -> Option<Acknowledgement> {
        let (stream_id, event_type) = self.written(target)?;
        let once_per_stream = !matches!(self, Operation::Restock { .. } | Operation::ChangePrice { .. });
        if correlation_id.is_none() && !once_per_stream {
            return None;
        }
        Some(Acknowledgement { stream_id, event_type: event_type.to_owned(), correlation_id, answered })
    }
}

/// Why an operation failed: a short, stable kind for the report, and whether the command may have
/// been applied all the same (no answer, a timeout, a 503 after the command was admitted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: String,
    pub maybe_applied: bool,
}

impl Failure {
    fn refused(kind: impl Into<String>) -> Self {
        Failure { kind: kind.into(), maybe_applied: false }
    }
    fn unknown(kind: impl Into<String>) -> Self {
        Failure { kind: kind.into(), maybe_applied: true }
    }
}

/// What a flood learns from an answered operation.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// The correlation id of the events a command wrote, when the target says it.
    pub correlation_id: Option<Uuid>,
    /// For an order: its status when the command answered (`placed`, ...).
    pub status: Option<String>,
}

/// How far one projection trails the journal.
#[derive(Clone, Debug, Deserialize)]
pub struct Lag {
    pub name: String,
    /// The journal's head when the lag was read.
    pub head: u64,
    pub events_behind: u64,
    pub seconds_behind: f64,
}

/// One menu item as a node serves it (read straight from `GET /api/menu/items`; other fields ignored).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServedItem {
    pub item_id: String,
    pub price_cents: i64,
    pub retired: bool,
    pub image_sha256: String,
}

/// Where a flood's operations go.
#[async_trait]
pub trait Target: Send + Sync {
    /// `actors` or `http`.
    fn driver(&self) -> &'static str;
    /// What is driven: the journal, or the URLs.
    fn describe(&self) -> Vec<String>;
    async fn execute(&self, operation: &Operation) -> Result<Answer, Failure>;
    /// The id under which the system keeps the order a flood placed as `order_id` for `customer_id`.
    fn order_id(&self, _customer_id: &str, order_id: Uuid) -> Uuid {
        order_id
    }
    /// Every projection's lag, as the node (or the first node that answers) reports it.
    async fn projection_lag(&self) -> Result<Vec<Lag>, String>;
    /// Requests the driver sent twice because the connection closed under the first try.
    fn resent_requests(&self) -> u64 {
        0
    }
    /// The menu as each node serves it (one entry per node).
    async fn served_menus(&self) -> Result<Vec<(String, Vec<ServedItem>)>, String>;
    /// The actors' activations as the nodes' own metrics count them (`actor_activation_seconds`).
    async fn activation_seconds(&self) -> Result<Activations, String>;
    /// Passivates every actor nobody is waiting on (a cold start for what comes next); how many.
    async fn passivate_actors(&self) -> Result<usize, String>;
}

/// Activations of actors, summed over nodes, from the Prometheus text of `actor_activation_seconds`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Activations {
    pub count: u64,
    /// Seconds, summed.
    pub sum: f64,
    /// `(quantile, seconds)` as the first node's summary reports them (its recent window).
    pub quantiles: Vec<(f64, f64)>,
}

impl Activations {
    /// Reads `actor_activation_seconds` out of a Prometheus text exposition and adds it to `self`.
    pub fn add_prometheus(&mut self, text: &str) {
        let first = self.quantiles.is_empty();
        for line in text.lines().filter(|l| l.starts_with("actor_activation_seconds")) {
            let Some((name, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            if name == "actor_activation_seconds_count" {
                self.count += value as u64;
            } else if name == "actor_activation_seconds_sum" {
                self.sum += value;
            } else if let Some(q) = name.strip_prefix("actor_activation_seconds{quantile=\"") {
                if let (true, Ok(q)) = (first, q.trim_end_matches("\"}").parse::<f64>()) {
                    self.quantiles.push((q, value));
                }
            }
        }
    }
}

fn cafe_failure(e: &CafeError) -> Failure {
    match e {
        CafeError::Rejected { .. } | CafeError::Conflict { .. } => Failure::refused("rejected"),
        CafeError::NotFound { .. } => Failure::refused("not found"),
        CafeError::Busy(_) => Failure::refused("busy"),
        // The journal did not answer in time: the append may still commit.
        CafeError::Unavailable(_) => Failure::unknown("unavailable"),
    }
}

/// The actors of a node in this process, and its read models.
pub struct ActorTarget {
    pub cafe: Arc<Cafe>,
    pub storefront: Arc<dyn StorefrontQueries>,
    pub analytics: Option<Arc<AnalyticsSink>>,
    /// The projections the node runs (for their lag) and its stalls.
    pub projections: Vec<Arc<dyn Sink>>,
    pub stalls: Stalls,
    /// What the reports call the journal.
    pub journal_name: String,
    /// This process's metrics, when a recorder is installed (the actors' activation figures).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl ActorTarget {
    pub fn of_node(
        node: &Node,
        journal_name: String,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Self {
        ActorTarget {
            cafe: node.cafe.clone(),
            storefront: node.storefront.clone(),
            analytics: node.analytics.clone(),
            projections: node.projections.clone(),
            stalls: node.stalls.clone(),
            journal_name,
            metrics,
        }
    }
}

#[async_trait]
impl Target for ActorTarget {
    fn driver(&self) -> &'static str {
        "actors"
    }

    fn describe(&self) -> Vec<String> {
        vec![self.journal_name.clone()]
    }

    async fn execute(&self, operation: &Operation) -> Result<Answer, Failure> {
        let cafe = &self.cafe;
        let causation = Causation::new_root();
        let correlated = Answer { correlation_id: Some(causation.correlation_id), status: None };
        let result = match operation {
            Operation::OpenStore { store_id, name } => {
                cafe.open_store(store_id, name, causation).await.map(|e| !e.events.is_empty())
            }
            Operation::PublishItem(item) => {
                let command = MenuCommand::Publish {
                    item_id: item.item_id.clone(),
                    name: item.name.clone(),
                    category: item.category.clone(),
                    price_cents: item.price_cents,
                    nutrition: item.nutrition,
                    image_sha256: item.image_sha256.clone(),
                };
                cafe.publish_menu_item(command, causation).await.map(|e| !e.events.is_empty())
            }
            Operation::ChangePrice { item_id, price_cents } => {
                cafe.change_menu_price(item_id, *price_cents, causation).await.map(|e| !e.events.is_empty())
            }
            Operation::RetireItem { item_id } => {
                cafe.retire_menu_item(item_id, causation).await.map(|e| !e.events.is_empty())
            }
            Operation::Restock { store_id, sku, quantity } => {
                cafe.restock(store_id, sku, *quantity, causation).await.map(|_| true)
            }
            Operation::PlaceOrder { order_id, customer_id, store_id, items } => {
                let request = PlaceOrder {
                    order_id: *order_id,
                    customer_id: customer_id.clone(),
                    store_id: store_id.clone(),
                    items: items.clone(),
                    placed_at_us: events::envelope::now_us(),
                    fresh_order_id: false,
                };
                return match cafe.place_order(request, causation).await {
                    Ok(placed) => {
                        let status = Some(placed.state.status.as_str().to_owned());
                        let correlation_id = (!placed.events.is_empty()).then_some(causation.correlation_id);
                        Ok(Answer { status, correlation_id })
                    }
                    Err(e) => Err(cafe_failure(&e)),
                };
            }
            Operation::LoyaltyBalance { customer_id } => cafe.loyalty_account(customer_id).await.map(|_| false),
            Operation::CustomerOrders { customer_id } => {
                return match self.storefront.customer_orders(customer_id, 50).await {
                    Ok(_) => Ok(Answer::default()),
                    Err(e) if e.is_poison() => Err(Failure::refused("read model refused")),
                    Err(_) => Err(Failure::refused("read model unavailable")),
                };
            }
            Operation::StoreMinutes { store_id } => {
                let Some(analytics) = &self.analytics else {
                    return Err(Failure::refused("no analytics model"));
                };
                let now = events::envelope::now_us();
                return match analytics.store_minutes(store_id, now - 3_600_000_000, now).await {
                    Ok(_) => Ok(Answer::default()),
                    Err(_) => Err(Failure::refused("analytics unavailable")),
                };
            }
        };
        match result {
            Ok(true) => Ok(correlated),
            Ok(false) => Ok(Answer::default()),
            Err(e) => Err(cafe_failure(&e)),
        }
    }

    async fn projection_lag(&self) -> Result<Vec<Lag>, String> {
        let mut lags = Vec::new();
        for sink in &self.projections {
            let lag = projection_lag(self.cafe.journal.as_ref(), sink.as_ref(), &self.stalls)
                .await
                .map_err(|e| events::ErrorChain(&e).to_string())?;
            lags.push(Lag {
                name: lag.name,
                head: lag.head,
                events_behind: lag.events_behind,
                seconds_behind: lag.seconds_behind,
            });
        }
        Ok(lags)
    }

    async fn served_menus(&self) -> Result<Vec<(String, Vec<ServedItem>)>, String> {
        let menu = self.storefront.menu().await.map_err(|e| events::ErrorChain(&e).to_string())?;
        let items = menu
            .into_iter()
            .map(|i| ServedItem {
                item_id: i.item_id,
                price_cents: i.price_cents,
                retired: i.retired,
                image_sha256: i.image_sha256,
            })
            .collect();
        Ok(vec![(self.journal_name.clone(), items)])
    }

    async fn passivate_actors(&self) -> Result<usize, String> {
        Ok(self.cafe.passivate_unused())
    }

    async fn activation_seconds(&self) -> Result<Activations, String> {
        let handle = self.metrics.as_ref().ok_or("no metrics recorder in this process")?;
        let mut figures = Activations::default();
        figures.add_prometheus(&handle.render());
        Ok(figures)
    }
}

/// Keep-alive connections to one node, reused across requests.
struct NodeConnections {
    url: String,
    addr: SocketAddr,
    idle: Mutex<Vec<HttpConnection>>,
}

/// Running nodes over HTTP: several URLs (requests go round-robin) or one load balancer.
pub struct HttpTarget {
    nodes: Vec<NodeConnections>,
    next: AtomicUsize,
    /// Connections open at once across all nodes: a client's limit, like a browser's or k6's VUs.
    connections: Semaphore,
    /// A bearer token for the routes that need one (`/admin/*`).
    token: Option<String>,
    /// Requests sent a second time, on a new connection, because the kept-alive one they went out
    /// on had been closed under them (see [`HttpTarget::send`]).
    resent: AtomicU64,
}

/// A target URL that cannot be driven.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target `{0}`: only http://host:port URLs are supported (put TLS in a load balancer in front)")]
    Scheme(String),
    #[error("target `{url}` does not resolve")]
    Resolve {
        url: String,
        #[source]
        cause: std::io::Error,
    },
}

/// The events' wire form of the flood's JSON bodies.
fn body_of(operation: &Operation) -> Option<serde_json::Value> {
    use serde_json::json;
    Some(match operation {
        Operation::OpenStore { store_id, name } => json!({ "store_id": store_id, "name": name }),
        Operation::PublishItem(i) => json!({
            "item_id": i.item_id, "name": i.name, "category": i.category, "price_cents": i.price_cents,
            "nutrition": { "calories": i.nutrition.calories, "caffeine_mg": i.nutrition.caffeine_mg,
                           "sugar_g": i.nutrition.sugar_g },
            "image_sha256": i.image_sha256,
        }),
        Operation::ChangePrice { price_cents, .. } => json!({ "price_cents": price_cents }),
        Operation::RetireItem { .. } => json!({}),
        Operation::Restock { store_id, sku, quantity } => {
            json!({ "store_id": store_id, "sku": sku, "quantity": quantity })
        }
        Operation::PlaceOrder { customer_id, store_id, items, .. } => json!({
            "customer_id": customer_id, "store_id": store_id,
            "items": items.iter().map(|(item_id, quantity)| json!({ "item_id": item_id, "quantity": quantity }))
                .collect::<Vec<_>>(),
        }),
        _ => return None,
    })
}

/// The idempotency key under which the flood sends order `order_id` (a node derives the order's own
/// id from it: [`crate::http::order_id_for_key`]).
pub fn idempotency_key(order_id: Uuid) -> String {
    format!("flood-{order_id}")
}

fn status_kind(status: u16) -> String {
    let reason = match status {
        400 => "bad request",
        401 => "unauthorized",
        404 => "not found",
        408 => "request timeout",
        409 => "conflict",
        413 => "too large",
        422 => "rejected",
        429 => "too many requests",
        500 => "internal",
        503 => "unavailable",
        _ => "",
    };
    if reason.is_empty() {
        status.to_string()
    } else {
        format!("{status} {reason}")
    }
}

impl HttpTarget {
    /// Resolves every URL (`http://host:port`, a path after it is ignored).
    pub async fn connect(urls: &[String], max_connections: usize, token: Option<String>) -> Result<Self, TargetError> {
        let mut nodes = Vec::new();
        for url in urls {
            let rest = url.strip_prefix("http://").ok_or_else(|| TargetError::Scheme(url.clone()))?;
            let authority = rest.split('/').next().unwrap_or_default();
            let addr = tokio::net::lookup_host(authority)
                .await
                .and_then(|mut a| a.next().ok_or_else(|| std::io::Error::other("no address")))
                .map_err(|cause| TargetError::Resolve { url: url.clone(), cause })?;
            nodes.push(NodeConnections {
                url: url.trim_end_matches('/').to_owned(),
                addr,
                idle: Mutex::new(Vec::new()),
            });
        }
        Ok(HttpTarget {
            nodes,
            next: AtomicUsize::new(0),
            connections: Semaphore::new(max_connections.max(1)),
            token,
            resent: AtomicU64::new(0),
        })
    }

    /// One request to one node, on a pooled connection (returned to the pool only after a whole answer).
    ///
    /// A kept-alive connection can be closed by the server or a balancer just as a request goes out
    /// on it; the request then fails before any byte of an answer. As browsers and HTTP libraries
    /// do (RFC 9112 §9.3.1), a `repeatable` request (a GET, or a command carrying an idempotency
    /// key, which a node answers once however often it arrives) is sent once more on a new
    /// connection, and counted. Any other failure, and any failure on a new connection, is the
    /// request's own.
    async fn send(
        &self,
        node: &NodeConnections,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        repeatable: bool,
    ) -> std::io::Result<HttpResponse> {
        let _slot = self.connections.acquire().await.map_err(std::io::Error::other)?;
        let pooled = node.idle.lock().expect("pool").pop();
        let mut connection = pooled.unwrap_or_else(|| HttpConnection::new(node.addr));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        if let Some(b) = &bearer {
            all.push(("Authorization", b));
        }
        let response = match connection.request(method, path, &all, body).await {
            Err(_) if repeatable && connection.last_failed_on_stale_connection() => {
                self.resent.fetch_add(1, Ordering::Relaxed);
                connection.request(method, path, &all, body).await?
            }
            answer => answer?,
        };
        node.idle.lock().expect("pool").push(connection);
        Ok(response)
    }

    fn pick(&self) -> &NodeConnections {
        &self.nodes[self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len()]
    }
}

#[async_trait]
impl Target for HttpTarget {
    fn driver(&self) -> &'static str {
        "http"
    }

    fn describe(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// The node derives the order's id from the customer and the idempotency key.
    fn order_id(&self, customer_id: &str, order_id: Uuid) -> Uuid {
        crate::http::order_id_for_key(customer_id, &idempotency_key(order_id))
    }

    async fn execute(&self, operation: &Operation) -> Result<Answer, Failure> {
        let (method, path) = match operation {
            Operation::OpenStore { .. } => ("POST", "/admin/stores".to_owned()),
            Operation::PublishItem(_) => ("POST", "/api/menu/items".to_owned()),
            Operation::ChangePrice { item_id, .. } => ("POST", format!("/api/menu/items/{item_id}/price")),
            Operation::RetireItem { item_id } => ("POST", format!("/api/menu/items/{item_id}/retire")),
            Operation::Restock { .. } => ("POST", "/api/inventory/restock".to_owned()),
            Operation::PlaceOrder { .. } => ("POST", "/api/orders".to_owned()),
            Operation::LoyaltyBalance { customer_id } => ("GET", format!("/api/loyalty/{customer_id}")),
            Operation::CustomerOrders { customer_id } => ("GET", format!("/api/customers/{customer_id}/orders")),
            Operation::StoreMinutes { store_id } => ("GET", format!("/api/analytics/stores/{store_id}/minutes")),
        };
        let body = body_of(operation).map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let key = match operation {
            Operation::PlaceOrder { order_id, .. } => Some(idempotency_key(*order_id)),
            _ => None,
        };
        let headers: Vec<(&str, &str)> = key.iter().map(|k| ("Idempotency-Key", k.as_str())).collect();
        let repeatable = method == "GET" || key.is_some();
        let sent = self.send(self.pick(), method, &path, &headers, &body, repeatable).await;
        let response = sent.map_err(|e| match e.kind() {
            // Refused before anything was sent: nothing reached the node.
            std::io::ErrorKind::ConnectionRefused => Failure::refused("connection refused"),
            // What broke, as the OS or the client put it (a reset, an early end of the stream, an
            // answer that does not parse): the kinds tell apart what a report would otherwise lump.
            _ => Failure::unknown(format!("connection: {e}")),
        })?;
        match response.status {
            200..=299 => Ok(Answer {
                correlation_id: response.header("x-correlation-id").and_then(|c| c.parse().ok()),
                status: response.json().get("status").and_then(|s| s.as_str()).map(str::to_owned),
            }),
            // 503 means "unavailable, retry": a command admitted before it may still commit.
            status @ (500 | 503) => Err(Failure::unknown(status_kind(status))),
            status => Err(Failure::refused(status_kind(status))),
        }
    }

    fn resent_requests(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    async fn projection_lag(&self) -> Result<Vec<Lag>, String> {
        #[derive(Deserialize)]
        struct Projections {
            projections: Vec<Lag>,
        }
        let mut failures = Vec::new();
        for node in &self.nodes {
            match self.send(node, "GET", "/admin/projections", &[], b"", true).await {
                Ok(r) if r.status == 200 => {
                    return serde_json::from_slice::<Projections>(&r.body)
                        .map(|p| p.projections)
                        .map_err(|e| format!("{}: {e}", node.url));
                }
                Ok(r) => failures.push(format!("{}: {}", node.url, r.status)),
                Err(e) => failures.push(format!("{}: {e}", node.url)),
            }
        }
        Err(failures.join("; "))
    }

    async fn served_menus(&self) -> Result<Vec<(String, Vec<ServedItem>)>, String> {
        #[derive(Deserialize)]
        struct Menu {
            items: Vec<ServedItem>,
        }
        let mut menus = Vec::new();
        for node in &self.nodes {
            let r = self
                .send(node, "GET", "/api/menu/items", &[], b"", true)
                .await
                .map_err(|e| format!("{}: {e}", node.url))?;
            if r.status != 200 {
                return Err(format!("{}: GET /api/menu/items answered {}", node.url, r.status));
            }
            let items = serde_json::from_slice::<Menu>(&r.body).map_err(|e| format!("{}: {e}", node.url))?.items;
            menus.push((node.url.clone(), items));
        }
        Ok(menus)
    }

    /// Running nodes passivate by their idle timeout only (`serve --idle-timeout-secs`).
    async fn passivate_actors(&self) -> Result<usize, String> {
        Err("running nodes passivate their actors by their idle timeout only".into())
    }

    async fn activation_seconds(&self) -> Result<Activations, String> {
        let mut figures = Activations::default();
        for node in &self.nodes {
            let r =
                self.send(node, "GET", "/metrics", &[], b"", true).await.map_err(|e| format!("{}: {e}", node.url))?;
            figures.add_prometheus(&String::from_utf8_lossy(&r.body));
        }
        Ok(figures)
    }
}

/// How long a flood waits for one operation before counting it as a timeout.
pub const fn operation_timeout(command_timeout: Duration) -> Duration {
    Duration::from_millis(command_timeout.as_millis() as u64 + 2_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers one request per connection and then closes it without saying so
    /// (no `Connection: close`): the next request on the kept-alive connection meets a closed one.
    async fn closing_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"points":0}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    // Dropped: closed under the client's pooled connection.
                });
            }
        });
        (url, requests)
    }

    #[tokio::test]
    async fn a_repeatable_request_on_a_connection_closed_under_it_goes_again_on_a_new_one() {
        let (url, requests) = closing_server().await;
        let target = HttpTarget::connect(&[url], 1, None).await.unwrap();
        let read = Operation::LoyaltyBalance { customer_id: "c-1".into() };
        target.execute(&read).await.expect("first read");
        // Give the server's close time to arrive, as it had in the floods that met it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        target.execute(&read).await.expect("the read went again on a new connection");
        assert_eq!(target.resent_requests(), 1);
        assert_eq!(requests.load(Ordering::SeqCst), 2, "the closed connection's try never reached the server");
    }

    #[tokio::test]
    async fn a_command_without_an_idempotency_key_is_not_sent_twice() {
        let (url, requests) = closing_server().await;
        let target = HttpTarget::connect(&[url], 1, None).await.unwrap();
        let restock = Operation::Restock { store_id: "s-1".into(), sku: "latte".into(), quantity: 5 };
        target.execute(&restock).await.expect("first restock");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let failure = target.execute(&restock).await.expect_err("a restock cannot be known to be safe to repeat");
        assert_eq!(failure.kind, "connection: connection closed");
        assert!(failure.maybe_applied, "a request lost with its connection may have been applied");
        assert_eq!(target.resent_requests(), 0);
        assert_eq!(requests.load(Ordering::SeqCst), 1);
    }
}
