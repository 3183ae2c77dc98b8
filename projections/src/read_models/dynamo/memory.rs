//! `active-orders` and `store-inventory` held in this process's memory: the same planned writes
//! ([`plan`]) applied with the same conditions DynamoDB evaluates, to maps instead of tables.
//!
//! It is the shadow `verify` compares the live tables with ([`crate::Rebuildable::memory_shadow`]):
//! folding the journal here costs no request, and it can be brought up to the journal's head again
//! and again while a Kinesis consumer is still catching up, where a shadow in DynamoDB would be
//! rebuilt from position 0 each time. The conformance test applies the same pages to both and
//! requires the same canonical rows, so the two cannot drift apart.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use events::RecordedEvent;

use super::codec::{n, num, s, text, Item};
use super::plan::{plan, Write};
use super::queries::canonical_rows;
use super::{EXPIRES_AT, NAME};
use crate::{CanonicalRow, Sink, SinkError};

const ORDERS: &str = "active-orders (in memory)";
const INVENTORY: &str = "store-inventory (in memory)";

#[derive(Default)]
struct Tables {
    position: u64,
    /// By `order_id`.
    orders: BTreeMap<String, Item>,
    /// By `store_id` and `sku`.
    inventory: BTreeMap<(String, String), Item>,
}

/// The DynamoDB read models as maps; see the module docs.
#[derive(Default)]
pub struct MemoryTables {
    tables: Mutex<Tables>,
}

impl MemoryTables {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The item's `version`, or `None` when it has none (DynamoDB's `attribute_not_exists`).
fn version(item: &Item, table: &str) -> Result<Option<u64>, SinkError> {
    item.get("version").map(|_| num(item, "version", table)).transpose()
}

impl Tables {
    /// One planned write, as [`super::DynamoSink`] makes it: a failed condition changes nothing.
    fn write(&mut self, write: Write) -> Result<(), SinkError> {
        match write {
            Write::FinalOrders(items) => {
                for item in items {
                    self.orders.insert(text(&item, "order_id", ORDERS)?, item);
                }
            }
            Write::Order { item, version: v } => {
                let key = text(&item, "order_id", ORDERS)?;
                // attribute_not_exists(version) OR version < :v
                let older = match self.orders.get(&key) {
                    Some(existing) => version(existing, ORDERS)?.is_none_or(|at| at < v),
                    None => true,
                };
                if older {
                    self.orders.insert(key, item);
                }
            }
            Write::OrderStatus { order_id, status, expires_at, version: v } => {
                // version < :v, on an existing item only (an update of an absent item fails the
                // condition and creates nothing).
                if let Some(item) = self.orders.get_mut(&order_id.to_string()) {
                    if version(item, ORDERS)?.is_some_and(|at| at < v) {
                        item.insert("status".to_owned(), s(status));
                        item.insert("version".to_owned(), n(v));
                        item.insert(EXPIRES_AT.to_owned(), n(expires_at));
                    }
                }
            }
            Write::Stock { store_id, sku, mut deltas } => {
                if deltas.is_empty() {
                    return Ok(());
                }
                let item = self.inventory.entry((store_id.clone(), sku.clone())).or_insert_with(|| {
                    Item::from([("store_id".to_owned(), s(&store_id)), ("sku".to_owned(), s(&sku))])
                });
                // attribute_not_exists(version) OR version < :first; when the item is past some of the
                // deltas, only those above its version are applied (as the sink does after reading it back).
                if let Some(at) = version(item, INVENTORY)? {
                    deltas.retain(|d| d.version > at);
                }
                let Some(last) = deltas.last().map(|d| d.version) else { return Ok(()) };
                let add = |item: &mut Item, attribute: &str, by: i64| -> Result<(), SinkError> {
                    let was: i64 = if item.contains_key(attribute) { num(item, attribute, INVENTORY)? } else { 0 };
                    item.insert(attribute.to_owned(), n(was + by));
                    Ok(())
                };
                add(item, "available", deltas.iter().map(|d| d.available).sum())?;
                add(item, "reserved", deltas.iter().map(|d| d.reserved).sum())?;
                item.insert("version".to_owned(), n(last));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for MemoryTables {
    fn name(&self) -> &str {
        NAME
    }

    async fn position(&self) -> Result<u64, SinkError> {
        Ok(self.tables.lock().expect("not poisoned").position)
    }

    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        let mut tables = self.tables.lock().expect("not poisoned");
        let at = tables.position;
        let Some(last) = events.last().map(|e| e.global_position) else { return Ok(()) };
        if last <= at {
            return Ok(());
        }
        for write in plan(events.iter().filter(|e| e.global_position > at))? {
            tables.write(write)?;
        }
        tables.position = last;
        Ok(())
    }

    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError> {
        let tables = self.tables.lock().expect("not poisoned");
        canonical_rows(tables.orders.values(), ORDERS, tables.inventory.values(), INVENTORY)
    }
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::read_models::conformance::run_sink_suite;

    #[tokio::test]
    async fn the_tables_in_memory_pass_the_sink_suite() {
        run_sink_suite(|| async { Arc::new(MemoryTables::new()) as Arc<dyn Sink> }).await;
    }
}
