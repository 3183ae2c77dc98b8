//! The storefront in Aurora PostgreSQL, in the shape of the original plans' `orders` table:
//! `orders(order_id PK, customer_id, store_id, total_amount DECIMAL(10,2), status, created_at)`,
//! indexed by `(customer_id, created_at)`, plus `order_lines`, `menu_items`, `store_inventory` and
//! `loyalty_accounts`.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use events::postgres::{migrate, pg, pool_error};
use events::RecordedEvent;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{
    canonical, changes, position_name, Change, LoyaltyBalance, MenuItemView, OrderView, StockLevel, StorefrontQueries,
    SHADOW_PREFIX, TABLES,
};
use crate::{CanonicalRow, Rebuildable, Sink, SinkError};

/// The tables, with `{p}` for the prefix. Migration 1 of the live model is this with an empty prefix.
const TABLES_DDL: &str = "
    CREATE TABLE IF NOT EXISTS {p}orders (
        order_id uuid PRIMARY KEY,
        customer_id text NOT NULL,
        store_id text NOT NULL,
        total_amount numeric(10,2) NOT NULL,
        status text NOT NULL,
        cancel_reason text,
        created_at timestamptz NOT NULL,
        version bigint NOT NULL
    );
    CREATE INDEX IF NOT EXISTS {p}orders_customer_created ON {p}orders (customer_id, created_at);
    CREATE TABLE IF NOT EXISTS {p}order_lines (
        order_id uuid NOT NULL REFERENCES {p}orders (order_id) ON DELETE CASCADE,
        line_no int NOT NULL,
        item_id text NOT NULL,
        quantity int NOT NULL,
        unit_price numeric(10,2) NOT NULL,
        PRIMARY KEY (order_id, line_no)
    );
    CREATE TABLE IF NOT EXISTS {p}menu_items (
        item_id text PRIMARY KEY,
        name text NOT NULL,
        category text NOT NULL,
        price numeric(10,2) NOT NULL,
        retired boolean NOT NULL DEFAULT false,
        calories int NOT NULL,
        caffeine_mg int NOT NULL,
        sugar_g int NOT NULL,
        image_sha256 text NOT NULL,
        version bigint NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {p}store_inventory (
        store_id text NOT NULL,
        sku text NOT NULL,
        available bigint NOT NULL,
        reserved bigint NOT NULL,
        version bigint NOT NULL,
        PRIMARY KEY (store_id, sku)
    );
    CREATE TABLE IF NOT EXISTS {p}loyalty_accounts (
        customer_id text PRIMARY KEY,
        points bigint NOT NULL,
        tier text NOT NULL,
        version bigint NOT NULL
    );";

fn sql(template: &str, prefix: &str) -> String {
    template.replace("{p}", prefix)
}

pub struct PgStorefront {
    pool: Pool,
    prefix: &'static str,
    name: String,
}

impl PgStorefront {
    /// Creates or migrates the live tables in the pool's schema.
    pub async fn new(pool: Pool) -> Result<Self, SinkError> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS projection_offsets (name text PRIMARY KEY, position bigint NOT NULL);{}",
            sql(TABLES_DDL, "")
        );
        migrate(&pool, "storefront", &[(1, ddl.as_str())]).await?;
        let store = PgStorefront { pool, prefix: "", name: position_name("") };
        store.ensure_offset(0).await?;
        Ok(store)
    }

    async fn ensure_offset(&self, start: u64) -> Result<(), SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "INSERT INTO projection_offsets (name, position) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&self.name, &(start as i64)],
            )
            .await
            .map_err(sink_err)?;
        Ok(())
    }

    fn shadow_store(&self) -> PgStorefront {
        PgStorefront { pool: self.pool.clone(), prefix: SHADOW_PREFIX, name: position_name(SHADOW_PREFIX) }
    }

    fn q(&self, template: &str) -> String {
        sql(template, self.prefix)
    }
}

fn sink_err(e: tokio_postgres::Error) -> SinkError {
    SinkError::Unavailable(pg(e).to_string())
}

#[async_trait]
impl Sink for PgStorefront {
    fn name(&self) -> &str {
        &self.name
    }

    async fn position(&self) -> Result<u64, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt("SELECT position FROM projection_offsets WHERE name = $1", &[&self.name])
            .await
            .map_err(sink_err)?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        let Some(last) = events.last().map(|e| e.global_position as i64) else { return Ok(()) };
        let mut planned = Vec::with_capacity(events.len());
        for e in events {
            if let Some(change) = changes(e)? {
                planned.push((e.global_position as i64, change));
            }
        }
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(sink_err)?;
        // The row lock makes two runners of the same projection take turns instead of both applying.
        let at = tx
            .query_one("SELECT position FROM projection_offsets WHERE name = $1 FOR UPDATE", &[&self.name])
            .await
            .map_err(sink_err)?
            .get::<_, i64>(0);
        if last <= at {
            return Ok(());
        }
        let prepare = |template: &'static str| {
            let text = self.q(template);
            let tx = &tx;
            async move { tx.prepare_cached(&text).await }
        };
        let insert_order = prepare(
            "INSERT INTO {p}orders (order_id, customer_id, store_id, total_amount, status, created_at, version)
             VALUES ($1, $2, $3, $4::int8::numeric / 100, $5, 'epoch'::timestamptz + $6::int8 * interval '1 microsecond', $7)
             ON CONFLICT (order_id) DO NOTHING",
        )
        .await
        .map_err(sink_err)?;
        let insert_lines = prepare(
            "INSERT INTO {p}order_lines (order_id, line_no, item_id, quantity, unit_price)
             SELECT $1, n, i, q, p::numeric / 100 FROM unnest($2::int4[], $3::text[], $4::int4[], $5::int8[]) AS u(n, i, q, p)
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(sink_err)?;
        let set_status = prepare(
            "UPDATE {p}orders SET status = $2, cancel_reason = $3, version = $4 WHERE order_id = $1 AND version < $4",
        )
        .await
        .map_err(sink_err)?;
        let upsert_item = prepare(
            "INSERT INTO {p}menu_items (item_id, name, category, price, retired, calories, caffeine_mg, sugar_g, image_sha256, version)
             VALUES ($1, $2, $3, $4::int8::numeric / 100, false, $5, $6, $7, $8, $9)
             ON CONFLICT (item_id) DO UPDATE SET name = excluded.name, category = excluded.category, price = excluded.price,
               calories = excluded.calories, caffeine_mg = excluded.caffeine_mg, sugar_g = excluded.sugar_g,
               image_sha256 = excluded.image_sha256, version = excluded.version
             WHERE {p}menu_items.version < excluded.version",
        )
        .await
        .map_err(sink_err)?;
        let set_price = prepare(
            "UPDATE {p}menu_items SET price = $2::int8::numeric / 100, version = $3 WHERE item_id = $1 AND version < $3",
        )
        .await
        .map_err(sink_err)?;
        let retire =
            prepare("UPDATE {p}menu_items SET retired = true, version = $2 WHERE item_id = $1 AND version < $2")
                .await
                .map_err(sink_err)?;
        let stock = prepare(
            "INSERT INTO {p}store_inventory AS t (store_id, sku, available, reserved, version) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (store_id, sku) DO UPDATE SET available = t.available + excluded.available,
               reserved = t.reserved + excluded.reserved, version = excluded.version WHERE t.version < excluded.version",
        )
        .await
        .map_err(sink_err)?;
        let points = prepare(
            "INSERT INTO {p}loyalty_accounts AS t (customer_id, points, tier, version) VALUES ($1, $2, 'green', $3)
             ON CONFLICT (customer_id) DO UPDATE SET points = t.points + excluded.points, version = excluded.version
             WHERE t.version < excluded.version",
        )
        .await
        .map_err(sink_err)?;
        let tier = prepare(
            "INSERT INTO {p}loyalty_accounts AS t (customer_id, points, tier, version) VALUES ($1, 0, $2, $3)
             ON CONFLICT (customer_id) DO UPDATE SET tier = excluded.tier, version = excluded.version
             WHERE t.version < excluded.version",
        )
        .await
        .map_err(sink_err)?;

        // Statements are sent without waiting for each answer (pipelined), in order.
        let mut pending = Vec::new();
        for (_, change) in planned.into_iter().filter(|(p, _)| *p > at) {
            let tx = &tx;
            let s =
                (&insert_order, &insert_lines, &set_status, &upsert_item, &set_price, &retire, &stock, &points, &tier);
            pending.push(async move {
                let (insert_order, insert_lines, set_status, upsert_item, set_price, retire, stock, points, tier) = s;
                match change {
                    Change::OrderPlaced { order, version } => {
                        tx.execute(
                            insert_order,
                            &[
                                &order.order_id,
                                &order.customer_id,
                                &order.store_id,
                                &order.total_cents,
                                &order.status,
                                &order.created_at_us,
                                &(version as i64),
                            ],
                        )
                        .await?;
                        let n: Vec<i32> = (0..order.lines.len() as i32).collect();
                        let items: Vec<&str> = order.lines.iter().map(|l| l.item_id.as_str()).collect();
                        let qty: Vec<i32> = order.lines.iter().map(|l| l.quantity as i32).collect();
                        let price: Vec<i64> = order.lines.iter().map(|l| l.unit_price_cents).collect();
                        tx.execute(insert_lines, &[&order.order_id, &n, &items, &qty, &price]).await
                    }
                    Change::OrderStatus { order_id, status, cancel_reason, version } => {
                        tx.execute(set_status, &[&order_id, &status, &cancel_reason, &(version as i64)]).await
                    }
                    Change::MenuItem { item, version } => {
                        let n = item.nutrition;
                        tx.execute(
                            upsert_item,
                            &[
                                &item.item_id,
                                &item.name,
                                &item.category,
                                &item.price_cents,
                                &(n.calories as i32),
                                &(n.caffeine_mg as i32),
                                &(n.sugar_g as i32),
                                &item.image_sha256,
                                &(version as i64),
                            ],
                        )
                        .await
                    }
                    Change::MenuPrice { item_id, price_cents, version } => {
                        tx.execute(set_price, &[&item_id, &price_cents, &(version as i64)]).await
                    }
                    Change::MenuRetired { item_id, version } => {
                        tx.execute(retire, &[&item_id, &(version as i64)]).await
                    }
                    Change::Stock { store_id, sku, available, reserved, version } => {
                        tx.execute(stock, &[&store_id, &sku, &available, &reserved, &(version as i64)]).await
                    }
                    Change::Points { customer_id, points: p, version } => {
                        tx.execute(points, &[&customer_id, &p, &(version as i64)]).await
                    }
                    Change::Tier { customer_id, tier: t, version } => {
                        tx.execute(tier, &[&customer_id, &t, &(version as i64)]).await
                    }
                }
            });
        }
        futures::future::try_join_all(pending).await.map_err(sink_err)?;
        tx.execute("UPDATE projection_offsets SET position = $2 WHERE name = $1", &[&self.name, &last])
            .await
            .map_err(sink_err)?;
        tx.commit().await.map_err(sink_err)?;
        Ok(())
    }

    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let orders = client.query(&self.q(ORDER_COLUMNS), &[]).await.map_err(sink_err)?;
        drop(client);
        let mut rows: Vec<CanonicalRow> =
            self.with_lines(orders.iter().map(order_view).collect()).await?.iter().map(canonical::order).collect();
        rows.extend(self.menu().await?.iter().map(canonical::menu_item));
        rows.extend(self.stock_query(None).await?.iter().map(canonical::stock));
        rows.extend(self.loyalty_query(None).await?.iter().map(canonical::loyalty));
        Ok(rows)
    }
}

#[async_trait]
impl Rebuildable for PgStorefront {
    async fn shadow(&self) -> Result<Arc<dyn Sink>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client.batch_execute(&sql(TABLES_DDL, SHADOW_PREFIX)).await.map_err(sink_err)?;
        drop(client);
        let shadow = self.shadow_store();
        shadow.ensure_offset(0).await?;
        Ok(Arc::new(shadow))
    }

    async fn reset_shadow(&self, start: u64) -> Result<(), SinkError> {
        self.discard_shadow().await?;
        self.shadow().await?;
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "UPDATE projection_offsets SET position = $2 WHERE name = $1",
                &[&position_name(SHADOW_PREFIX), &(start as i64)],
            )
            .await
            .map_err(sink_err)?;
        Ok(())
    }

    async fn promote_shadow(&self) -> Result<(), SinkError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(sink_err)?;
        for t in TABLES {
            tx.batch_execute(&format!(
                "DROP TABLE IF EXISTS {t} CASCADE; ALTER TABLE {SHADOW_PREFIX}{t} RENAME TO {t};"
            ))
            .await
            .map_err(sink_err)?;
        }
        // Constraints and indexes keep their names through a table rename: give them the live names back.
        let mut renames = format!(
            "ALTER INDEX {SHADOW_PREFIX}orders_customer_created RENAME TO orders_customer_created;
             ALTER TABLE order_lines RENAME CONSTRAINT {SHADOW_PREFIX}order_lines_order_id_fkey TO order_lines_order_id_fkey;"
        );
        for t in TABLES {
            renames.push_str(&format!("ALTER TABLE {t} RENAME CONSTRAINT {SHADOW_PREFIX}{t}_pkey TO {t}_pkey;"));
        }
        tx.batch_execute(&renames).await.map_err(sink_err)?;
        let (live, shadow) = (position_name(""), position_name(SHADOW_PREFIX));
        tx.execute(
            "UPDATE projection_offsets SET position = (SELECT position FROM projection_offsets WHERE name = $2) WHERE name = $1",
            &[&live, &shadow],
        )
        .await
        .map_err(sink_err)?;
        tx.execute("DELETE FROM projection_offsets WHERE name = $1", &[&shadow]).await.map_err(sink_err)?;
        tx.commit().await.map_err(sink_err)?;
        Ok(())
    }

    async fn discard_shadow(&self) -> Result<(), SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        for t in TABLES {
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {SHADOW_PREFIX}{t} CASCADE"))
                .await
                .map_err(sink_err)?;
        }
        client
            .execute("DELETE FROM projection_offsets WHERE name = $1", &[&position_name(SHADOW_PREFIX)])
            .await
            .map_err(sink_err)?;
        Ok(())
    }
}

const ORDER_COLUMNS: &str = "SELECT order_id, customer_id, store_id, (total_amount * 100)::int8, status, cancel_reason,
    (extract(epoch from created_at) * 1000000)::int8 FROM {p}orders";

fn order_view(r: &Row) -> OrderView {
    OrderView {
        order_id: r.get(0),
        customer_id: r.get(1),
        store_id: r.get(2),
        total_cents: r.get(3),
        status: r.get(4),
        cancel_reason: r.get(5),
        created_at_us: r.get(6),
        lines: vec![],
    }
}

impl PgStorefront {
    async fn with_lines(&self, mut orders: Vec<OrderView>) -> Result<Vec<OrderView>, SinkError> {
        if orders.is_empty() {
            return Ok(orders);
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        let ids: Vec<Uuid> = orders.iter().map(|o| o.order_id).collect();
        let rows = client
            .query(
                &self.q("SELECT order_id, item_id, quantity, (unit_price * 100)::int8 FROM {p}order_lines
                     WHERE order_id = ANY($1) ORDER BY order_id, line_no"),
                &[&ids],
            )
            .await
            .map_err(sink_err)?;
        let index: std::collections::HashMap<Uuid, usize> =
            orders.iter().enumerate().map(|(i, o)| (o.order_id, i)).collect();
        for r in rows {
            if let Some(&i) = index.get(&r.get::<_, Uuid>(0)) {
                orders[i].lines.push(events::domain::OrderLine {
                    item_id: r.get(1),
                    quantity: r.get::<_, i32>(2) as u32,
                    unit_price_cents: r.get(3),
                });
            }
        }
        Ok(orders)
    }

    async fn stock_query(&self, store: Option<&str>) -> Result<Vec<StockLevel>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &self.q("SELECT store_id, sku, available, reserved FROM {p}store_inventory
                     WHERE $1::text IS NULL OR store_id = $1 ORDER BY store_id, sku"),
                &[&store],
            )
            .await
            .map_err(sink_err)?;
        Ok(rows
            .iter()
            .map(|r| StockLevel { store_id: r.get(0), sku: r.get(1), available: r.get(2), reserved: r.get(3) })
            .collect())
    }

    async fn loyalty_query(&self, customer: Option<&str>) -> Result<Vec<LoyaltyBalance>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &self.q("SELECT customer_id, points, tier FROM {p}loyalty_accounts
                     WHERE $1::text IS NULL OR customer_id = $1 ORDER BY customer_id"),
                &[&customer],
            )
            .await
            .map_err(sink_err)?;
        Ok(rows.iter().map(|r| LoyaltyBalance { customer_id: r.get(0), points: r.get(1), tier: r.get(2) }).collect())
    }
}

#[async_trait]
impl StorefrontQueries for PgStorefront {
    async fn order(&self, order_id: Uuid) -> Result<Option<OrderView>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt(&self.q(&format!("{ORDER_COLUMNS} WHERE order_id = $1")), &[&order_id])
            .await
            .map_err(sink_err)?;
        drop(client);
        Ok(self.with_lines(row.iter().map(order_view).collect()).await?.pop())
    }

    async fn customer_orders(&self, customer_id: &str, limit: usize) -> Result<Vec<OrderView>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &self.q(&format!("{ORDER_COLUMNS} WHERE customer_id = $1 ORDER BY created_at DESC, order_id LIMIT $2")),
                &[&customer_id, &(limit as i64)],
            )
            .await
            .map_err(sink_err)?;
        drop(client);
        self.with_lines(rows.iter().map(order_view).collect()).await
    }

    async fn menu(&self) -> Result<Vec<MenuItemView>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &self.q(
                    "SELECT item_id, name, category, (price * 100)::int8, retired, calories, caffeine_mg, sugar_g, image_sha256
                     FROM {p}menu_items ORDER BY category, item_id",
                ),
                &[],
            )
            .await
            .map_err(sink_err)?;
        Ok(rows
            .iter()
            .map(|r| MenuItemView {
                item_id: r.get(0),
                name: r.get(1),
                category: r.get(2),
                price_cents: r.get(3),
                retired: r.get(4),
                nutrition: events::domain::Nutrition {
                    calories: r.get::<_, i32>(5) as u32,
                    caffeine_mg: r.get::<_, i32>(6) as u32,
                    sugar_g: r.get::<_, i32>(7) as u32,
                },
                image_sha256: r.get(8),
            })
            .collect())
    }

    async fn stock_levels(&self, store_id: &str) -> Result<Vec<StockLevel>, SinkError> {
        self.stock_query(Some(store_id)).await
    }

    async fn loyalty(&self, customer_id: &str) -> Result<Option<LoyaltyBalance>, SinkError> {
        Ok(self.loyalty_query(Some(customer_id)).await?.pop())
    }
}
