//! Table generations: DynamoDB cannot rename tables, so a rebuild writes a new *generation* of both
//! tables and promotion flips which generation is live.
//!
//! The offsets table holds one item (`name` = [`NAME`]) recording the live generation, the highest
//! ever allocated, the shadow's (if any) and the generations retired but not yet deleted; and one
//! position item per generation (`{NAME}#g{n}`). Promotion is one conditional `UpdateItem` of that
//! item, atomic for readers of both tables at once; retiring a generation is marked in the same
//! request and finished (its tables deleted) after, so a crash in between is finished by the next
//! open or promotion.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

use super::codec::{n, num, s, Item};
use super::{built, DynamoSink, Target, CUSTOMER_INDEX, EXPIRES_AT, NAME};
use crate::aws::dynamodb::ensure_table;
use crate::aws::{classify, FailureKind};
use crate::read_models::PositionWrite;
use crate::{Rebuildable, Sink, SinkError};

/// The offsets table's item that records the generations.
#[derive(Clone, Debug, Default)]
pub(super) struct Generations {
    /// The generation readers use.
    pub live: u64,
    /// The highest generation ever allocated.
    pub last: u64,
    /// The generation a rebuild is writing, if one is.
    pub shadow: Option<u64>,
    /// Generations replaced or discarded whose tables may still need deleting (a crash interrupted it).
    pub retired: Vec<u64>,
}

impl DynamoSink {
    /// The stored position of `generation`. A live generation without one has been retired.
    pub(super) async fn position_of(&self, generation: u64) -> Result<u64, SinkError> {
        match self.read_position(generation).await? {
            Some(position) => Ok(position),
            None if matches!(self.target, Target::Live) => {
                self.shared.live.store(0, Ordering::Release);
                Err(SinkError::unavailable(format!("generation {generation} has been retired")))
            }
            None => Ok(0),
        }
    }

    /// Reads the generations item (strongly consistent).
    pub(super) async fn generations(&self) -> Result<Generations, SinkError> {
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
        let item = out.item.ok_or_else(|| SinkError::unavailable(format!("{offsets}: no `{NAME}` item")))?;
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

    pub(super) fn position_key(generation: u64) -> AttributeValue {
        s(&format!("{NAME}#g{generation}"))
    }

    /// Creates a generation's tables and position item if absent.
    pub(super) async fn ensure_generation(&self, generation: u64) -> Result<(), SinkError> {
        let names = self.names();
        self.ensure_table(&names.active_orders(generation), TableKind::ActiveOrders).await?;
        self.ensure_table(&names.store_inventory(generation), TableKind::StoreInventory).await?;
        self.set_position(generation, 0, PositionWrite::IfAbsent).await
    }

    pub(super) async fn set_position(
        &self,
        generation: u64,
        position: u64,
        how: PositionWrite,
    ) -> Result<(), SinkError> {
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

    pub(super) async fn read_position(&self, generation: u64) -> Result<Option<u64>, SinkError> {
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
    pub(super) async fn ensure_table(&self, table: &str, kind: TableKind) -> Result<(), SinkError> {
        let client = self.client();
        ensure_table(client, table, kind.create(client, table)?).await.map_err(|failure| self.failed(failure))?;
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
                    .map_err(|e| SinkError::unavailable_because("cannot build the time-to-live setting", e))?;
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
    pub(super) async fn finish_retirements(&self, retired: &[u64]) -> Result<(), SinkError> {
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
    pub(super) async fn shadow_generation(&self) -> Result<u64, SinkError> {
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
            match allocate.map_err(|e| classify(&offsets, e)) {
                Ok(_) => break next,
                // Another process allocated one meanwhile: use it.
                Err(failure) if failure.is(FailureKind::ConditionFailed) => continue,
                Err(failure) => return Err(self.failed(failure)),
            }
        };
        self.ensure_generation(generation).await?;
        Ok(generation)
    }

    /// Moves a generation out of the live or shadow slot (`update`, conditional on `condition`) and
    /// marks it retired in the same request; [`Self::finish_retirements`] then deletes its tables.
    /// False if the condition failed (another process got there first).
    pub(super) async fn mark_retired(
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
        match result.map_err(|e| classify(&offsets, e)) {
            Ok(_) => Ok(true),
            Err(failure) if failure.is(FailureKind::ConditionFailed) => Ok(false),
            Err(failure) => Err(self.failed(failure)),
        }
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
            return Err(SinkError::unavailable("no shadow to promote"));
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
            return Err(SinkError::unavailable("the shadow changed while it was being promoted"));
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

    /// The same writes applied to maps ([`super::MemoryTables`]).
    fn memory_shadow(&self) -> Option<Arc<dyn Sink>> {
        Some(Arc::new(super::MemoryTables::new()))
    }
}

/// The tables the sink creates, each with its key schema.
#[derive(Clone, Copy)]
pub(super) enum TableKind {
    ActiveOrders,
    StoreInventory,
    Offsets,
}

impl TableKind {
    /// The `CreateTable` request of a table of this kind, on-demand capacity.
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
