//! The Aurora PostgreSQL journal.
//!
//! Group commit: appends queue up and one of a few writer tasks takes them all in one transaction.
//! Each request keeps its own expected-version check, made under a row lock on its stream, so a
//! conflict fails only that request.
//!
//! Gap-free global order: positions are handed out from the one-row table `journal_head`, whose row
//! lock is taken last and held until commit. Transactions that assign positions therefore commit in
//! position order, across every process sharing the database, and a reader that trusts
//! `global_position > last` can never skip an event that commits late. Rolled-back transactions give
//! their positions back, so positions have no holes either.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio_postgres::{error::SqlState, NoTls};

use crate::envelope::{RecordedEvent, GENESIS_HASH};
use crate::journal::ExpectedVersion;
use crate::journal::{
    record_batch_metrics, validate, AppendError, AppendRequest, Appended, Journal, PendingAppend, Snapshot, StoreError,
};

/// How to reach a PostgreSQL database and which schema to use in it.
#[derive(Clone, Debug)]
pub struct PgOptions {
    pub url: String,
    /// Tables live in this schema (created if absent); `None` uses the connection's default.
    pub schema: Option<String>,
    pub pool_size: usize,
    /// Writer tasks committing batches concurrently.
    pub writers: usize,
    pub max_batch_events: usize,
    pub queue_depth: usize,
    /// How long a caller waits for a connection before the journal counts as unavailable.
    pub connect_timeout: Duration,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            schema: None,
            pool_size: 16,
            writers: 4,
            max_batch_events: 2000,
            queue_depth: 8192,
            connect_timeout: Duration::from_secs(3),
        }
    }
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

/// A connection pool for `options`, creating the schema if it names one.
pub async fn connect_pool(options: &PgOptions) -> Result<Pool, StoreError> {
    let mut config: tokio_postgres::Config =
        options.url.parse().map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
    config.connect_timeout(options.connect_timeout);
    if let Some(schema) = &options.schema {
        if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Invalid(format!("schema name `{schema}` must be [A-Za-z0-9_]")));
        }
        let (client, conn) = config.connect(NoTls).await.map_err(pg)?;
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await.map_err(pg)?;
        config.options(format!("-c search_path={schema}"));
    }
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Applies `migrations` (version, SQL) of `component` that this database has not seen, in order, each in
/// its own transaction, under an advisory lock so that several processes starting at once agree.
pub async fn migrate(pool: &Pool, component: &str, migrations: &[(i32, &str)]) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    client
        .batch_execute(
            "SELECT pg_advisory_lock(hashtext('cloudcafe-migrations:' || current_schema()));
             CREATE TABLE IF NOT EXISTS cc_schema_migrations (
                 component text NOT NULL, version int NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (component, version))",
        )
        .await
        .map_err(pg)?;
    let result = async {
        for (version, sql) in migrations {
            let tx = client.transaction().await.map_err(pg)?;
            let seen = tx
                .query_opt(
                    "SELECT 1 FROM cc_schema_migrations WHERE component = $1 AND version = $2",
                    &[&component, version],
                )
                .await
                .map_err(pg)?;
            if seen.is_none() {
                tx.batch_execute(sql).await.map_err(pg)?;
                tx.execute(
                    "INSERT INTO cc_schema_migrations (component, version) VALUES ($1, $2)",
                    &[&component, version],
                )
                .await
                .map_err(pg)?;
                tracing::info!(component, version, "applied migration");
            }
            tx.commit().await.map_err(pg)?;
        }
        Ok(())
    }
    .await;
    client
        .batch_execute("SELECT pg_advisory_unlock(hashtext('cloudcafe-migrations:' || current_schema()))")
        .await
        .map_err(pg)?;
    result
}

const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE events (
        global_position bigint PRIMARY KEY,
        stream_id text NOT NULL,
        stream_version bigint NOT NULL,
        event_id uuid NOT NULL,
        event_type text NOT NULL,
        schema_version smallint NOT NULL,
        recorded_at bigint NOT NULL,
        correlation_id uuid NOT NULL,
        causation_id uuid,
        payload bytea NOT NULL,
        hash bytea NOT NULL,
        UNIQUE (stream_id, stream_version)
     );
     CREATE TABLE streams (stream_id text PRIMARY KEY, version bigint NOT NULL, hash bytea NOT NULL);
     CREATE TABLE snapshots (stream_id text PRIMARY KEY, version bigint NOT NULL, state bytea NOT NULL);
     CREATE TABLE journal_head (id int PRIMARY KEY CHECK (id = 1), position bigint NOT NULL);
     INSERT INTO journal_head VALUES (1, 0);
     CREATE TABLE checkpoints (name text PRIMARY KEY, position bigint NOT NULL);",
)];

pub struct PgJournal {
    pool: Pool,
    queue: mpsc::Sender<PendingAppend>,
    commits: watch::Receiver<u64>,
}

impl PgJournal {
    /// Connects, migrates, and starts the writer tasks on the current tokio runtime.
    pub async fn connect(options: PgOptions) -> Result<Self, StoreError> {
        let pool = connect_pool(&options).await?;
        migrate(&pool, "journal", MIGRATIONS).await?;
        let head = head(&pool).await?;
        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let (commit_tx, commit_rx) = watch::channel(head);
        let rx = Arc::new(Mutex::new(rx));
        let commit_tx = Arc::new(commit_tx);
        for _ in 0..options.writers.max(1) {
            tokio::spawn(writer_loop(pool.clone(), rx.clone(), commit_tx.clone(), options.max_batch_events.max(1)));
        }
        Ok(PgJournal { pool, queue: tx, commits: commit_rx })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

async fn head(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let row = client.query_one("SELECT position FROM journal_head WHERE id = 1", &[]).await.map_err(pg)?;
    Ok(row.get::<_, i64>(0) as u64)
}

async fn writer_loop(
    pool: Pool,
    queue: Arc<Mutex<mpsc::Receiver<PendingAppend>>>,
    commits: Arc<watch::Sender<u64>>,
    max_batch_events: usize,
) {
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else { return };
            let mut events = first.request.events.len();
            let mut batch = vec![first];
            while events < max_batch_events {
                match queue.try_recv() {
                    Ok(p) => {
                        events += p.request.events.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let started = Instant::now();
        let events: usize = batch.iter().map(|p| p.request.events.len()).sum();
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        let outcome = commit_with_retry(&pool, &requests).await;
        match outcome {
            Ok((results, last_position)) => {
                let conflicts = results.iter().filter(|r| r.is_err()).count();
                record_batch_metrics("postgres", requests.len(), events, conflicts, started.elapsed());
                commits.send_if_modified(|head| {
                    let moved = last_position > *head;
                    *head = (*head).max(last_position);
                    moved
                });
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "journal batch failed");
                for reply in replies {
                    let _ = reply.send(Err(AppendError::Store(e.clone())));
                }
            }
        }
    }
}

type BatchResults = Vec<Result<Appended, AppendError>>;

async fn commit_with_retry(pool: &Pool, requests: &[AppendRequest]) -> Result<(BatchResults, u64), StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut client = pool.get().await.map_err(pool_error)?;
        match commit_batch(&mut client, requests).await {
            Ok(r) => return Ok(r),
            Err(BatchError::CreationRace) if attempt < 5 => {
                tracing::debug!(attempt, "retrying journal batch after a stream creation race");
            }
            Err(BatchError::Database(e)) if attempt < 5 && is_retryable(&e) => {
                tracing::debug!(error = %e, attempt, "retrying journal batch");
                tokio::time::sleep(Duration::from_millis(fastrand_ms(attempt))).await;
            }
            Err(BatchError::CreationRace) => {
                return Err(StoreError::unavailable("stream creation kept racing; try again"))
            }
            Err(BatchError::Database(e)) => return Err(pg(e)),
        }
    }
}

fn fastrand_ms(attempt: u32) -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    u64::from(attempt) * 5 + u64::from(nanos % 10)
}

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

async fn lock_heads(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &[String],
    heads: &mut HashMap<String, (u64, [u8; 32])>,
) -> Result<(), tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT stream_id, version, hash FROM streams WHERE stream_id = ANY($1) ORDER BY stream_id FOR UPDATE",
            &[&ids],
        )
        .await?;
    for row in rows {
        let hash: Vec<u8> = row.get(2);
        heads.insert(row.get(0), (row.get::<_, i64>(1) as u64, hash.try_into().unwrap_or(GENESIS_HASH)));
    }
    Ok(())
}

/// Why a batch did not commit.
enum BatchError {
    Database(tokio_postgres::Error),
    /// Another transaction created a stream that an `Any` request of this batch appends to: the
    /// request must be decided again against that stream's head, so the batch runs again.
    CreationRace,
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        BatchError::Database(e)
    }
}

async fn commit_batch(
    client: &mut deadpool_postgres::Client,
    requests: &[AppendRequest],
) -> Result<(BatchResults, u64), BatchError> {
    let tx = client.transaction().await?;
    let mut ids: Vec<String> = requests.iter().map(|r| r.stream_id.clone()).collect();
    ids.sort();
    ids.dedup();
    // Existing streams: lock their heads (in id order, so concurrent batches cannot deadlock).
    let mut heads = HashMap::with_capacity(ids.len());
    lock_heads(&tx, &ids, &mut heads).await?;
    let existing: std::collections::HashSet<String> = heads.keys().cloned().collect();

    // Decide every request against the heads; streams not found count as version 0.
    let mut decided: Vec<Result<(u64, u64), AppendError>> = Vec::with_capacity(requests.len());
    let mut chains: Vec<Vec<RecordedEvent>> = Vec::with_capacity(requests.len());
    for request in requests {
        let (actual, mut previous) = heads.get(&request.stream_id).copied().unwrap_or((0, GENESIS_HASH));
        if !request.expected.admits(actual) {
            decided.push(Err(AppendError::Conflict {
                stream_id: request.stream_id.clone(),
                expected: request.expected,
                actual,
            }));
            chains.push(Vec::new());
            continue;
        }
        let mut version = actual;
        let mut chain = Vec::with_capacity(request.events.len());
        for event in &request.events {
            version += 1;
            let e = event.clone().record(&request.stream_id, version, &previous);
            previous = e.hash;
            chain.push(e);
        }
        heads.insert(request.stream_id.clone(), (version, previous));
        decided.push(Ok((actual + 1, version)));
        chains.push(chain);
    }

    // New streams are inserted with their final head. One that another transaction created first is
    // not inserted (ON CONFLICT waits for that transaction): its requests become conflicts.
    let created: Vec<&String> = ids.iter().filter(|id| !existing.contains(*id) && heads.contains_key(*id)).collect();
    if !created.is_empty() {
        let versions: Vec<i64> = created.iter().map(|s| heads[*s].0 as i64).collect();
        let hashes: Vec<Vec<u8>> = created.iter().map(|s| heads[*s].1.to_vec()).collect();
        let rows = tx
            .query(
                "INSERT INTO streams (stream_id, version, hash)
                 SELECT s, v, h FROM unnest($1::text[], $2::int8[], $3::bytea[]) AS u(s, v, h) ORDER BY s
                 ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id",
                &[&created, &versions, &hashes],
            )
            .await?;
        if rows.len() < created.len() {
            metrics::counter!("journal_creation_races_total").increment(1);
            let won: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
            let lost: Vec<String> = created.iter().filter(|s| !won.contains(**s)).map(|s| (*s).clone()).collect();
            let mut now = HashMap::new();
            lock_heads(&tx, &lost, &mut now).await?;
            for (i, request) in requests.iter().enumerate() {
                let Some(&(actual, _)) = now.get(&request.stream_id) else { continue };
                if request.expected == ExpectedVersion::Any {
                    return Err(BatchError::CreationRace); // dropping the transaction rolls it back
                }
                decided[i] = Err(AppendError::Conflict {
                    stream_id: request.stream_id.clone(),
                    expected: request.expected,
                    actual,
                });
                chains[i].clear();
            }
        }
    }
    let updated: Vec<&String> = ids.iter().filter(|id| existing.contains(*id)).collect();
    let update = async {
        if updated.is_empty() {
            return Ok(0);
        }
        let versions: Vec<i64> = updated.iter().map(|s| heads[*s].0 as i64).collect();
        let hashes: Vec<Vec<u8>> = updated.iter().map(|s| heads[*s].1.to_vec()).collect();
        tx.execute(
            "UPDATE streams SET version = u.v, hash = u.h FROM unnest($1::text[], $2::int8[], $3::bytea[]) AS u(s, v, h)
             WHERE streams.stream_id = u.s AND streams.version <> u.v",
            &[&updated, &versions, &hashes],
        )
        .await
    };

    let events: Vec<RecordedEvent> = chains.iter_mut().flat_map(std::mem::take).collect();
    let insert = async {
        if events.is_empty() {
            return Ok(0i64);
        }
        let row = tx
            .query_one(
                "WITH head AS (UPDATE journal_head SET position = position + $1 WHERE id = 1 RETURNING position - $1 AS base),
                 ins AS (
                   INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type, schema_version,
                                       recorded_at, correlation_id, causation_id, payload, hash)
                   SELECT head.base + u.ord, u.s, u.v, u.id, u.t, u.sv, u.at, u.corr, u.cause, u.p, u.h
                   FROM head, unnest($2::text[], $3::int8[], $4::uuid[], $5::text[], $6::int2[], $7::int8[], $8::uuid[],
                                     $9::uuid[], $10::bytea[], $11::bytea[])
                        WITH ORDINALITY AS u(s, v, id, t, sv, at, corr, cause, p, h, ord)
                 )
                 SELECT base FROM head",
                &[
                    &(events.len() as i64),
                    &events.iter().map(|e| e.stream_id.as_str()).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.stream_version as i64).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.schema_version as i16).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.recorded_at_us).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.correlation_id).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.causation_id).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.payload.as_slice()).collect::<Vec<_>>(),
                    &events.iter().map(|e| e.hash.as_slice()).collect::<Vec<_>>(),
                ],
            )
            .await?;
        Ok(row.get::<_, i64>(0))
    };
    // Both statements go out without waiting for each other's answer (pipelined); the head row lock
    // is the last lock taken and is held only until the commit right after.
    let (_, base) = futures::try_join!(update, insert)?;
    tx.commit().await?;

    let mut end = 0i64;
    let mut results = Vec::with_capacity(decided.len());
    for d in decided {
        results.push(d.map(|(first, last)| {
            end += (last + 1 - first) as i64;
            Appended { first_version: first, last_version: last, last_position: (base + end) as u64 }
        }));
    }
    Ok((results, (base + events.len() as i64) as u64))
}

const SELECT_EVENTS: &str = "SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version,
    recorded_at, correlation_id, causation_id, payload, hash FROM events";

fn row_to_event(row: &tokio_postgres::Row) -> Result<RecordedEvent, StoreError> {
    let hash: Vec<u8> = row.get(10);
    Ok(RecordedEvent {
        global_position: row.get::<_, i64>(0) as u64,
        stream_id: row.get(1),
        stream_version: row.get::<_, i64>(2) as u64,
        event_id: row.get(3),
        event_type: row.get(4),
        schema_version: row.get::<_, i16>(5) as u16,
        recorded_at_us: row.get(6),
        correlation_id: row.get(7),
        causation_id: row.get(8),
        payload: row.get(9),
        hash: hash.try_into().map_err(|_| StoreError::Corrupt("event hash is not 32 bytes".into()))?,
    })
}

#[async_trait]
impl Journal for PgJournal {
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        validate(&request)?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(PendingAppend { request, reply })
            .await
            .map_err(|_| StoreError::unavailable("journal writers stopped"))?;
        answer.await.map_err(|_| StoreError::unavailable("journal writers stopped"))?
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(&format!(
                "{SELECT_EVENTS} WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3"
            ))
            .await
            .map_err(pg)?;
        let rows = client
            .query(&stmt, &[&stream_id, &(from_version as i64), &i64::try_from(max).unwrap_or(i64::MAX)])
            .await
            .map_err(pg)?;
        rows.iter().map(row_to_event).collect()
    }

    async fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(&format!("{SELECT_EVENTS} WHERE global_position > $1 ORDER BY global_position LIMIT $2"))
            .await
            .map_err(pg)?;
        let rows =
            client.query(&stmt, &[&(after as i64), &i64::try_from(max).unwrap_or(i64::MAX)]).await.map_err(pg)?;
        rows.iter().map(row_to_event).collect()
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        head(&self.pool).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "INSERT INTO snapshots (stream_id, version, state) VALUES ($1, $2, $3)
                 ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, state = excluded.state
                 WHERE excluded.version > snapshots.version",
                &[&snapshot.stream_id, &(snapshot.version as i64), &snapshot.state],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt("SELECT version, state FROM snapshots WHERE stream_id = $1", &[&stream_id])
            .await
            .map_err(pg)?;
        Ok(row.map(|r| Snapshot {
            stream_id: stream_id.to_owned(),
            version: r.get::<_, i64>(0) as u64,
            state: r.get(1),
        }))
    }

    async fn load_checkpoint(&self, name: &str) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client.query_opt("SELECT position FROM checkpoints WHERE name = $1", &[&name]).await.map_err(pg)?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "INSERT INTO checkpoints (name, position) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position WHERE excluded.position > checkpoints.position",
                &[&name, &(position as i64)],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client.simple_query("SELECT 1").await.map_err(pg)?;
        Ok(())
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }
}

/// A failed PostgreSQL statement as a [`StoreError`]: the reason names the SQLSTATE when the server
/// answered one; the driver's error is the cause.
pub fn pg(e: tokio_postgres::Error) -> StoreError {
    let reason = match e.as_db_error() {
        Some(db) => format!("PostgreSQL answered {}", db.code().code()),
        None => "a PostgreSQL statement failed".to_owned(),
    };
    StoreError::unavailable_because(reason, e)
}

/// No connection could be had from the pool; the pool's error is the cause.
pub fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::unavailable_because("no database connection", e)
}
