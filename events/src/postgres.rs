//! The Aurora PostgreSQL journal.
//!
//! Group commit: appends queue up and one of a few writer tasks takes them all in one transaction.
//! Each request keeps its own expected-version check, so a conflict fails only that request.
//!
//! A stream's head is its last event. The events' unique index on (stream_id, stream_version) is
//! both where heads are read and what keeps one writer per stream: two transactions appending the
//! same version of a stream cannot both commit, whichever process they run in. A batch reads the
//! heads it needs without locking, decides, and sends BEGIN, one INSERT and COMMIT in one pipelined
//! exchange. A batch that finds a version taken since it read the head (the unique index refuses
//! the insert) rolls back and is decided again with the head lock taken first, so the heads it
//! reads cannot move before it commits.
//!
//! Gap-free global order: positions are handed out from the one-row table `journal_head`, whose row
//! lock is taken by the insert and held until commit. Transactions that assign positions therefore
//! commit in position order, across every process sharing the database, and a reader that trusts
//! `global_position > last` can never skip an event that commits late. Rolled-back transactions give
//! their positions back, so positions have no holes either.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio_postgres::error::SqlState;

use crate::secret::{redact, Password};
use crate::tls::{PgTlsConnector, SslMode, TlsError};

use crate::envelope::{RecordedEvent, GENESIS_HASH};
use crate::journal::{
    record_batch_metrics, validate, AppendError, AppendRequest, Appended, ExpectedVersion, Journal, PendingAppend,
    Snapshot, StoreError,
};

/// How to reach a PostgreSQL database and which schema to use in it.
#[derive(Clone)]
pub struct PgOptions {
    /// A URL (`postgres://user@host:port/db?sslmode=verify-full&sslrootcert=/path`) or libpq's
    /// `key=value` form. A password in it works, but [`PgSecurity::password`] keeps it out of sight.
    pub url: String,
    /// Tables live in this schema (created if absent); `None` uses the connection's default.
    pub schema: Option<String>,
    /// TLS and the password, kept apart from the URL text.
    pub security: PgSecurity,
    pub pool_size: usize,
    /// Writer tasks committing batches concurrently.
    pub writers: usize,
    pub max_batch_events: usize,
    pub queue_depth: usize,
    /// How long a caller waits for a connection before the journal counts as unavailable.
    pub connect_timeout: Duration,
}

/// How a connection to PostgreSQL is secured: TLS, and a password given apart from the URL (from a
/// file or the environment), which wins over one in the URL; or a source asked for a fresh password
/// at every new connection (IAM database authentication), which wins over both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgSecurity {
    pub tls: PgTls,
    pub password: Option<Password>,
    pub password_source: Option<SharedPasswordSource>,
}

/// A password that changes: asked again for every new connection (an Aurora IAM authentication
/// token is valid for 15 minutes, and only when a connection is made).
#[async_trait::async_trait]
pub trait PasswordSource: Send + Sync {
    async fn password(&self) -> Result<Password, crate::Cause>;
}

/// A [`PasswordSource`] to share between pools; equal only to itself, and never printed.
#[derive(Clone)]
pub struct SharedPasswordSource(pub Arc<dyn PasswordSource>);

impl std::fmt::Debug for SharedPasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<password source>")
    }
}

impl PartialEq for SharedPasswordSource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedPasswordSource {}

/// Puts the source's current password into `config`. A source that fails leaves the configuration
/// as it is: the server then refuses the connection, which the caller reports as unavailable.
async fn fresh_password(config: &mut tokio_postgres::Config, source: Option<&SharedPasswordSource>) {
    if let Some(source) = source {
        match source.0.password().await {
            Ok(password) => {
                config.password(password.expose());
            }
            Err(e) => tracing::warn!(detail = %crate::ErrorChain(&*e), "no password from the password source"),
        }
    }
}

/// The pool's way to connect when the password comes from a [`PasswordSource`].
struct SourcedConnect {
    tls: PgTlsConnector,
    source: SharedPasswordSource,
}

impl deadpool_postgres::Connect for SourcedConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> futures::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let (tls, mut config) = (self.tls.clone(), pg_config.clone());
        Box::pin(async move {
            fresh_password(&mut config, Some(&self.source)).await;
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(detail = %e, "PostgreSQL connection error");
                }
            });
            Ok((client, task))
        })
    }
}

/// TLS to PostgreSQL. Unset fields fall back to the URL's `sslmode` and `sslrootcert`, then to
/// [`SslMode::default_for`] the host (`prefer` on this machine, `verify-full` elsewhere) and the
/// system's roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgTls {
    pub mode: Option<SslMode>,
    /// The CA bundle (PEM) the server's chain must end at, e.g. the RDS global bundle.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("security", &self.security)
            .field("pool_size", &self.pool_size)
            .field("writers", &self.writers)
            .field("max_batch_events", &self.max_batch_events)
            .field("queue_depth", &self.queue_depth)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            schema: None,
            security: PgSecurity::default(),
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
    pub fn with_security(mut self, security: PgSecurity) -> Self {
        self.security = security;
        self
    }

    /// The URL with its password hidden, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// The driver's configuration and TLS connector for `options`: the URL's `sslmode` and
/// `sslrootcert` (which tokio-postgres refuses or does not know) are taken out and applied here,
/// and the password from [`PgSecurity`] is put into the parsed configuration, never into text.
pub fn pg_config(options: &PgOptions) -> Result<(tokio_postgres::Config, PgTlsConnector), StoreError> {
    let bad = |reason: String| StoreError::Invalid(format!("PostgreSQL URL {}: {reason}", options.redacted_url()));
    let (url, url_mode, url_ca_file) = take_tls_params(&options.url).map_err(|e| bad(e.to_string()))?;
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| bad(format!("{e}")))?;
    config.connect_timeout(options.connect_timeout);
    if let Some(password) = &options.security.password {
        config.password(password.expose());
    }
    let mode = options.security.tls.mode.or(url_mode).unwrap_or_else(|| default_mode(&config));
    let ca_file = options.security.tls.ca_file.clone().or(url_ca_file);
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    let tls = PgTlsConnector::new(mode, ca_file.as_deref()).map_err(|e| bad(crate::error_chain(&e)))?;
    Ok((config, tls))
}

/// The default for the hosts the configuration names: `prefer` only when every one is local.
fn default_mode(config: &tokio_postgres::Config) -> SslMode {
    let addrs: Vec<String> = config.get_hostaddrs().iter().map(|a| a.to_string()).collect();
    let hosts: Vec<String> = if addrs.is_empty() {
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.to_string_lossy().into_owned(),
            })
            .collect()
    } else {
        addrs
    };
    if hosts.iter().all(|h| SslMode::default_for(h) == SslMode::Prefer) {
        SslMode::Prefer
    } else {
        SslMode::VerifyFull
    }
}

/// `url` without its `sslmode` and `sslrootcert` parameters, and their values. Both the URL form
/// (`?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem`) and the `key=value` form are read.
pub fn take_tls_params(url: &str) -> Result<(String, Option<SslMode>, Option<PathBuf>), TlsError> {
    let (mut mode, mut ca_file) = (None, None);
    let mut take = |key: &str, value: String| -> Result<bool, TlsError> {
        match key {
            "sslmode" => mode = Some(value.parse::<SslMode>()?),
            "sslrootcert" => ca_file = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, percent_decode(value))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else if !url.contains("sslmode") && !url.contains("sslrootcert") {
        url.to_owned()
    } else {
        // Rebuilt from its words only when it names one of them: quoted values keep their spaces otherwise.
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, value.trim_matches('\'').to_owned())? {
                kept.push(pair);
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, ca_file))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection pool for `options`, creating the schema if it names one.
pub async fn connect_pool(options: &PgOptions) -> Result<Pool, StoreError> {
    let (mut config, tls) = pg_config(options)?;
    if let Some(schema) = &options.schema {
        if !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Invalid(format!("schema name `{schema}` must be [A-Za-z0-9_]")));
        }
        let mut first = config.clone();
        fresh_password(&mut first, options.security.password_source.as_ref()).await;
        let (client, conn) = first.connect(tls.clone()).await.map_err(|e| connect_error(options, e))?;
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await.map_err(pg)?;
        config.options(format!("-c search_path={schema}"));
    }
    let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let manager = match &options.security.password_source {
        None => Manager::from_config(config, tls, recycling),
        Some(source) => Manager::from_connect(config, SourcedConnect { tls, source: source.clone() }, recycling),
    };
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| StoreError::Invalid(e.to_string()))
}

/// No connection to the server of `options` (refused, TLS refused, authentication failed): the
/// reason names the server without its password; the driver's error is the cause.
pub fn connect_error(options: &PgOptions, e: tokio_postgres::Error) -> StoreError {
    StoreError::unavailable_because(format!("cannot connect to PostgreSQL at {}", options.redacted_url()), e)
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

const MIGRATIONS: &[(i32, &str)] = &[
    (
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
    ),
    // Stream heads are read from the events' unique index (the last event of each stream), which
    // already held the same version and hash in the same transactions: the second copy only cost
    // every batch a row per stream.
    (2, "DROP TABLE streams;"),
];

pub struct PgJournal {
    pool: Pool,
    queue: mpsc::Sender<PendingAppend>,
    commits: watch::Receiver<u64>,
    stats: Arc<StatsCells>,
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
        let stats = Arc::new(StatsCells::default());
        crate::metric::JOURNAL_VERSION_RACES.register(crate::metric::NO_LABELS);
        for _ in 0..options.writers.max(1) {
            tokio::spawn(writer_loop(
                pool.clone(),
                rx.clone(),
                commit_tx.clone(),
                options.max_batch_events.max(1),
                stats.clone(),
            ));
        }
        Ok(PgJournal { pool, queue: tx, commits: commit_rx, stats })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// What the writer tasks have committed so far and where their time went.
    pub fn batch_stats(&self) -> BatchStats {
        self.stats.read()
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
    stats: Arc<StatsCells>,
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
        let outcome = commit_with_retry(&pool, &requests, &stats).await;
        match outcome {
            Ok((results, last_position)) => {
                let conflicts = results.iter().filter(|r| r.is_err()).count();
                record_batch_metrics("postgres", requests.len(), events, conflicts, started.elapsed());
                stats.batch(requests.len(), events);
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

/// Why a batch did not commit.
enum BatchError {
    Database(tokio_postgres::Error),
    /// Another transaction committed a version of a stream that this batch appends to after this
    /// batch read the stream's head: the batch is decided again against the new head.
    VersionTaken,
    Store(StoreError),
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        let version_taken = e
            .as_db_error()
            .is_some_and(|db| *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(STREAM_VERSION_KEY));
        if version_taken {
            BatchError::VersionTaken
        } else {
            BatchError::Database(e)
        }
    }
}

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        BatchError::Store(e)
    }
}

/// The events' unique index on (stream_id, stream_version): one writer per stream version.
const STREAM_VERSION_KEY: &str = "events_stream_id_stream_version_key";

/// The head of each stream named in `$1` that has events: its last version and that event's hash.
/// One backward probe of the unique index per stream, however long the stream.
const READ_HEADS: &str = "SELECT s.id, e.stream_version, e.hash FROM unnest($1::text[]) AS s(id)
    CROSS JOIN LATERAL (SELECT stream_version, hash FROM events WHERE events.stream_id = s.id
                        ORDER BY stream_version DESC LIMIT 1) AS e";

/// Takes the head lock before anything else (the path of a batch that lost a version race).
const LOCK_HEAD: &str = "SELECT position FROM journal_head WHERE id = 1 FOR UPDATE";

/// Takes `$1` positions under the head lock and inserts the batch's events at them, in order.
const INSERT_EVENTS: &str =
    "WITH head AS (UPDATE journal_head SET position = position + $1 WHERE id = 1 RETURNING position - $1 AS base),
     ins AS (
       INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type, schema_version,
                           recorded_at, correlation_id, causation_id, payload, hash)
       SELECT head.base + u.ord, u.s, u.v, u.id, u.t, u.sv, u.at, u.corr, u.cause, u.p, u.h
       FROM head, unnest($2::text[], $3::int8[], $4::uuid[], $5::text[], $6::int2[], $7::int8[], $8::uuid[],
                         $9::uuid[], $10::bytea[], $11::bytea[])
            WITH ORDINALITY AS u(s, v, id, t, sv, at, corr, cause, p, h, ord)
     )
     SELECT base FROM head";

struct Statements {
    read_heads: tokio_postgres::Statement,
    lock_head: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
}

/// The batch's statements, prepared once per connection.
async fn statements(client: &deadpool_postgres::Client) -> Result<Statements, tokio_postgres::Error> {
    let (read_heads, lock_head, insert) = futures::try_join!(
        client.prepare_cached(READ_HEADS),
        client.prepare_cached(LOCK_HEAD),
        client.prepare_cached(INSERT_EVENTS)
    )?;
    Ok(Statements { read_heads, lock_head, insert })
}

async fn commit_with_retry(
    pool: &Pool,
    requests: &[AppendRequest],
    stats: &StatsCells,
) -> Result<(BatchResults, u64), StoreError> {
    let mut attempt = 0;
    let mut under_lock = false;
    loop {
        attempt += 1;
        let mut client = pool.get().await.map_err(pool_error)?;
        let outcome = if under_lock {
            commit_under_lock(&mut client, requests, stats).await
        } else {
            commit_optimistically(&client, requests, stats).await
        };
        match outcome {
            Ok(r) => return Ok(r),
            Err(BatchError::VersionTaken) if attempt < 5 => {
                crate::metric::JOURNAL_VERSION_RACES.counter(crate::metric::NO_LABELS).increment(1);
                tracing::debug!(
                    attempt,
                    "a stream version was taken since its head was read; deciding the batch again"
                );
                stats.rerun_under_lock.fetch_add(1, Ordering::Relaxed);
                under_lock = true;
            }
            Err(BatchError::Database(e)) if attempt < 5 && is_retryable(&e) => {
                tracing::debug!(error = %e, attempt, "retrying journal batch");
                tokio::time::sleep(Duration::from_millis(fastrand_ms(attempt))).await;
            }
            Err(BatchError::VersionTaken) => {
                return Err(StoreError::unavailable("stream versions kept being taken by other writers; try again"))
            }
            Err(BatchError::Database(e)) => return Err(pg(e)),
            Err(BatchError::Store(e)) => return Err(e),
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

/// The common path: read the heads the batch needs without locking, decide, then send BEGIN, the
/// insert and COMMIT in one pipelined exchange. The head lock is taken by the insert and released by
/// the commit right behind it, with no round trip to this process in between. If another writer
/// took a version this batch decided on, the unique index refuses the insert, the transaction rolls
/// back (giving its positions back) and the batch runs again under the lock.
async fn commit_optimistically(
    client: &deadpool_postgres::Client,
    requests: &[AppendRequest],
    stats: &StatsCells,
) -> Result<(BatchResults, u64), BatchError> {
    let statements = statements(client).await?;
    let started = Instant::now();
    // A stream whose first request in the batch expects no stream is taken to have none: if it
    // has, version 1 is taken and the unique index says so.
    let ids = streams_to_read(requests, |expected| expected != ExpectedVersion::NoStream);
    let heads =
        if ids.is_empty() { Heads::new() } else { heads_from(client.query(&statements.read_heads, &[&ids]).await?)? };
    stats.reading_heads.add(started);
    let started = Instant::now();
    let (decided, events) = decide(requests, heads);
    let columns = EventColumns::of(&events);
    stats.deciding.add(started);
    if events.is_empty() {
        return Ok((results(decided, 0), 0));
    }
    let started = Instant::now();
    let params = columns.params();
    let (begin, (inserted, inserted_at), commit) = futures::join!(
        client.batch_execute("BEGIN"),
        async { (client.query_one(&statements.insert, &params).await, Instant::now()) },
        client.batch_execute("COMMIT")
    );
    stats.inserting.add_between(started, inserted_at);
    stats.committing.add(inserted_at);
    match (begin, inserted, commit) {
        (Ok(()), Ok(row), Ok(())) => {
            let base: i64 = row.get(0);
            Ok((results(decided, base), (base + events.len() as i64) as u64))
        }
        (begin, inserted, commit) => {
            // After a failed insert the server answered COMMIT with a rollback; make sure of it
            // before the connection goes back to the pool.
            if !client.is_closed() {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            Err(BatchError::from(begin.err().or(inserted.err()).or(commit.err()).expect("one of them failed")))
        }
    }
}

/// The path after a lost race: take the head lock first, so that no other writer can append
/// anywhere until this batch commits, then read every head the batch touches, decide and insert.
async fn commit_under_lock(
    client: &mut deadpool_postgres::Client,
    requests: &[AppendRequest],
    stats: &StatsCells,
) -> Result<(BatchResults, u64), BatchError> {
    let statements = statements(client).await?;
    let ids = streams_to_read(requests, |_| true);
    let tx = client.transaction().await?;
    let started = Instant::now();
    let read_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
    let (locked, rows) =
        futures::join!(tx.query_one(&statements.lock_head, &[]), tx.query(&statements.read_heads, &read_params));
    locked?;
    let heads = heads_from(rows?)?;
    stats.reading_heads.add(started);
    let started = Instant::now();
    let (decided, events) = decide(requests, heads);
    let columns = EventColumns::of(&events);
    stats.deciding.add(started);
    let started = Instant::now();
    let base = if events.is_empty() { 0 } else { tx.query_one(&statements.insert, &columns.params()).await?.get(0) };
    stats.inserting.add(started);
    let started = Instant::now();
    tx.commit().await?;
    stats.committing.add(started);
    Ok((results(decided, base), if events.is_empty() { 0 } else { (base + events.len() as i64) as u64 }))
}

/// A request's first and last version if accepted, or its conflict.
type Decision = Result<(u64, u64), AppendError>;

/// Stream heads as read: version and the hash of the stream's last event.
type Heads = HashMap<String, (u64, [u8; 32])>;

/// The distinct streams of `requests` whose first request in the batch satisfies `read`, sorted.
fn streams_to_read(requests: &[AppendRequest], read: impl Fn(ExpectedVersion) -> bool) -> Vec<&str> {
    let mut first: HashMap<&str, ExpectedVersion> = HashMap::with_capacity(requests.len());
    for request in requests {
        first.entry(request.stream_id.as_str()).or_insert(request.expected);
    }
    let mut ids: Vec<&str> = first.into_iter().filter(|(_, expected)| read(*expected)).map(|(id, _)| id).collect();
    ids.sort_unstable();
    ids
}

fn heads_from(rows: Vec<tokio_postgres::Row>) -> Result<Heads, StoreError> {
    let mut heads = Heads::with_capacity(rows.len());
    for row in rows {
        let stream_id: String = row.get(0);
        let hash: Vec<u8> = row.get(2);
        let hash = hash.try_into().map_err(|_| {
            StoreError::Corrupt(format!("the last event of stream {stream_id} has a hash that is not 32 bytes"))
        })?;
        heads.insert(stream_id, (row.get::<_, i64>(1) as u64, hash));
    }
    Ok(heads)
}

/// Decides every request in order against the heads (a stream not in `heads` has no events), each
/// accepted request moving its stream's head: the first and last version of each accepted request
/// or its conflict, and the accepted events, hash-chained, in batch order.
fn decide(requests: &[AppendRequest], mut heads: Heads) -> (Vec<Decision>, Vec<RecordedEvent>) {
    let mut decided = Vec::with_capacity(requests.len());
    let mut events = Vec::with_capacity(requests.iter().map(|r| r.events.len()).sum());
    for request in requests {
        let (actual, mut previous) = heads.get(&request.stream_id).copied().unwrap_or((0, GENESIS_HASH));
        if !request.expected.admits(actual) {
            decided.push(Err(AppendError::Conflict {
                stream_id: request.stream_id.clone(),
                expected: request.expected,
                actual,
            }));
            continue;
        }
        let mut version = actual;
        for event in &request.events {
            version += 1;
            let e = event.clone().record(&request.stream_id, version, &previous);
            previous = e.hash;
            events.push(e);
        }
        heads.insert(request.stream_id.clone(), (version, previous));
        decided.push(Ok((actual + 1, version)));
    }
    (decided, events)
}

/// Each request's answer, the accepted ones placed from position `base + 1` in batch order.
fn results(decided: Vec<Decision>, base: i64) -> BatchResults {
    let mut end = 0i64;
    decided
        .into_iter()
        .map(|d| {
            d.map(|(first, last)| {
                end += (last + 1 - first) as i64;
                Appended { first_version: first, last_version: last, last_position: (base + end) as u64 }
            })
        })
        .collect()
}

/// The events of a batch as one array per column, the parameters of [`INSERT_EVENTS`].
struct EventColumns<'a> {
    count: i64,
    stream_ids: Vec<&'a str>,
    versions: Vec<i64>,
    event_ids: Vec<uuid::Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i16>,
    recorded_at: Vec<i64>,
    correlations: Vec<uuid::Uuid>,
    causations: Vec<Option<uuid::Uuid>>,
    payloads: Vec<&'a [u8]>,
    hashes: Vec<&'a [u8]>,
}

impl<'a> EventColumns<'a> {
    fn of(events: &'a [RecordedEvent]) -> Self {
        EventColumns {
            count: events.len() as i64,
            stream_ids: events.iter().map(|e| e.stream_id.as_str()).collect(),
            versions: events.iter().map(|e| e.stream_version as i64).collect(),
            event_ids: events.iter().map(|e| e.event_id).collect(),
            types: events.iter().map(|e| e.event_type.as_str()).collect(),
            schema_versions: events.iter().map(|e| e.schema_version as i16).collect(),
            recorded_at: events.iter().map(|e| e.recorded_at_us).collect(),
            correlations: events.iter().map(|e| e.correlation_id).collect(),
            causations: events.iter().map(|e| e.causation_id).collect(),
            payloads: events.iter().map(|e| e.payload.as_slice()).collect(),
            hashes: events.iter().map(|e| e.hash.as_slice()).collect(),
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 11] {
        [
            &self.count,
            &self.stream_ids,
            &self.versions,
            &self.event_ids,
            &self.types,
            &self.schema_versions,
            &self.recorded_at,
            &self.correlations,
            &self.causations,
            &self.payloads,
            &self.hashes,
        ]
    }
}

/// What the writer tasks have done since the journal connected, and where their time went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub batches: u64,
    pub requests: u64,
    pub events: u64,
    /// Batches that found a stream version taken since they read its head, and ran again with the
    /// head lock taken first.
    pub rerun_under_lock: u64,
    /// Reading stream heads (a batch whose streams are all new reads none).
    pub reading_heads: Duration,
    /// Deciding, hash-chaining and laying out the events in this process.
    pub deciding: Duration,
    /// From sending BEGIN and the insert to the insert's answer: waiting for the head lock, taking
    /// positions and inserting the events.
    pub inserting: Duration,
    /// From the insert's answer to the commit's (sent right behind it): flushing the commit to disk,
    /// with the head lock held.
    pub committing: Duration,
}

#[derive(Default)]
struct StatsCells {
    batches: AtomicU64,
    requests: AtomicU64,
    events: AtomicU64,
    rerun_under_lock: AtomicU64,
    reading_heads: Micros,
    deciding: Micros,
    inserting: Micros,
    committing: Micros,
}

impl StatsCells {
    fn batch(&self, requests: usize, events: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
    }

    fn read(&self) -> BatchStats {
        BatchStats {
            batches: self.batches.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            rerun_under_lock: self.rerun_under_lock.load(Ordering::Relaxed),
            reading_heads: self.reading_heads.read(),
            deciding: self.deciding.read(),
            inserting: self.inserting.read(),
            committing: self.committing.read(),
        }
    }
}

/// A total of elapsed times, in microseconds.
#[derive(Default)]
struct Micros(AtomicU64);

impl Micros {
    fn add(&self, since: Instant) {
        self.add_between(since, Instant::now());
    }

    fn add_between(&self, from: Instant, to: Instant) {
        self.0.fetch_add(to.saturating_duration_since(from).as_micros() as u64, Ordering::Relaxed);
    }

    fn read(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
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

#[cfg(test)]
mod tls_param_tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_leave_the_url_and_other_parameters_stay() {
        let (url, mode, ca) = take_tls_params(
            "postgres://app@db:5432/cafe?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://app@db:5432/cafe?application_name=x");
        assert_eq!(mode, Some(SslMode::VerifyFull));
        assert_eq!(ca, Some(PathBuf::from("/etc/ca.pem")));
        let (url, mode, ca) = take_tls_params("host=db user=app sslmode=verify-ca sslrootcert=/ca.pem").unwrap();
        assert_eq!(
            (url.as_str(), mode, ca),
            ("host=db user=app", Some(SslMode::VerifyCa), Some(PathBuf::from("/ca.pem")))
        );
        assert!(take_tls_params("postgres://db/cafe?sslmode=sometimes").is_err());
    }

    #[test]
    fn the_mode_follows_the_options_then_the_url_then_the_host() {
        let mode = |options: &PgOptions| pg_config(options).map(|(config, _)| config.get_ssl_mode());
        use tokio_postgres::config::SslMode as Driver;
        assert_eq!(mode(&PgOptions::new("postgres://postgres@127.0.0.1:5432/postgres")).unwrap(), Driver::Prefer);
        assert_eq!(
            mode(&PgOptions::new("postgres://postgres@127.0.0.1/postgres?sslmode=disable")).unwrap(),
            Driver::Disable
        );
        let explicit =
            PgSecurity { tls: PgTls { mode: Some(SslMode::Require), ca_file: None }, ..PgSecurity::default() };
        let options = PgOptions::new("postgres://postgres@127.0.0.1/postgres?sslmode=disable").with_security(explicit);
        assert_eq!(mode(&options).unwrap(), Driver::Require);
        // Elsewhere, verify-full: with a CA file that does not exist, the error names the file.
        let e = pg_config(&PgOptions::new("postgres://app:pw@db.example.com/cafe?sslrootcert=/nonexistent.pem"))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("/nonexistent.pem") && !text.contains("pw@"), "{text}");
    }

    #[test]
    fn the_password_goes_into_the_configuration_not_the_text() {
        let security = PgSecurity { password: Some(Password::new("from-a-file")), ..PgSecurity::default() };
        let options = PgOptions::new("postgres://app@127.0.0.1/cafe").with_security(security);
        let (config, _) = pg_config(&options).unwrap();
        assert_eq!(config.get_password(), Some(&b"from-a-file"[..]));
        assert!(!format!("{options:?}").contains("from-a-file"));
    }
}
