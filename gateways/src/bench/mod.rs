//! Benchmarks (`cloudcafe bench ...`): measured, never asserted. Each compares the product's path with
//! a ceiling measured in the same run on the same machine, and can write its table into
//! BENCHMARKS.md between `<!-- bench:NAME -->` markers.

#[cfg(feature = "cloud")]
pub mod kinesis;
mod replay;

pub use replay::{replay, replay_paged, replay_table, ReplayFigures, REPLAY_PAGE};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::postgres::{connect_pool, PgJournal, PgOptions};
use events::sqlite::{open_connection, SqliteJournal, SqliteOptions};
use events::{AppendRequest, Causation, DomainEvent, ExpectedVersion, Journal, NewEvent};

use crate::load::{run_load, Call, LoadReport};

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

pub struct JournalFigures {
    pub adapter: &'static str,
    pub events: u64,
    pub raw_batch: usize,
    pub raw_rate: f64,
    pub concurrency: usize,
    pub group_rate: f64,
    pub append_p50_ms: f64,
    pub append_p99_ms: f64,
}

impl JournalFigures {
    pub fn ratio(&self) -> f64 {
        self.group_rate / self.raw_rate
    }
}

/// `concurrency` tasks each append one event per call to streams of their own, until `events` are in.
async fn group_commit(journal: Arc<dyn Journal>, events: u64, concurrency: usize) -> (f64, f64, f64) {
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
    let raw_batch = 1000;
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
                for _ in 0..raw_batch.min((events - i) as usize) {
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
        raw_batch,
        raw_rate,
        concurrency,
        group_rate,
        append_p50_ms: p50,
        append_p99_ms: p99,
    }
}

/// The Postgres journal against plain multi-row inserts (`unnest`) of the same rows.
pub async fn journal_postgres(
    url: &str,
    events: u64,
    concurrency: usize,
) -> Result<JournalFigures, events::StoreError> {
    let raw_batch = 1000;
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let options = PgOptions::new(url).with_schema(schema.clone());
    drop(PgJournal::connect(options.clone()).await?);
    let pool = connect_pool(&options).await?;
    let mut client = pool.get().await.map_err(events::postgres::pool_error)?;
    let started = Instant::now();
    let mut i = 0u64;
    while i < events {
        let n = raw_batch.min((events - i) as usize);
        let rows: Vec<_> = (0..n)
            .map(|k| {
                let p = i + k as u64 + 1;
                let mut e = sample_event(p).record(&format!("order-raw-{p}"), 1, &events::envelope::GENESIS_HASH);
                e.global_position = p;
                e
            })
            .collect();
        let tx = client.transaction().await.map_err(events::postgres::pg)?;
        tx.execute(
            "INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type, schema_version,
                                 recorded_at, correlation_id, causation_id, payload, hash)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::uuid[], $5::text[], $6::int2[], $7::int8[],
                                  $8::uuid[], $9::uuid[], $10::bytea[], $11::bytea[])",
            &[
                &rows.iter().map(|e| e.global_position as i64).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.stream_id.clone()).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.stream_version as i64).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.event_id).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.event_type.clone()).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.schema_version as i16).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.recorded_at_us).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.correlation_id).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.causation_id).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
                &rows.iter().map(|e| e.hash.to_vec()).collect::<Vec<_>>(),
            ],
        )
        .await
        .map_err(events::postgres::pg)?;
        tx.commit().await.map_err(events::postgres::pg)?;
        i += n as u64;
    }
    let raw_rate = events as f64 / started.elapsed().as_secs_f64();
    client.batch_execute("TRUNCATE events").await.map_err(events::postgres::pg)?;
    drop(client);
    let group_schema = format!("{schema}_g");
    let journal: Arc<dyn Journal> =
        Arc::new(PgJournal::connect(PgOptions::new(url).with_schema(group_schema.clone())).await?);
    let (group_rate, p50, p99) = group_commit(journal, events, concurrency).await;
    if let Ok(client) = pool.get().await {
        let _ =
            client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE; DROP SCHEMA {group_schema} CASCADE")).await;
    }
    Ok(JournalFigures {
        adapter: "PostgreSQL 15 (local)",
        events,
        raw_batch,
        raw_rate,
        concurrency,
        group_rate,
        append_p50_ms: p50,
        append_p99_ms: p99,
    })
}

pub fn journal_table(figures: &[JournalFigures]) -> String {
    let mut s = String::from(
        "| journal | events | raw batched insert (rows/s, batch) | group commit (events/s, concurrent appenders) | ratio | append p50 / p99 |\n|---|---|---|---|---|---|\n",
    );
    for f in figures {
        s.push_str(&format!(
            "| {} | {} | {:.0} ({} per tx) | {:.0} ({}) | **{:.2}×** | {:.2} ms / {:.2} ms |\n",
            f.adapter,
            f.events,
            f.raw_rate,
            f.raw_batch,
            f.group_rate,
            f.concurrency,
            f.ratio(),
            f.append_p50_ms,
            f.append_p99_ms
        ));
    }
    s
}

pub struct HttpFigures {
    pub connections: usize,
    pub seconds: u64,
    pub health: LoadReport,
    pub orders: LoadReport,
    /// Journal events the order saga had not yet handled when the load stopped.
    pub saga_backlog_events: u64,
    /// How long the saga then took to catch up (every order paid or cancelled).
    pub saga_drain: Duration,
}

/// Drives a running node: `GET /health` (the ceiling of a trivial response) then `POST /api/orders`.
pub async fn http(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    stores: &'static [&'static str],
) -> HttpFigures {
    let health = run_load(
        addr,
        connections,
        duration,
        Arc::new(|_| Call { method: "GET", path: "/health".into(), headers: vec![], body: vec![] }),
    )
    .await;
    let orders = run_load(
        addr,
        connections,
        duration,
        Arc::new(move |i| {
            let store = stores[(i as usize) % stores.len()];
            let body = format!(
                r#"{{"customer_id":"bench-{}","store_id":"{store}","items":[{{"item_id":"latte","quantity":1}},{{"item_id":"croissant","quantity":1}}]}}"#,
                i % 50_000
            );
            Call { method: "POST", path: "/api/orders".into(), headers: vec![], body: body.into_bytes() }
        }),
    )
    .await;
    HttpFigures {
        connections,
        seconds: duration.as_secs(),
        health,
        orders,
        saga_backlog_events: 0,
        saga_drain: Duration::ZERO,
    }
}

/// Waits for the order saga to handle everything in the journal; returns the backlog it started
/// with and how long it took.
pub async fn saga_drain(journal: &dyn Journal, limit: Duration) -> (u64, Duration) {
    let started = Instant::now();
    let backlog = journal.head_position().await.unwrap_or(0)
        - journal
            .load_checkpoint(actors::saga::CHECKPOINT)
            .await
            .unwrap_or(0)
            .min(journal.head_position().await.unwrap_or(0));
    while started.elapsed() < limit {
        let (head, at) = (
            journal.head_position().await.unwrap_or(0),
            journal.load_checkpoint(actors::saga::CHECKPOINT).await.unwrap_or(0),
        );
        if at >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (backlog, started.elapsed())
}

pub fn http_table(f: &HttpFigures, raw_insert_rate: Option<f64>) -> String {
    let row = |name: &str, r: &LoadReport| {
        let ok: u64 = r.by_status.iter().filter(|(s, _)| **s < 300).map(|(_, n)| n).sum();
        format!(
            "| {name} | {:.0} | {} of {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            ok as f64 / r.elapsed.as_secs_f64(),
            ok,
            r.requests + r.io_errors,
            r.quantile_ms(0.5),
            r.quantile_ms(0.9),
            r.quantile_ms(0.99),
            r.max_ms()
        )
    };
    let mut s = format!(
        "{} connections, {} s each, load generator in the same process on the same 2 cores.\n\n\
         | request | 2xx/s | 2xx of sent | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|\n",
        f.connections, f.seconds
    );
    s.push_str(&row("GET /health (trivial response: the HTTP ceiling)", &f.health));
    s.push_str(&row("POST /api/orders (durable: 201 after commit)", &f.orders));
    let rate = |r: &LoadReport| {
        r.by_status.iter().filter(|(s, _)| **s < 300).map(|(_, n)| n).sum::<u64>() as f64 / r.elapsed.as_secs_f64()
    };
    s.push_str(&format!("\nDurable orders / HTTP ceiling: **{:.2}×**", rate(&f.orders) / rate(&f.health)));
    if let Some(raw) = raw_insert_rate {
        s.push_str(&format!(
            "; durable orders / raw batched insert ceiling of the same journal: **{:.2}×**",
            rate(&f.orders) / raw
        ));
    }
    let placed: u64 = f.orders.by_status.iter().filter(|(s, _)| **s < 300).map(|(_, n)| n).sum();
    s.push_str(&format!(
        ".\nThe order saga (reserve, authorize, capture, mark paid, settle, accrue: ~8 more commands per order) trailed by {} events when the load stopped and took {:.1} s more to settle every order: **{:.0} orders/s completed end to end**",
        f.saga_backlog_events,
        f.saga_drain.as_secs_f64(),
        placed as f64 / (f.orders.elapsed + f.saga_drain).as_secs_f64()
    ));
    let errors: Vec<String> =
        f.orders.by_status.iter().filter(|(s, _)| **s >= 300).map(|(s, n)| format!("{n}× {s}")).collect();
    s.push_str(&format!(
        ".\nNon-2xx answers to orders: {}; connection errors: {}.\n",
        if errors.is_empty() { "none".into() } else { errors.join(", ") },
        f.orders.io_errors
    ));
    s
}

/// Replaces (or appends) the section between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`.
pub fn write_section(file: &Path, name: &str, command: &str, body: &str) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(file).unwrap_or_else(|_| "# Benchmarks\n".into());
    let (open, close) = (format!("<!-- bench:{name} -->"), format!("<!-- /bench:{name} -->"));
    let section = format!(
        "{open}\nMeasured {} on this machine ({} cores) with:\n\n```\n{command}\n```\n\n{body}\n{close}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let updated = match (existing.find(&open), existing.find(&close)) {
        (Some(a), Some(b)) if b > a => format!("{}{section}{}", &existing[..a], &existing[b + close.len()..]),
        _ => format!("{}\n\n{section}\n", existing.trim_end()),
    };
    std::fs::write(file, updated)
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cloudcafe-bench-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
