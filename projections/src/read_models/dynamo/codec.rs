//! The items of the DynamoDB read models and their encoding: an order of `active-orders` and a stock
//! level of `store-inventory` to and from DynamoDB attribute maps, and their canonical rows. Pure.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use events::domain::OrderLine;

pub(super) use crate::aws::dynamodb::Item;
use crate::read_models::fold::OrderView;
use crate::read_models::storefront::StockLevel;
use crate::{CanonicalRow, SinkError};

use super::{ActiveOrder, EXPIRES_AT};

/// The item of `order` as of `version`, with its expiry once it is complete.
pub(super) fn order_item(order: &OrderView, expires_at: Option<i64>, version: u64) -> Item {
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

/// The order an `active-orders` item holds.
pub(super) fn active_order(item: &Item, table: &str) -> Result<ActiveOrder, SinkError> {
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

/// The stock level a `store-inventory` item holds.
pub(super) fn stock_level(item: &Item, table: &str) -> Result<StockLevel, SinkError> {
    Ok(StockLevel {
        store_id: text(item, "store_id", table)?,
        sku: text(item, "sku", table)?,
        available: num(item, "available", table)?,
        reserved: num(item, "reserved", table)?,
    })
}

/// `active-orders/<order_id>`; the bookkeeping (`version`, `expires_at`) is left out.
pub(super) fn canonical_order(o: &ActiveOrder) -> CanonicalRow {
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

/// A string attribute.
pub(super) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// A number attribute.
pub(super) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// An item of `table` whose `attribute` is missing or not what it should be.
pub(super) fn malformed(table: &str, attribute: &str) -> SinkError {
    SinkError::unavailable(format!("{table}: an item without a valid `{attribute}`"))
}

/// A string attribute of an item.
pub(super) fn text(item: &Item, attribute: &str, table: &str) -> Result<String, SinkError> {
    match item.get(attribute) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(malformed(table, attribute)),
    }
}

/// A number attribute of an item.
pub(super) fn num<T: std::str::FromStr>(item: &Item, attribute: &str, table: &str) -> Result<T, SinkError> {
    match item.get(attribute) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| malformed(table, attribute)),
        _ => Err(malformed(table, attribute)),
    }
}
