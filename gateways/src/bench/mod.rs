//! Benchmarks (`cloudcafe bench ...`): measured, never asserted. Each compares the product's path with
//! a ceiling measured in the same run on the same machine, and can write its table into
//! BENCHMARKS.md between `<!-- bench:NAME -->` markers.

pub mod actors;
pub mod hot;
pub mod journal;
#[cfg(feature = "cloud")]
pub mod kinesis;
mod replay;

pub use replay::{replay, replay_paged, replay_table, ReplayFigures, REPLAY_PAGE};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::Journal;

use crate::load::{run_load, Call, LoadReport};

pub use journal::{journal_postgres, journal_sqlite, journal_table, sample_event, JournalFigures};

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
            .load_checkpoint(::actors::saga::CHECKPOINT)
            .await
            .unwrap_or(0)
            .min(journal.head_position().await.unwrap_or(0));
    while started.elapsed() < limit {
        let (head, at) = (
            journal.head_position().await.unwrap_or(0),
            journal.load_checkpoint(::actors::saga::CHECKPOINT).await.unwrap_or(0),
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

pub(crate) fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cloudcafe-bench-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
