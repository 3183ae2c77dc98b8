//! The DynamoDB read models of the original plans (feature `dynamodb`):
//!
//! - `active-orders`: one item per order, key `order_id` (S), with `customer_id`, `store_id`, `status`,
//!   `total_cents` (N), `created_at_us` (N), `lines` (a list of maps) and `version`; a global secondary
//!   index on `customer_id` + `created_at_us` answers "a customer's orders, newest first"; DynamoDB's
//!   TTL deletes an order 24 h after it was paid or cancelled (`expires_at`, epoch seconds, counted
//!   from when the completing event was recorded, so a replay writes the same value).
//! - `store-inventory`: key `store_id` (S) + `sku` (S), with `available`, `reserved` and `version`.
//!
//! DynamoDB has no transaction wide enough for a page, so effectively-once comes from the items
//! themselves: every write is conditional on the source stream's version
//! (`attribute_not_exists(version) OR version < :v`), and a `ConditionalCheckFailed` means the item
//! already reflects that event. The position is written after a page's item writes succeed; a crash
//! in between re-applies the page, which changes nothing.
//!
//! A page makes few requests (`plan` decides them, without I/O): the events of one item are folded
//! into one write. An order placed and completed within the page is final (paid and cancelled end
//! an order's stream: the order decider emits nothing after them), so it needs no condition and goes
//! out in `BatchWriteItem`s of 25. Inventory events are deltas: the deltas of one stock item within
//! a page are summed into one `UpdateItem` (`ADD` the sum, `SET version`) conditional on the item
//! being older than the first of them; when it is not (a page that overlaps what was applied), the
//! item's version is read back and only the deltas above it are applied.
//!
//! Tables are named `{prefix}-active-orders-{env}-g{n}` and `{prefix}-store-inventory-{env}-g{n}`
//! ([`TableNames`]), created by the sink when absent. DynamoDB cannot rename tables, so a rebuild
//! writes a new *generation* `n`: the offsets table `{prefix}-projection-offsets-{env}` holds one item
//! that records the live generation (and the shadow's, if any), and one position item per generation.
//! Promotion flips the live generation with one conditional `UpdateItem`, which is atomic for readers
//! of both tables at once, then deletes the old generation's tables. Readers resolve the live
//! generation once and cache it; the cache is refreshed after a promotion and whenever a table turns
//! out to be gone (another process promoted).
//!
//! The module's parts: `generations` (table generations and promotion), `plan` (a page as the
//! writes to make, pure), `memory` (the same writes applied to maps: the shadow `verify` compares with), `codec` (items to and from attribute maps), `queries` (what the gateways
//! ask). The DynamoDB helpers that are not about these models (creating a keyed table,
//! scanning one) are in [`crate::aws::dynamodb`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use events::domain::{Cents, OrderLine};
use events::RecordedEvent;
use futures::{StreamExt, TryStreamExt};
use uuid::Uuid;

use self::codec::{n, num, s};
use self::generations::TableKind;
pub use self::memory::MemoryTables;
use self::plan::{plan, Write};
use crate::aws::{classify, AwsFailure, FailureKind};
use crate::read_models::PositionWrite;
use crate::{CanonicalRow, Sink, SinkError};

mod codec;
mod generations;
mod memory;
mod plan;
mod queries;

/// The name under which the live models' position is stored.
pub const NAME: &str = "dynamodb-read-models";
/// The global secondary index of `active-orders` on `customer_id` + `created_at_us`.
pub const CUSTOMER_INDEX: &str = "customer_id-created_at_us-index";
/// The TTL attribute of `active-orders`.
pub const EXPIRES_AT: &str = "expires_at";
/// How long a completed order stays in `active-orders`.
pub const ACTIVE_AFTER_COMPLETION_SECS: i64 = 24 * 60 * 60;

/// Writes in flight at once within a page (different items; one item is never written twice at once).
const CONCURRENT_WRITES: usize = 16;
/// How many times unprocessed items of a `BatchWriteItem` are sent again (with backoff).
const UNPROCESSED_RETRIES: u32 = 10;

/// How the sink names its tables: `{prefix}-{model}-{env}`, the read models with `-g{generation}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNames {
    pub prefix: String,
    pub env: String,
}

impl TableNames {
    /// E.g. `TableNames::new("cloudcafe", "prod")` gives `cloudcafe-active-orders-prod-g1`.
    pub fn new(prefix: impl Into<String>, env: impl Into<String>) -> Self {
        TableNames { prefix: prefix.into(), env: env.into() }
    }

    pub fn active_orders(&self, generation: u64) -> String {
        format!("{}-active-orders-{}-g{generation}", self.prefix, self.env)
    }

    pub fn store_inventory(&self, generation: u64) -> String {
        format!("{}-store-inventory-{}-g{generation}", self.prefix, self.env)
    }

    /// The projection bookkeeping: live and shadow generations, one position per generation.
    pub fn offsets(&self) -> String {
        format!("{}-projection-offsets-{}", self.prefix, self.env)
    }
}

/// An order as `active-orders` holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveOrder {
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    pub status: String,
    pub total_cents: Cents,
    pub created_at_us: i64,
    pub lines: Vec<OrderLine>,
    /// Epoch seconds after which DynamoDB may delete the item; set when the order is paid or cancelled.
    pub expires_at: Option<i64>,
}

/// Which generation of the tables a handle reads and writes.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The live generation, resolved through the offsets table and cached.
    Live,
    /// A fixed generation: a shadow being rebuilt.
    Generation(u64),
}

struct Shared {
    client: Client,
    names: TableNames,
    /// The cached live generation; 0 while unknown.
    live: AtomicU64,
}

/// `active-orders` and `store-inventory` in DynamoDB. See the module docs.
pub struct DynamoSink {
    shared: Arc<Shared>,
    target: Target,
    name: String,
}

impl DynamoSink {
    /// Opens the live read models, creating the offsets table, the bookkeeping items and the live
    /// generation's tables if absent. `client` is built by the caller (region, credentials, endpoint).
    pub async fn open(client: Client, names: TableNames) -> Result<Self, SinkError> {
        let sink = DynamoSink {
            shared: Arc::new(Shared { client, names, live: AtomicU64::new(0) }),
            target: Target::Live,
            name: NAME.to_owned(),
        };
        let offsets = sink.names().offsets();
        sink.ensure_table(&offsets, TableKind::Offsets).await?;
        let first = sink
            .client()
            .put_item()
            .table_name(&offsets)
            .item("name", s(NAME))
            .item("live_generation", n(1))
            .item("last_generation", n(1))
            .condition_expression("attribute_not_exists(#name)")
            .expression_attribute_names("#name", "name")
            .send()
            .await;
        sink.accept_conditional(first, &offsets)?;
        let generations = sink.generations().await?;
        sink.ensure_generation(generations.live).await?;
        sink.finish_retirements(&generations.retired).await?;
        sink.shared.live.store(generations.live, Ordering::Release);
        Ok(sink)
    }

    fn client(&self) -> &Client {
        &self.shared.client
    }

    fn names(&self) -> &TableNames {
        &self.shared.names
    }

    /// An SDK error as a sink error, classified by [`classify`].
    fn fail<E, R>(&self, table: &str, e: SdkError<E, R>) -> SinkError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.failed(classify(table, e))
    }

    /// A failed call as a sink error. A table that is gone, seen through the live handle, means
    /// another process promoted a shadow: the cached generation is forgotten so the next call
    /// resolves it anew.
    fn failed(&self, failure: AwsFailure) -> SinkError {
        if matches!(self.target, Target::Live) && failure.is(FailureKind::NotFound) {
            self.shared.live.store(0, Ordering::Release);
        }
        failure.into()
    }

    /// A conditional write whose condition failed already holds what it would have written.
    fn accept_conditional<T, E, R>(&self, result: Result<T, SdkError<E, R>>, table: &str) -> Result<(), SinkError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match result.map_err(|e| classify(table, e)) {
            Ok(_) => Ok(()),
            Err(failure) if failure.is(FailureKind::ConditionFailed) => Ok(()),
            Err(failure) => Err(self.failed(failure)),
        }
    }

    /// The generation this handle works on.
    async fn generation(&self) -> Result<u64, SinkError> {
        match self.target {
            Target::Generation(g) => Ok(g),
            Target::Live => {
                let cached = self.shared.live.load(Ordering::Acquire);
                if cached != 0 {
                    return Ok(cached);
                }
                let live = self.generations().await?.live;
                self.shared.live.store(live, Ordering::Release);
                Ok(live)
            }
        }
    }

    /// Runs `op` on this handle's generation. On the live handle, when the tables turn out to be
    /// gone (another process promoted a shadow and retired them), runs it once more on the new live
    /// generation.
    async fn on_generation<T, F, Fut>(&self, op: F) -> Result<T, SinkError>
    where
        F: Fn(u64) -> Fut,
        Fut: std::future::Future<Output = Result<T, SinkError>>,
    {
        let generation = self.generation().await?;
        let result = op(generation).await;
        if result.is_err() && matches!(self.target, Target::Live) && self.shared.live.load(Ordering::Acquire) == 0 {
            let now = self.generation().await?;
            if now != generation {
                return op(now).await;
            }
        }
        result
    }

    /// Makes one planned write on `generation`'s tables.
    async fn write(&self, generation: u64, write: Write) -> Result<(), SinkError> {
        let orders = self.names().active_orders(generation);
        let inventory = self.names().store_inventory(generation);
        let client = self.client();
        match write {
            Write::FinalOrders(items) => {
                let mut requests = Vec::with_capacity(items.len());
                for item in items {
                    let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| built(&orders, e))?;
                    requests.push(WriteRequest::builder().put_request(put).build());
                }
                let mut attempt = 0;
                while !requests.is_empty() {
                    let out = client
                        .batch_write_item()
                        .request_items(&orders, requests)
                        .send()
                        .await
                        .map_err(|e| self.fail(&orders, e))?;
                    requests = out.unprocessed_items.and_then(|mut u| u.remove(&orders)).unwrap_or_default();
                    if !requests.is_empty() {
                        attempt += 1;
                        if attempt > UNPROCESSED_RETRIES {
                            return Err(SinkError::unavailable(format!("{orders}: batch writes stay unprocessed")));
                        }
                        tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                    }
                }
                Ok(())
            }
            Write::Order { item, version } => {
                let put = client
                    .put_item()
                    .table_name(&orders)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(#v) OR #v < :v")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":v", n(version))
                    .send()
                    .await;
                self.accept_conditional(put, &orders)
            }
            Write::OrderStatus { order_id, status, expires_at, version } => {
                // Not an upsert: completing an order this model never saw placed (a rebuild that
                // started past it) changes nothing, as in the SQL storefront.
                let update = client
                    .update_item()
                    .table_name(&orders)
                    .key("order_id", s(&order_id.to_string()))
                    .update_expression("SET #s = :s, #v = :v, #e = :e")
                    .condition_expression("#v < :v")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_names("#e", EXPIRES_AT)
                    .expression_attribute_values(":s", s(status))
                    .expression_attribute_values(":v", n(version))
                    .expression_attribute_values(":e", n(expires_at))
                    .send()
                    .await;
                self.accept_conditional(update, &orders)
            }
            Write::Stock { store_id, sku, mut deltas } => {
                // Each failed round drops at least the first delta, so this ends.
                while let (Some(first), Some(last)) = (deltas.first(), deltas.last()) {
                    let (first, last) = (first.version, last.version);
                    let available: i64 = deltas.iter().map(|d| d.available).sum();
                    let reserved: i64 = deltas.iter().map(|d| d.reserved).sum();
                    let update = client
                        .update_item()
                        .table_name(&inventory)
                        .key("store_id", s(&store_id))
                        .key("sku", s(&sku))
                        .update_expression("SET #v = :last ADD #a :a, #r :r")
                        .condition_expression("attribute_not_exists(#v) OR #v < :first")
                        .expression_attribute_names("#v", "version")
                        .expression_attribute_names("#a", "available")
                        .expression_attribute_names("#r", "reserved")
                        .expression_attribute_values(":last", n(last))
                        .expression_attribute_values(":first", n(first))
                        .expression_attribute_values(":a", n(available))
                        .expression_attribute_values(":r", n(reserved))
                        .send()
                        .await;
                    match update.map_err(|e| classify(&inventory, e)) {
                        Ok(_) => return Ok(()),
                        Err(failure) if failure.is(FailureKind::ConditionFailed) => {
                            // Some of these deltas are in already: apply only those above the item's version.
                            let out = client
                                .get_item()
                                .table_name(&inventory)
                                .key("store_id", s(&store_id))
                                .key("sku", s(&sku))
                                .consistent_read(true)
                                .projection_expression("#v")
                                .expression_attribute_names("#v", "version")
                                .send()
                                .await
                                .map_err(|e| self.fail(&inventory, e))?;
                            let at: u64 = match out.item {
                                Some(item) => num(&item, "version", &inventory)?,
                                None => 0,
                            };
                            if at < first {
                                return Err(SinkError::unavailable(format!(
                                    "{inventory}: {store_id}/{sku} failed its condition at version {at} < {first}"
                                )));
                            }
                            deltas.retain(|d| d.version > at);
                        }
                        Err(failure) => return Err(self.failed(failure)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Applies a page to `generation` unless its position is past it, then moves the position.
    async fn apply_to(&self, generation: u64, events: &[RecordedEvent], last: u64) -> Result<(), SinkError> {
        let at = self.position_of(generation).await?;
        if last <= at {
            return Ok(());
        }
        self.write_items(generation, events.iter().filter(|e| e.global_position > at)).await?;
        // After the items: a crash before this line re-applies the page, which changes nothing.
        self.set_position(generation, last, PositionWrite::Forward).await
    }

    /// The conditional item writes of `events`, without moving the position.
    async fn write_items<'a>(
        &self,
        generation: u64,
        events: impl Iterator<Item = &'a RecordedEvent>,
    ) -> Result<(), SinkError> {
        let writes = plan(events)?;
        futures::stream::iter(writes.into_iter().map(|w| self.write(generation, w)))
            .buffer_unordered(CONCURRENT_WRITES)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Sink for DynamoSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn position(&self) -> Result<u64, SinkError> {
        self.on_generation(|generation| self.position_of(generation)).await
    }

    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        let Some(last) = events.last().map(|e| e.global_position) else { return Ok(()) };
        self.on_generation(|generation| self.apply_to(generation, events, last)).await
    }

    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError> {
        self.on_generation(|generation| self.canonical_rows_of(generation)).await
    }
}

/// Every item write is conditional on its stream's version: the sink can follow a Kinesis shard.
#[async_trait]
impl crate::StreamOrderedSink for DynamoSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply_in_stream_order(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        self.on_generation(|generation| self.write_items(generation, events.iter())).await
    }
}

/// A request the SDK could not build (a missing required field): a bug, reported as unavailable.
fn built(table: &str, e: aws_sdk_dynamodb::error::BuildError) -> SinkError {
    SinkError::unavailable_because(format!("cannot build a request to {table}"), e)
}
