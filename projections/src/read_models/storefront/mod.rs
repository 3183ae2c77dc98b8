//! The storefront read model (Aurora PostgreSQL in production, SQLite embedded): orders as customers
//! follow them (shaped like the original plans' `orders` table, indexed by customer and time), the
//! menu as it is listed, store inventory levels, and loyalty balances and tiers.
//!
//! [`changes`] ([`crate::read_models::fold`]) turns an event into row changes once; each store
//! ([`sqlite`], [`postgres`]) only writes them. Table names carry a prefix: `""` for the live model,
//! [`SHADOW_PREFIX`] for a rebuild's shadow ([`crate::read_models::shadow`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::read_models::fold::{changes, Change, MenuItemView, OrderView};
pub use crate::read_models::shadow::SHADOW_PREFIX;
use crate::{CanonicalRow, SinkError};

pub mod postgres;
pub mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

/// The name under which the live storefront's position is stored.
pub const NAME: &str = "storefront";

/// The tables, in the order a promotion renames them.
pub const TABLES: &[&str] = &["order_lines", "orders", "menu_items", "store_inventory", "loyalty_accounts"];

/// The name under which the storefront with table prefix `prefix` stores its position: [`NAME`] for
/// the live model, `storefront.rebuild` for the shadow.
pub fn position_name(prefix: &str) -> String {
    if prefix.is_empty() {
        NAME.to_owned()
    } else {
        crate::read_models::shadow::shadow_position_name(NAME)
    }
}

/// One store's stock of one SKU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub store_id: String,
    pub sku: String,
    pub available: i64,
    pub reserved: i64,
}

/// A customer's loyalty points and tier.
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
    /// A store's stock by SKU, at most `limit` SKUs after `after` (keyset paging, as
    /// [`Self::loyalty_customers`]).
    async fn stock_levels(
        &self,
        store_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StockLevel>, SinkError>;
    async fn loyalty(&self, customer_id: &str) -> Result<Option<LoyaltyBalance>, SinkError>;
    /// The customers with a loyalty account, by id, at most `limit` of them after `after` (keyset
    /// paging: pass the last id of a page to get the next; an empty page is the end). The hourly
    /// tier recalculation walks every account this way.
    async fn loyalty_customers(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, SinkError>;
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
