//! The storefront read model: orders as customers follow them (shaped like the Aurora `orders` table
//! of the original plans, indexed by customer and time) and the menu as it is listed.
//!
//! [`changes`] turns an event into row changes once; each store ([`sqlite`], [`postgres`]) only
//! writes them.

use async_trait::async_trait;
use events::domain::{Cents, OrderLine};
use events::{DomainEvent, RecordedEvent};
use serde::Serialize;
use uuid::Uuid;

use crate::SinkError;

pub mod postgres;
pub mod sqlite;

/// The name under which the storefront's position is stored.
pub const NAME: &str = "storefront";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderView {
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    pub status: String,
    pub total_cents: Cents,
    pub cancel_reason: Option<String>,
    pub created_at_us: i64,
    pub lines: Vec<OrderLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MenuItemView {
    pub item_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: Cents,
    pub retired: bool,
}

/// Queries the gateways answer from the storefront.
#[async_trait]
pub trait StorefrontQueries: Send + Sync + 'static {
    async fn order(&self, order_id: Uuid) -> Result<Option<OrderView>, SinkError>;
    /// Newest first.
    async fn customer_orders(&self, customer_id: &str, limit: usize) -> Result<Vec<OrderView>, SinkError>;
    /// Every item, retired ones included, by category then id.
    async fn menu(&self) -> Result<Vec<MenuItemView>, SinkError>;
}

/// One row change. `version` is the source stream's version: a change never overwrites a newer one.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    OrderPlaced { order: OrderView, version: u64 },
    OrderStatus { order_id: Uuid, status: &'static str, cancel_reason: Option<String>, version: u64 },
    MenuItem { item: MenuItemView, version: u64 },
    MenuPrice { item_id: String, price_cents: Cents, version: u64 },
    MenuRetired { item_id: String, version: u64 },
}

/// What an event changes in the storefront (nothing, for most events).
pub fn changes(e: &RecordedEvent) -> Result<Option<Change>, SinkError> {
    let category = events::domain::streams::category(&e.stream_id);
    if category != "order" && category != "menu" {
        return Ok(None);
    }
    let version = e.stream_version;
    let event = e.decode().map_err(|err| SinkError::Poison(format!("position {}: {err}", e.global_position)))?;
    Ok(match event {
        DomainEvent::OrderPlaced(p) => Some(Change::OrderPlaced {
            order: OrderView {
                order_id: p.order_id,
                customer_id: p.customer_id,
                store_id: p.store_id,
                status: "placed".into(),
                total_cents: p.total_cents,
                cancel_reason: None,
                created_at_us: p.placed_at_us,
                lines: p.lines,
            },
            version,
        }),
        DomainEvent::OrderPaid(p) => {
            Some(Change::OrderStatus { order_id: p.order_id, status: "paid", cancel_reason: None, version })
        }
        DomainEvent::OrderCancelled(c) => Some(Change::OrderStatus {
            order_id: c.order_id,
            status: "cancelled",
            cancel_reason: Some(c.reason),
            version,
        }),
        DomainEvent::MenuItemPublished(m) => Some(Change::MenuItem {
            item: MenuItemView {
                item_id: m.item_id,
                name: m.name,
                category: m.category,
                price_cents: m.price_cents,
                retired: false,
            },
            version,
        }),
        DomainEvent::MenuItemPriceChanged(m) => {
            Some(Change::MenuPrice { item_id: m.item_id, price_cents: m.price_cents, version })
        }
        DomainEvent::MenuItemRetired(m) => Some(Change::MenuRetired { item_id: m.item_id, version }),
        _ => None,
    })
}

#[cfg(feature = "conformance")]
pub mod conformance;
