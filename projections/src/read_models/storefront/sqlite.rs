//! The storefront in the embedded SQLite file `readmodel.db`.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use events::sqlite::{open_connection, SqlitePool};
use events::RecordedEvent;
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::{
    canonical, changes, position_name, Change, LoyaltyBalance, MenuItemView, OrderView, StockLevel, StorefrontQueries,
    SHADOW_PREFIX, TABLES,
};
use crate::{CanonicalRow, Rebuildable, Sink, SinkError};

/// `{p}` stands for the table prefix.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS {p}orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    status TEXT NOT NULL,
    cancel_reason TEXT,
    created_at INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS {p}orders_customer_created ON {p}orders (customer_id, created_at);
CREATE TABLE IF NOT EXISTS {p}order_lines (
    order_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {p}menu_items (
    item_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    retired INTEGER NOT NULL,
    calories INTEGER NOT NULL,
    caffeine_mg INTEGER NOT NULL,
    sugar_g INTEGER NOT NULL,
    image_sha256 TEXT NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {p}store_inventory (
    store_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    available INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (store_id, sku)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {p}loyalty_accounts (
    customer_id TEXT PRIMARY KEY,
    points INTEGER NOT NULL,
    tier TEXT NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_offsets (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
";

pub struct SqliteStorefront {
    pool: SqlitePool,
    prefix: &'static str,
    name: String,
}

fn sql(template: &str, prefix: &str) -> String {
    template.replace("{p}", prefix)
}

impl SqliteStorefront {
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| SinkError::unavailable_because(format!("cannot create {}", dir.display()), e))?;
        let path = dir.join("readmodel.db");
        let conn = open_connection(&path).map_err(unavailable)?;
        conn.execute_batch(&sql(SCHEMA, "")).map_err(unavailable)?;
        Ok(SqliteStorefront { pool: SqlitePool::new(path), prefix: "", name: position_name("") })
    }

    fn with_prefix(&self, prefix: &'static str) -> SqliteStorefront {
        SqliteStorefront { pool: self.pool.clone(), prefix, name: position_name(prefix) }
    }
}

fn unavailable(e: rusqlite::Error) -> SinkError {
    SinkError::unavailable_because("a SQLite statement failed", e)
}

fn position(c: &Connection, name: &str) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT position FROM projection_offsets WHERE name = ?1")?
        .query_row([name], |r| r.get::<_, i64>(0))
        .optional()
        .map(|p| p.unwrap_or(0) as u64)
}

fn set_position(c: &Connection, name: &str, position: u64) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO projection_offsets (name, position) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )?
    .execute(params![name, position as i64])
    .map(|_| ())
}

fn write(c: &Connection, p: &str, change: Change) -> rusqlite::Result<()> {
    match change {
        Change::OrderPlaced { order, version } => {
            let inserted = c
                .prepare_cached(&sql(
                    "INSERT INTO {p}orders (order_id, customer_id, store_id, total_cents, status, cancel_reason, created_at, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7) ON CONFLICT (order_id) DO NOTHING",
                    p,
                ))?
                .execute(params![
                    order.order_id.to_string(),
                    order.customer_id,
                    order.store_id,
                    order.total_cents,
                    order.status,
                    order.created_at_us,
                    version as i64
                ])?;
            if inserted == 1 {
                let mut line = c.prepare_cached(&sql(
                    "INSERT INTO {p}order_lines (order_id, line_no, item_id, quantity, unit_price_cents) VALUES (?1, ?2, ?3, ?4, ?5)",
                    p,
                ))?;
                for (i, l) in order.lines.iter().enumerate() {
                    line.execute(params![
                        order.order_id.to_string(),
                        i as i64,
                        l.item_id,
                        l.quantity,
                        l.unit_price_cents
                    ])?;
                }
            }
        }
        Change::OrderStatus { order_id, status, cancel_reason, version } => {
            c.prepare_cached(&sql(
                "UPDATE {p}orders SET status = ?2, cancel_reason = ?3, version = ?4 WHERE order_id = ?1 AND version < ?4",
                p,
            ))?
            .execute(params![order_id.to_string(), status, cancel_reason, version as i64])?;
        }
        Change::MenuItem { item, version } => {
            c.prepare_cached(&sql(
                "INSERT INTO {p}menu_items (item_id, name, category, price_cents, retired, calories, caffeine_mg, sugar_g, image_sha256, version)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (item_id) DO UPDATE SET name = excluded.name, category = excluded.category,
                   price_cents = excluded.price_cents, calories = excluded.calories, caffeine_mg = excluded.caffeine_mg,
                   sugar_g = excluded.sugar_g, image_sha256 = excluded.image_sha256, version = excluded.version
                 WHERE {p}menu_items.version < excluded.version",
                p,
            ))?
            .execute(params![
                item.item_id,
                item.name,
                item.category,
                item.price_cents,
                item.nutrition.calories,
                item.nutrition.caffeine_mg,
                item.nutrition.sugar_g,
                item.image_sha256,
                version as i64
            ])?;
        }
        Change::MenuPrice { item_id, price_cents, version } => {
            c.prepare_cached(&sql(
                "UPDATE {p}menu_items SET price_cents = ?2, version = ?3 WHERE item_id = ?1 AND version < ?3",
                p,
            ))?
            .execute(params![item_id, price_cents, version as i64])?;
        }
        Change::MenuRetired { item_id, version } => {
            c.prepare_cached(&sql(
                "UPDATE {p}menu_items SET retired = 1, version = ?2 WHERE item_id = ?1 AND version < ?2",
                p,
            ))?
            .execute(params![item_id, version as i64])?;
        }
        Change::Stock { store_id, sku, available, reserved, version } => {
            c.prepare_cached(&sql(
                "INSERT INTO {p}store_inventory (store_id, sku, available, reserved, version) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (store_id, sku) DO UPDATE SET available = {p}store_inventory.available + excluded.available,
                   reserved = {p}store_inventory.reserved + excluded.reserved, version = excluded.version
                 WHERE {p}store_inventory.version < excluded.version",
                p,
            ))?
            .execute(params![store_id, sku, available, reserved, version as i64])?;
        }
        Change::Points { customer_id, points, version } => {
            c.prepare_cached(&sql(
                "INSERT INTO {p}loyalty_accounts (customer_id, points, tier, version) VALUES (?1, ?2, 'green', ?3)
                 ON CONFLICT (customer_id) DO UPDATE SET points = {p}loyalty_accounts.points + excluded.points,
                   version = excluded.version WHERE {p}loyalty_accounts.version < excluded.version",
                p,
            ))?
            .execute(params![customer_id, points, version as i64])?;
        }
        Change::Tier { customer_id, tier, version } => {
            c.prepare_cached(&sql(
                "INSERT INTO {p}loyalty_accounts (customer_id, points, tier, version) VALUES (?1, 0, ?2, ?3)
                 ON CONFLICT (customer_id) DO UPDATE SET tier = excluded.tier, version = excluded.version
                 WHERE {p}loyalty_accounts.version < excluded.version",
                p,
            ))?
            .execute(params![customer_id, tier, version as i64])?;
        }
    }
    Ok(())
}

#[async_trait]
impl Sink for SqliteStorefront {
    fn name(&self) -> &str {
        &self.name
    }

    async fn position(&self) -> Result<u64, SinkError> {
        let name = self.name.clone();
        Ok(self.pool.run(move |c| position(c, &name)).await?)
    }

    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        let Some(last) = events.last().map(|e| e.global_position) else { return Ok(()) };
        let mut planned = Vec::with_capacity(events.len());
        for e in events {
            planned.push((e.global_position, changes(e)?));
        }
        let (name, prefix) = (self.name.clone(), self.prefix);
        self.pool
            .write(move |c| {
                let at = position(c, &name)?;
                if last <= at {
                    return Ok(());
                }
                for (position, change) in planned {
                    if let (true, Some(change)) = (position > at, change) {
                        write(c, prefix, change)?;
                    }
                }
                set_position(c, &name, last)
            })
            .await
            .map_err(crate::read_models::refusals::sqlite_apply)?;
        Ok(())
    }

    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError> {
        let p = self.prefix;
        Ok(self
            .pool
            .run(move |c| {
                let mut rows = Vec::new();
                for o in order_rows(c, p, "", &[])? {
                    rows.push(canonical::order(&o));
                }
                rows.extend(menu_rows(c, p)?.iter().map(canonical::menu_item));
                rows.extend(all_stock(c, p)?.iter().map(canonical::stock));
                rows.extend(loyalty_rows(c, p, None)?.iter().map(canonical::loyalty));
                Ok(rows)
            })
            .await?)
    }
}

#[async_trait]
impl Rebuildable for SqliteStorefront {
    async fn shadow(&self) -> Result<Arc<dyn Sink>, SinkError> {
        let shadow = self.with_prefix(SHADOW_PREFIX);
        let schema = sql(SCHEMA, SHADOW_PREFIX);
        self.pool.write(move |c| c.execute_batch(&schema)).await?;
        Ok(Arc::new(shadow))
    }

    async fn reset_shadow(&self, start: u64) -> Result<(), SinkError> {
        self.discard_shadow().await?;
        self.shadow().await?;
        let name = position_name(SHADOW_PREFIX);
        Ok(self.pool.write(move |c| set_position(c, &name, start)).await?)
    }

    async fn promote_shadow(&self) -> Result<(), SinkError> {
        let (live, shadow) = (position_name(""), position_name(SHADOW_PREFIX));
        let indexes = sql(
            "DROP INDEX IF EXISTS {p}orders_customer_created; CREATE INDEX orders_customer_created ON orders (customer_id, created_at);",
            SHADOW_PREFIX,
        );
        Ok(self
            .pool
            .write(move |c| {
                for t in TABLES {
                    c.execute_batch(&format!(
                        "DROP TABLE IF EXISTS {t}; ALTER TABLE {SHADOW_PREFIX}{t} RENAME TO {t};"
                    ))?;
                }
                c.execute_batch(&indexes)?;
                let at = position(c, &shadow)?;
                set_position(c, &live, at)?;
                c.execute("DELETE FROM projection_offsets WHERE name = ?1", [&shadow]).map(|_| ())
            })
            .await?)
    }

    async fn discard_shadow(&self) -> Result<(), SinkError> {
        let shadow = position_name(SHADOW_PREFIX);
        Ok(self
            .pool
            .write(move |c| {
                for t in TABLES {
                    c.execute_batch(&format!("DROP TABLE IF EXISTS {SHADOW_PREFIX}{t};"))?;
                }
                c.execute("DELETE FROM projection_offsets WHERE name = ?1", [&shadow]).map(|_| ())
            })
            .await?)
    }
}

/// Orders matching `filter` (a SQL suffix with `?1`/`?2`), with their lines.
fn order_rows(
    c: &Connection,
    p: &str,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<OrderView>> {
    let mut orders: Vec<OrderView> = c
        .prepare_cached(&sql(
            &format!(
                "SELECT order_id, customer_id, store_id, total_cents, status, cancel_reason, created_at FROM {{p}}orders {filter}"
            ),
            p,
        ))?
        .query_map(args, |r| {
            let id: String = r.get(0)?;
            Ok(OrderView {
                order_id: Uuid::parse_str(&id).unwrap_or_default(),
                customer_id: r.get(1)?,
                store_id: r.get(2)?,
                total_cents: r.get(3)?,
                status: r.get(4)?,
                cancel_reason: r.get(5)?,
                created_at_us: r.get(6)?,
                lines: vec![],
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut lines = c.prepare_cached(&sql(
        "SELECT item_id, quantity, unit_price_cents FROM {p}order_lines WHERE order_id = ?1 ORDER BY line_no",
        p,
    ))?;
    for o in &mut orders {
        o.lines = lines
            .query_map([o.order_id.to_string()], |r| {
                Ok(events::domain::OrderLine { item_id: r.get(0)?, quantity: r.get(1)?, unit_price_cents: r.get(2)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(orders)
}

fn menu_rows(c: &Connection, p: &str) -> rusqlite::Result<Vec<MenuItemView>> {
    c.prepare_cached(&sql(
        "SELECT item_id, name, category, price_cents, retired, calories, caffeine_mg, sugar_g, image_sha256
         FROM {p}menu_items ORDER BY category, item_id",
        p,
    ))?
    .query_map([], |r| {
        Ok(MenuItemView {
            item_id: r.get(0)?,
            name: r.get(1)?,
            category: r.get(2)?,
            price_cents: r.get(3)?,
            retired: r.get::<_, i64>(4)? != 0,
            nutrition: events::domain::Nutrition { calories: r.get(5)?, caffeine_mg: r.get(6)?, sugar_g: r.get(7)? },
            image_sha256: r.get(8)?,
        })
    })?
    .collect()
}

/// Every store's stock, for the canonical rows (a store's own page is [`StorefrontQueries::stock_levels`]).
fn all_stock(c: &Connection, p: &str) -> rusqlite::Result<Vec<StockLevel>> {
    c.prepare_cached(&sql(
        "SELECT store_id, sku, available, reserved FROM {p}store_inventory ORDER BY store_id, sku",
        p,
    ))?
    .query_map([], stock_level)?
    .collect()
}

/// A `store_inventory` row read as `store_id, sku, available, reserved`.
fn stock_level(r: &rusqlite::Row<'_>) -> rusqlite::Result<StockLevel> {
    Ok(StockLevel { store_id: r.get(0)?, sku: r.get(1)?, available: r.get(2)?, reserved: r.get(3)? })
}

fn loyalty_rows(c: &Connection, p: &str, customer: Option<&str>) -> rusqlite::Result<Vec<LoyaltyBalance>> {
    c.prepare_cached(&sql(
        "SELECT customer_id, points, tier FROM {p}loyalty_accounts WHERE ?1 IS NULL OR customer_id = ?1 ORDER BY customer_id",
        p,
    ))?
    .query_map([customer], |r| Ok(LoyaltyBalance { customer_id: r.get(0)?, points: r.get(1)?, tier: r.get(2)? }))?
    .collect()
}

#[async_trait]
impl StorefrontQueries for SqliteStorefront {
    async fn order(&self, order_id: Uuid) -> Result<Option<OrderView>, SinkError> {
        let p = self.prefix;
        Ok(self.pool.run(move |c| order_rows(c, p, "WHERE order_id = ?1", &[&order_id.to_string()])).await?.pop())
    }

    async fn customer_orders(&self, customer_id: &str, limit: usize) -> Result<Vec<OrderView>, SinkError> {
        let (p, customer_id) = (self.prefix, customer_id.to_owned());
        Ok(self
            .pool
            .run(move |c| {
                order_rows(
                    c,
                    p,
                    "WHERE customer_id = ?1 ORDER BY created_at DESC, order_id LIMIT ?2",
                    &[&customer_id, &(limit as i64)],
                )
            })
            .await?)
    }

    async fn menu(&self) -> Result<Vec<MenuItemView>, SinkError> {
        let p = self.prefix;
        Ok(self.pool.run(move |c| menu_rows(c, p)).await?)
    }

    async fn stock_levels(
        &self,
        store_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StockLevel>, SinkError> {
        let (p, store_id, after) = (self.prefix, store_id.to_owned(), after.map(str::to_owned));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .pool
            .run(move |c| {
                c.prepare_cached(&sql(
                    "SELECT store_id, sku, available, reserved FROM {p}store_inventory
                     WHERE store_id = ?1 AND (?2 IS NULL OR sku > ?2) ORDER BY sku LIMIT ?3",
                    p,
                ))?
                .query_map(params![store_id, after, limit], stock_level)?
                .collect::<rusqlite::Result<Vec<StockLevel>>>()
            })
            .await?)
    }

    async fn loyalty(&self, customer_id: &str) -> Result<Option<LoyaltyBalance>, SinkError> {
        let (p, customer_id) = (self.prefix, customer_id.to_owned());
        Ok(self.pool.run(move |c| loyalty_rows(c, p, Some(&customer_id))).await?.pop())
    }

    async fn loyalty_customers(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, SinkError> {
        let (p, after) = (self.prefix, after.map(str::to_owned));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .pool
            .run(move |c| {
                c.prepare_cached(&sql(
                    "SELECT customer_id FROM {p}loyalty_accounts WHERE ?1 IS NULL OR customer_id > ?1
                     ORDER BY customer_id LIMIT ?2",
                    p,
                ))?
                .query_map(params![after, limit], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::SqliteStorefront;
    use crate::read_models::storefront::conformance::{run_all, Storefront};

    #[tokio::test]
    async fn sqlite_storefront_passes_the_conformance_suite() {
        let root = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        run_all(|| {
            let dir = root.path().join(n.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string());
            async move { Arc::new(SqliteStorefront::open(&dir).unwrap()) as Arc<dyn Storefront> }
        })
        .await;
    }
}
