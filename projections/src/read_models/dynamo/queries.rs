//! What the gateways ask of the DynamoDB read models (an order, a customer's orders, a stock level),
//! and the canonical rows replay compares. Each query runs on the live generation, resolved anew if
//! another process promoted meanwhile.

use uuid::Uuid;

use super::codec::{active_order, canonical_order, s, stock_level, Item};
use super::{ActiveOrder, DynamoSink, CUSTOMER_INDEX};
use crate::aws::dynamodb::scan_all;
use crate::read_models::storefront::{canonical, StockLevel};
use crate::{CanonicalRow, SinkError};

impl DynamoSink {
    pub(super) async fn canonical_rows_of(&self, generation: u64) -> Result<Vec<CanonicalRow>, SinkError> {
        let orders = self.names().active_orders(generation);
        let inventory = self.names().store_inventory(generation);
        canonical_rows(&self.scan(&orders).await?, &orders, &self.scan(&inventory).await?, &inventory)
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
    pub(super) async fn scan(&self, table: &str) -> Result<Vec<Item>, SinkError> {
        scan_all(self.client(), table).await.map_err(|failure| self.failed(failure))
    }
}

/// The canonical rows of the items of `active-orders` and `store-inventory` (tables named for errors).
pub(super) fn canonical_rows<'a>(
    orders: impl IntoIterator<Item = &'a Item>,
    orders_table: &str,
    inventory: impl IntoIterator<Item = &'a Item>,
    inventory_table: &str,
) -> Result<Vec<CanonicalRow>, SinkError> {
    let mut rows = Vec::new();
    for item in orders {
        rows.push(canonical_order(&active_order(item, orders_table)?));
    }
    for item in inventory {
        let level = stock_level(item, inventory_table)?;
        let key = format!("store-inventory/{}/{}", level.store_id, level.sku);
        rows.push(CanonicalRow { key, ..canonical::stock(&level) });
    }
    Ok(rows)
}
