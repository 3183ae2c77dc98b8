//! `cloudcafe bench journal|replay|kinesis|http|hot-stream|actors`: measure throughput and latency, print the table,
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
    /// Journal group commit against raw inserts of the same rows (pgbench's and ours on PostgreSQL).
    Journal(JournalArgs),
    /// Project, then replay (verify chains, rebuild in a shadow, compare, swap) a flood of orders.
    Replay(ReplayArgs),
    /// The outbox publisher into Kinesis and the KCL-style consumer out of it, against their
    /// ceilings (needs a build with `--features cloud`, kinesalite and a DynamoDB for the leases).
    Kinesis(KinesisArgs),
    /// POST /api/orders against GET /health on an embedded node, plus the journal ceiling.
    Http(HttpArgs),
    /// Actor activation (snapshot + events) against the journal read alone, and the resident
    /// memory of many activated-then-idle actors and after they passivate.
    Actors(ActorsArgs),
    /// Many callers on one stream (one SKU of one store): the actor with and without batching,
    /// against the journal's group commit.
    HotStream(HotStreamArgs),
    /// Every stress scenario at its default size (each a `cloudcafe flood` process of its own, on a
    /// fresh journal), against the journal's own group commit of the same run.
    Floods(FloodsArgs),
}

/// The flags of `cloudcafe bench floods`.
#[derive(Args)]
pub struct FloodsArgs {
    /// Multiplies each scenario's size and rate.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Only these scenarios (default: all six).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip the embedded journal.
    #[arg(long)]
    no_embedded: bool,
    /// Also run each on PostgreSQL at this URL (a fresh schema per flood).
    #[arg(long, env = "CLOUDCAFE_BENCH_PG")]
    postgres: Option<String>,
    /// Where the floods keep their journals and reports (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The flags of `cloudcafe bench hot-stream`.
#[derive(Args)]
pub struct HotStreamArgs {
    /// Commands in the batched run (reserve and settle, two per order).
    #[arg(long, default_value_t = 200_000)]
    commands: u64,
    /// Concurrent callers, all on the one stream.
    #[arg(long, default_value_t = 256)]
    callers: usize,
    /// The most commands one append carries.
    #[arg(long, default_value_t = actors::host::HostOptions::default().max_batch)]
    max_batch: usize,
    /// Also measure PostgreSQL at this URL.
    #[arg(long, env = "CLOUDCAFE_BENCH_PG")]
    postgres: Option<String>,
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The flags of `cloudcafe bench journal`.
#[derive(Args)]
pub struct JournalArgs {
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Also measure PostgreSQL at this URL, against pgbench's insert of the same rows.
    #[arg(long, env = "CLOUDCAFE_BENCH_PG")]
    postgres: Option<String>,
    /// The pgbench program for the PostgreSQL ceiling (Debian: `apt-get install postgresql-client`).
    #[arg(long, default_value = "pgbench")]
    pgbench: PathBuf,
    /// The PostgreSQL journal's writer tasks (default: the journal's own default).
    #[arg(long)]
    pg_writers: Option<usize>,
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

/// The flags of `cloudcafe bench actors`.
#[derive(Args)]
pub struct ActorsArgs {
    /// Actors activated then left idle (loyalty accounts of one event each).
    #[arg(long, default_value_t = 1_000_000)]
    actors: usize,
    /// Streams activated one at a time for the activation latency.
    #[arg(long, default_value_t = 1_000)]
    streams: usize,
    /// Events after each activation stream's snapshot.
    #[arg(long, default_value_t = 1_000)]
    events: u64,
    /// Activations in flight at once while activating the idle actors. Each in flight can hold an
    /// embedded journal reader connection (and its page cache) of its own.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// The idle actors' idle timeout; it must exceed the time the activations take.
    #[arg(long, default_value_t = 150)]
    idle_timeout_secs: u64,
    /// Also measure PostgreSQL at this URL (in a schema of its own, dropped afterwards).
    #[arg(long, env = "CLOUDCAFE_BENCH_PG")]
    postgres: Option<String>,
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
        BenchCommand::HotStream(args) => ("hot-stream", hot_stream(&args).await?, args.report),
        BenchCommand::Actors(args) => ("actors", actors(&args).await?, args.report),
        BenchCommand::Floods(args) => ("floods", floods(&args).await?, args.report),
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
        let settings = bench::journal::PgBenchSettings {
            url: url.clone(),
            pgbench: args.pgbench.clone(),
            writers: args.pg_writers,
        };
        figures.push(
            bench::journal_postgres(&settings, args.events, args.concurrency).await.context("PostgreSQL benchmark")?,
        );
    }
    Ok(bench::journal_table(&figures))
}

async fn hot_stream(args: &HotStreamArgs) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("cloudcafe-bench-hot-{}", uuid::Uuid::new_v4().simple()));
    let journal: Arc<dyn events::Journal> = Arc::new(events::sqlite::SqliteJournal::open(&dir, Default::default())?);
    let embedded = "embedded (SQLite, WAL, synchronous=FULL)";
    let mut figures =
        vec![bench::hot::hot_stream(embedded, journal, args.commands, args.callers, args.max_batch).await];
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(url) = &args.postgres {
        let schema = format!("bench_hot_{}", uuid::Uuid::new_v4().simple());
        let options = PgOptions::new(url.clone()).with_schema(schema.clone());
        let journal: Arc<dyn events::Journal> = Arc::new(events::postgres::PgJournal::connect(options.clone()).await?);
        let adapter = "PostgreSQL 15 (local, synchronous_commit=on)";
        figures.push(bench::hot::hot_stream(adapter, journal, args.commands, args.callers, args.max_batch).await);
        let pool = events::postgres::connect_pool(&options).await?;
        pool.get().await?.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await?;
    }
    Ok(bench::hot::hot_stream_table(&figures))
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

async fn actors(args: &ActorsArgs) -> anyhow::Result<String> {
    use bench::actors::{activation, activation_table, idle, idle_table};
    let idle_timeout = Duration::from_secs(args.idle_timeout_secs);
    let (mut activations, mut idles) = (Vec::new(), Vec::new());
    let embedded = "embedded (SQLite)";
    for part in ["activation", "idle"] {
        let dir = std::env::temp_dir().join(format!("cloudcafe-bench-actors-{}", uuid::Uuid::new_v4().simple()));
        let journal: Arc<dyn events::Journal> =
            Arc::new(events::sqlite::SqliteJournal::open(&dir, Default::default())?);
        if part == "activation" {
            activations.push(activation(journal, embedded, args.streams, args.events).await?);
        } else {
            idles.push(idle(journal, embedded, args.actors, args.in_flight, idle_timeout).await?);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Some(url) = &args.postgres {
        let postgres = "PostgreSQL";
        for part in ["activation", "idle"] {
            let schema = format!("bench_actors_{}", uuid::Uuid::new_v4().simple());
            let options = PgOptions::new(url.clone()).with_schema(schema.clone());
            let journal: Arc<dyn events::Journal> =
                Arc::new(events::postgres::PgJournal::connect(options.clone()).await?);
            if part == "activation" {
                activations.push(activation(journal, postgres, args.streams, args.events).await?);
            } else {
                idles.push(idle(journal, postgres, args.actors, args.in_flight, idle_timeout).await?);
            }
            let pool = events::postgres::connect_pool(&options).await?;
            pool.get().await?.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await?;
        }
    }
    Ok(format!(
        "Activation from a snapshot plus {} events, one stream at a time (inventory streams: a restock, then reserve/settle pairs):\n\n{}\nActors activated ({} activations in flight) then left idle:\n\n{}",
        args.events,
        activation_table(&activations),
        args.in_flight,
        idle_table(&idles),
    ))
}

/// One scenario on one journal, as its report says it went.
struct FloodRow {
    journal: &'static str,
    report: Result<gateways::flood::report::FloodReport, String>,
}

/// Runs every scenario as a `cloudcafe flood` process and tabulates the reports.
async fn floods(args: &FloodsArgs) -> anyhow::Result<String> {
    let work = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("cloudcafe-bench-floods-{}", uuid::Uuid::new_v4().simple())),
    };
    std::fs::create_dir_all(&work)?;
    let names: Vec<&'static str> = gateways::flood::scenarios::all()
        .iter()
        .map(|s| s.name())
        .filter(|n| args.only.is_empty() || args.only.iter().any(|o| o == n))
        .collect();
    let mut journals: Vec<(&'static str, Vec<String>, f64)> = Vec::new();
    if !args.no_embedded {
        let ceiling = bench::journal_sqlite(200_000, 256).await.group_rate;
        journals.push(("embedded", vec!["--data-dir".into(), work.join("data").display().to_string()], ceiling));
    }
    if let Some(url) = &args.postgres {
        let settings = bench::journal::PgBenchSettings { url: url.clone(), pgbench: "pgbench".into(), writers: None };
        let ceiling = bench::journal_postgres(&settings, 200_000, 256).await.context("PostgreSQL ceiling")?.group_rate;
        journals.push(("PostgreSQL", vec!["--journal".into(), url.clone()], ceiling));
    }
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for (journal, flags, _) in &journals {
        for name in &names {
            let dir = work.join(format!("{}-{name}", journal.to_lowercase()));
            eprintln!("bench floods: {name} on {journal}");
            // Blocking: this benchmark does nothing else meanwhile.
            let status = std::process::Command::new(&exe)
                .args(["flood", name, "--quiet", "--scale", &args.scale.to_string(), "--report-dir"])
                .arg(&dir)
                .args(flags)
                .env("RUST_LOG", "warn")
                .status()?;
            let report = std::fs::read(dir.join("report.json"))
                .map_err(|e| format!("no report (exit {status}): {e}"))
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            rows.push(FloodRow { journal, report });
        }
    }
    if args.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    let ceilings: Vec<(&str, f64)> = journals.iter().map(|(j, _, c)| (*j, *c)).collect();
    Ok(floods_table(&rows, &ceilings))
}

/// The scenario's own figure for the table.
fn own_figure(r: &gateways::flood::report::FloodReport) -> String {
    let m = &r.measurements;
    let figure = |name: &str| m.figures.get(name).map(|f| f.value);
    let p99 = |op: &str| m.operations.get(op).map(|o| o.latency.p99_ms);
    match r.scenario.as_str() {
        "morning-rush" => {
            figure("saga_drain_seconds").map_or_else(String::new, |s| format!("saga drained {s:.1} s after"))
        }
        "restock-storm" => {
            figure("lag_drain_seconds").map_or_else(String::new, |s| format!("lag back to 0 in {s:.1} s"))
        }
        "loyalty-batch" => match (figure("batch_customers_per_second"), figure("batch_tiers_changed")) {
            (Some(rate), Some(changed)) => format!("batch {:.1}K accounts/s, {changed:.0} tiers changed", rate / 1e3),
            _ => String::new(),
        },
        "menu-sync" => p99("publish_item").map_or_else(String::new, |p| format!("publish p99 {p:.1} ms")),
        "cold-start-avalanche" => match (figure("activation_mean_ms"), p99("loyalty_balance")) {
            (Some(mean), Some(cold)) => format!("activation mean {mean:.2} ms; cold read p99 {cold:.0} ms"),
            _ => String::new(),
        },
        "query-storm" => p99("customer_orders").map_or_else(String::new, |p| format!("history read p99 {p:.1} ms")),
        _ => String::new(),
    }
}

fn floods_table(rows: &[FloodRow], ceilings: &[(&str, f64)]) -> String {
    let mut out = String::from(
        "| scenario | journal | requests | arrivals achieved / requested | events/s committed | × journal ceiling | p50 | p99 | p99.9 | its own figure | passed |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let ceiling = ceilings.iter().find(|(j, _)| *j == row.journal).map_or(0.0, |(_, c)| *c);
        match &row.report {
            Ok(r) => {
                let m = &r.measurements;
                let events = m.figures.get("events_committed_per_second").map_or(0.0, |f| f.value);
                let rate = match m.requested_rate {
                    Some(req) => format!("{:.0}/s of {req:.0}/s", m.achieved_rate),
                    None => format!("{:.0}/s (closed)", m.achieved_rate),
                };
                let failed: Vec<&str> = r
                    .invariants
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| c.name.as_str())
                    .chain(r.thresholds.iter().filter(|t| !t.passed).map(|t| t.threshold.as_str()))
                    .collect();
                out.push_str(&format!(
                    "| {} | {} | {} | {rate} | {:.1}K | {:.2}× | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} |\n",
                    r.scenario,
                    row.journal,
                    m.requests,
                    events / 1e3,
                    if ceiling > 0.0 { events / ceiling } else { 0.0 },
                    m.latency.p50_ms,
                    m.latency.p99_ms,
                    m.latency.p999_ms,
                    own_figure(r),
                    if failed.is_empty() { "yes".to_owned() } else { format!("no: {}", failed.join("; ")) },
                ));
            }
            Err(e) => out.push_str(&format!("| ? | {} | failed: {e} | | | | | | | | no |\n", row.journal)),
        }
    }
    out.push_str("\nThe journal ceiling is the same journal's group commit of 200,000 single-event appends from 256 callers, measured at the start of this run: ");
    let c: Vec<String> = ceilings.iter().map(|(j, c)| format!("{j} {:.1}K events/s", c / 1e3)).collect();
    out.push_str(&c.join(", "));
    out.push_str(".\n");
    out
}
