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
//! A page makes few requests: the events of one item are folded into one write. An order placed and
//! completed within the page is final (paid and cancelled end an order's stream: the order decider
//! emits nothing after them), so it needs no condition and goes out in `BatchWriteItem`s of 25.
//! Inventory events are deltas: the deltas of one stock item within a page are summed into one
//! `UpdateItem` (`ADD` the sum, `SET version`) conditional on the item being older than the first of
//! them; when it is not (a page that overlaps what was applied), the item's version is read back and
//! only the deltas above it are applied.
//!
//! Tables are named `{prefix}-active-orders-{env}-g{n}` and `{prefix}-store-inventory-{env}-g{n}`
//! ([`TableNames`]), created by the sink when absent. DynamoDB cannot rename tables, so a rebuild
//! writes a new *generation* `n`: the offsets table `{prefix}-projection-offsets-{env}` holds one item
//! that records the live generation (and the shadow's, if any), and one position item per generation.
//! Promotion flips the live generation with one conditional `UpdateItem`, which is atomic for readers
//! of both tables at once, then deletes the old generation's tables. Readers resolve the live
//! generation once and cache it; the cache is refreshed after a promotion and whenever a table turns
//! out to be gone (another process promoted).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::operation::scan::ScanError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, PutRequest, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
    WriteRequest,
};
use aws_sdk_dynamodb::Client;
use events::domain::{Cents, OrderLine};
use events::RecordedEvent;
use futures::{StreamExt, TryStreamExt};
use uuid::Uuid;

use crate::read_models::storefront::{canonical, changes, Change, OrderView, StockLevel};
use crate::{CanonicalRow, Rebuildable, Sink, SinkError};

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
/// DynamoDB's limit of items per `BatchWriteItem`.
const BATCH_LIMIT: usize = 25;
/// How long to wait for a new table to become `ACTIVE`, and for unprocessed batch items.
const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(300);
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

/// The offsets table's item that records the generations.
#[derive(Clone, Debug, Default)]
struct Generations {
    live: u64,
    /// The highest generation ever allocated.
    last: u64,
    shadow: Option<u64>,
    /// Generations replaced or discarded whose tables may still need deleting (a crash interrupted it).
    retired: Vec<u64>,
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

    /// An SDK error as a sink error. A table that is gone, seen through the live handle, means another
    /// process promoted a shadow: the cached generation is forgotten so the next call resolves it anew.
    fn fail<E, R>(&self, table: &str, e: SdkError<E, R>) -> SinkError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        if matches!(self.target, Target::Live) && e.code() == Some("ResourceNotFoundException") {
            self.shared.live.store(0, Ordering::Release);
        }
        SinkError::Unavailable(format!("{table}: {}", DisplayErrorContext(&e)))
    }

    /// A conditional write whose condition failed already holds what it would have written.
    fn accept_conditional<T, E, R>(&self, result: Result<T, SdkError<E, R>>, table: &str) -> Result<(), SinkError>
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(self.fail(table, e)),
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

    /// The stored position of `generation`. A live generation without one has been retired.
    async fn position_of(&self, generation: u64) -> Result<u64, SinkError> {
        match self.read_position(generation).await? {
            Some(position) => Ok(position),
            None if matches!(self.target, Target::Live) => {
                self.shared.live.store(0, Ordering::Release);
                Err(SinkError::Unavailable(format!("generation {generation} has been retired")))
            }
            None => Ok(0),
        }
    }

    /// Reads the generations item (strongly consistent).
    async fn generations(&self) -> Result<Generations, SinkError> {
        let offsets = self.names().offsets();
        let out = self
            .client()
            .get_item()
            .table_name(&offsets)
            .key("name", s(NAME))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail(&offsets, e))?;
        let item = out.item.ok_or_else(|| SinkError::Unavailable(format!("{offsets}: no `{NAME}` item")))?;
        Ok(Generations {
            live: num(&item, "live_generation", &offsets)?,
            last: num(&item, "last_generation", &offsets)?,
            shadow: item.get("shadow_generation").map(|_| num(&item, "shadow_generation", &offsets)).transpose()?,
            retired: match item.get("retired_generations") {
                Some(AttributeValue::Ns(set)) => set.iter().filter_map(|g| g.parse().ok()).collect(),
                _ => vec![],
            },
        })
    }

    fn position_key(generation: u64) -> AttributeValue {
        s(&format!("{NAME}#g{generation}"))
    }

    /// Creates a generation's tables and position item if absent.
    async fn ensure_generation(&self, generation: u64) -> Result<(), SinkError> {
        let names = self.names();
        self.ensure_table(&names.active_orders(generation), TableKind::ActiveOrders).await?;
        self.ensure_table(&names.store_inventory(generation), TableKind::StoreInventory).await?;
        self.set_position(generation, 0, PositionWrite::IfAbsent).await
    }

    async fn set_position(&self, generation: u64, position: u64, how: PositionWrite) -> Result<(), SinkError> {
        let offsets = self.names().offsets();
        let put = self
            .client()
            .put_item()
            .table_name(&offsets)
            .item("name", Self::position_key(generation))
            .item("position", n(position));
        let put = match how {
            PositionWrite::IfAbsent => {
                put.condition_expression("attribute_not_exists(#p)").expression_attribute_names("#p", "position")
            }
            // Two runners of one projection never move the position back.
            PositionWrite::Forward => put
                .condition_expression("attribute_not_exists(#p) OR #p < :p")
                .expression_attribute_names("#p", "position")
                .expression_attribute_values(":p", n(position)),
            PositionWrite::Exactly => put,
        };
        self.accept_conditional(put.send().await, &offsets)
    }

    async fn read_position(&self, generation: u64) -> Result<Option<u64>, SinkError> {
        let offsets = self.names().offsets();
        let out = self
            .client()
            .get_item()
            .table_name(&offsets)
            .key("name", Self::position_key(generation))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail(&offsets, e))?;
        out.item.map(|item| num(&item, "position", &offsets)).transpose()
    }

    /// Creates `table` if absent and waits until it is `ACTIVE` (at once on emulators, seconds on
    /// AWS); for `active-orders`, also switches its TTL on.
    async fn ensure_table(&self, table: &str, kind: TableKind) -> Result<(), SinkError> {
        let client = self.client();
        let status = match client.describe_table().table_name(table).send().await {
            Ok(out) => out.table.and_then(|t| t.table_status),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                match kind.create(client, table)?.send().await {
                    Ok(out) => out.table_description.and_then(|t| t.table_status),
                    // Another process created it first.
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => None,
                    Err(e) => return Err(self.fail(table, e)),
                }
            }
            Err(e) => return Err(self.fail(table, e)),
        };
        if status != Some(TableStatus::Active) {
            wait_until_active(client, table, |e| self.fail(table, e), SinkError::Unavailable).await?;
        }
        if let TableKind::ActiveOrders = kind {
            let ttl = client.describe_time_to_live().table_name(table).send().await.map_err(|e| self.fail(table, e))?;
            let enabled = ttl.time_to_live_description.is_some_and(|d| {
                d.attribute_name.as_deref() == Some(EXPIRES_AT)
                    && matches!(d.time_to_live_status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
            });
            if !enabled {
                let spec = TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(EXPIRES_AT)
                    .build()
                    .map_err(|e| SinkError::Unavailable(e.to_string()))?;
                client
                    .update_time_to_live()
                    .table_name(table)
                    .time_to_live_specification(spec)
                    .send()
                    .await
                    .map_err(|e| self.fail(table, e))?;
            }
        }
        Ok(())
    }

    /// Deletes the tables and position item of generations marked retired (absent ones are fine),
    /// then unmarks them. Marking happens in the same `UpdateItem` that stops a generation being live
    /// or shadow, so a crash between the two leaves a mark that the next open or promotion finishes.
    async fn finish_retirements(&self, retired: &[u64]) -> Result<(), SinkError> {
        let names = self.names();
        let offsets = names.offsets();
        for &generation in retired {
            for table in [names.active_orders(generation), names.store_inventory(generation)] {
                match self.client().delete_table().table_name(&table).send().await {
                    Ok(_) => {}
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {}
                    Err(e) => return Err(self.fail(&table, e)),
                }
            }
            self.client()
                .delete_item()
                .table_name(&offsets)
                .key("name", Self::position_key(generation))
                .send()
                .await
                .map_err(|e| self.fail(&offsets, e))?;
            self.client()
                .update_item()
                .table_name(&offsets)
                .key("name", s(NAME))
                .update_expression("DELETE retired_generations :g")
                .expression_attribute_values(":g", AttributeValue::Ns(vec![generation.to_string()]))
                .send()
                .await
                .map_err(|e| self.fail(&offsets, e))?;
        }
        Ok(())
    }

    /// The shadow generation, allocated (one above every generation used so far, so a name is never
    /// reused while DynamoDB may still be deleting it) and created if there is none.
    async fn shadow_generation(&self) -> Result<u64, SinkError> {
        let offsets = self.names().offsets();
        let generation = loop {
            let generations = self.generations().await?;
            if let Some(shadow) = generations.shadow {
                break shadow;
            }
            let next = generations.last + 1;
            let allocate = self
                .client()
                .update_item()
                .table_name(&offsets)
                .key("name", s(NAME))
                .update_expression("SET shadow_generation = :next, last_generation = :next")
                .condition_expression("attribute_not_exists(shadow_generation) AND last_generation = :last")
                .expression_attribute_values(":next", n(next))
                .expression_attribute_values(":last", n(generations.last))
                .send()
                .await;
            match allocate {
                Ok(_) => break next,
                // Another process allocated one meanwhile: use it.
                Err(e) if is_conditional_failure(&e) => continue,
                Err(e) => return Err(self.fail(&offsets, e)),
            }
        };
        self.ensure_generation(generation).await?;
        Ok(generation)
    }

    /// Moves a generation out of the live or shadow slot (`update`, conditional on `condition`) and
    /// marks it retired in the same request; [`Self::finish_retirements`] then deletes its tables.
    /// False if the condition failed (another process got there first).
    async fn mark_retired(
        &self,
        generation: u64,
        update: &str,
        condition: &str,
        values: Item,
    ) -> Result<bool, SinkError> {
        let offsets = self.names().offsets();
        let result = self
            .client()
            .update_item()
            .table_name(&offsets)
            .key("name", s(NAME))
            .update_expression(format!("{update} ADD retired_generations :retired"))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .expression_attribute_values(":retired", AttributeValue::Ns(vec![generation.to_string()]))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(self.fail(&offsets, e)),
        }
    }

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
                            return Err(SinkError::Unavailable(format!("{orders}: batch writes stay unprocessed")));
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
                    match update {
                        Ok(_) => return Ok(()),
                        Err(e) if is_conditional_failure(&e) => {
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
                                return Err(SinkError::Unavailable(format!(
                                    "{inventory}: {store_id}/{sku} failed its condition at version {at} < {first}"
                                )));
                            }
                            deltas.retain(|d| d.version > at);
                        }
                        Err(e) => return Err(self.fail(&inventory, e)),
                    }
                }
                Ok(())
            }
        }
    }

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

    async fn canonical_rows_of(&self, generation: u64) -> Result<Vec<CanonicalRow>, SinkError> {
        let orders = self.names().active_orders(generation);
        let inventory = self.names().store_inventory(generation);
        let mut rows = Vec::new();
        for item in self.scan(&orders).await? {
            rows.push(canonical_order(&active_order(&item, &orders)?));
        }
        for item in self.scan(&inventory).await? {
            let level = stock_level(&item, &inventory)?;
            let key = format!("store-inventory/{}/{}", level.store_id, level.sku);
            rows.push(CanonicalRow { key, ..canonical::stock(&level) });
        }
        Ok(rows)
    }

    /// One order, strongly consistent.
    pub async fn active_order(&self, order_id: Uuid) -> Result<Option<ActiveOrder>, SinkError> {
        self.on_generation(|generation| self.active_order_of(generation, order_id)).await
    }

    async fn active_order_of(&self, generation: u64, order_id: Uuid) -> Result<Option<ActiveOrder>, SinkError> {
        let table = self.names().active_orders(generation);
        let out = self
            .client()
            .get_item()
            .table_name(&table)
            .key("order_id", s(&order_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail(&table, e))?;
        out.item.map(|item| active_order(&item, &table)).transpose()
    }

    /// A customer's orders, newest first, through the `customer_id` + `created_at_us` index (which,
    /// like every global secondary index, is eventually consistent).
    pub async fn customer_orders(&self, customer_id: &str, limit: usize) -> Result<Vec<ActiveOrder>, SinkError> {
        self.on_generation(|generation| self.customer_orders_of(generation, customer_id, limit)).await
    }

    async fn customer_orders_of(
        &self,
        generation: u64,
        customer_id: &str,
        limit: usize,
    ) -> Result<Vec<ActiveOrder>, SinkError> {
        let table = self.names().active_orders(generation);
        let mut orders = Vec::new();
        let mut start = None;
        while orders.len() < limit {
            let out = self
                .client()
                .query()
                .table_name(&table)
                .index_name(CUSTOMER_INDEX)
                .key_condition_expression("customer_id = :c")
                .expression_attribute_values(":c", s(customer_id))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - orders.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.fail(&table, e))?;
            for item in out.items() {
                orders.push(active_order(item, &table)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        orders.truncate(limit);
        Ok(orders)
    }

    /// A store's stock of one SKU, strongly consistent.
    pub async fn stock_level(&self, store_id: &str, sku: &str) -> Result<Option<StockLevel>, SinkError> {
        self.on_generation(|generation| self.stock_level_of(generation, store_id, sku)).await
    }

    async fn stock_level_of(
        &self,
        generation: u64,
        store_id: &str,
        sku: &str,
    ) -> Result<Option<StockLevel>, SinkError> {
        let table = self.names().store_inventory(generation);
        let out = self
            .client()
            .get_item()
            .table_name(&table)
            .key("store_id", s(store_id))
            .key("sku", s(sku))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail(&table, e))?;
        out.item.map(|item| stock_level(&item, &table)).transpose()
    }

    /// Every item of `table` (strongly consistent scan, every page).
    async fn scan(&self, table: &str) -> Result<Vec<Item>, SinkError> {
        scan_all(self.client(), table).await.map_err(|e| self.fail(table, e))
    }
}

/// Every item of `table`: a strongly consistent scan, every page.
pub async fn scan_all(client: &Client, table: &str) -> Result<Vec<Item>, SdkError<ScanError, HttpResponse>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client.scan().table_name(table).consistent_read(true).set_exclusive_start_key(start).send().await?;
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

/// Waits until `table` is `ACTIVE` (at once on emulators, seconds on AWS); a table in any other
/// settled state, or still not ready after [`TABLE_READY_TIMEOUT`], is `not_ready`.
async fn wait_until_active<E>(
    client: &Client,
    table: &str,
    fail: impl Fn(SdkError<DescribeTableError, HttpResponse>) -> E,
    not_ready: impl Fn(String) -> E,
) -> Result<(), E> {
    let deadline = tokio::time::Instant::now() + TABLE_READY_TIMEOUT;
    loop {
        let out = client.describe_table().table_name(table).send().await.map_err(&fail)?;
        match out.table.and_then(|t| t.table_status) {
            Some(TableStatus::Active) => return Ok(()),
            Some(TableStatus::Creating) | Some(TableStatus::Updating) | None => {}
            Some(other) => return Err(not_ready(format!("{table} is {other}, not ACTIVE"))),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(not_ready(format!("{table} did not become ACTIVE")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates a table with one string hash key `key` (on-demand capacity) if absent, and waits until
/// it is `ACTIVE`: the small bookkeeping tables (shard leases, the payments ledger).
pub async fn ensure_keyed_table(client: &Client, table: &str, key: &str) -> Result<(), String> {
    let describe = |e: SdkError<_, _>| format!("{table}: {}", DisplayErrorContext(&e));
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("complete key schema"),
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        // Another process created it first.
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(format!("{table}: {}", DisplayErrorContext(&e))),
    }
    wait_until_active(client, table, describe, |text| text).await
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

#[async_trait]
impl Rebuildable for DynamoSink {
    async fn shadow(&self) -> Result<Arc<dyn Sink>, SinkError> {
        let generation = self.shadow_generation().await?;
        Ok(Arc::new(DynamoSink {
            shared: self.shared.clone(),
            target: Target::Generation(generation),
            name: format!("{NAME}.rebuild"),
        }))
    }

    async fn reset_shadow(&self, position: u64) -> Result<(), SinkError> {
        self.discard_shadow().await?;
        let generation = self.shadow_generation().await?;
        self.set_position(generation, position, PositionWrite::Exactly).await
    }

    /// One conditional `UpdateItem` makes the shadow generation live for every reader at once; the
    /// old generation's tables are deleted after it.
    async fn promote_shadow(&self) -> Result<(), SinkError> {
        let generations = self.generations().await?;
        let Some(shadow) = generations.shadow else {
            return Err(SinkError::Unavailable("no shadow to promote".into()));
        };
        let old = generations.live;
        let flipped = self
            .mark_retired(
                old,
                "SET live_generation = :shadow REMOVE shadow_generation",
                "live_generation = :old AND shadow_generation = :shadow",
                HashMap::from([(":shadow".to_owned(), n(shadow)), (":old".to_owned(), n(old))]),
            )
            .await?;
        if !flipped && self.generations().await?.live != shadow {
            return Err(SinkError::Unavailable("the shadow changed while it was being promoted".into()));
        }
        self.shared.live.store(shadow, Ordering::Release);
        self.finish_retirements(&[old]).await
    }

    async fn discard_shadow(&self) -> Result<(), SinkError> {
        let Some(shadow) = self.generations().await?.shadow else { return Ok(()) };
        // A failed condition means another process discarded or promoted it already.
        let removed = self
            .mark_retired(
                shadow,
                "REMOVE shadow_generation",
                "shadow_generation = :shadow",
                HashMap::from([(":shadow".to_owned(), n(shadow))]),
            )
            .await?;
        if removed {
            self.finish_retirements(&[shadow]).await?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum PositionWrite {
    /// Only if the generation has no position yet.
    IfAbsent,
    /// Only forward.
    Forward,
    /// Whatever it was.
    Exactly,
}

#[derive(Clone, Copy)]
enum TableKind {
    ActiveOrders,
    StoreInventory,
    Offsets,
}

impl TableKind {
    fn create(self, client: &Client, table: &str) -> Result<CreateTableFluentBuilder, SinkError> {
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(|e| built(table, e))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(|e| built(table, e))
        };
        let create = client.create_table().table_name(table).billing_mode(BillingMode::PayPerRequest);
        Ok(match self {
            TableKind::ActiveOrders => {
                let by_customer = GlobalSecondaryIndex::builder()
                    .index_name(CUSTOMER_INDEX)
                    .key_schema(key("customer_id", KeyType::Hash)?)
                    .key_schema(key("created_at_us", KeyType::Range)?)
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .map_err(|e| built(table, e))?;
                create
                    .attribute_definitions(attribute("order_id", ScalarAttributeType::S)?)
                    .attribute_definitions(attribute("customer_id", ScalarAttributeType::S)?)
                    .attribute_definitions(attribute("created_at_us", ScalarAttributeType::N)?)
                    .key_schema(key("order_id", KeyType::Hash)?)
                    .global_secondary_indexes(by_customer)
            }
            TableKind::StoreInventory => create
                .attribute_definitions(attribute("store_id", ScalarAttributeType::S)?)
                .attribute_definitions(attribute("sku", ScalarAttributeType::S)?)
                .key_schema(key("store_id", KeyType::Hash)?)
                .key_schema(key("sku", KeyType::Range)?),
            TableKind::Offsets => create
                .attribute_definitions(attribute("name", ScalarAttributeType::S)?)
                .key_schema(key("name", KeyType::Hash)?),
        })
    }
}

type Item = HashMap<String, AttributeValue>;

/// One write of a page; no two writes of a page touch the same item.
enum Write {
    /// Orders placed and completed within the page: final, so written without a condition.
    FinalOrders(Vec<Item>),
    /// An order placed within the page and not completed in it.
    Order { item: Item, version: u64 },
    /// An order completed in this page and placed in an earlier one.
    OrderStatus { order_id: Uuid, status: &'static str, expires_at: i64, version: u64 },
    /// The deltas of one stock item, in stream order.
    Stock { store_id: String, sku: String, deltas: Vec<StockDelta> },
}

struct StockDelta {
    version: u64,
    available: i64,
    reserved: i64,
}

/// What a page does to one order.
enum OrderFold {
    /// Placed in this page: the whole item as of `version`.
    Whole { order: OrderView, expires_at: Option<i64>, version: u64 },
    /// Only completed in this page.
    Completed { status: &'static str, expires_at: i64, version: u64 },
}

/// A page folded into writes: one per item, with the orders that are final batched.
///
/// Folding is exact because a page is a contiguous range of the global order, so it holds every
/// event of a stream between the first and the last of that stream it holds.
fn plan<'a>(events: impl Iterator<Item = &'a RecordedEvent>) -> Result<Vec<Write>, SinkError> {
    let mut orders: Vec<(Uuid, OrderFold)> = Vec::new();
    let mut order_index: HashMap<Uuid, usize> = HashMap::new();
    let mut stock: Vec<(String, String, Vec<StockDelta>)> = Vec::new();
    let mut stock_index: HashMap<(String, String), usize> = HashMap::new();
    for e in events {
        match changes(e)? {
            Some(Change::OrderPlaced { order, version }) => {
                let order_id = order.order_id;
                let fold = OrderFold::Whole { order, expires_at: None, version };
                match order_index.get(&order_id) {
                    Some(&i) => orders[i].1 = fold,
                    None => {
                        order_index.insert(order_id, orders.len());
                        orders.push((order_id, fold));
                    }
                }
            }
            Some(Change::OrderStatus { order_id, status, version, .. }) => {
                let expires = e.recorded_at_us.div_euclid(1_000_000) + ACTIVE_AFTER_COMPLETION_SECS;
                match order_index.get(&order_id) {
                    Some(&i) => match &mut orders[i].1 {
                        OrderFold::Whole { order, expires_at, version: v } => {
                            order.status = status.to_owned();
                            *expires_at = Some(expires);
                            *v = version;
                        }
                        completed => *completed = OrderFold::Completed { status, expires_at: expires, version },
                    },
                    None => {
                        order_index.insert(order_id, orders.len());
                        orders.push((order_id, OrderFold::Completed { status, expires_at: expires, version }));
                    }
                }
            }
            Some(Change::Stock { store_id, sku, available, reserved, version }) => {
                let delta = StockDelta { version, available, reserved };
                match stock_index.get(&(store_id.clone(), sku.clone())) {
                    Some(&i) => stock[i].2.push(delta),
                    None => {
                        stock_index.insert((store_id.clone(), sku.clone()), stock.len());
                        stock.push((store_id, sku, vec![delta]));
                    }
                }
            }
            _ => {}
        }
    }
    let mut finals = Vec::new();
    let mut writes = Vec::new();
    for (order_id, fold) in orders {
        match fold {
            OrderFold::Whole { order, expires_at, version } if is_final(&order.status) => {
                finals.push(order_item(&order, expires_at, version));
            }
            OrderFold::Whole { order, expires_at, version } => {
                writes.push(Write::Order { item: order_item(&order, expires_at, version), version });
            }
            OrderFold::Completed { status, expires_at, version } => {
                writes.push(Write::OrderStatus { order_id, status, expires_at, version });
            }
        }
    }
    writes.extend(stock.into_iter().map(|(store_id, sku, deltas)| Write::Stock { store_id, sku, deltas }));
    let mut batched: Vec<Write> = Vec::with_capacity(writes.len() + finals.len() / BATCH_LIMIT + 1);
    let mut finals = finals.into_iter().peekable();
    while finals.peek().is_some() {
        batched.push(Write::FinalOrders(finals.by_ref().take(BATCH_LIMIT).collect()));
    }
    batched.extend(writes);
    Ok(batched)
}

/// Paid and cancelled end an order's stream: the order decider emits nothing after them.
fn is_final(status: &str) -> bool {
    matches!(status, "paid" | "cancelled")
}

fn order_item(order: &OrderView, expires_at: Option<i64>, version: u64) -> Item {
    let lines = order
        .lines
        .iter()
        .map(|l| {
            AttributeValue::M(HashMap::from([
                ("item_id".to_owned(), s(&l.item_id)),
                ("quantity".to_owned(), n(l.quantity)),
                ("unit_price_cents".to_owned(), n(l.unit_price_cents)),
            ]))
        })
        .collect();
    let mut item = HashMap::from([
        ("order_id".to_owned(), s(&order.order_id.to_string())),
        ("customer_id".to_owned(), s(&order.customer_id)),
        ("store_id".to_owned(), s(&order.store_id)),
        ("status".to_owned(), s(&order.status)),
        ("total_cents".to_owned(), n(order.total_cents)),
        ("created_at_us".to_owned(), n(order.created_at_us)),
        ("lines".to_owned(), AttributeValue::L(lines)),
        ("version".to_owned(), n(version)),
    ]);
    if let Some(at) = expires_at {
        item.insert(EXPIRES_AT.to_owned(), n(at));
    }
    item
}

fn active_order(item: &Item, table: &str) -> Result<ActiveOrder, SinkError> {
    let order_id = text(item, "order_id", table)?;
    let lines = match item.get("lines") {
        Some(AttributeValue::L(lines)) => lines
            .iter()
            .map(|line| match line {
                AttributeValue::M(l) => Ok(OrderLine {
                    item_id: text(l, "item_id", table)?,
                    quantity: num(l, "quantity", table)?,
                    unit_price_cents: num(l, "unit_price_cents", table)?,
                }),
                _ => Err(malformed(table, "lines")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(malformed(table, "lines")),
    };
    Ok(ActiveOrder {
        order_id: order_id.parse().map_err(|_| malformed(table, "order_id"))?,
        customer_id: text(item, "customer_id", table)?,
        store_id: text(item, "store_id", table)?,
        status: text(item, "status", table)?,
        total_cents: num(item, "total_cents", table)?,
        created_at_us: num(item, "created_at_us", table)?,
        lines,
        expires_at: item.get(EXPIRES_AT).map(|_| num(item, EXPIRES_AT, table)).transpose()?,
    })
}

fn stock_level(item: &Item, table: &str) -> Result<StockLevel, SinkError> {
    Ok(StockLevel {
        store_id: text(item, "store_id", table)?,
        sku: text(item, "sku", table)?,
        available: num(item, "available", table)?,
        reserved: num(item, "reserved", table)?,
    })
}

/// `active-orders/<order_id>`; the bookkeeping (`version`, `expires_at`) is left out.
fn canonical_order(o: &ActiveOrder) -> CanonicalRow {
    let lines: Vec<String> =
        o.lines.iter().map(|l| format!("{}:{}:{}", l.item_id, l.quantity, l.unit_price_cents)).collect();
    CanonicalRow {
        key: format!("active-orders/{}", o.order_id),
        content: format!(
            "customer_id={};store_id={};status={};total_cents={};created_at_us={};lines={}",
            o.customer_id,
            o.store_id,
            o.status,
            o.total_cents,
            o.created_at_us,
            lines.join(",")
        ),
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn malformed(table: &str, attribute: &str) -> SinkError {
    SinkError::Unavailable(format!("{table}: an item without a valid `{attribute}`"))
}

fn text(item: &Item, attribute: &str, table: &str) -> Result<String, SinkError> {
    match item.get(attribute) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(malformed(table, attribute)),
    }
}

fn num<T: std::str::FromStr>(item: &Item, attribute: &str, table: &str) -> Result<T, SinkError> {
    match item.get(attribute) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| malformed(table, attribute)),
        _ => Err(malformed(table, attribute)),
    }
}

fn is_conditional_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

fn built(table: &str, e: aws_sdk_dynamodb::error::BuildError) -> SinkError {
    SinkError::Unavailable(format!("{table}: {e}"))
}
