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
use events::postgres::PgOptions;
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
    /// Rebuild read models from the journal into a shadow, verify every hash chain, compare with the
    /// live model and swap it in. Exit codes: 0 done, 2 broken hash chain, 3 models differ.
    Replay(ReplayArgs),
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
    /// The Redshift cluster for the analytics model (PostgreSQL wire protocol URL). With a PostgreSQL
    /// journal and no URL, the journal's database is used, schema `cloudcafe_analytics`.
    #[arg(long, env = "CLOUDCAFE_ANALYTICS_URL")]
    analytics_url: Option<String>,
    /// Redis (ElastiCache) in front of the menu and loyalty read models, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "CLOUDCAFE_REDIS_URL")]
    redis_url: Option<String>,
    /// Keep the DynamoDB read models (active orders, store inventory) in tables `cloudcafe-*-ENV`.
    /// Needs a build with `--features cloud`.
    #[arg(long, env = "CLOUDCAFE_DYNAMODB_ENV")]
    dynamodb_env: Option<String>,
    /// A DynamoDB endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    /// Keep the DocumentDB read models (menu, order documents) at this MongoDB-wire URI, database
    /// `cloudcafe`. Needs a build with `--features cloud`.
    #[arg(long, env = "CLOUDCAFE_DOCUMENTDB_URL")]
    documentdb_url: Option<String>,
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    storage: StorageArgs,
    /// Which read model to rebuild.
    #[arg(long, value_enum, default_value_t = Projection::All)]
    projection: Projection,
    /// Start over from this global position (default: resume an interrupted rebuild, or start at 0).
    #[arg(long)]
    from: Option<u64>,
    /// Build and compare only; never touch the live model.
    #[arg(long)]
    dry_run: bool,
    /// Swap the rebuilt model in even if it differs from the live one.
    #[arg(long)]
    accept_differences: bool,
    /// Events per page (and per transaction of the shadow).
    #[arg(long, default_value_t = 2000)]
    page_size: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Projection {
    All,
    Storefront,
    Analytics,
    Dynamodb,
    Documents,
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
    /// Project, then replay (verify chains, rebuild in a shadow, compare, swap) a flood of orders.
    Replay {
        /// Orders in the flood (about 8.6 events each).
        #[arg(long, default_value_t = 116_000)]
        orders: u32,
        /// Also measure the PostgreSQL storefront and the Redshift-SQL analytics model at this URL.
        #[arg(long, env = "CLOUDCAFE_BENCH_PG")]
        postgres: Option<String>,
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
    /// The DynamoDB and DocumentDB read models asked for, around clients built here.
    #[cfg(feature = "cloud")]
    async fn cloud_projections(
        &self,
    ) -> anyhow::Result<Vec<(&'static str, std::sync::Arc<dyn projections::Rebuildable>)>> {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let mut out: Vec<(&'static str, std::sync::Arc<dyn projections::Rebuildable>)> = Vec::new();
        if let Some(env) = &self.dynamodb_env {
            let client = match &self.dynamodb_endpoint {
                Some(endpoint) => {
                    let config = aws_sdk_dynamodb::Config::builder()
                        .behavior_version(BehaviorVersion::latest())
                        .region(Region::new("us-east-1"))
                        .endpoint_url(endpoint)
                        .credentials_provider(Credentials::new("test", "test", None, None, "cloudcafe-emulator"))
                        .build();
                    aws_sdk_dynamodb::Client::from_conf(config)
                }
                None => aws_sdk_dynamodb::Client::new(&aws_config::defaults(BehaviorVersion::latest()).load().await),
            };
            let names = projections::dynamo::TableNames::new("cloudcafe", env.clone());
            out.push(("dynamodb", std::sync::Arc::new(projections::dynamo::DynamoSink::open(client, names).await?)));
        }
        if let Some(url) = &self.documentdb_url {
            let client = mongodb::Client::with_uri_str(url).await.context("cannot reach DocumentDB")?;
            let db = client.database("cloudcafe");
            out.push(("documents", std::sync::Arc::new(projections::documents::DocumentSink::open(db).await?)));
        }
        Ok(out)
    }

    #[cfg(not(feature = "cloud"))]
    async fn cloud_projections(
        &self,
    ) -> anyhow::Result<Vec<(&'static str, std::sync::Arc<dyn projections::Rebuildable>)>> {
        if self.dynamodb_env.is_some() || self.documentdb_url.is_some() {
            anyhow::bail!("this build has no DynamoDB/DocumentDB read models: rebuild with `--features cloud`");
        }
        Ok(Vec::new())
    }

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
            analytics: match (&self.analytics_url, &self.journal) {
                (Some(url), _) => Some(PgOptions::new(url.clone())),
                (None, Some(journal)) => Some(PgOptions::new(journal.clone()).with_schema("cloudcafe_analytics")),
                (None, None) => None,
            },
            cache: self.redis_url.clone().map(|url| (url, projections::cache::CacheSettings::default())),
            extra_projections: Vec::new(),
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
            Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
            Command::Demo(args) => demo(args).await.map(|()| ExitCode::SUCCESS),
            Command::Replay(args) => replay(args).await,
            Command::Bench(b) => run_bench(b).await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
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
    let mut settings = args.storage.settings();
    settings.extra_projections = args.storage.cloud_projections().await?.into_iter().map(|(_, p)| p).collect();
    let node = Node::start(settings).await.context("cannot start the node")?;
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

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    use projections::replay::{rebuild, ReplayError, ReplayOptions, ReplayOutcome};
    let settings = args.storage.settings();
    let (journal, storefront) =
        gateways::node::open_stores(&settings.storage).await.context("cannot open the stores")?;
    let mut targets: Vec<(&str, std::sync::Arc<dyn projections::Rebuildable>)> = Vec::new();
    if matches!(args.projection, Projection::All | Projection::Storefront) {
        targets.push(("storefront", storefront));
    }
    if matches!(args.projection, Projection::All | Projection::Analytics) {
        match &settings.analytics {
            Some(options) => {
                let pool = events::postgres::connect_pool(options).await?;
                targets
                    .push(("analytics", std::sync::Arc::new(projections::analytics::AnalyticsSink::new(pool).await?)));
            }
            None if args.projection == Projection::Analytics => {
                anyhow::bail!("no analytics store: pass --analytics-url (or use a PostgreSQL journal)")
            }
            None => {}
        }
    }
    for (name, sink) in args.storage.cloud_projections().await? {
        let wanted = match name {
            "dynamodb" => matches!(args.projection, Projection::All | Projection::Dynamodb),
            _ => matches!(args.projection, Projection::All | Projection::Documents),
        };
        if wanted {
            targets.push((name, sink));
        }
    }
    if targets.is_empty() {
        anyhow::bail!("that read model is not configured (see cloudcafe replay --help)");
    }
    let options = ReplayOptions {
        from: args.from,
        page_size: args.page_size,
        dry_run: args.dry_run,
        accept_differences: args.accept_differences,
    };
    let mut code = ExitCode::SUCCESS;
    for (name, target) in targets {
        let bar = indicatif::ProgressBar::new(journal.head_position().await?);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} events  {per_sec}  ETA {eta}")?
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_owned());
        let shadow_at = target.shadow().await?.position().await?;
        if args.from.is_none() && shadow_at > 0 {
            println!("{name}: resuming from position {shadow_at}");
        }
        let outcome = rebuild(journal.as_ref(), target.as_ref(), &options, &mut |p| {
            bar.set_length(p.head.max(p.position));
            bar.set_position(p.position);
        })
        .await;
        bar.finish_and_clear();
        match outcome {
            Ok(ReplayOutcome::Promoted { fingerprint, resumed_from, applied }) => println!(
                "{name}: rebuilt {applied} events (from position {resumed_from}); {} rows, checksum {}, equal to the live model; swapped in",
                fingerprint.rows, fingerprint.checksum
            ),
            Ok(ReplayOutcome::Equal { fingerprint, applied, .. }) => println!(
                "{name}: dry run: rebuilt {applied} events; {} rows, checksum {}, equal to the live model; live model untouched",
                fingerprint.rows, fingerprint.checksum
            ),
            Ok(ReplayOutcome::Differs { live, shadow, differences, promoted }) => {
                println!(
                    "{name}: the rebuilt model differs from the live one: live {} rows ({}), rebuilt {} rows ({}); {} rows differ",
                    live.rows,
                    live.checksum,
                    shadow.rows,
                    shadow.checksum,
                    differences.len()
                );
                for d in differences.iter().take(20) {
                    println!(
                        "  {}\n    live:    {}\n    rebuilt: {}",
                        d.key,
                        d.live.as_deref().unwrap_or("(absent)"),
                        d.shadow.as_deref().unwrap_or("(absent)")
                    );
                }
                if promoted {
                    println!("{name}: --accept-differences: the rebuilt model was swapped in");
                } else {
                    println!("{name}: live model left alone");
                    code = ExitCode::from(3);
                }
            }
            Err(ReplayError::BrokenChain(link)) => {
                eprintln!("cloudcafe: replay of {name} stopped: {link}");
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e).context(format!("replay of {name} failed")),
        }
    }
    Ok(code)
}

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
        BenchCommand::Replay { orders, postgres, report } => {
            use std::sync::Arc;
            let history = projections::workload::flood_of_orders(orders, 500, 100_000);
            let mut figures = Vec::new();
            let dir = std::env::temp_dir().join(format!("cloudcafe-bench-replay-{}", uuid::Uuid::new_v4().simple()));
            {
                let journal: Arc<dyn events::Journal> =
                    Arc::new(events::sqlite::SqliteJournal::open(&dir, Default::default())?);
                projections::workload::write_history(journal.as_ref(), &history).await;
                let store = Arc::new(projections::storefront::sqlite::SqliteStorefront::open(&dir)?);
                figures.push(("SQLite".to_string(), bench::replay(journal, store).await));
            }
            let _ = std::fs::remove_dir_all(&dir);
            if let Some(url) = postgres {
                let schema = format!("bench_replay_{}", uuid::Uuid::new_v4().simple());
                let options = PgOptions::new(url.clone()).with_schema(schema.clone());
                let journal: Arc<dyn events::Journal> =
                    Arc::new(events::postgres::PgJournal::connect(options.clone()).await?);
                projections::workload::write_history(journal.as_ref(), &history).await;
                let pool = events::postgres::connect_pool(&options).await?;
                let store = Arc::new(projections::storefront::postgres::PgStorefront::new(pool.clone()).await?);
                figures.push(("PostgreSQL".to_string(), bench::replay(journal.clone(), store).await));
                let analytics = Arc::new(projections::analytics::AnalyticsSink::new(pool.clone()).await?);
                figures
                    .push(("PostgreSQL standing in for Redshift".to_string(), bench::replay(journal, analytics).await));
                let client = pool.get().await?;
                client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await?;
            }
            let table = bench::replay_table(&figures);
            println!("{table}");
            if let Some(file) = report {
                bench::write_section(&file, "replay", &invoked, &table)?;
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
