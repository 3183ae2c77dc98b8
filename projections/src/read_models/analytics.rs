//! The analytics model in Redshift (reached over the PostgreSQL wire protocol): `fact_orders`,
//! `fact_payments`, and 1-minute tumbling windows per store (`store_minutes`: order count, revenue,
//! unique customers, average order value), as the original plans' analytics job computes them.
//!
//! Only SQL that Redshift accepts: no `ON CONFLICT`, no triggers, no row constructors. A page is one
//! transaction: multi-row `INSERT`s of new facts (an order placed in the page goes in with the status
//! the page ends it with), `UPDATE`s of the status of orders placed before, then the windows the
//! page touched are recomputed from `fact_orders` (`DELETE ... USING` a temp table, then
//! `INSERT ... SELECT ... GROUP BY`), and the offset moves in the same transaction.
//! Cancelled orders leave the windows; placed and paid ones count.
//!
//! Fed from the `analytics-events` Kinesis stream instead ([`ShardCheckpointedSink`], `--analytics-from
//! kinesis`), a batch of one shard's records is one transaction the same way, with the shard's row of
//! `analytics_shard_checkpoints` (last sequence number, lease counter) in place of the offset: records
//! at or before the stored sequence are skipped, and a batch whose lease counter is smaller than the
//! stored one writes nothing. The publisher may send an event twice (as two records): a fact already
//! there is not inserted again, and `OrderPaid` moves only a placed order, so the facts end as the
//! journal's would whatever is repeated. A store's events all travel on one shard (the partition key
//! is the store), so two shards' transactions never touch the same window.
//!
//! Replay's bulk pass skips the windows (each recomputation scans the facts, which have no index in
//! Redshift) and recomputes all of them once at the end ([`Rebuildable::complete_shadow`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use events::postgres::{pg, pool_error};
use events::{DomainEvent, RecordedEvent};
use serde::Serialize;
use tokio_postgres::types::ToSql;

use crate::read_models::refusals::pg_apply;
use crate::read_models::shadow::{Dependents, SqlShadow, SHADOW_PREFIX};
use crate::{
    sequence_key, CanonicalRow, Rebuildable, ShardApplied, ShardBatch, ShardCheckpointedSink, Sink, SinkError,
};

/// The name under which the live analytics model stores its position.
pub const NAME: &str = "analytics";
const TABLES: &[&str] = &["fact_orders", "fact_payments", "store_minutes"];
/// The analytics shadow: plain tables (no indexes or constraints in Redshift's sense to rename), and
/// a promotion that refuses to drop objects someone built on the facts.
const SHADOW: SqlShadow = SqlShadow {
    model: NAME,
    offsets_table: "analytics_offsets",
    tables: TABLES,
    live_names: &[],
    dependents: Dependents::Restrict,
    finish: "",
};
const MINUTE_US: i64 = 60_000_000;

const DDL: &str = "
    CREATE TABLE IF NOT EXISTS analytics_offsets (name varchar(64) NOT NULL, position bigint NOT NULL);
    CREATE TABLE IF NOT EXISTS analytics_shard_checkpoints (
        name varchar(64) NOT NULL,
        shard varchar(128) NOT NULL,
        sequence varchar(128) NOT NULL,
        lease_counter bigint NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {p}fact_orders (
        order_id varchar(36) NOT NULL,
        customer_id varchar(64) NOT NULL,
        store_id varchar(64) NOT NULL,
        total_cents bigint NOT NULL,
        item_count int NOT NULL,
        placed_at_us bigint NOT NULL,
        minute_us bigint NOT NULL,
        status varchar(16) NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {p}fact_payments (
        order_id varchar(36) NOT NULL,
        customer_id varchar(64) NOT NULL,
        outcome varchar(16) NOT NULL,
        amount_cents bigint NOT NULL,
        fraud_score double precision NOT NULL,
        recorded_at_us bigint NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {p}store_minutes (
        store_id varchar(64) NOT NULL,
        minute_us bigint NOT NULL,
        order_count bigint NOT NULL,
        revenue_cents bigint NOT NULL,
        unique_customers bigint NOT NULL,
        avg_order_value_cents bigint NOT NULL
    );";

/// One store's minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoreMinute {
    pub store_id: String,
    /// Start of the minute, microseconds since the epoch.
    pub minute_us: i64,
    pub order_count: i64,
    pub revenue_cents: i64,
    pub unique_customers: i64,
    pub avg_order_value_cents: i64,
}

/// The analytics model in Redshift (or PostgreSQL). See the module docs.
pub struct AnalyticsSink {
    pool: Pool,
    prefix: &'static str,
    name: String,
    windows: Windows,
}

/// When the windows a page touches are recomputed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Windows {
    /// In the page's transaction: the live model, and a shadow once replay has completed it.
    PerPage,
    /// Not at all: a shadow in replay's bulk pass, whose windows
    /// [`Rebuildable::complete_shadow`] then recomputes from all the facts in one statement.
    Deferred,
}

fn sink_err(e: tokio_postgres::Error) -> SinkError {
    SinkError::from(pg(e))
}

impl AnalyticsSink {
    /// Creates the tables in the pool's database (and schema) if absent.
    pub async fn new(pool: Pool) -> Result<Self, SinkError> {
        let sink = AnalyticsSink { pool, prefix: "", name: NAME.into(), windows: Windows::PerPage };
        sink.create().await?;
        Ok(sink)
    }

    async fn create(&self) -> Result<(), SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client.batch_execute(&DDL.replace("{p}", self.prefix)).await.map_err(sink_err)?;
        let exists = client
            .query_opt("SELECT 1 FROM analytics_offsets WHERE name = $1", &[&self.name])
            .await
            .map_err(sink_err)?;
        if exists.is_none() {
            client
                .execute("INSERT INTO analytics_offsets (name, position) VALUES ($1, 0)", &[&self.name])
                .await
                .map_err(sink_err)?;
        }
        Ok(())
    }

    fn q(&self, sql: &str) -> String {
        sql.replace("{p}", self.prefix)
    }

    /// The shadow, its tables created if absent.
    async fn shadow_sink(&self, windows: Windows) -> Result<AnalyticsSink, SinkError> {
        let shadow =
            AnalyticsSink { pool: self.pool.clone(), prefix: SHADOW_PREFIX, name: SHADOW.position_name(), windows };
        shadow.create().await?;
        Ok(shadow)
    }

    /// The windows of one store with `from_us <= minute < to_us`, oldest first.
    pub async fn store_minutes(&self, store_id: &str, from_us: i64, to_us: i64) -> Result<Vec<StoreMinute>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                &self.q(
                    "SELECT store_id, minute_us, order_count, revenue_cents, unique_customers, avg_order_value_cents
                     FROM {p}store_minutes WHERE store_id = $1 AND minute_us >= $2 AND minute_us < $3 ORDER BY minute_us",
                ),
                &[&store_id, &from_us, &to_us],
            )
            .await
            .map_err(sink_err)?;
        Ok(rows
            .iter()
            .map(|r| StoreMinute {
                store_id: r.get(0),
                minute_us: r.get(1),
                order_count: r.get(2),
                revenue_cents: r.get(3),
                unique_customers: r.get(4),
                avg_order_value_cents: r.get(5),
            })
            .collect())
    }
}

impl AnalyticsSink {
    /// The windows that do not equal what the fact tables sum to (at most 20, as `store@minute`): a
    /// window missing, one too many, or one whose counts differ. Empty when they all agree.
    pub async fn windows_disagreeing_with_facts(&self) -> Result<Vec<String>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let sql = self.q("WITH f AS (
                 SELECT store_id, minute_us, count(*) AS n, sum(total_cents) AS revenue,
                        count(DISTINCT customer_id) AS customers
                 FROM {p}fact_orders WHERE status <> 'cancelled' GROUP BY store_id, minute_us)
             SELECT coalesce(w.store_id, f.store_id), coalesce(w.minute_us, f.minute_us)
             FROM {p}store_minutes w FULL OUTER JOIN f ON w.store_id = f.store_id AND w.minute_us = f.minute_us
             WHERE w.store_id IS NULL OR f.store_id IS NULL OR w.order_count <> f.n
                OR w.revenue_cents <> f.revenue OR w.unique_customers <> f.customers
             LIMIT 20");
        let rows = client.query(&sql, &[]).await.map_err(sink_err)?;
        Ok(rows.iter().map(|r| format!("{}@{}", r.get::<_, String>(0), r.get::<_, i64>(1))).collect())
    }
}

/// The statement that computes the windows from the facts: every window if `join` is empty, else
/// those `join` (on `f`, the facts) keeps. Placed and paid orders count, cancelled ones do not.
fn windows_from_facts(join: &str) -> String {
    format!(
        "INSERT INTO {{p}}store_minutes (store_id, minute_us, order_count, revenue_cents, unique_customers, avg_order_value_cents)
           SELECT f.store_id, f.minute_us, count(*), sum(f.total_cents), count(DISTINCT f.customer_id), sum(f.total_cents) / count(*)
           FROM {{p}}fact_orders f {join}
           WHERE f.status <> 'cancelled'
           GROUP BY f.store_id, f.minute_us"
    )
}

/// A multi-row INSERT: `INSERT INTO t (cols) VALUES ($1, $2), ($3, $4), ...`.
fn multi_row_insert(table: &str, columns: &[&str], rows: usize) -> String {
    let width = columns.len();
    let values: Vec<String> = (0..rows)
        .map(|r| format!("({})", (1..=width).map(|c| format!("${}", r * width + c)).collect::<Vec<_>>().join(", ")))
        .collect();
    format!("INSERT INTO {table} ({}) VALUES {}", columns.join(", "), values.join(", "))
}

/// Rows per multi-row INSERT, well under the protocol's 65,535 parameters.
const ROWS_PER_INSERT: usize = 1000;

type OrderFact = (String, String, String, i64, i32, i64, i64, &'static str);
type PaymentFact = (String, String, &'static str, i64, f64, i64);

/// What a run of events changes in the facts: the orders placed, the payments recorded, and the
/// status each order ends the run with.
struct FactChanges {
    orders: Vec<OrderFact>,
    payments: Vec<PaymentFact>,
    /// Cancelled over paid over placed, whatever order the events came in: a status only moves
    /// that way, so an event seen again late cannot move it back.
    status: HashMap<String, &'static str>,
}

/// Whether the events written may repeat ones already written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repeats {
    /// From the journal, after the stored offset: every event is new.
    Impossible,
    /// From a Kinesis shard: the publisher sends an event again after a failure, as a new record,
    /// so a fact already there is not inserted again.
    Possible,
}

impl FactChanges {
    fn of<'a>(events: impl Iterator<Item = &'a RecordedEvent>) -> Result<Self, SinkError> {
        let mut changes = FactChanges { orders: Vec::new(), payments: Vec::new(), status: HashMap::new() };
        for e in events {
            let category = events::domain::streams::category(&e.stream_id);
            if category != "order" && category != "payment" {
                continue;
            }
            let event = e
                .decode()
                .map_err(|err| SinkError::poison_because("the event does not decode", err).at(e.global_position))?;
            let at = e.recorded_at_us;
            match event {
                DomainEvent::OrderPlaced(p) => changes.orders.push((
                    p.order_id.to_string(),
                    p.customer_id,
                    p.store_id,
                    p.total_cents,
                    p.lines.iter().map(|l| l.quantity as i32).sum(),
                    p.placed_at_us,
                    p.placed_at_us - p.placed_at_us.rem_euclid(MINUTE_US),
                    "placed",
                )),
                DomainEvent::OrderPaid(p) => {
                    changes.status.entry(p.order_id.to_string()).or_insert("paid");
                }
                DomainEvent::OrderCancelled(c) => {
                    changes.status.insert(c.order_id.to_string(), "cancelled");
                }
                DomainEvent::PaymentAuthorized(p) => changes.payments.push((
                    p.order_id.to_string(),
                    p.customer_id,
                    "authorized",
                    p.amount_cents,
                    p.fraud_score,
                    at,
                )),
                DomainEvent::PaymentDeclined(p) => changes.payments.push((
                    p.order_id.to_string(),
                    p.customer_id,
                    "declined",
                    p.amount_cents,
                    p.fraud_score,
                    at,
                )),
                DomainEvent::PaymentCaptured(p) => {
                    changes.payments.push((p.order_id.to_string(), String::new(), "captured", p.amount_cents, 0.0, at))
                }
                DomainEvent::PaymentRefunded(p) => {
                    changes.payments.push((p.order_id.to_string(), p.customer_id, "refunded", p.amount_cents, 0.0, at))
                }
                DomainEvent::PaymentVoided(p) => {
                    changes.payments.push((p.order_id.to_string(), p.customer_id, "voided", p.amount_cents, 0.0, at))
                }
                _ => {}
            }
        }
        Ok(changes)
    }
}

impl AnalyticsSink {
    /// Writes `changes` in `tx`: new facts in multi-row INSERTs (an order placed here goes in with the
    /// status it ends with), the status of orders placed before, then the windows touched, recomputed
    /// from the facts.
    async fn write(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        changes: FactChanges,
        repeats: Repeats,
    ) -> Result<(), SinkError> {
        let FactChanges { mut orders, mut payments, mut status } = changes;
        if repeats == Repeats::Possible {
            self.drop_written(tx, &mut orders, &mut payments).await?;
        }
        // An order placed in this run is inserted with the status the run ends it with (an order is
        // placed once: its stream is named by its id); only orders placed before are updated.
        for o in &mut orders {
            if let Some(s) = status.remove(&o.0) {
                o.7 = s;
            }
        }
        let mut touched: BTreeSet<(String, i64)> = orders.iter().map(|o| (o.2.clone(), o.6)).collect();
        for chunk in orders.chunks(ROWS_PER_INSERT) {
            let sql = multi_row_insert(
                &self.q("{p}fact_orders"),
                &[
                    "order_id",
                    "customer_id",
                    "store_id",
                    "total_cents",
                    "item_count",
                    "placed_at_us",
                    "minute_us",
                    "status",
                ],
                chunk.len(),
            );
            let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 8);
            for o in chunk {
                params.extend_from_slice(&[&o.0, &o.1, &o.2, &o.3, &o.4, &o.5, &o.6, &o.7]);
            }
            tx.execute(&sql, &params).await.map_err(pg_apply)?;
        }
        for chunk in payments.chunks(ROWS_PER_INSERT) {
            let sql = multi_row_insert(
                &self.q("{p}fact_payments"),
                &["order_id", "customer_id", "outcome", "amount_cents", "fraud_score", "recorded_at_us"],
                chunk.len(),
            );
            let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 6);
            for p in chunk {
                params.extend_from_slice(&[&p.0, &p.1, &p.2, &p.3, &p.4, &p.5]);
            }
            tx.execute(&sql, &params).await.map_err(pg_apply)?;
        }
        // Paid moves only a placed order (a paid event seen again after the cancellation is late).
        for (new_status, guard) in [("paid", " AND status = 'placed'"), ("cancelled", "")] {
            let ids: Vec<&String> = status.iter().filter(|(_, s)| **s == new_status).map(|(id, _)| id).collect();
            for chunk in ids.chunks(ROWS_PER_INSERT) {
                // No arrays in Redshift: an IN list of parameters.
                let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![&new_status];
                params.extend(chunk.iter().map(|id| *id as &(dyn ToSql + Sync)));
                if self.windows == Windows::PerPage {
                    let rows = tx
                        .query(
                            &self.q(&format!(
                                "SELECT store_id, minute_us FROM {{p}}fact_orders WHERE order_id IN ({list})"
                            )),
                            &params[1..],
                        )
                        .await
                        .map_err(pg_apply)?;
                    touched.extend(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))));
                }
                let list = (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                tx.execute(
                    &self.q(&format!("UPDATE {{p}}fact_orders SET status = $1 WHERE order_id IN ({list}){guard}")),
                    &params,
                )
                .await
                .map_err(pg_apply)?;
            }
        }
        if self.windows == Windows::PerPage && !touched.is_empty() {
            // Recompute every window the page touched from the facts. (TRUNCATE would commit in Redshift.)
            tx.batch_execute("CREATE TEMP TABLE touched_minutes (store_id varchar(64), minute_us bigint)")
                .await
                .map_err(pg_apply)?;
            let touched: Vec<(String, i64)> = touched.into_iter().collect();
            for chunk in touched.chunks(ROWS_PER_INSERT) {
                let sql = multi_row_insert("touched_minutes", &["store_id", "minute_us"], chunk.len());
                let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 2);
                for t in chunk {
                    params.extend_from_slice(&[&t.0, &t.1]);
                }
                tx.execute(&sql, &params).await.map_err(pg_apply)?;
            }
            tx.batch_execute(&self.q(&format!(
                "DELETE FROM {{p}}store_minutes USING touched_minutes t
                   WHERE {{p}}store_minutes.store_id = t.store_id AND {{p}}store_minutes.minute_us = t.minute_us;
                 {};
                 DROP TABLE touched_minutes;",
                windows_from_facts("JOIN touched_minutes t ON f.store_id = t.store_id AND f.minute_us = t.minute_us")
            )))
            .await
            .map_err(pg_apply)?;
        }
        Ok(())
    }

    /// Leaves out of `orders` and `payments` the facts already written (and repeats within them): an
    /// order is placed once, a payment has each outcome once.
    async fn drop_written(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        orders: &mut Vec<OrderFact>,
        payments: &mut Vec<PaymentFact>,
    ) -> Result<(), SinkError> {
        let mut seen: HashSet<String> = HashSet::new();
        orders.retain(|o| seen.insert(o.0.clone()));
        let mut seen: HashSet<(String, &'static str)> = HashSet::new();
        payments.retain(|p| seen.insert((p.0.clone(), p.2)));
        let ids: BTreeSet<&str> =
            orders.iter().map(|o| o.0.as_str()).chain(payments.iter().map(|p| p.0.as_str())).collect();
        let ids: Vec<&str> = ids.into_iter().collect();
        let (mut placed, mut recorded) = (HashSet::new(), HashSet::new());
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let params: Vec<&(dyn ToSql + Sync)> = chunk.iter().map(|id| id as &(dyn ToSql + Sync)).collect();
            let sql = self.q(&format!("SELECT order_id FROM {{p}}fact_orders WHERE order_id IN ({list})"));
            placed.extend(tx.query(&sql, &params).await.map_err(pg_apply)?.iter().map(|r| r.get::<_, String>(0)));
            let sql = self.q(&format!("SELECT order_id, outcome FROM {{p}}fact_payments WHERE order_id IN ({list})"));
            recorded.extend(
                tx.query(&sql, &params)
                    .await
                    .map_err(pg_apply)?
                    .iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))),
            );
        }
        orders.retain(|o| !placed.contains(&o.0));
        payments.retain(|p| !recorded.contains(&(p.0.clone(), p.2.to_owned())));
        Ok(())
    }
}

#[async_trait]
impl Sink for AnalyticsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn position(&self) -> Result<u64, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt("SELECT position FROM analytics_offsets WHERE name = $1", &[&self.name])
            .await
            .map_err(sink_err)?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        let Some(last) = events.last().map(|e| e.global_position as i64) else { return Ok(()) };
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg_apply)?;
        // Redshift has no SELECT ... FOR UPDATE (nor RETURNING): updating the offset row takes the lock.
        tx.execute("UPDATE analytics_offsets SET position = position WHERE name = $1", &[&self.name])
            .await
            .map_err(pg_apply)?;
        let at: i64 = tx
            .query_one("SELECT position FROM analytics_offsets WHERE name = $1", &[&self.name])
            .await
            .map_err(pg_apply)?
            .get(0);
        if last <= at {
            return Ok(());
        }
        let changes = FactChanges::of(events.iter().filter(|e| e.global_position as i64 > at))?;
        self.write(&tx, changes, Repeats::Impossible).await?;
        tx.execute("UPDATE analytics_offsets SET position = $2 WHERE name = $1", &[&self.name, &last])
            .await
            .map_err(pg_apply)?;
        tx.commit().await.map_err(pg_apply)?;
        Ok(())
    }

    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let mut rows = Vec::new();
        for r in client
            .query(
                &self.q("SELECT order_id, customer_id, store_id, total_cents, item_count, placed_at_us, status FROM {p}fact_orders"),
                &[],
            )
            .await
            .map_err(sink_err)?
        {
            rows.push(CanonicalRow {
                key: format!("fact_orders/{}", r.get::<_, String>(0)),
                content: format!(
                    "customer_id={};store_id={};total_cents={};item_count={};placed_at_us={};status={}",
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, i64>(3),
                    r.get::<_, i32>(4),
                    r.get::<_, i64>(5),
                    r.get::<_, String>(6)
                ),
            });
        }
        for r in client
            .query(
                &self.q("SELECT order_id, outcome, customer_id, amount_cents, fraud_score FROM {p}fact_payments"),
                &[],
            )
            .await
            .map_err(sink_err)?
        {
            rows.push(CanonicalRow {
                key: format!("fact_payments/{}/{}", r.get::<_, String>(0), r.get::<_, String>(1)),
                content: format!(
                    "customer_id={};amount_cents={};fraud_score={}",
                    r.get::<_, String>(2),
                    r.get::<_, i64>(3),
                    r.get::<_, f64>(4)
                ),
            });
        }
        for r in client
            .query(
                &self.q("SELECT store_id, minute_us, order_count, revenue_cents, unique_customers, avg_order_value_cents FROM {p}store_minutes"),
                &[],
            )
            .await
            .map_err(sink_err)?
        {
            rows.push(CanonicalRow {
                key: format!("store_minutes/{}/{}", r.get::<_, String>(0), r.get::<_, i64>(1)),
                content: format!(
                    "order_count={};revenue_cents={};unique_customers={};avg_order_value_cents={}",
                    r.get::<_, i64>(2),
                    r.get::<_, i64>(3),
                    r.get::<_, i64>(4),
                    r.get::<_, i64>(5)
                ),
            });
        }
        Ok(rows)
    }
}

/// The analytics model fed from the `analytics-events` Kinesis stream (`--analytics-from kinesis`):
/// each shard's checkpoint is a row of `analytics_shard_checkpoints`, written in the transaction
/// that writes the shard's facts and windows, under the lease counter of the worker that read them.
#[async_trait]
impl ShardCheckpointedSink for AnalyticsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn shard_checkpoint(&self, shard_id: &str) -> Result<Option<String>, SinkError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt(
                "SELECT sequence FROM analytics_shard_checkpoints WHERE name = $1 AND shard = $2",
                &[&self.name, &shard_id],
            )
            .await
            .map_err(sink_err)?;
        Ok(row.map(|r| r.get::<_, String>(0)).filter(|s| !s.is_empty()))
    }

    async fn apply_from_shard(&self, batch: ShardBatch<'_>) -> Result<ShardApplied, SinkError> {
        let Some((last, _)) = batch.records.last() else { return Ok(ShardApplied::Applied { records: 0 }) };
        let counter = i64::try_from(batch.lease_counter).unwrap_or(i64::MAX);
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg_apply)?;
        // The shard's row is the lock (no SELECT ... FOR UPDATE in Redshift); the first batch of a
        // shard creates it under the model's offset row, so that two workers cannot both insert it.
        let lock =
            "UPDATE analytics_shard_checkpoints SET lease_counter = lease_counter WHERE name = $1 AND shard = $2";
        if tx.execute(lock, &[&self.name, &batch.shard_id]).await.map_err(pg_apply)? == 0 {
            tx.execute("UPDATE analytics_offsets SET position = position WHERE name = $1", &[&self.name])
                .await
                .map_err(pg_apply)?;
            if tx.execute(lock, &[&self.name, &batch.shard_id]).await.map_err(pg_apply)? == 0 {
                tx.execute(
                    "INSERT INTO analytics_shard_checkpoints (name, shard, sequence, lease_counter) VALUES ($1, $2, '', 0)",
                    &[&self.name, &batch.shard_id],
                )
                .await
                .map_err(pg_apply)?;
            }
        }
        let row = tx
            .query_one(
                "SELECT sequence, lease_counter FROM analytics_shard_checkpoints WHERE name = $1 AND shard = $2",
                &[&self.name, &batch.shard_id],
            )
            .await
            .map_err(pg_apply)?;
        let (after, stored): (String, i64) = (row.get(0), row.get(1));
        if stored > counter {
            return Ok(ShardApplied::Fenced { stored: stored as u64 });
        }
        let fresh: Vec<&RecordedEvent> = batch
            .records
            .iter()
            .filter(|(sequence, _)| sequence_key(sequence) > sequence_key(&after))
            .map(|(_, event)| event)
            .collect();
        if !fresh.is_empty() {
            self.write(&tx, FactChanges::of(fresh.iter().copied())?, Repeats::Possible).await?;
        }
        // The counter is stored even when nothing was new: from now on the older holder is fenced.
        let through = if sequence_key(last) > sequence_key(&after) { last } else { &after };
        tx.execute(
            "UPDATE analytics_shard_checkpoints SET sequence = $3, lease_counter = $4 WHERE name = $1 AND shard = $2",
            &[&self.name, &batch.shard_id, through, &counter],
        )
        .await
        .map_err(pg_apply)?;
        tx.commit().await.map_err(pg_apply)?;
        Ok(ShardApplied::Applied { records: fresh.len() })
    }
}

#[async_trait]
impl Rebuildable for AnalyticsSink {
    async fn shadow(&self) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(self.shadow_sink(Windows::PerPage).await?))
    }

    async fn bulk_shadow(&self) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(self.shadow_sink(Windows::Deferred).await?))
    }

    /// Recomputes every window of the shadow from its facts, in one transaction.
    async fn complete_shadow(&self) -> Result<(), SinkError> {
        let shadow = self.shadow_sink(Windows::PerPage).await?;
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(sink_err)?;
        tx.batch_execute(&shadow.q(&format!("DELETE FROM {{p}}store_minutes; {};", windows_from_facts(""))))
            .await
            .map_err(sink_err)?;
        tx.commit().await.map_err(sink_err)
    }

    async fn reset_shadow(&self, position: u64) -> Result<(), SinkError> {
        self.discard_shadow().await?;
        self.shadow().await?;
        SHADOW.set_position(&self.pool, position).await
    }

    async fn promote_shadow(&self) -> Result<(), SinkError> {
        SHADOW.promote(&self.pool).await
    }

    async fn discard_shadow(&self) -> Result<(), SinkError> {
        SHADOW.discard(&self.pool).await
    }
}
