//! The storefront read model (Aurora PostgreSQL in production, SQLite embedded): orders as customers
//! follow them (shaped like the original plans' `orders` table, indexed by customer and time), the
//! menu as it is listed, store inventory levels, and loyalty balances and tiers.
//!
//! [`changes`] turns an event into row changes once; each store ([`sqlite`], [`postgres`]) only writes
//! them. Table names carry a prefix: `""` for the live model, [`SHADOW_PREFIX`] for a rebuild's shadow.

use async_trait::async_trait;
use events::domain::{Cents, Nutrition, OrderLine};
use events::{DomainEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CanonicalRow, SinkError};

pub mod postgres;
pub mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

/// The name under which the live storefront's position is stored.
pub const NAME: &str = "storefront";
/// Table prefix of the shadow model that `cloudcafe replay` builds.
pub const SHADOW_PREFIX: &str = "rebuild_";

/// The tables, in the order a promotion renames them.
pub const TABLES: &[&str] = &["order_lines", "orders", "menu_items", "store_inventory", "loyalty_accounts"];

pub fn position_name(prefix: &str) -> String {
    if prefix.is_empty() {
        NAME.to_owned()
    } else {
        format!("{NAME}.{}", prefix.trim_end_matches('_'))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuItemView {
    pub item_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: Cents,
    pub retired: bool,
    pub nutrition: Nutrition,
    pub image_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub store_id: String,
    pub sku: String,
    pub available: i64,
    pub reserved: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltyBalance {
    pub customer_id: String,
    pub points: i64,
    pub tier: String,
}

/// Queries the gateways answer from the storefront.
#[async_trait]
pub trait StorefrontQueries: Send + Sync + 'static {
    async fn order(&self, order_id: Uuid) -> Result<Option<OrderView>, SinkError>;
    /// Newest first.
    async fn customer_orders(&self, customer_id: &str, limit: usize) -> Result<Vec<OrderView>, SinkError>;
    /// Every item, retired ones included, by category then id.
    async fn menu(&self) -> Result<Vec<MenuItemView>, SinkError>;
    async fn stock_levels(&self, store_id: &str) -> Result<Vec<StockLevel>, SinkError>;
    async fn loyalty(&self, customer_id: &str) -> Result<Option<LoyaltyBalance>, SinkError>;
}

/// One row change. `version` is the source stream's version: a change never overwrites a newer one.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    OrderPlaced { order: OrderView, version: u64 },
    OrderStatus { order_id: Uuid, status: &'static str, cancel_reason: Option<String>, version: u64 },
    MenuItem { item: MenuItemView, version: u64 },
    MenuPrice { item_id: String, price_cents: Cents, version: u64 },
    MenuRetired { item_id: String, version: u64 },
    Stock { store_id: String, sku: String, available: i64, reserved: i64, version: u64 },
    Points { customer_id: String, points: i64, version: u64 },
    Tier { customer_id: String, tier: &'static str, version: u64 },
}

/// What an event changes in the storefront (nothing, for payments).
pub fn changes(e: &RecordedEvent) -> Result<Option<Change>, SinkError> {
    let category = events::domain::streams::category(&e.stream_id);
    if !matches!(category, "order" | "menu" | "inventory" | "loyalty") {
        return Ok(None);
    }
    let version = e.stream_version;
    let event = e.decode().map_err(|err| SinkError::Poison(format!("position {}: {err}", e.global_position)))?;
    let stock = |store_id: &str, sku: &str, available: i64, reserved: i64| Change::Stock {
        store_id: store_id.to_owned(),
        sku: sku.to_owned(),
        available,
        reserved,
        version,
    };
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
                nutrition: m.nutrition,
                image_sha256: m.image_sha256,
            },
            version,
        }),
        DomainEvent::MenuItemPriceChanged(m) => {
            Some(Change::MenuPrice { item_id: m.item_id, price_cents: m.price_cents, version })
        }
        DomainEvent::MenuItemRetired(m) => Some(Change::MenuRetired { item_id: m.item_id, version }),
        DomainEvent::StockRestocked(s) => Some(stock(&s.store_id, &s.sku, i64::from(s.quantity), 0)),
        DomainEvent::StockReserved(s) => {
            Some(stock(&s.store_id, &s.sku, -i64::from(s.quantity), i64::from(s.quantity)))
        }
        DomainEvent::StockReleased(s) => {
            Some(stock(&s.store_id, &s.sku, i64::from(s.quantity), -i64::from(s.quantity)))
        }
        DomainEvent::StockSettled(s) => Some(stock(&s.store_id, &s.sku, 0, -i64::from(s.quantity))),
        DomainEvent::PointsAccrued(p) => {
            Some(Change::Points { customer_id: p.customer_id, points: p.points as i64, version })
        }
        DomainEvent::TierChanged(t) => Some(Change::Tier { customer_id: t.customer_id, tier: t.to.as_str(), version }),
        _ => None,
    })
}

/// Canonical rows, built the same way from whichever store the values come from.
pub mod canonical {
    use super::*;

    pub fn order(o: &OrderView) -> CanonicalRow {
        let lines: Vec<String> =
            o.lines.iter().map(|l| format!("{}:{}:{}", l.item_id, l.quantity, l.unit_price_cents)).collect();
        CanonicalRow {
            key: format!("orders/{}", o.order_id),
            content: format!(
                "customer_id={};store_id={};status={};total_cents={};cancel_reason={};created_at_us={};lines={}",
                o.customer_id,
                o.store_id,
                o.status,
                o.total_cents,
                o.cancel_reason.as_deref().unwrap_or(""),
                o.created_at_us,
                lines.join(",")
            ),
        }
    }

    pub fn menu_item(m: &MenuItemView) -> CanonicalRow {
        CanonicalRow {
            key: format!("menu_items/{}", m.item_id),
            content: format!(
                "name={};category={};price_cents={};retired={};calories={};caffeine_mg={};sugar_g={};image_sha256={}",
                m.name,
                m.category,
                m.price_cents,
                m.retired,
                m.nutrition.calories,
                m.nutrition.caffeine_mg,
                m.nutrition.sugar_g,
                m.image_sha256
            ),
        }
    }

    pub fn stock(s: &StockLevel) -> CanonicalRow {
        CanonicalRow {
            key: format!("store_inventory/{}/{}", s.store_id, s.sku),
            content: format!("available={};reserved={}", s.available, s.reserved),
        }
    }

    pub fn loyalty(l: &LoyaltyBalance) -> CanonicalRow {
        CanonicalRow {
            key: format!("loyalty_accounts/{}", l.customer_id),
            content: format!("points={};tier={}", l.points, l.tier),
        }
    }
}
