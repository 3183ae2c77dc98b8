//! The storefront in Aurora PostgreSQL, in the shape of the original plans' `orders` table:
//! `orders(order_id PK, customer_id, store_id, total_amount DECIMAL(10,2), status, created_at)`,
//! indexed by `(customer_id, created_at)`.

use async_trait::async_trait;
use deadpool_postgres::Pool;
use events::postgres::{migrate, pg, pool_error};
use events::RecordedEvent;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{changes, Change, MenuItemView, OrderView, StorefrontQueries, NAME};
use crate::{Sink, SinkError};

const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS projection_offsets (name text PRIMARY KEY, position bigint NOT NULL);
     CREATE TABLE orders (
        order_id uuid PRIMARY KEY,
        customer_id text NOT NULL,
        store_id text NOT NULL,
        total_amount numeric(10,2) NOT NULL,
        status text NOT NULL,
        cancel_reason text,
        created_at timestamptz NOT NULL,
        version bigint NOT NULL
     );
     CREATE INDEX orders_customer_created ON orders (customer_id, created_at);
     CREATE TABLE order_lines (
        order_id uuid NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
        line_no int NOT NULL,
        item_id text NOT NULL,
        quantity int NOT NULL,
        unit_price numeric(10,2) NOT NULL,
        PRIMARY KEY (order_id, line_no)
     );
     CREATE TABLE menu_items (
        item_id text PRIMARY KEY,
        name text NOT NULL,
        category text NOT NULL,
        price numeric(10,2) NOT NULL,
        retired boolean NOT NULL DEFAULT false,
        version bigint NOT NULL
     );",
)];

pub struct PgStorefront {
    pool: Pool,
}

impl PgStorefront {
    /// Creates or migrates the tables in the pool's schema.
    pub async fn new(pool: Pool) -> Result<Self, SinkError> {
        migrate(&pool, "storefront", MIGRATIONS).await?;
        let client = pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "INSERT INTO projection_offsets (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
                &[&NAME],
            )
            .await
            .map_err(pg)?;
        Ok(PgStorefront { pool })
    }
}

fn sink_err(e: tokio_postgres::Error) -> SinkError {
    SinkError::Unavailable(pg(e).to_string())
}

#[async_trait]
impl Sink for PgStorefront {
    fn name(&self) -> &str {
        NAME
    }

    async fn position(&self) -> Result<u64, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one("SELECT position FROM projection_offsets WHERE name = $1", &[&NAME])
            .await
            .map_err(sink_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        let Some(last) = events.last().map(|e| e.global_position as i64) else { return Ok(()) };
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(sink_err)?;
        // The row lock makes two runners of the same projection take turns instead of both applying.
        let at = tx
            .query_one("SELECT position FROM projection_offsets WHERE name = $1 FOR UPDATE", &[&NAME])
            .await
            .map_err(sink_err)?
            .get::<_, i64>(0);
        if last <= at {
            return Ok(());
        }
        let insert_order = tx
            .prepare_cached(
                "INSERT INTO orders (order_id, customer_id, store_id, total_amount, status, created_at, version)
                 VALUES ($1, $2, $3, $4::int8::numeric / 100, $5, to_timestamp($6::int8 / 1e6), $7)
                 ON CONFLICT (order_id) DO NOTHING",
            )
            .await
            .map_err(sink_err)?;
        let insert_lines = tx
            .prepare_cached(
                "INSERT INTO order_lines (order_id, line_no, item_id, quantity, unit_price)
                 SELECT $1, n, i, q, p::numeric / 100 FROM unnest($2::int4[], $3::text[], $4::int4[], $5::int8[]) AS u(n, i, q, p)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(sink_err)?;
        let set_status = tx
            .prepare_cached(
                "UPDATE orders SET status = $2, cancel_reason = $3, version = $4 WHERE order_id = $1 AND version < $4",
            )
            .await
            .map_err(sink_err)?;
        let upsert_item = tx
            .prepare_cached(
                "INSERT INTO menu_items (item_id, name, category, price, retired, version) VALUES ($1, $2, $3, $4::int8::numeric / 100, false, $5)
                 ON CONFLICT (item_id) DO UPDATE SET name = excluded.name, category = excluded.category, price = excluded.price,
                   version = excluded.version WHERE menu_items.version < excluded.version",
            )
            .await
            .map_err(sink_err)?;
        let set_price = tx
            .prepare_cached("UPDATE menu_items SET price = $2::int8::numeric / 100, version = $3 WHERE item_id = $1 AND version < $3")
            .await
            .map_err(sink_err)?;
        let retire = tx
            .prepare_cached("UPDATE menu_items SET retired = true, version = $2 WHERE item_id = $1 AND version < $2")
            .await
            .map_err(sink_err)?;

        // Statements are sent without waiting for each answer (pipelined), in order.
        let mut pending = Vec::new();
        for e in events.iter().filter(|e| e.global_position as i64 > at) {
            let Some(change) = changes(e)? else { continue };
            let tx = &tx;
            let (insert_order, insert_lines, set_status, upsert_item, set_price, retire) =
                (&insert_order, &insert_lines, &set_status, &upsert_item, &set_price, &retire);
            pending.push(async move {
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
                        tx.execute(
                            upsert_item,
                            &[&item.item_id, &item.name, &item.category, &item.price_cents, &(version as i64)],
                        )
                        .await
                    }
                    Change::MenuPrice { item_id, price_cents, version } => {
                        tx.execute(set_price, &[&item_id, &price_cents, &(version as i64)]).await
                    }
                    Change::MenuRetired { item_id, version } => {
                        tx.execute(retire, &[&item_id, &(version as i64)]).await
                    }
                }
            });
        }
        futures::future::try_join_all(pending).await.map_err(sink_err)?;
        tx.execute("UPDATE projection_offsets SET position = $2 WHERE name = $1", &[&NAME, &last])
            .await
            .map_err(sink_err)?;
        tx.commit().await.map_err(sink_err)?;
        Ok(())
    }
}

const ORDER_COLUMNS: &str = "SELECT order_id, customer_id, store_id, (total_amount * 100)::int8, status, cancel_reason,
    (extract(epoch from created_at) * 1000000)::int8 FROM orders";

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
                "SELECT order_id, item_id, quantity, (unit_price * 100)::int8 FROM order_lines
                 WHERE order_id = ANY($1) ORDER BY order_id, line_no",
                &[&ids],
            )
            .await
            .map_err(sink_err)?;
        for r in rows {
            let id: Uuid = r.get(0);
            if let Some(o) = orders.iter_mut().find(|o| o.order_id == id) {
                o.lines.push(events::domain::OrderLine {
                    item_id: r.get(1),
                    quantity: r.get::<_, i32>(2) as u32,
                    unit_price_cents: r.get(3),
                });
            }
        }
        Ok(orders)
    }
}

#[async_trait]
impl StorefrontQueries for PgStorefront {
    async fn order(&self, order_id: Uuid) -> Result<Option<OrderView>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row =
            client.query_opt(&format!("{ORDER_COLUMNS} WHERE order_id = $1"), &[&order_id]).await.map_err(sink_err)?;
        drop(client);
        Ok(self.with_lines(row.iter().map(order_view).collect()).await?.pop())
    }

    async fn customer_orders(&self, customer_id: &str, limit: usize) -> Result<Vec<OrderView>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &format!("{ORDER_COLUMNS} WHERE customer_id = $1 ORDER BY created_at DESC, order_id LIMIT $2"),
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
                "SELECT item_id, name, category, (price * 100)::int8, retired FROM menu_items ORDER BY category, item_id",
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
            })
            .collect())
    }
}
