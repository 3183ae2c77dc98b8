//! `cloudcafe bench journal|replay|kinesis|http`: measure throughput and latency, print the table,
//! and optionally write it into BENCHMARKS.md. The measuring itself is the library's
//! [`gateways::bench`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use events::postgres::PgOptions;
use gateways::bench;
use gateways::http::ApiSettings;
use gateways::node::{Node, NodeSettings};

use super::cloud;
use super::serve::start_server;

/// The benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Journal group commit against plain batched inserts of the same rows.
    Journal(JournalArgs),
    /// Project, then replay (verify chains, rebuild in a shadow, compare, swap) a flood of orders.
    Replay(ReplayArgs),
    /// The outbox publisher into Kinesis and the KCL-style consumer out of it, against their
    /// ceilings (needs a build with `--features cloud`, kinesalite and a DynamoDB for the leases).
    Kinesis(KinesisArgs),
    /// POST /api/orders against GET /health on an embedded node, plus the journal ceiling.
    Http(HttpArgs),
}

/// The flags of `cloudcafe bench journal`.
#[derive(Args)]
pub struct JournalArgs {
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Also measure PostgreSQL at this URL.
    #[arg(long, env = "CLOUDCAFE_BENCH_PG")]
    postgres: Option<String>,
    /// Write the table into this file (e.g. BENCHMARKS.md).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The flags of `cloudcafe bench replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// Orders in the flood (about 8.6 events each).
    #[arg(long, default_value_t = 116_000)]
    orders: u32,
    /// Also measure the PostgreSQL storefront and the Redshift-SQL analytics model at this URL.
    #[arg(long, env = "CLOUDCAFE_BENCH_PG")]
    postgres: Option<String>,
    /// Also measure the DynamoDB models at this endpoint (an emulator; `--features cloud`).
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// Also measure the DocumentDB models at this MongoDB-wire URI (`--features cloud`).
    #[arg(long)]
    documentdb_url: Option<String>,
    /// Events per page read from the journal (and per transaction of the SQL models).
    #[arg(long, default_value_t = bench::REPLAY_PAGE)]
    page_size: usize,
    /// Measure only the stores named by the other flags, not the embedded (SQLite) storefront.
    #[arg(long)]
    no_embedded: bool,
    /// Keep the PostgreSQL journal in this schema and reuse it in later runs (the history is written
    /// only into an empty journal); the read models still go into a fresh schema each run.
    #[arg(long)]
    journal_schema: Option<String>,
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The flags of `cloudcafe bench kinesis`.
#[derive(Args)]
pub struct KinesisArgs {
    #[arg(long, default_value_t = 50_000)]
    events: usize,
    #[arg(long, default_value_t = 4)]
    shards: i32,
    #[arg(long, env = "CLOUDCAFE_KINESIS_ENDPOINT")]
    kinesis_endpoint: Option<String>,
    #[arg(long, env = "CLOUDCAFE_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The flags of `cloudcafe bench http`.
#[derive(Args)]
pub struct HttpArgs {
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Stores the HTTP benchmark spreads its orders over.
const BENCH_STORES: usize = 512;

/// Runs one benchmark, prints its table and writes it into `--report` if given.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    let (name, table, report) = match command {
        BenchCommand::Journal(args) => ("journal", journal(&args).await?, args.report),
        BenchCommand::Replay(args) => ("replay", replay(&args).await?, args.report),
        BenchCommand::Kinesis(args) => (
            "kinesis",
            cloud::kinesis_bench(args.events, args.shards, &args.kinesis_endpoint, &args.dynamodb_endpoint).await?,
            args.report,
        ),
        BenchCommand::Http(args) => ("http", http(&args).await?, args.report),
    };
    println!("{table}");
    if let Some(file) = report {
        write_report(&file, name, &table)?;
    }
    Ok(())
}

/// Writes `table` into `file` as the section `name`, with the command line that measured it.
fn write_report(file: &Path, name: &str, table: &str) -> std::io::Result<()> {
    let invoked = format!("cloudcafe {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    bench::write_section(file, name, &invoked, table)
}

async fn journal(args: &JournalArgs) -> anyhow::Result<String> {
    let mut figures = vec![bench::journal_sqlite(args.events, args.concurrency).await];
    if let Some(url) = &args.postgres {
        figures
            .push(bench::journal_postgres(url, args.events, args.concurrency).await.context("PostgreSQL benchmark")?);
    }
    Ok(bench::journal_table(&figures))
}

async fn replay(args: &ReplayArgs) -> anyhow::Result<String> {
    let history = projections::workload::flood_of_orders(args.orders, 500, 100_000);
    let mut figures = Vec::new();
    if !args.no_embedded {
        let dir = std::env::temp_dir().join(format!("cloudcafe-bench-replay-{}", uuid::Uuid::new_v4().simple()));
        {
            let journal: Arc<dyn events::Journal> =
                Arc::new(events::sqlite::SqliteJournal::open(&dir, Default::default())?);
            projections::workload::write_history(journal.as_ref(), &history).await;
            let store = Arc::new(projections::read_models::storefront::sqlite::SqliteStorefront::open(&dir)?);
            figures.push(("SQLite".to_string(), bench::replay_paged(journal.clone(), store, args.page_size).await));
            figures.extend(
                cloud::emulated_replay(journal, args.dynamodb_endpoint.clone(), args.documentdb_url.clone()).await?,
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Some(url) = &args.postgres {
        let schema = format!("bench_replay_{}", uuid::Uuid::new_v4().simple());
        let journal_schema = args.journal_schema.clone().unwrap_or_else(|| schema.clone());
        let journal_options = PgOptions::new(url.clone()).with_schema(journal_schema);
        let journal: Arc<dyn events::Journal> = Arc::new(events::postgres::PgJournal::connect(journal_options).await?);
        if journal.head_position().await? == 0 {
            projections::workload::write_history(journal.as_ref(), &history).await;
        }
        let pool = events::postgres::connect_pool(&PgOptions::new(url.clone()).with_schema(schema.clone())).await?;
        let store = Arc::new(projections::read_models::storefront::postgres::PgStorefront::new(pool.clone()).await?);
        figures.push(("PostgreSQL".to_string(), bench::replay_paged(journal.clone(), store, args.page_size).await));
        let analytics = Arc::new(projections::read_models::analytics::AnalyticsSink::new(pool.clone()).await?);
        figures.push((
            "PostgreSQL standing in for Redshift".to_string(),
            bench::replay_paged(journal, analytics, args.page_size).await,
        ));
        let client = pool.get().await?;
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await?;
    }
    Ok(bench::replay_table(&figures))
}

async fn http(args: &HttpArgs) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("cloudcafe-bench-http-{}", uuid::Uuid::new_v4().simple()));
    let mut settings = NodeSettings::embedded(&dir);
    settings.seed_demo = true;
    let node = Node::start(settings).await?;
    // Orders spread over many stores, as a chain's are: one store's SKU is one actor.
    let stores: &'static [&'static str] =
        Vec::leak((1..=BENCH_STORES).map(|i| &*String::leak(format!("bench-store-{i}"))).collect());
    for store in stores {
        node.cafe.open_store(store, store, events::Causation::new_root()).await?;
        for sku in ["latte", "croissant"] {
            node.cafe.restock(store, sku, 1_000_000, events::Causation::new_root()).await?;
        }
    }
    let (server, addr) = start_server(&node, "127.0.0.1:0".parse()?, None, &ApiSettings::default(), Vec::new()).await?;
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let mut figures = bench::http(addr, args.connections, Duration::from_secs(args.seconds), stores).await;
    (figures.saga_backlog_events, figures.saga_drain) =
        bench::saga_drain(node.journal.as_ref(), Duration::from_secs(600)).await;
    handle.stop(true).await;
    drop(node);
    let raw = bench::journal_sqlite(100_000, 256).await.raw_rate;
    let table = bench::http_table(&figures, Some(raw));
    let _ = std::fs::remove_dir_all(dir);
    Ok(table)
}
