//! `cloudcafe bench journal`: group commit (many appenders, one event per append, each to a stream of
//! its own) against raw inserts of the same rows into the same columns and indexes, measured in the
//! same run. On PostgreSQL the ceiling is `pgbench` (4 clients, one 1,000-row INSERT per transaction),
//! an inserter that is not ours; our own batched insert is measured beside it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use events::postgres::{connect_pool, pg, pool_error, BatchStats, PgJournal, PgOptions};
use events::sqlite::{open_connection, SqliteJournal, SqliteOptions};
use events::{AppendRequest, Causation, DomainEvent, ExpectedVersion, Journal, NewEvent, StoreError};

use super::tempdir;

/// A representative event: an order of two lines, about 200 bytes of MessagePack.
pub fn sample_event(i: u64) -> NewEvent {
    let e: DomainEvent = events::domain::OrderPlaced {
        order_id: uuid::Uuid::from_u64_pair(i, i),
        customer_id: format!("customer-{}", i % 100_000),
        store_id: format!("store-{}", i % 30_000),
        lines: vec![
            events::domain::OrderLine { item_id: "latte".into(), quantity: 2, unit_price_cents: 450 },
            events::domain::OrderLine { item_id: "croissant".into(), quantity: 1, unit_price_cents: 325 },
        ],
        total_cents: 1225,
        placed_at_us: i as i64,
    }
    .into();
    NewEvent::from_domain(&e, Causation::new_root()).expect("encodes")
}

/// Rows per transaction of the raw inserts (ours and pgbench's).
const RAW_BATCH: usize = 1000;
/// pgbench's clients (and its threads).
const PGBENCH_CLIENTS: u64 = 4;
const PGBENCH_THREADS: u64 = 2;

pub struct JournalFigures {
    pub adapter: &'static str,
    pub events: u64,
    pub raw_batch: usize,
    /// Our own batched insert of the same rows, one client.
    pub raw_rate: f64,
    /// PostgreSQL only: pgbench inserting the same rows, or why it could not be measured.
    pub pgbench: Option<Result<f64, String>>,
    pub concurrency: usize,
    pub group_rate: f64,
    pub append_p50_ms: f64,
    pub append_p99_ms: f64,
    /// PostgreSQL only: the group commit's batches and where their time went.
    pub batches: Option<BatchStats>,
}

impl JournalFigures {
    /// Group commit against our own raw insert.
    pub fn ratio(&self) -> f64 {
        self.group_rate / self.raw_rate
    }

    /// Group commit against the pgbench ceiling, when measured.
    pub fn pgbench_ratio(&self) -> Option<f64> {
        match &self.pgbench {
            Some(Ok(rate)) => Some(self.group_rate / rate),
            _ => None,
        }
    }
}

/// `concurrency` tasks each append one event per call to streams of their own, until `events` are in.
pub(crate) async fn group_commit(journal: Arc<dyn Journal>, events: u64, concurrency: usize) -> (f64, f64, f64) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let journal = journal.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= events {
                        return hist;
                    }
                    let request = AppendRequest {
                        stream_id: format!("order-bench-{i}"),
                        expected: ExpectedVersion::NoStream,
                        events: vec![sample_event(i)],
                    };
                    let t = Instant::now();
                    journal.append(request).await.expect("append");
                    hist.record(t.elapsed().as_micros() as u64).ok();
                }
            })
        })
        .collect();
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for t in tasks {
        hist.add(t.await.expect("task")).ok();
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    (rate, hist.value_at_quantile(0.5) as f64 / 1000.0, hist.value_at_quantile(0.99) as f64 / 1000.0)
}

/// The SQLite journal against plain batched inserts of the same rows into the same schema.
pub async fn journal_sqlite(events: u64, concurrency: usize) -> JournalFigures {
    let dir = tempdir("raw");
    drop(SqliteJournal::open(&dir, SqliteOptions::default()).expect("schema"));
    let raw_rate = tokio::task::spawn_blocking(move || {
        let mut conn = open_connection(&dir.join("journal.db")).expect("open");
        let started = Instant::now();
        let mut i = 0;
        while i < events {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).expect("tx");
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type, schema_version,
                         recorded_at, correlation_id, causation_id, payload, hash) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9)",
                    )
                    .expect("prepare");
                for _ in 0..RAW_BATCH.min((events - i) as usize) {
                    i += 1;
                    let e = sample_event(i).record(&format!("order-raw-{i}"), 1, &events::envelope::GENESIS_HASH);
                    insert
                        .execute(rusqlite::params![
                            i as i64,
                            e.stream_id,
                            e.event_id.as_bytes().as_slice(),
                            e.event_type,
                            e.schema_version,
                            e.recorded_at_us,
                            e.correlation_id.as_bytes().as_slice(),
                            e.payload,
                            e.hash.as_slice()
                        ])
                        .expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
        let _ = std::fs::remove_dir_all(&dir);
        events as f64 / started.elapsed().as_secs_f64()
    })
    .await
    .expect("raw");
    let dir = tempdir("group");
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&dir, SqliteOptions::default()).expect("open"));
    let (group_rate, p50, p99) = group_commit(journal, events, concurrency).await;
    let _ = std::fs::remove_dir_all(&dir);
    JournalFigures {
        adapter: "embedded (SQLite, WAL, synchronous=FULL)",
        events,
        raw_batch: RAW_BATCH,
        raw_rate,
        pgbench: None,
        concurrency,
        group_rate,
        append_p50_ms: p50,
        append_p99_ms: p99,
        batches: None,
    }
}

/// How the PostgreSQL journal is measured.
pub struct PgBenchSettings {
    pub url: String,
    /// The pgbench program (a name on `PATH` or a path).
    pub pgbench: PathBuf,
    /// The journal's writer tasks; `None` keeps [`PgOptions`]' default.
    pub writers: Option<usize>,
}

/// The PostgreSQL journal against pgbench's and our own multi-row inserts of the same rows, each
/// into a fresh table with the journal's columns and indexes.
pub async fn journal_postgres(
    settings: &PgBenchSettings,
    events: u64,
    concurrency: usize,
) -> Result<JournalFigures, StoreError> {
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let options = PgOptions::new(&settings.url).with_schema(schema.clone());
    drop(PgJournal::connect(options.clone()).await?);
    let pool = connect_pool(&options).await?;
    let client = pool.get().await.map_err(pool_error)?;

    client.batch_execute("CREATE TABLE pgbench_events (LIKE events INCLUDING ALL)").await.map_err(pg)?;
    let pgbench = pgbench_ceiling(settings, &schema, events).await;
    if let Ok(rate) = &pgbench {
        let inserted: i64 = client.query_one("SELECT count(*) FROM pgbench_events", &[]).await.map_err(pg)?.get(0);
        tracing::info!(rate, inserted, "pgbench ceiling measured");
    }
    client.batch_execute("DROP TABLE pgbench_events").await.map_err(pg)?;

    let raw_rate = own_raw_insert(&client, events).await?;
    client.batch_execute("TRUNCATE events").await.map_err(pg)?;
    drop(client);

    let group_schema = format!("{schema}_g");
    let mut group_options = PgOptions::new(&settings.url).with_schema(group_schema.clone());
    if let Some(writers) = settings.writers {
        group_options.writers = writers;
    }
    let journal = Arc::new(PgJournal::connect(group_options).await?);
    let (group_rate, p50, p99) = group_commit(journal.clone(), events, concurrency).await;
    let batches = journal.batch_stats();
    drop(journal);
    if let Ok(client) = pool.get().await {
        let _ =
            client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE; DROP SCHEMA {group_schema} CASCADE")).await;
    }
    Ok(JournalFigures {
        adapter: "PostgreSQL 15 (local, synchronous_commit=on)",
        events,
        raw_batch: RAW_BATCH,
        raw_rate,
        pgbench: Some(pgbench),
        concurrency,
        group_rate,
        append_p50_ms: p50,
        append_p99_ms: p99,
        batches: Some(batches),
    })
}

/// Our own raw insert: one client, `unnest` of one array per column, 1,000 rows per transaction.
async fn own_raw_insert(client: &deadpool_postgres::Client, events: u64) -> Result<f64, StoreError> {
    let insert = client
        .prepare(
            "INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type, schema_version,
                                 recorded_at, correlation_id, causation_id, payload, hash)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::uuid[], $5::text[], $6::int2[], $7::int8[],
                                  $8::uuid[], $9::uuid[], $10::bytea[], $11::bytea[])",
        )
        .await
        .map_err(pg)?;
    let started = Instant::now();
    let mut i = 0u64;
    while i < events {
        let n = RAW_BATCH.min((events - i) as usize);
        let rows: Vec<_> = (0..n)
            .map(|k| {
                let p = i + k as u64 + 1;
                let mut e = sample_event(p).record(&format!("order-raw-{p}"), 1, &events::envelope::GENESIS_HASH);
                e.global_position = p;
                e
            })
            .collect();
        client.batch_execute("BEGIN").await.map_err(pg)?;
        client
            .execute(
                &insert,
                &[
                    &rows.iter().map(|e| e.global_position as i64).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.stream_id.as_str()).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.stream_version as i64).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.event_id).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.schema_version as i16).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.recorded_at_us).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.correlation_id).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.causation_id).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.payload.as_slice()).collect::<Vec<_>>(),
                    &rows.iter().map(|e| e.hash.as_slice()).collect::<Vec<_>>(),
                ],
            )
            .await
            .map_err(pg)?;
        client.batch_execute("COMMIT").await.map_err(pg)?;
        i += n as u64;
    }
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// Rows per second pgbench inserts into `pgbench_events` of `schema`: `PGBENCH_CLIENTS` clients, each
/// transaction one INSERT of `RAW_BATCH` rows, prepared (so the server plans it once, as the journal's
/// own statements are), until about `events` rows are in. An error says why it could not run.
async fn pgbench_ceiling(settings: &PgBenchSettings, schema: &str, events: u64) -> Result<f64, String> {
    let transactions = events.div_ceil(PGBENCH_CLIENTS * RAW_BATCH as u64).max(1);
    let script = std::env::temp_dir().join(format!("cloudcafe-bench-pgbench-{}.sql", uuid::Uuid::new_v4().simple()));
    std::fs::write(&script, pgbench_script(RAW_BATCH))
        .map_err(|e| format!("cannot write the pgbench script {}: {e}", script.display()))?;
    let (program, url, schema) = (settings.pgbench.clone(), settings.url.clone(), schema.to_owned());
    let script_path = script.clone();
    let outcome = tokio::task::spawn_blocking(move || run_pgbench(&program, &url, &schema, &script_path, transactions))
        .await
        .map_err(|e| format!("pgbench runner failed: {e}"))?;
    let _ = std::fs::remove_file(&script);
    outcome
}

fn run_pgbench(program: &Path, url: &str, schema: &str, script: &Path, transactions: u64) -> Result<f64, String> {
    let output = std::process::Command::new(program)
        .args(["-n", "-M", "prepared"])
        .args(["-c", &PGBENCH_CLIENTS.to_string(), "-j", &PGBENCH_THREADS.to_string()])
        .args(["-t", &transactions.to_string(), "-D", "batch=0", "-f"])
        .arg(script)
        .arg(url)
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "{} not found: install PostgreSQL's client programs (Debian: `apt-get install postgresql-client`) or pass --pgbench PATH",
                program.display()
            ),
            _ => format!("cannot run {}: {e}", program.display()),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("pgbench failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim()));
    }
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("0");
    if failed != "0" {
        return Err(format!("pgbench had {failed} failed transactions"));
    }
    let tps: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no `tps = ` line in pgbench's output:\n{stdout}"))?;
    Ok(tps * RAW_BATCH as f64)
}

/// A pgbench script inserting `rows` rows per transaction into `pgbench_events`, shaped as the
/// group commit's: the same event (an order placed, its MessagePack payload and hash), one new stream
/// per row at version 1. `batch` counts each client's transactions (`-D batch=0`), so positions and
/// stream ids never repeat; only the two keys are computed, the rest are literals.
pub fn pgbench_script(rows: usize) -> String {
    let mut script = String::from(
        "\\set batch :batch + 1\n\
         \\set base :client_id * 1000000000000 + :batch * 1000000\n\
         INSERT INTO pgbench_events (global_position, stream_id, stream_version, event_id, event_type, schema_version,\n\
         \x20                           recorded_at, correlation_id, causation_id, payload, hash)\n\
         SELECT :base::int8 + v.k, 'order-bench-' || (:base::int8 + v.k), 1, v.id, v.t, v.sv, v.at, v.corr, v.cause, v.p, v.h\n\
         FROM (VALUES\n",
    );
    for k in 1..=rows {
        let e = sample_event(k as u64).record(&format!("order-bench-{k}"), 1, &events::envelope::GENESIS_HASH);
        let cause = e.causation_id.map_or("NULL::uuid".to_owned(), |c| format!("'{c}'::uuid"));
        let _ = writeln!(
            script,
            "({k}, '{}'::uuid, '{}', {}::int2, {}::int8, '{}'::uuid, {cause}, '\\x{}'::bytea, '\\x{}'::bytea){}",
            e.event_id,
            e.event_type,
            e.schema_version,
            e.recorded_at_us,
            e.correlation_id,
            hex::encode(&e.payload),
            hex::encode(e.hash),
            if k == rows { "" } else { "," }
        );
    }
    script.push_str(") AS v(k, id, t, sv, at, corr, cause, p, h);\n");
    script
}

pub fn journal_table(figures: &[JournalFigures]) -> String {
    let mut s = String::from(
        "| journal | events | pgbench ceiling (rows/s; 4 clients, 1,000 rows per tx) | our raw batched insert (rows/s; 1 client, 1,000 per tx) | group commit (events/s; concurrent appenders) | group / pgbench | group / our raw | append p50 / p99 |\n|---|---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        let (ceiling, ceiling_ratio) = match (&f.pgbench, f.pgbench_ratio()) {
            (Some(Ok(rate)), Some(ratio)) => (format!("{rate:.0}"), format!("**{ratio:.2}×**")),
            (Some(Err(why)), _) => (format!("not measured: {why}"), "—".to_owned()),
            _ => ("—".to_owned(), "—".to_owned()),
        };
        s.push_str(&format!(
            "| {} | {} | {ceiling} | {:.0} | {:.0} ({}) | {ceiling_ratio} | {:.2}× | {:.2} ms / {:.2} ms |\n",
            f.adapter,
            f.events,
            f.raw_rate,
            f.group_rate,
            f.concurrency,
            f.ratio(),
            f.append_p50_ms,
            f.append_p99_ms
        ));
    }
    for f in figures {
        let Some(b) = &f.batches else { continue };
        if b.batches == 0 {
            continue;
        }
        let per_batch = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / b.batches as f64;
        s.push_str(&format!(
            "\nWhere a {} group commit batch's time goes (means over {} batches of {:.0} events; writer tasks overlap): \
             reading stream heads {:.2} ms, deciding and hash-chaining {:.2} ms, BEGIN + INSERT answered \
             (head lock wait, positions, insert) {:.2} ms, COMMIT answered after that (WAL flush, head lock held) {:.2} ms; \
             batches run again under the head lock after a version race: {}.\n",
            f.adapter,
            b.batches,
            b.events as f64 / b.batches as f64,
            per_batch(b.reading_heads),
            per_batch(b.deciding),
            per_batch(b.inserting),
            per_batch(b.committing),
            b.rerun_under_lock
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pgbench_script_inserts_the_asked_rows_with_keys_only_from_its_two_variables() {
        let script = pgbench_script(3);
        let rows: Vec<&str> = script.lines().filter(|l| l.starts_with('(')).collect();
        assert_eq!(rows.len(), 3);
        assert!(rows[..2].iter().all(|r| r.ends_with("),")) && rows[2].ends_with("::bytea)"));
        assert!(rows.iter().all(|r| !r.contains(':') || !r.replace("::", "").contains(':')), "no variables in rows");
        assert!(script.starts_with("\\set batch :batch + 1\n"));
        assert!(script.trim_end().ends_with("AS v(k, id, t, sv, at, corr, cause, p, h);"));
    }
}
