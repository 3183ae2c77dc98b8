//! The cafe's use cases, as the gateways call them: one registry per aggregate and the lookups that
//! turn a request into a complete command (an order's prices come from the menu, not the client).

use std::sync::Arc;
use std::time::Instant;

use actix::ArbiterHandle;
use events::domain::{streams, Cents, Tier};
use events::{Causation, Journal};
use uuid::Uuid;

use crate::catalogue::ItemForSale;
use crate::domain::customer::{CustomerCommand, CustomerDecider, CustomerProfile, Preferences};
use crate::domain::inventory::{InventoryCommand, InventoryDecider, Stock};
use crate::domain::limits::{self, Invalid};
use crate::domain::loyalty::{LoyaltyAccount, LoyaltyCommand, LoyaltyDecider};
use crate::domain::menu::{MenuCommand, MenuDecider, MenuItem};
use crate::domain::order::{Order, OrderCommand, OrderDecider, Progress, RequestedLine};
use crate::domain::payment::{fraud_score, Payment, PaymentCommand, PaymentDecider};
use crate::domain::store::{Store, StoreCommand, StoreDecider, StoreStatus};
use crate::domain::Rejection;
use crate::freshness::Freshness;
use crate::host::{CommandError, ExecuteOptions, Executed, HostOptions, Registry, Unavailability};

/// How payments are scored.
#[derive(Clone, Copy, Debug)]
pub struct PaymentPolicy {
    /// A fraud score at or above this declines the payment (scores are uniform in `[0, 1)`).
    pub decline_threshold: f64,
    /// SHA-256 rounds per score: the CPU cost of scoring.
    pub fraud_rounds: u32,
    /// Who authorizes a placed order's payment.
    pub authorizer: Authorizer,
}

/// Who authorizes payments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Authorizer {
    /// The order saga, in process, once the stock is reserved (the embedded default).
    #[default]
    Saga,
    /// A payment processor consuming the payment-request queue; the saga only captures.
    PaymentProcessor,
}

impl Default for PaymentPolicy {
    fn default() -> Self {
        PaymentPolicy { decline_threshold: 0.95, fraud_rounds: 1000, authorizer: Authorizer::Saga }
    }
}

/// How long a ready order waits for its customer by default: half an hour.
pub const DEFAULT_PICKUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// A payment to authorize for a placed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizePayment {
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: Cents,
}

/// A failed use case, classified for the caller.
#[derive(Debug, thiserror::Error)]
pub enum CafeError {
    /// The domain refused: nothing was written.
    #[error("{message}")]
    Rejected { message: String, field: Option<String> },
    /// The request names something that does not exist (an unknown menu item, an order never
    /// placed): nothing was written.
    #[error("{message}")]
    NotFound { message: String, field: Option<String> },
    /// The command contradicts the state it met (an order moved out of turn, an id reused for
    /// other contents): nothing was written.
    #[error("{message}")]
    Conflict { message: String, field: Option<String> },
    /// Too much queued, or the stream too contended: retry later.
    #[error("{0}")]
    Busy(String),
    /// The journal did not answer: retry later with the same idempotency key.
    #[error("{0}")]
    Unavailable(#[source] Unavailability),
}

impl CafeError {
    /// A refusal about one field of the request.
    pub fn rejected(message: impl Into<String>, field: impl Into<String>) -> Self {
        CafeError::Rejected { message: message.into(), field: Some(field.into()) }
    }
    /// Something the request names does not exist; `field` is the request field that names it.
    pub fn not_found(message: impl Into<String>, field: Option<String>) -> Self {
        CafeError::NotFound { message: message.into(), field }
    }
}

impl<E: Rejection> From<CommandError<E>> for CafeError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Rejected(r) if r.is_not_found() => CafeError::not_found(r.to_string(), r.field()),
            CommandError::Rejected(r) if r.is_conflict() => {
                CafeError::Conflict { message: r.to_string(), field: r.field() }
            }
            CommandError::Rejected(r) => CafeError::Rejected { message: r.to_string(), field: r.field() },
            CommandError::Busy(s) => CafeError::Busy(format!("too many commands queued for {s}")),
            CommandError::Contended(s) => CafeError::Busy(format!("{s} is too contended")),
            CommandError::Unavailable(cause) => CafeError::Unavailable(cause),
        }
    }
}

/// A value outside the domain's limits, checked before a stream is even named.
impl From<Invalid> for CafeError {
    fn from(e: Invalid) -> Self {
        CafeError::Rejected { message: e.to_string(), field: Some(e.field) }
    }
}

/// An order as a client asks for it.
#[derive(Clone, Debug)]
pub struct PlaceOrder {
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    /// `(item_id, quantity)` per line.
    pub items: Vec<(String, i64)>,
    pub placed_at_us: i64,
    /// `order_id` was generated for this request (no idempotency key), so no stream can exist yet.
    pub fresh_order_id: bool,
}

/// What recalculating one customer's tier did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecalculatedTier {
    pub customer_id: String,
    /// The tier before; equal to `to` when nothing changed.
    pub from: Tier,
    pub to: Tier,
    /// Whether a `TierChanged` was written.
    pub changed: bool,
}

pub struct Cafe {
    pub journal: Arc<dyn Journal>,
    pub orders: Registry<OrderDecider>,
    pub payments: Registry<PaymentDecider>,
    pub inventory: Registry<InventoryDecider>,
    pub loyalty: Registry<LoyaltyDecider>,
    pub menu: Registry<MenuDecider>,
    pub stores: Registry<StoreDecider>,
    pub customers: Registry<CustomerDecider>,
    pub payment_policy: PaymentPolicy,
    /// How long a ready order waits at the counter before the pickup timer abandons it
    /// ([`DEFAULT_PICKUP_WINDOW`] unless the node is told otherwise).
    pub pickup_window: std::time::Duration,
    /// How far this node's actors may trust their state; shared by every registry above. Run a
    /// [`crate::freshness::FreshnessFollower`] on it, or every actor reads its stream before each message.
    pub freshness: Arc<Freshness>,
}

impl Cafe {
    pub fn new(
        journal: Arc<dyn Journal>,
        host: HostOptions,
        payment_policy: PaymentPolicy,
        arbiters: Arc<[ArbiterHandle]>,
    ) -> Self {
        let freshness = Arc::new(Freshness::new(host.staleness_bound));
        crate::host::register_metrics();
        let (j, a, f) = (&journal, &arbiters, &freshness);
        Cafe {
            orders: Registry::with_freshness(j.clone(), host.clone(), a.clone(), f.clone()),
            payments: Registry::with_freshness(j.clone(), host.clone(), a.clone(), f.clone()),
            inventory: Registry::with_freshness(j.clone(), host.clone(), a.clone(), f.clone()),
            loyalty: Registry::with_freshness(j.clone(), host.clone(), a.clone(), f.clone()),
            menu: Registry::with_freshness(j.clone(), host.clone(), a.clone(), f.clone()),
            stores: Registry::with_freshness(j.clone(), host.clone(), a.clone(), f.clone()),
            customers: Registry::with_freshness(j.clone(), host, a.clone(), f.clone()),
            journal,
            payment_policy,
            pickup_window: DEFAULT_PICKUP_WINDOW,
            freshness,
        }
    }

    /// Looks up the store and every item (in this node's catalogue, or through their actors), then
    /// places the order. Answers once `OrderPlaced` is committed.
    pub async fn place_order(&self, request: PlaceOrder, causation: Causation) -> Result<Executed<Order>, CafeError> {
        // Checked before any lookup, so that a request cannot make this node look up more than an
        // order may hold; the order's decider checks them again with the rest.
        limits::check_id("customer_id", &request.customer_id)?;
        limits::check_id("store_id", &request.store_id)?;
        limits::check_line_count("items", request.items.len())?;
        let store = self.store_status(&request.store_id).await?;
        let mut lines = Vec::with_capacity(request.items.len());
        for (i, (item_id, quantity)) in request.items.iter().enumerate() {
            let field = || format!("items[{i}].item_id");
            if !limits::is_id(item_id) {
                limits::check_id(&field(), item_id)?;
            }
            let item = self.item_for_sale(item_id).await?;
            if !item.published {
                return Err(CafeError::not_found(format!("menu item `{item_id}` does not exist"), Some(field())));
            }
            lines.push(RequestedLine {
                item_id: item_id.clone(),
                quantity: *quantity,
                unit_price_cents: item.price_cents,
                retired: item.retired,
            });
        }
        let command = OrderCommand::Place {
            order_id: request.order_id,
            customer_id: request.customer_id,
            store_id: request.store_id,
            store,
            lines,
            placed_at_us: request.placed_at_us,
        };
        let options = ExecuteOptions { new_stream: request.fresh_order_id, return_state: true };
        let placed = self.orders.execute_with(&streams::order(request.order_id), command, causation, options).await?;
        Ok(Executed { events: placed.events, state: placed.state.unwrap_or_default(), version: placed.version })
    }

    /// Gives a captured payment back, as its [`PaymentRefundRequested`] asked; answers the payment as
    /// it stands. A refund carried out before decides nothing new.
    ///
    /// [`PaymentRefundRequested`]: events::domain::PaymentRefundRequested
    pub async fn refund_payment(&self, order_id: Uuid, causation: Causation) -> Result<Payment, CafeError> {
        Ok(self.payments.execute(&streams::payment(order_id), PaymentCommand::Refund, causation).await?.state)
    }

    /// Cancels an order for its customer while it is placed or paid (not once its preparation has
    /// started); the saga then releases its stock and gives back its payment and points. Answers the
    /// order as it stands; cancelling a cancelled order writes nothing.
    pub async fn cancel_order(
        &self,
        order_id: Uuid,
        reason: String,
        causation: Causation,
    ) -> Result<Executed<Order>, CafeError> {
        let command = OrderCommand::Cancel { reason };
        Ok(self.orders.execute(&streams::order(order_id), command, causation).await?)
    }

    /// Moves an order one step towards pickup, as its store's staff ask; answers the order as it
    /// stands. The deadline of a ready order is `at_us` + [`Cafe::pickup_window`].
    pub async fn advance_order(
        &self,
        order_id: Uuid,
        to: Progress,
        at_us: i64,
        causation: Causation,
    ) -> Result<Executed<Order>, CafeError> {
        let pickup_window_us = i64::try_from(self.pickup_window.as_micros()).unwrap_or(i64::MAX);
        let command = OrderCommand::Advance { to, at_us, pickup_window_us };
        Ok(self.orders.execute(&streams::order(order_id), command, causation).await?)
    }

    /// Passivates every actor of every aggregate that no caller is waiting on (see
    /// [`Registry::passivate_unused`]); returns how many.
    pub fn passivate_unused(&self) -> usize {
        self.orders.passivate_unused()
            + self.payments.passivate_unused()
            + self.inventory.passivate_unused()
            + self.loyalty.passivate_unused()
            + self.menu.passivate_unused()
            + self.stores.passivate_unused()
            + self.customers.passivate_unused()
    }

    /// How the customer chose to be notified; `None` if they never chose (or the id is not one).
    pub async fn customer_preferences(&self, customer_id: &str) -> Result<Option<Preferences>, CafeError> {
        if !limits::is_id(customer_id) {
            return Ok(None);
        }
        let (profile, _) = self.customers.inspect(&streams::customer(customer_id)).await?;
        Ok(profile.preferences)
    }

    /// Records how the customer wants to be notified; the same choice again writes nothing.
    pub async fn set_customer_preferences(
        &self,
        customer_id: &str,
        channel: events::domain::NotificationChannel,
        address: &str,
        causation: Causation,
    ) -> Result<Executed<CustomerProfile>, CafeError> {
        limits::check_id("customer_id", customer_id)?;
        let command = CustomerCommand::SetPreferences {
            customer_id: customer_id.to_owned(),
            channel,
            address: address.to_owned(),
        };
        Ok(self.customers.execute(&streams::customer(customer_id), command, causation).await?)
    }

    pub async fn order(&self, order_id: Uuid) -> Result<Option<Order>, CafeError> {
        let (order, version) = self.orders.inspect(&streams::order(order_id)).await?;
        Ok((version > 0).then_some(order))
    }

    pub async fn payment(&self, order_id: Uuid) -> Result<Option<Payment>, CafeError> {
        let (payment, version) = self.payments.inspect(&streams::payment(order_id)).await?;
        Ok((version > 0).then_some(payment))
    }

    /// Scores and authorizes (or declines) an order's payment, once: a repeated request decides
    /// nothing new and answers the payment as it stands.
    pub async fn authorize_payment(
        &self,
        request: &AuthorizePayment,
        causation: Causation,
    ) -> Result<Payment, CafeError> {
        let policy = self.payment_policy;
        let score = fraud_score(request.order_id, &request.customer_id, request.amount_cents, policy.fraud_rounds);
        let command = PaymentCommand::Authorize {
            order_id: request.order_id,
            customer_id: request.customer_id.clone(),
            amount_cents: request.amount_cents,
            fraud_score: score,
            decline_threshold: policy.decline_threshold,
        };
        // The payment stream is born here; when it exists already the append conflicts and the actor reloads.
        let born = ExecuteOptions { new_stream: true, return_state: true };
        let done = self.payments.execute_with(&streams::payment(request.order_id), command, causation, born).await?;
        Ok(done.state.unwrap_or_default())
    }

    /// Releases an order's authorization, as its [`PaymentVoidRequested`] asked; answers the payment
    /// as it stands. A void carried out before decides nothing new.
    ///
    /// [`PaymentVoidRequested`]: events::domain::PaymentVoidRequested
    pub async fn void_payment(&self, order_id: Uuid, causation: Causation) -> Result<Payment, CafeError> {
        Ok(self.payments.execute(&streams::payment(order_id), PaymentCommand::Void, causation).await?.state)
    }

    pub async fn restock(
        &self,
        store_id: &str,
        sku: &str,
        quantity: i64,
        causation: Causation,
    ) -> Result<Stock, CafeError> {
        limits::check_id("store_id", store_id)?;
        limits::check_id("sku", sku)?;
        let (item, _) = self.menu.inspect(&streams::menu_item(sku)).await?;
        if !item.published {
            return Err(CafeError::not_found(format!("SKU `{sku}` is not on the menu"), Some("sku".into())));
        }
        let store = self.store_status(store_id).await?;
        let command = InventoryCommand::Restock { store_id: store_id.to_owned(), sku: sku.to_owned(), store, quantity };
        Ok(self.inventory.execute(&streams::inventory(store_id, sku), command, causation).await?.state)
    }

    pub async fn stock(&self, store_id: &str, sku: &str) -> Result<Stock, CafeError> {
        if !limits::is_id(store_id) || !limits::is_id(sku) {
            return Err(CafeError::not_found("no such store item", None));
        }
        let (mut stock, _) = self.inventory.inspect(&streams::inventory(store_id, sku)).await?;
        stock.store_id = store_id.to_owned();
        stock.sku = sku.to_owned();
        Ok(stock)
    }

    pub async fn loyalty_account(&self, customer_id: &str) -> Result<LoyaltyAccount, CafeError> {
        if !limits::is_id(customer_id) {
            return Err(CafeError::not_found("no such customer", None));
        }
        let (mut account, _) = self.loyalty.inspect(&streams::loyalty(customer_id)).await?;
        account.customer_id = customer_id.to_owned();
        Ok(account)
    }

    /// Brings a customer's tier in line with their points (the hourly batch, one customer): writes
    /// `TierChanged` only where the tier differs. `NotFound` for a customer without an account, and
    /// nothing is created for them: the decider writes nothing for an empty account, and an actor
    /// whose stream does not exist stops once it has answered. (Should a first accrual race this,
    /// it either lands first and is recalculated, or lands after and sets the tier itself.)
    pub async fn recalculate_tier(
        &self,
        customer_id: &str,
        causation: Causation,
    ) -> Result<RecalculatedTier, CafeError> {
        if !limits::is_id(customer_id) {
            return Err(CafeError::not_found("no such customer", None));
        }
        let command = LoyaltyCommand::Recalculate { customer_id: customer_id.to_owned() };
        let done = self.loyalty.execute(&streams::loyalty(customer_id), command, causation).await?;
        if done.version == 0 {
            return Err(CafeError::not_found(format!("customer `{customer_id}` has no loyalty account"), None));
        }
        let change = done.events.iter().find_map(|e| match e {
            events::DomainEvent::TierChanged(t) => Some((t.from, t.to)),
            _ => None,
        });
        let tier = done.state.tier;
        let (from, to) = change.unwrap_or((tier, tier));
        Ok(RecalculatedTier { customer_id: customer_id.to_owned(), from, to, changed: change.is_some() })
    }

    pub async fn menu_item(&self, item_id: &str) -> Result<Option<MenuItem>, CafeError> {
        if !limits::is_id(item_id) {
            return Ok(None);
        }
        let (item, _) = self.menu.inspect(&streams::menu_item(item_id)).await?;
        Ok(item.published.then_some(item))
    }

    pub async fn publish_menu_item(
        &self,
        command: MenuCommand,
        causation: Causation,
    ) -> Result<Executed<MenuItem>, CafeError> {
        let MenuCommand::Publish { item_id, .. } = &command else {
            return Err(CafeError::rejected("expected a publish command", "item_id"));
        };
        limits::check_id("item_id", item_id)?;
        let item_id = item_id.clone();
        let asked_at = Instant::now();
        let published = self.menu.execute(&streams::menu_item(&item_id), command, causation).await?;
        Ok(self.catalogued_item(&item_id, published, asked_at))
    }

    /// Changes a published item's price; the same price again writes nothing.
    pub async fn change_menu_price(
        &self,
        item_id: &str,
        price_cents: Cents,
        causation: Causation,
    ) -> Result<Executed<MenuItem>, CafeError> {
        limits::check_id("item_id", item_id)?;
        let command = MenuCommand::ChangePrice { price_cents };
        let asked_at = Instant::now();
        let changed = self.menu.execute(&streams::menu_item(item_id), command, causation).await?;
        Ok(self.catalogued_item(item_id, changed, asked_at))
    }

    /// Retires a published item: it stays listed and can no longer be ordered. Retiring it again
    /// writes nothing.
    pub async fn retire_menu_item(&self, item_id: &str, causation: Causation) -> Result<Executed<MenuItem>, CafeError> {
        limits::check_id("item_id", item_id)?;
        let asked_at = Instant::now();
        let retired = self.menu.execute(&streams::menu_item(item_id), MenuCommand::Retire, causation).await?;
        Ok(self.catalogued_item(item_id, retired, asked_at))
    }

    /// Opens a store (or reopens a closed one). Opening an open store again under the same name
    /// writes nothing (`events` is empty).
    pub async fn open_store(
        &self,
        store_id: &str,
        name: &str,
        causation: Causation,
    ) -> Result<Executed<Store>, CafeError> {
        limits::check_id("store_id", store_id)?;
        let command = StoreCommand::Open {
            store_id: store_id.to_owned(),
            name: name.to_owned(),
            opened_at_us: events::envelope::now_us(),
        };
        let asked_at = Instant::now();
        let opened = self.stores.execute(&streams::store(store_id), command, causation).await?;
        Ok(self.catalogued_store(store_id, opened, asked_at))
    }

    /// Closes a store: it takes no new orders or restocks; the orders it took go on.
    pub async fn close_store(
        &self,
        store_id: &str,
        reason: &str,
        causation: Causation,
    ) -> Result<Executed<Store>, CafeError> {
        limits::check_id("store_id", store_id)?;
        let command = StoreCommand::Close { reason: reason.to_owned() };
        let asked_at = Instant::now();
        let closed = self.stores.execute(&streams::store(store_id), command, causation).await?;
        Ok(self.catalogued_store(store_id, closed, asked_at))
    }

    /// A store as its stream says, `None` if it was never opened.
    pub async fn store(&self, store_id: &str) -> Result<Option<Store>, CafeError> {
        limits::check_id("store_id", store_id)?;
        let (store, version) = self.stores.inspect(&streams::store(store_id)).await?;
        Ok((version > 0).then_some(store))
    }

    /// Whether a store takes orders and restocks, for the command that needs to know: from this
    /// node's catalogue while its follower vouches for it, else through the store's actor.
    async fn store_status(&self, store_id: &str) -> Result<StoreStatus, CafeError> {
        let catalogue = self.freshness.catalogue();
        if let Some(status) = catalogue.store_status(store_id, |t| self.freshness.covers(t)) {
            return Ok(status);
        }
        let asked_at = Instant::now();
        let (store, version) = self.stores.inspect(&streams::store(store_id)).await?;
        catalogue.offer_store(store_id, &store, version, asked_at, self.freshness.covers(asked_at));
        Ok(store.status)
    }

    /// What an order line needs from a menu item, as [`Cafe::store_status`].
    async fn item_for_sale(&self, item_id: &str) -> Result<ItemForSale, CafeError> {
        let catalogue = self.freshness.catalogue();
        if let Some(item) = catalogue.item(item_id, |t| self.freshness.covers(t)) {
            return Ok(item);
        }
        let asked_at = Instant::now();
        let (item, version) = self.menu.inspect(&streams::menu_item(item_id)).await?;
        catalogue.offer_item(item_id, &item, version, asked_at, self.freshness.covers(asked_at));
        Ok(ItemForSale::from(&item))
    }

    /// A menu write of this node, offered to its catalogue so that its next order sees it at once.
    fn catalogued_item(&self, item_id: &str, done: Executed<MenuItem>, asked_at: Instant) -> Executed<MenuItem> {
        let vouched = self.freshness.covers(asked_at);
        self.freshness.catalogue().offer_item(item_id, &done.state, done.version, asked_at, vouched);
        done
    }

    /// A store write of this node, as [`Cafe::catalogued_item`].
    fn catalogued_store(&self, store_id: &str, done: Executed<Store>, asked_at: Instant) -> Executed<Store> {
        let vouched = self.freshness.covers(asked_at);
        self.freshness.catalogue().offer_store(store_id, &done.state, done.version, asked_at, vouched);
        done
    }
}
