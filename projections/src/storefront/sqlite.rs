//! The storefront in the embedded SQLite file `readmodel.db`.

use std::path::Path;

use async_trait::async_trait;
use events::sqlite::{open_connection, SqlitePool};
use events::RecordedEvent;
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::{changes, Change, MenuItemView, OrderView, StorefrontQueries, NAME};
use crate::{Sink, SinkError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    status TEXT NOT NULL,
    cancel_reason TEXT,
    created_at INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_customer_created ON orders (customer_id, created_at);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS menu_items (
    item_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    retired INTEGER NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projection_offsets (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
";

pub struct SqliteStorefront {
    pool: SqlitePool,
}

impl SqliteStorefront {
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| SinkError::Unavailable(e.to_string()))?;
        let path = dir.join("readmodel.db");
        let conn = open_connection(&path).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(SqliteStorefront { pool: SqlitePool::new(path) })
    }
}

fn unavailable(e: rusqlite::Error) -> SinkError {
    SinkError::Unavailable(e.to_string())
}

fn position(c: &Connection) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT position FROM projection_offsets WHERE name = ?1")?
        .query_row([NAME], |r| r.get::<_, i64>(0))
        .optional()
        .map(|p| p.unwrap_or(0) as u64)
}

fn write(c: &Connection, change: Change) -> rusqlite::Result<()> {
    match change {
        Change::OrderPlaced { order, version } => {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO orders (order_id, customer_id, store_id, total_cents, status, cancel_reason, created_at, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7) ON CONFLICT (order_id) DO NOTHING",
                )?
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
                let mut line = c.prepare_cached(
                    "INSERT INTO order_lines (order_id, line_no, item_id, quantity, unit_price_cents) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
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
            c.prepare_cached(
                "UPDATE orders SET status = ?2, cancel_reason = ?3, version = ?4 WHERE order_id = ?1 AND version < ?4",
            )?
            .execute(params![order_id.to_string(), status, cancel_reason, version as i64])?;
        }
        Change::MenuItem { item, version } => {
            c.prepare_cached(
                "INSERT INTO menu_items (item_id, name, category, price_cents, retired, version) VALUES (?1, ?2, ?3, ?4, 0, ?5)
                 ON CONFLICT (item_id) DO UPDATE SET name = excluded.name, category = excluded.category,
                   price_cents = excluded.price_cents, version = excluded.version WHERE menu_items.version < excluded.version",
            )?
            .execute(params![item.item_id, item.name, item.category, item.price_cents, version as i64])?;
        }
        Change::MenuPrice { item_id, price_cents, version } => {
            c.prepare_cached(
                "UPDATE menu_items SET price_cents = ?2, version = ?3 WHERE item_id = ?1 AND version < ?3",
            )?
            .execute(params![item_id, price_cents, version as i64])?;
        }
        Change::MenuRetired { item_id, version } => {
            c.prepare_cached("UPDATE menu_items SET retired = 1, version = ?2 WHERE item_id = ?1 AND version < ?2")?
                .execute(params![item_id, version as i64])?;
        }
    }
    Ok(())
}

#[async_trait]
impl Sink for SqliteStorefront {
    fn name(&self) -> &str {
        NAME
    }

    async fn position(&self) -> Result<u64, SinkError> {
        Ok(self.pool.run(position).await?)
    }

    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        let Some(last) = events.last().map(|e| e.global_position) else { return Ok(()) };
        let mut planned = Vec::new();
        for e in events {
            planned.push((e.global_position, changes(e)?));
        }
        self.pool
            .write(move |c| {
                let at = position(c)?;
                for (position, change) in planned {
                    if position > at {
                        if let Some(change) = change {
                            write(c, change)?;
                        }
                    }
                }
                if last > at {
                    c.prepare_cached(
                        "INSERT INTO projection_offsets (name, position) VALUES (?1, ?2)
                         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    )?
                    .execute(params![NAME, last as i64])?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }
}

fn order_rows(c: &Connection, sql: &str, arg: &str, limit: i64) -> rusqlite::Result<Vec<OrderView>> {
    let mut orders: Vec<OrderView> = c
        .prepare_cached(sql)?
        .query_map(params![arg, limit], |r| {
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
    let mut lines = c.prepare_cached(
        "SELECT item_id, quantity, unit_price_cents FROM order_lines WHERE order_id = ?1 ORDER BY line_no",
    )?;
    for o in &mut orders {
        o.lines = lines
            .query_map([o.order_id.to_string()], |r| {
                Ok(events::domain::OrderLine { item_id: r.get(0)?, quantity: r.get(1)?, unit_price_cents: r.get(2)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(orders)
}

const ORDER_COLUMNS: &str =
    "SELECT order_id, customer_id, store_id, total_cents, status, cancel_reason, created_at FROM orders";

#[async_trait]
impl StorefrontQueries for SqliteStorefront {
    async fn order(&self, order_id: Uuid) -> Result<Option<OrderView>, SinkError> {
        let sql = format!("{ORDER_COLUMNS} WHERE order_id = ?1 LIMIT ?2");
        Ok(self.pool.run(move |c| order_rows(c, &sql, &order_id.to_string(), 1)).await?.pop())
    }

    async fn customer_orders(&self, customer_id: &str, limit: usize) -> Result<Vec<OrderView>, SinkError> {
        let sql = format!("{ORDER_COLUMNS} WHERE customer_id = ?1 ORDER BY created_at DESC, order_id LIMIT ?2");
        let customer_id = customer_id.to_owned();
        Ok(self.pool.run(move |c| order_rows(c, &sql, &customer_id, limit as i64)).await?)
    }

    async fn menu(&self) -> Result<Vec<MenuItemView>, SinkError> {
        Ok(self
            .pool
            .run(|c| {
                c.prepare_cached(
                    "SELECT item_id, name, category, price_cents, retired FROM menu_items ORDER BY category, item_id",
                )?
                .query_map([], |r| {
                    Ok(MenuItemView {
                        item_id: r.get(0)?,
                        name: r.get(1)?,
                        category: r.get(2)?,
                        price_cents: r.get(3)?,
                        retired: r.get::<_, i64>(4)? != 0,
                    })
                })?
                .collect()
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::SqliteStorefront;
    use crate::storefront::conformance::{run_all, Storefront};

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
