//! The embedded journal: one SQLite file in WAL mode, one writer thread that group-commits.
//!
//! Architecture Invariant: only the writer thread writes events, so global positions commit in
//! order and `read_all` can never skip an event that commits late.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::envelope::{RecordedEvent, GENESIS_HASH};
use crate::journal::{
    record_batch_metrics, validate, AppendError, AppendRequest, Appended, Journal, PendingAppend, Snapshot, StoreError,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    global_position INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL,
    stream_version INTEGER NOT NULL,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    correlation_id BLOB NOT NULL,
    causation_id BLOB,
    payload BLOB NOT NULL,
    hash BLOB NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    hash BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    state BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
";

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The most events one group commit carries.
    pub max_batch_events: usize,
    /// Appends waiting for the writer before callers are made to wait.
    pub queue_depth: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { max_batch_events: 2000, queue_depth: 8192 }
    }
}

pub struct SqliteJournal {
    queue: mpsc::Sender<PendingAppend>,
    readers: SqlitePool,
    commits: watch::Receiver<u64>,
    _lock: File,
}

impl SqliteJournal {
    /// Opens (or creates) `dir/journal.db`. Only one process may hold a data directory at a time.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::unavailable_because(format!("cannot create {}", dir.display()), e))?;
        let lock = File::create(dir.join("journal.lock")).map_err(|e| {
            StoreError::unavailable_because(format!("cannot create the lock file in {}", dir.display()), e)
        })?;
        lock.try_lock().map_err(|e| {
            StoreError::unavailable_because(format!("data directory {} is in use by another process", dir.display()), e)
        })?;
        let path = dir.join("journal.db");
        let conn = open_connection(&path).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let head = conn
            .query_row("SELECT coalesce(max(global_position), 0) FROM events", [], |r| r.get::<_, i64>(0))
            .map_err(sql)? as u64;
        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let (commit_tx, commit_rx) = watch::channel(head);
        let max = options.max_batch_events.max(1);
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer_loop(conn, rx, commit_tx, head, max))
            .map_err(|e| StoreError::unavailable_because("cannot start the journal writer thread", e))?;
        Ok(SqliteJournal { queue: tx, readers: SqlitePool::new(path), commits: commit_rx, _lock: lock })
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.readers.run(f).await
    }

    async fn write(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<(), StoreError> {
        self.readers.write(f).await
    }
}

pub fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // FULL: a commit is on disk before the caller hears of it, even across a power cut.
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
    Ok(conn)
}

/// Connections to one SQLite file (WAL mode, FULL sync), reused across calls on blocking threads.
/// At most [`SqlitePool::MAX_CONNECTIONS`] are open: each holds its own page cache (up to 2 MB), and
/// an activation storm (hundreds of actors reading their streams at once) would otherwise open one
/// per concurrent read and keep them all.
#[derive(Clone)]
pub struct SqlitePool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl SqlitePool {
    /// More concurrent reads than this wait for a connection (reads are CPU-bound on a few cores).
    pub const MAX_CONNECTIONS: usize = 8;

    pub fn new(path: PathBuf) -> Self {
        SqlitePool {
            path: Arc::new(path),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(tokio::sync::Semaphore::new(Self::MAX_CONNECTIONS)),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        let conn = match self.idle.lock().expect("pool lock").pop() {
            Some(c) => c,
            None => open_connection(&self.path).map_err(sql)?,
        };
        let result = f(&conn).map_err(sql);
        self.idle.lock().expect("pool lock").push(conn);
        result
    }

    /// Runs `f` on a pooled connection on a blocking thread.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        let permit = self.permits.clone().acquire_owned().await.expect("the pool never closes its semaphore");
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            pool.with(f)
        })
        .await
        .map_err(|e| StoreError::unavailable_because("a SQLite read did not finish", e))?
    }

    /// Runs `f` in a transaction that takes the write lock up front (BEGIN IMMEDIATE), so that it
    /// waits for other writers instead of failing when a read cannot be upgraded.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.run(move |c| {
            c.execute_batch("BEGIN IMMEDIATE")?;
            match f(c) {
                Ok(r) => c.execute_batch("COMMIT").map(|_| r),
                Err(e) => {
                    let _ = c.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
    }
}

fn writer_loop(
    mut conn: Connection,
    mut queue: mpsc::Receiver<PendingAppend>,
    commits: watch::Sender<u64>,
    mut head: u64,
    max_batch_events: usize,
) {
    while let Some(first) = queue.blocking_recv() {
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
        let started = Instant::now();
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        let n = requests.len();
        match append_batch(&mut conn, requests, head) {
            Ok((results, new_head)) => {
                let conflicts = results.iter().filter(|r| r.is_err()).count();
                record_batch_metrics("sqlite", n, events, conflicts, started.elapsed());
                head = new_head;
                commits.send_replace(head);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal batch failed");
                for reply in replies {
                    let _ = reply.send(Err(AppendError::Store(e.clone())));
                }
            }
        }
    }
}

type BatchResults = Vec<Result<Appended, AppendError>>;

fn append_batch(
    conn: &mut Connection,
    requests: Vec<AppendRequest>,
    head: u64,
) -> Result<(BatchResults, u64), StoreError> {
    // IMMEDIATE takes the write lock now (waiting for checkpoint or snapshot writers) instead of
    // failing at once when a read transaction cannot be upgraded.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
    let mut results = Vec::with_capacity(requests.len());
    let mut position = head;
    {
        let mut read_head = tx.prepare_cached("SELECT version, hash FROM streams WHERE stream_id = ?1").map_err(sql)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type, schema_version,
                 recorded_at, correlation_id, causation_id, payload, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(sql)?;
        let mut write_head = tx
            .prepare_cached(
                "INSERT INTO streams (stream_id, version, hash) VALUES (?1, ?2, ?3)
                 ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, hash = excluded.hash",
            )
            .map_err(sql)?;
        for request in requests {
            let current: Option<(i64, Vec<u8>)> =
                read_head.query_row([&request.stream_id], |r| Ok((r.get(0)?, r.get(1)?))).optional().map_err(sql)?;
            let (actual, mut previous) = match current {
                Some((v, h)) => (v as u64, to_hash(&h)?),
                None => (0, GENESIS_HASH),
            };
            if !request.expected.admits(actual) {
                results.push(Err(AppendError::Conflict {
                    stream_id: request.stream_id,
                    expected: request.expected,
                    actual,
                }));
                continue;
            }
            let mut version = actual;
            for event in request.events {
                version += 1;
                position += 1;
                let e = event.record(&request.stream_id, version, &previous);
                insert
                    .execute(params![
                        position as i64,
                        e.stream_id,
                        version as i64,
                        e.event_id.as_bytes().as_slice(),
                        e.event_type,
                        e.schema_version,
                        e.recorded_at_us,
                        e.correlation_id.as_bytes().as_slice(),
                        e.causation_id.map(|c| c.as_bytes().to_vec()),
                        e.payload,
                        e.hash.as_slice(),
                    ])
                    .map_err(sql)?;
                previous = e.hash;
            }
            write_head.execute(params![request.stream_id, version as i64, previous.as_slice()]).map_err(sql)?;
            results.push(Ok(Appended { first_version: actual + 1, last_version: version, last_position: position }));
        }
    }
    tx.commit().map_err(sql)?;
    Ok((results, position))
}

const SELECT_EVENTS: &str = "SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version,
    recorded_at, correlation_id, causation_id, payload, hash FROM events";

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let uuid = |i: usize| -> rusqlite::Result<Uuid> {
        let b: Vec<u8> = r.get(i)?;
        Uuid::from_slice(&b)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e)))
    };
    let causation: Option<Vec<u8>> = r.get(8)?;
    let hash: Vec<u8> = r.get(10)?;
    Ok(RecordedEvent {
        global_position: r.get::<_, i64>(0)? as u64,
        stream_id: r.get(1)?,
        stream_version: r.get::<_, i64>(2)? as u64,
        event_id: uuid(3)?,
        event_type: r.get(4)?,
        schema_version: r.get(5)?,
        recorded_at_us: r.get(6)?,
        correlation_id: uuid(7)?,
        causation_id: causation.and_then(|c| Uuid::from_slice(&c).ok()),
        payload: r.get(9)?,
        hash: hash.try_into().map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Blob, "hash is not 32 bytes".into())
        })?,
    })
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        validate(&request)?;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(PendingAppend { request, reply })
            .await
            .map_err(|_| StoreError::unavailable("journal writer stopped"))?;
        answer.await.map_err(|_| StoreError::unavailable("journal writer stopped"))?
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream_id = stream_id.to_owned();
        self.read(move |c| {
            let mut s = c.prepare_cached(&format!(
                "{SELECT_EVENTS} WHERE stream_id = ?1 AND stream_version >= ?2 ORDER BY stream_version LIMIT ?3"
            ))?;
            let rows = s.query_map(params![stream_id, from_version as i64, max as i64], row_to_event)?;
            rows.collect()
        })
        .await
    }

    async fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(move |c| {
            let mut s = c.prepare_cached(&format!(
                "{SELECT_EVENTS} WHERE global_position > ?1 ORDER BY global_position LIMIT ?2"
            ))?;
            let rows = s.query_map(params![after as i64, max as i64], row_to_event)?;
            rows.collect()
        })
        .await
    }

    async fn head_position(&self) -> Result<u64, StoreError> {
        Ok(*self.commits.borrow())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO snapshots (stream_id, version, state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, state = excluded.state
                 WHERE excluded.version > snapshots.version",
            )?
            .execute(params![snapshot.stream_id, snapshot.version as i64, snapshot.state])
            .map(|_| ())
        })
        .await
    }

    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let stream_id = stream_id.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT version, state FROM snapshots WHERE stream_id = ?1")?
                .query_row([&stream_id], |r| {
                    Ok(Snapshot { stream_id: stream_id.clone(), version: r.get::<_, i64>(0)? as u64, state: r.get(1)? })
                })
                .optional()
        })
        .await
    }

    async fn load_checkpoint(&self, name: &str) -> Result<u64, StoreError> {
        let name = name.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT position FROM checkpoints WHERE name = ?1")?
                .query_row([&name], |r| r.get::<_, i64>(0))
                .optional()
                .map(|p| p.unwrap_or(0) as u64)
        })
        .await
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO checkpoints (name, position) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position WHERE excluded.position > checkpoints.position",
            )?
            .execute(params![name, position as i64])
            .map(|_| ())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.queue.is_closed() {
            return Err(StoreError::unavailable("journal writer stopped"));
        }
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }
}

fn to_hash(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("stream hash is not 32 bytes".into()))
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::unavailable_because("a SQLite statement failed", e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_journal_passes_the_conformance_suite() {
        let root = std::env::temp_dir().join(format!("cc-journal-{}", Uuid::new_v4()));
        let n = std::sync::atomic::AtomicUsize::new(0);
        crate::conformance::run_all(|| {
            let dir = root.join(n.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string());
            async move { Arc::new(SqliteJournal::open(&dir, SqliteOptions::default()).unwrap()) as Arc<dyn Journal> }
        })
        .await;
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_data_directory_has_one_owner() {
        let dir = std::env::temp_dir().join(format!("cc-journal-{}", Uuid::new_v4()));
        let _first = SqliteJournal::open(&dir, SqliteOptions::default()).unwrap();
        let second = SqliteJournal::open(&dir, SqliteOptions::default());
        assert!(matches!(second, Err(StoreError::Unavailable { reason, .. }) if reason.contains("in use")));
    }

    #[tokio::test]
    async fn events_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("cc-journal-{}", Uuid::new_v4()));
        {
            let j = SqliteJournal::open(&dir, SqliteOptions::default()).unwrap();
            j.append(crate::conformance::request("s", crate::ExpectedVersion::NoStream, 3)).await.unwrap();
        }
        // The writer thread may still hold the lock for a moment after drop.
        let j = loop {
            match SqliteJournal::open(&dir, SqliteOptions::default()) {
                Ok(j) => break j,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        assert_eq!(j.head_position().await.unwrap(), 3);
        let more = j.append(crate::conformance::request("s", crate::ExpectedVersion::Exact(3), 1)).await.unwrap();
        assert_eq!(more.last_position, 4);
    }
}
