//! `cloudcafe`: serve the API, run the demo, or run the benchmarks.
//!
//! Architecture Invariant: this file is the only place that reads flags or the environment; it turns
//! them into typed settings once and hands built clients to the libraries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::HttpServer;
use actors::cafe::PaymentPolicy;
use actors::host::HostOptions;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gateways::http::{ApiSettings, ApiState};
use gateways::node::{Node, NodeSettings, Storage};
use gateways::{bench, telemetry};

#[derive(Parser)]
#[command(name = "cloudcafe", version, about = "An event-sourced actor system for a coffee chain")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (embedded storage under ./data unless --journal names PostgreSQL).
    Serve(ServeArgs),
    /// Start a node on a free port, place a few orders over HTTP, and show how they ended.
    Demo(StorageArgs),
    /// Measure throughput and latency; optionally write the figures into BENCHMARKS.md.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args, Clone)]
struct StorageArgs {
    /// Directory of the embedded journal and read model.
    #[arg(long, env = "CLOUDCAFE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// A PostgreSQL URL (postgres://user@host:port/db) to use instead of the embedded files.
    #[arg(long, env = "CLOUDCAFE_JOURNAL")]
    journal: Option<String>,
    /// Schema for the PostgreSQL tables (default: the connection's search_path).
    #[arg(long, env = "CLOUDCAFE_PG_SCHEMA")]
    pg_schema: Option<String>,
    /// Payments whose fraud score (uniform in [0,1)) is at or above this are declined.
    #[arg(long, default_value_t = 0.95)]
    decline_threshold: f64,
    /// SHA-256 rounds per fraud score.
    #[arg(long, default_value_t = 1000)]
    fraud_rounds: u32,
    /// Snapshot a stream every N events (0: never).
    #[arg(long, default_value_t = 100)]
    snapshot_every: u64,
    /// Seconds an idle actor stays in memory.
    #[arg(long, default_value_t = 300)]
    idle_timeout_secs: u64,
    /// Commands queued per actor before 503.
    #[arg(long, default_value_t = 256)]
    mailbox: usize,
    /// Do not publish the demo menu and stock into an empty journal.
    #[arg(long)]
    no_seed: bool,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    storage: StorageArgs,
    #[arg(long, env = "CLOUDCAFE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// HTTP worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    body_limit: usize,
    /// Commands in flight on this node before 503.
    #[arg(long, default_value_t = 4096)]
    max_in_flight: usize,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Journal group commit against plain batched inserts of the same rows.
    Journal {
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
    },
    /// POST /api/orders against GET /health on an embedded node, plus the journal ceiling.
    Http {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

impl StorageArgs {
    fn settings(&self) -> NodeSettings {
        let storage = match &self.journal {
            Some(url) => Storage::Postgres { url: url.clone(), schema: self.pg_schema.clone() },
            None => Storage::Embedded { data_dir: self.data_dir.clone() },
        };
        NodeSettings {
            storage,
            host: HostOptions {
                snapshot_every: self.snapshot_every,
                idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
                mailbox_capacity: self.mailbox.max(1),
                ..HostOptions::default()
            },
            payment: PaymentPolicy { decline_threshold: self.decline_threshold, fraud_rounds: self.fraud_rounds },
            actor_threads: 2,
            seed_demo: !self.no_seed,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Demo(args) => demo(args).await,
            Command::Bench(b) => run_bench(b).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudcafe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start_server(
    node: &Node,
    listen: SocketAddr,
    workers: Option<usize>,
    api: &ApiSettings,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let state = ApiState::new(node, telemetry::metrics_handle(), api);
    let mut server = HttpServer::new(move || gateways::app(state.clone()))
        .bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?
        .shutdown_timeout(5);
    if let Some(w) = workers {
        server = server.workers(w.max(1));
    }
    let addr = server.addrs().first().copied().context("no listening address")?;
    Ok((server.run(), addr))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let node = Node::start(args.storage.settings()).await.context("cannot start the node")?;
    let api = ApiSettings { body_limit: args.body_limit, max_in_flight: args.max_in_flight };
    let (server, addr) = start_server(&node, args.listen, args.workers, &api).await?;
    tracing::info!(%addr, storage = ?args.storage.settings().storage, "serving the CloudCafe API");
    server.await.context("server failed")?;
    Ok(())
}

async fn demo(args: StorageArgs) -> anyhow::Result<()> {
    let mut settings = args.settings();
    settings.seed_demo = true;
    let node = Node::start(settings).await.context("cannot start the node")?;
    let (server, addr) = start_server(&node, "127.0.0.1:0".parse()?, Some(1), &ApiSettings::default()).await?;
    let handle = server.handle();
    actix_web::rt::spawn(server);
    println!("CloudCafe demo node listening on http://{addr}\n");
    let mut client = gateways::load::HttpConnection::new(addr);
    let orders = [
        ("alice", "store-1", r#"[{"item_id":"latte","quantity":2},{"item_id":"croissant","quantity":1}]"#),
        ("bob", "store-2", r#"[{"item_id":"cold-brew","quantity":1}]"#),
        ("carol", "store-3", r#"[{"item_id":"mocha","quantity":600}]"#),
        ("erin", "store-3", r#"[{"item_id":"mocha","quantity":600}]"#),
        ("dave", "store-1", r#"[{"item_id":"unicorn-frappe","quantity":1}]"#),
        ("dave", "store-1", r#"[{"item_id":"latte","quantity":0}]"#),
    ];
    let mut placed = Vec::new();
    for (customer, store, items) in orders {
        let body = format!(r#"{{"customer_id":"{customer}","store_id":"{store}","items":{items}}}"#);
        println!("POST /api/orders {body}");
        let r = client.request("POST", "/api/orders", &[], body.as_bytes()).await?;
        println!("  -> {} {}\n", r.status, String::from_utf8_lossy(&r.body));
        if r.status == 201 {
            placed.push(r.json()["order_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in placed {
        let r = client.request("GET", &format!("/api/orders/{id}"), &[], b"").await?;
        let o = r.json();
        println!(
            "GET /api/orders/{id} -> {} status={} total={} {}",
            r.status, o["status"], o["total_amount"], o["cancel_reason"]
        );
    }
    let r = client.request("GET", "/api/loyalty/alice", &[], b"").await?;
    println!("GET /api/loyalty/alice -> {}", String::from_utf8_lossy(&r.body));
    handle.stop(true).await;
    Ok(())
}

/// Stores the HTTP benchmark spreads its orders over.
const BENCH_STORES: usize = 512;

async fn run_bench(command: BenchCommand) -> anyhow::Result<()> {
    let invoked = format!("cloudcafe {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    match command {
        BenchCommand::Journal { events, concurrency, postgres, report } => {
            let mut figures = vec![bench::journal_sqlite(events, concurrency).await];
            if let Some(url) = postgres {
                figures.push(bench::journal_postgres(&url, events, concurrency).await.context("PostgreSQL benchmark")?);
            }
            let table = bench::journal_table(&figures);
            println!("{table}");
            if let Some(file) = report {
                bench::write_section(&file, "journal", &invoked, &table)?;
            }
        }
        BenchCommand::Http { connections, seconds, report } => {
            let dir = std::env::temp_dir().join(format!("cloudcafe-bench-http-{}", uuid::Uuid::new_v4().simple()));
            let mut settings = NodeSettings::embedded(&dir);
            settings.seed_demo = true;
            let node = Node::start(settings).await?;
            // Orders spread over many stores, as a chain's are: one store's SKU is one actor.
            let stores: &'static [&'static str] =
                Vec::leak((1..=BENCH_STORES).map(|i| &*String::leak(format!("bench-store-{i}"))).collect());
            for store in stores {
                for sku in ["latte", "croissant"] {
                    node.cafe.restock(store, sku, 1_000_000, events::Causation::new_root()).await?;
                }
            }
            let (server, addr) = start_server(&node, "127.0.0.1:0".parse()?, None, &ApiSettings::default()).await?;
            let handle = server.handle();
            actix_web::rt::spawn(server);
            let mut figures = bench::http(addr, connections, Duration::from_secs(seconds), stores).await;
            (figures.saga_backlog_events, figures.saga_drain) =
                bench::saga_drain(node.journal.as_ref(), Duration::from_secs(600)).await;
            handle.stop(true).await;
            drop(node);
            let raw = bench::journal_sqlite(100_000, 256).await.raw_rate;
            let table = bench::http_table(&figures, Some(raw));
            println!("{table}");
            if let Some(file) = report {
                bench::write_section(&file, "http", &invoked, &table)?;
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    Ok(())
}
