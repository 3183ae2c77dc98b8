//! The storefront in Aurora PostgreSQL, in the shape of the original plans' `orders` table:
//! `orders(order_id PK, customer_id, store_id, total_amount DECIMAL(10,2), status, created_at)`,
//! indexed by `(customer_id, created_at)`, plus `order_lines`, `menu_items`, `store_inventory` and
//! `loyalty_accounts`.
//!
//! A page is one transaction: its changes folded per row ([`PageFold`]), one set-based statement per
//! table, and the position. The live model upserts, so a repeated page changes nothing. The shadow
//! that replay fills is loaded as a bulk load: plain inserts of the orders a page places (the stored
//! position says none of them is there yet), no foreign key and no customer index until promotion.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use events::postgres::{migrate, pg, pool_error};
use events::RecordedEvent;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{
    canonical, changes, position_name, Change, LoyaltyBalance, MenuItemView, OrderView, StockLevel, StorefrontQueries,
    NAME, SHADOW_PREFIX, TABLES,
};
use crate::read_models::fold::PageFold;
use crate::read_models::refusals::pg_apply;
use crate::read_models::shadow::{Dependents, LiveName, SqlShadow};
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

/// The foreign key of `order_lines`, inline in [`TABLES_DDL`]. A shadow is loaded without it and
/// gets it when it is promoted.
const LINES_FOREIGN_KEY: &str = " REFERENCES {p}orders (order_id) ON DELETE CASCADE";
/// The orders' index by customer and time, in [`TABLES_DDL`]. A shadow is loaded without it and gets
/// it, built in one pass, when it is promoted.
const CUSTOMER_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS {p}orders_customer_created ON {p}orders (customer_id, created_at);";

/// The shadow's tables: [`TABLES_DDL`] without what a bulk load need not maintain row by row (the
/// foreign key checks each line against its order, the customer index takes an insert per order).
fn shadow_ddl() -> String {
    sql(&TABLES_DDL.replace(LINES_FOREIGN_KEY, "").replace(CUSTOMER_INDEX, ""), SHADOW_PREFIX)
}

/// What a shadow lacks of the live model's shape; the promotion adds it (if absent) in its
/// transaction before the swap, so the promoted tables are the live model's whatever shape the
/// shadow had.
const SHADOW_FINISH: &str = "
    CREATE INDEX IF NOT EXISTS {p}orders_customer_created ON {p}orders (customer_id, created_at);
    DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = '{p}order_lines'::regclass AND conname = '{p}order_lines_order_id_fkey') THEN
            ALTER TABLE {p}order_lines ADD CONSTRAINT {p}order_lines_order_id_fkey
                FOREIGN KEY (order_id) REFERENCES {p}orders (order_id) ON DELETE CASCADE;
        END IF;
    END $$;";

/// The storefront's shadow: its tables, and the index and constraints that keep their live names.
const SHADOW: SqlShadow = SqlShadow {
    model: NAME,
    offsets_table: "projection_offsets",
    tables: TABLES,
    live_names: &[
        LiveName::Index("orders_customer_created"),
        LiveName::Constraint("order_lines", "order_lines_order_id_fkey"),
        LiveName::Constraint("order_lines", "order_lines_pkey"),
        LiveName::Constraint("orders", "orders_pkey"),
        LiveName::Constraint("menu_items", "menu_items_pkey"),
        LiveName::Constraint("store_inventory", "store_inventory_pkey"),
        LiveName::Constraint("loyalty_accounts", "loyalty_accounts_pkey"),
    ],
    dependents: Dependents::Cascade,
    finish: SHADOW_FINISH,
};

fn sql(template: &str, prefix: &str) -> String {
    template.replace("{p}", prefix)
}

pub struct PgStorefront {
    pool: Pool,
    prefix: &'static str,
    name: String,
    inserts: Inserts,
}

/// How a page writes the orders it places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inserts {
    /// An order already there is kept (its status still moves forward): the live model, where a
    /// repeated page or a second runner must change nothing.
    Upsert,
    /// Plain inserts, for a shadow that replay fills: a page above the stored position places orders
    /// the shadow cannot hold yet. Should one be there after all (an order placed twice in the
    /// journal), the page is written again as [`Inserts::Upsert`] writes it.
    New,
}

impl PgStorefront {
    /// Creates or migrates the live tables in the pool's schema.
    pub async fn new(pool: Pool) -> Result<Self, SinkError> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS projection_offsets (name text PRIMARY KEY, position bigint NOT NULL);{}",
            sql(TABLES_DDL, "")
        );
        migrate(&pool, "storefront", &[(1, ddl.as_str())]).await?;
        let store = PgStorefront { pool, prefix: "", name: position_name(""), inserts: Inserts::Upsert };
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
        PgStorefront {
            pool: self.pool.clone(),
            prefix: SHADOW_PREFIX,
            name: position_name(SHADOW_PREFIX),
            inserts: Inserts::New,
        }
    }

    fn q(&self, template: &str) -> String {
        sql(template, self.prefix)
    }
}

fn sink_err(e: tokio_postgres::Error) -> SinkError {
    SinkError::from(pg(e))
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
        match self.write_page(&mut client, &planned, last, self.inserts).await {
            Err(e) if self.inserts == Inserts::New && e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // Rolled back (the transaction dropped); write the page again keeping what is there.
                self.write_page(&mut client, &planned, last, Inserts::Upsert).await.map_err(pg_apply)
            }
            written => written.map_err(pg_apply),
        }
    }

    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let orders = client.query(&self.q(ORDER_COLUMNS), &[]).await.map_err(sink_err)?;
        drop(client);
        let mut rows: Vec<CanonicalRow> =
            self.with_lines(orders.iter().map(order_view).collect()).await?.iter().map(canonical::order).collect();
        rows.extend(self.menu().await?.iter().map(canonical::menu_item));
        rows.extend(self.all_stock().await?.iter().map(canonical::stock));
        rows.extend(self.loyalty_query(None).await?.iter().map(canonical::loyalty));
        Ok(rows)
    }
}

#[async_trait]
impl Rebuildable for PgStorefront {
    async fn shadow(&self) -> Result<Arc<dyn Sink>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client.batch_execute(&shadow_ddl()).await.map_err(sink_err)?;
        drop(client);
        let shadow = self.shadow_store();
        shadow.ensure_offset(0).await?;
        Ok(Arc::new(shadow))
    }

    async fn reset_shadow(&self, start: u64) -> Result<(), SinkError> {
        self.discard_shadow().await?;
        self.shadow().await?;
        SHADOW.set_position(&self.pool, start).await
    }

    async fn promote_shadow(&self) -> Result<(), SinkError> {
        SHADOW.promote(&self.pool).await
    }

    async fn discard_shadow(&self) -> Result<(), SinkError> {
        SHADOW.discard(&self.pool).await
    }
}

impl PgStorefront {
    /// Writes the changes of a page (events up to `last`) in one transaction, with the position,
    /// unless the stored position is already at or past `last`. The changes are folded per row
    /// ([`PageFold`]): one set-based statement per table, each row written once.
    async fn write_page(
        &self,
        client: &mut deadpool_postgres::Client,
        planned: &[(i64, Change)],
        last: i64,
        inserts: Inserts,
    ) -> Result<(), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        // The row lock makes two runners of the same projection take turns instead of both applying.
        let at = tx
            .query_one("SELECT position FROM projection_offsets WHERE name = $1 FOR UPDATE", &[&self.name])
            .await?
            .get::<_, i64>(0);
        if last <= at {
            return Ok(());
        }
        // The offset check above makes the fold exact: no change in it has been applied.
        let page = PageFold::of(planned.iter().filter(|(p, _)| *p > at).map(|(_, change)| change));
        let txr = &tx;
        let insert_orders = async {
            if page.placed.is_empty() {
                return Ok(0);
            }
            let o = &page.placed;
            let ids: Vec<Uuid> = o.iter().map(|(p, _)| p.order.order_id).collect();
            let customers: Vec<&str> = o.iter().map(|(p, _)| p.order.customer_id.as_str()).collect();
            let stores: Vec<&str> = o.iter().map(|(p, _)| p.order.store_id.as_str()).collect();
            let totals: Vec<i64> = o.iter().map(|(p, _)| p.order.total_cents).collect();
            let statuses: Vec<&str> =
                o.iter().map(|(p, _)| p.status.map_or(p.order.status.as_str(), |s| s.status)).collect();
            let reasons: Vec<Option<&str>> = o.iter().map(|(p, _)| p.status.and_then(|s| s.cancel_reason)).collect();
            let at: Vec<i64> = o.iter().map(|(p, _)| p.order.created_at_us).collect();
            let versions: Vec<i64> = o.iter().map(|(p, v)| p.version(*v) as i64).collect();
            // On a conflict (the live model, a repeated page): the row stays; a status the page moves
            // it to still applies if it is newer, as the status update below would apply it.
            let conflict = match inserts {
                Inserts::Upsert => {
                    "ON CONFLICT (order_id) DO UPDATE SET status = excluded.status,
                       cancel_reason = excluded.cancel_reason, version = excluded.version
                     WHERE {p}orders.version < excluded.version AND excluded.status <> 'placed'"
                }
                Inserts::New => "",
            };
            txr.execute(
                &self.q(&format!(
                    "INSERT INTO {{p}}orders (order_id, customer_id, store_id, total_amount, status, cancel_reason, created_at, version)
                     SELECT id, c, s, t::numeric / 100, st, r, 'epoch'::timestamptz + at * interval '1 microsecond', v
                     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::int8[], $8::int8[])
                       AS u(id, c, s, t, st, r, at, v)
                     {conflict}"
                )),
                &[&ids, &customers, &stores, &totals, &statuses, &reasons, &at, &versions],
            )
            .await
        };
        let insert_lines = async {
            if page.lines.is_empty() {
                return Ok(0);
            }
            let lines = &page.lines;
            let ids: Vec<Uuid> = lines.iter().map(|l| l.0).collect();
            let numbers: Vec<i32> = lines.iter().map(|l| l.1).collect();
            let items: Vec<&str> = lines.iter().map(|l| l.2.item_id.as_str()).collect();
            let quantities: Vec<i32> = lines.iter().map(|l| l.2.quantity as i32).collect();
            let prices: Vec<i64> = lines.iter().map(|l| l.2.unit_price_cents).collect();
            let conflict = match inserts {
                Inserts::Upsert => "ON CONFLICT DO NOTHING",
                Inserts::New => "",
            };
            txr.execute(
                &self.q(&format!(
                    "INSERT INTO {{p}}order_lines (order_id, line_no, item_id, quantity, unit_price)
                     SELECT id, n, i, q, p::numeric / 100
                     FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::int4[], $5::int8[]) AS u(id, n, i, q, p)
                     {conflict}"
                )),
                &[&ids, &numbers, &items, &quantities, &prices],
            )
            .await
        };
        // In order, not pipelined: unprepared statements may reach the server in any order, and lines
        // need their order (foreign key), as statuses in the same page do.
        insert_orders.await?;
        insert_lines.await?;
        let statuses = async {
            if page.statuses.is_empty() {
                return Ok(0);
            }
            let st: Vec<_> = page.statuses.iter().collect();
            let ids: Vec<Uuid> = st.iter().map(|(id, _)| **id).collect();
            let names: Vec<&str> = st.iter().map(|(_, s)| s.status).collect();
            let reasons: Vec<Option<&str>> = st.iter().map(|(_, s)| s.cancel_reason).collect();
            let versions: Vec<i64> = st.iter().map(|(_, s)| s.version as i64).collect();
            txr.execute(
                &self.q("UPDATE {p}orders SET status = u.s, cancel_reason = u.r, version = u.v
                     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[]) AS u(id, s, r, v)
                     WHERE {p}orders.order_id = u.id AND {p}orders.version < u.v"),
                &[&ids, &names, &reasons, &versions],
            )
            .await
        };
        let stock = async {
            if page.stock.is_empty() {
                return Ok(0);
            }
            let st: Vec<_> = page.stock.iter().collect();
            let stores: Vec<&str> = st.iter().map(|((s, _), _)| *s).collect();
            let skus: Vec<&str> = st.iter().map(|((_, k), _)| *k).collect();
            let available: Vec<i64> = st.iter().map(|(_, d)| d.available).collect();
            let reserved: Vec<i64> = st.iter().map(|(_, d)| d.reserved).collect();
            let last: Vec<i64> = st.iter().map(|(_, d)| d.last as i64).collect();
            txr.execute(
                &self.q("INSERT INTO {p}store_inventory AS t (store_id, sku, available, reserved, version)
                     SELECT s, k, a, r, last FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[])
                       AS u(s, k, a, r, last)
                     ON CONFLICT (store_id, sku) DO UPDATE SET available = t.available + excluded.available,
                       reserved = t.reserved + excluded.reserved, version = excluded.version
                     WHERE t.version < excluded.version"),
                &[&stores, &skus, &available, &reserved, &last],
            )
            .await
        };
        let loyalty = async {
            if page.loyalty.is_empty() {
                return Ok(0);
            }
            let ly: Vec<_> = page.loyalty.iter().collect();
            let customers: Vec<&str> = ly.iter().map(|(c, _)| **c).collect();
            let points: Vec<i64> = ly.iter().map(|(_, d)| d.points).collect();
            let tiers: Vec<Option<&str>> = ly.iter().map(|(_, d)| d.tier).collect();
            let last: Vec<i64> = ly.iter().map(|(_, d)| d.last as i64).collect();
            // Tiers only ever rise, so no TierChanged leads to green: 'green' here means "no tier event".
            txr.execute(
                &self.q(
                    "INSERT INTO {p}loyalty_accounts AS t (customer_id, points, tier, version)
                     SELECT c, p, coalesce(tr, 'green'), last FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[])
                       AS u(c, p, tr, last)
                     ON CONFLICT (customer_id) DO UPDATE SET points = t.points + excluded.points,
                       tier = CASE WHEN excluded.tier = 'green' THEN t.tier ELSE excluded.tier END,
                       version = excluded.version
                     WHERE t.version < excluded.version",
                ),
                &[&customers, &points, &tiers, &last],
            )
            .await
        };
        // These three touch different tables: their order does not matter.
        futures::try_join!(statuses, stock, loyalty)?;
        // Menu changes are rare and stay one statement each, in order.
        for change in &page.menu {
            self.write_menu(&tx, change).await?;
        }
        tx.execute("UPDATE projection_offsets SET position = $2 WHERE name = $1", &[&self.name, &last]).await?;
        tx.commit().await
    }

    async fn write_menu(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        change: &Change,
    ) -> Result<u64, tokio_postgres::Error> {
        match change {
            Change::MenuItem { item, version } => {
                let n = item.nutrition;
                tx.execute(
                    &self.q(
                        "INSERT INTO {p}menu_items (item_id, name, category, price, retired, calories, caffeine_mg, sugar_g, image_sha256, version)
                         VALUES ($1, $2, $3, $4::int8::numeric / 100, false, $5, $6, $7, $8, $9)
                         ON CONFLICT (item_id) DO UPDATE SET name = excluded.name, category = excluded.category, price = excluded.price,
                           calories = excluded.calories, caffeine_mg = excluded.caffeine_mg, sugar_g = excluded.sugar_g,
                           image_sha256 = excluded.image_sha256, version = excluded.version
                         WHERE {p}menu_items.version < excluded.version",
                    ),
                    &[
                        &item.item_id,
                        &item.name,
                        &item.category,
                        &item.price_cents,
                        &(n.calories as i32),
                        &(n.caffeine_mg as i32),
                        &(n.sugar_g as i32),
                        &item.image_sha256,
                        &(*version as i64),
                    ],
                )
                .await
            }
            Change::MenuPrice { item_id, price_cents, version } => {
                tx.execute(
                    &self.q("UPDATE {p}menu_items SET price = $2::int8::numeric / 100, version = $3 WHERE item_id = $1 AND version < $3"),
                    &[&item_id, &price_cents, &(*version as i64)],
                )
                .await
            }
            Change::MenuRetired { item_id, version } => {
                tx.execute(
                    &self.q("UPDATE {p}menu_items SET retired = true, version = $2 WHERE item_id = $1 AND version < $2"),
                    &[&item_id, &(*version as i64)],
                )
                .await
            }
            _ => Ok(0),
        }
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

    /// Every store's stock, for the canonical rows (a store's own page is [`StorefrontQueries::stock_levels`]).
    async fn all_stock(&self) -> Result<Vec<StockLevel>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &self.q("SELECT store_id, sku, available, reserved FROM {p}store_inventory ORDER BY store_id, sku"),
                &[],
            )
            .await
            .map_err(sink_err)?;
        Ok(rows.iter().map(stock_level).collect())
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

    async fn stock_levels(
        &self,
        store_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StockLevel>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &self.q("SELECT store_id, sku, available, reserved FROM {p}store_inventory
                     WHERE store_id = $1 AND ($2::text IS NULL OR sku > $2) ORDER BY sku LIMIT $3"),
                &[&store_id, &after, &limit],
            )
            .await
            .map_err(sink_err)?;
        Ok(rows.iter().map(stock_level).collect())
    }

    async fn loyalty(&self, customer_id: &str) -> Result<Option<LoyaltyBalance>, SinkError> {
        Ok(self.loyalty_query(Some(customer_id)).await?.pop())
    }

    async fn loyalty_customers(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &self.q("SELECT customer_id FROM {p}loyalty_accounts WHERE $1::text IS NULL OR customer_id > $1
                     ORDER BY customer_id LIMIT $2"),
                &[&after, &limit],
            )
            .await
            .map_err(sink_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// A `store_inventory` row read as `store_id, sku, available, reserved`.
fn stock_level(r: &Row) -> StockLevel {
    StockLevel { store_id: r.get(0), sku: r.get(1), available: r.get(2), reserved: r.get(3) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_is_the_live_tables_without_the_foreign_key_and_the_customer_index() {
        assert!(TABLES_DDL.contains(LINES_FOREIGN_KEY) && TABLES_DDL.contains(CUSTOMER_INDEX));
        let shadow = shadow_ddl();
        assert!(!shadow.contains("REFERENCES") && !shadow.contains("CREATE INDEX"), "{shadow}");
        assert_eq!(shadow.matches("CREATE TABLE IF NOT EXISTS rebuild_").count(), TABLES.len());
        let finish = SHADOW.promotion()[0].clone();
        assert!(finish.contains(&sql(CUSTOMER_INDEX, SHADOW_PREFIX)), "{finish}");
        assert!(
            finish.contains(&sql(&format!("FOREIGN KEY (order_id){LINES_FOREIGN_KEY}"), SHADOW_PREFIX)),
            "{finish}"
        );
    }
}
