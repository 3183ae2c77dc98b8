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
    Serve(Box<ServeArgs>),
    /// Start a node on a free port, place a few orders over HTTP, and show how they ended.
    Demo(StorageArgs),
    /// Rebuild read models from the journal into a shadow, verify every hash chain, compare with the
    /// live model and swap it in. Exit codes: 0 done, 2 broken hash chain, 3 models differ.
    Replay(ReplayArgs),
    /// Measure throughput and latency; optionally write the figures into BENCHMARKS.md.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Inspect or replay the payment requests that failed three times (the dead-letter queue).
    /// Needs a build with `--features cloud`.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print the messages of the dead-letter queue (they stay in it).
    List {
        #[command(flatten)]
        queues: QueueArgs,
        /// The most messages to show.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Send the dead-letter queue's messages back to the payment queue, to be processed again.
    Redrive {
        #[command(flatten)]
        queues: QueueArgs,
        /// The most messages to move.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
}

#[derive(Args, Clone)]
struct QueueArgs {
    /// The payment-request queue.
    #[arg(long, env = "CLOUDCAFE_PAYMENT_QUEUE", default_value = "payment-requests.fifo")]
    payment_queue: String,
    /// Its dead-letter queue.
    #[arg(long, default_value = "payment-requests-dlq.fifo")]
    payment_dlq: String,
    /// An SQS endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_SQS_ENDPOINT")]
    sqs_endpoint: Option<String>,
}

/// Where the DynamoDB and DocumentDB read models take their events from.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EventSource {
    /// The journal's global order (every read model can).
    Journal,
    /// The Kinesis stream, through a consumer sharing shards with the other nodes by leases.
    Kinesis,
}

#[derive(Args, Clone)]
struct MessagingArgs {
    /// Publish every event to this Kinesis stream (created with --kinesis-shards shards if absent).
    #[arg(long, env = "CLOUDCAFE_KINESIS_STREAM")]
    kinesis_stream: Option<String>,
    #[arg(long, default_value_t = 4)]
    kinesis_shards: i32,
    /// A Kinesis endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_KINESIS_ENDPOINT")]
    kinesis_endpoint: Option<String>,
    /// Publish a payment request per order to this SQS FIFO queue and run the payment processor on
    /// it (the saga then leaves authorization to the processor).
    #[arg(long, env = "CLOUDCAFE_PAYMENT_QUEUE")]
    payment_queue: Option<String>,
    /// The payment queue's dead-letter queue (a message moves there after 3 receives).
    #[arg(long, default_value = "payment-requests-dlq.fifo")]
    payment_dlq: String,
    /// An SQS endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_SQS_ENDPOINT")]
    sqs_endpoint: Option<String>,
    /// The DynamoDB table of processed payments.
    #[arg(long, default_value = "payments")]
    payments_table: String,
    /// Seconds a receive of payment requests waits for messages (long polling, at most 20).
    #[arg(long, default_value_t = 20)]
    payment_wait_secs: u64,
    /// Seconds a received payment request stays invisible to other processors (extended while it is
    /// handled).
    #[arg(long, default_value_t = 30)]
    payment_visibility_secs: u64,
    /// Where the DynamoDB and DocumentDB read models take their events from.
    #[arg(long, value_enum, default_value_t = EventSource::Journal)]
    projections_from: EventSource,
    /// Prefix of the lease tables of the Kinesis consumers (one table per read model).
    #[arg(long, default_value = "cloudcafe-leases")]
    lease_table_prefix: String,
    /// A lease not renewed for this long is taken over by another node.
    #[arg(long, default_value_t = 10_000)]
    lease_timeout_ms: u64,
    /// This node's name in the lease tables (default: host name, process id and a random suffix).
    #[arg(long)]
    worker_id: Option<String>,
}

impl MessagingArgs {
    fn any(&self) -> bool {
        self.kinesis_stream.is_some() || self.payment_queue.is_some() || self.projections_from == EventSource::Kinesis
    }
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
    /// journal and no URL, the journal's database is used, schema `{pg-schema}_analytics` (or
    /// `cloudcafe_analytics`).
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
    #[command(flatten)]
    messaging: MessagingArgs,
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
        /// Also measure the DynamoDB models at this endpoint (an emulator; `--features cloud`).
        #[arg(long)]
        dynamodb_endpoint: Option<String>,
        /// Also measure the DocumentDB models at this MongoDB-wire URI (`--features cloud`).
        #[arg(long)]
        documentdb_url: Option<String>,
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// The outbox publisher into Kinesis and the KCL-style consumer out of it, against their
    /// ceilings (needs a build with `--features cloud`, kinesalite and a DynamoDB for the leases).
    Kinesis {
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

/// Builds an AWS SDK client: against `endpoint` (an emulator: region us-east-1, static test
/// credentials) when given, else with the default credential chain and no endpoint override.
#[cfg(feature = "cloud")]
macro_rules! aws_client {
    ($sdk:ident, $endpoint:expr) => {{
        match $endpoint {
            Some(endpoint) => {
                let config = $sdk::Config::builder()
                    .behavior_version($sdk::config::BehaviorVersion::latest())
                    .region($sdk::config::Region::new("us-east-1"))
                    .endpoint_url(endpoint)
                    .credentials_provider($sdk::config::Credentials::new(
                        "test",
                        "test",
                        None,
                        None,
                        "cloudcafe-emulator",
                    ))
                    .build();
                $sdk::Client::from_conf(config)
            }
            None => $sdk::Client::new(&aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await),
        }
    }};
}

/// The DynamoDB and DocumentDB read models asked for.
#[derive(Default)]
struct CloudModels {
    #[cfg(feature = "cloud")]
    dynamodb: Option<std::sync::Arc<projections::read_models::dynamo::DynamoSink>>,
    #[cfg(feature = "cloud")]
    documents: Option<std::sync::Arc<projections::read_models::documents::DocumentSink>>,
}

impl CloudModels {
    /// As rebuildable sinks, named as `replay --projection` names them.
    fn rebuildable(&self) -> Vec<(&'static str, std::sync::Arc<dyn projections::Rebuildable>)> {
        #[allow(unused_mut)]
        let mut out: Vec<(&'static str, std::sync::Arc<dyn projections::Rebuildable>)> = Vec::new();
        #[cfg(feature = "cloud")]
        {
            if let Some(d) = &self.dynamodb {
                out.push(("dynamodb", d.clone()));
            }
            if let Some(d) = &self.documents {
                out.push(("documents", d.clone()));
            }
        }
        out
    }

    /// As sinks that can follow a Kinesis shard.
    #[cfg(feature = "cloud")]
    fn stream_ordered(&self) -> Vec<std::sync::Arc<dyn projections::StreamOrderedSink>> {
        let mut out: Vec<std::sync::Arc<dyn projections::StreamOrderedSink>> = Vec::new();
        if let Some(d) = &self.dynamodb {
            out.push(d.clone());
        }
        if let Some(d) = &self.documents {
            out.push(d.clone());
        }
        out
    }
}

impl StorageArgs {
    /// The DynamoDB and DocumentDB read models asked for, around clients built here.
    #[cfg(feature = "cloud")]
    async fn cloud_models(&self) -> anyhow::Result<CloudModels> {
        let mut out = CloudModels::default();
        if let Some(env) = &self.dynamodb_env {
            let client = aws_client!(aws_sdk_dynamodb, &self.dynamodb_endpoint);
            let names = projections::read_models::dynamo::TableNames::new("cloudcafe", env.clone());
            out.dynamodb =
                Some(std::sync::Arc::new(projections::read_models::dynamo::DynamoSink::open(client, names).await?));
        }
        if let Some(url) = &self.documentdb_url {
            let client = mongodb::Client::with_uri_str(url).await.context("cannot reach DocumentDB")?;
            let db = client.database("cloudcafe");
            out.documents =
                Some(std::sync::Arc::new(projections::read_models::documents::DocumentSink::open(db).await?));
        }
        Ok(out)
    }

    #[cfg(not(feature = "cloud"))]
    async fn cloud_models(&self) -> anyhow::Result<CloudModels> {
        if self.dynamodb_env.is_some() || self.documentdb_url.is_some() {
            anyhow::bail!("this build has no DynamoDB/DocumentDB read models: rebuild with `--features cloud`");
        }
        Ok(CloudModels::default())
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
            payment: PaymentPolicy {
                decline_threshold: self.decline_threshold,
                fraud_rounds: self.fraud_rounds,
                ..PaymentPolicy::default()
            },
            actor_threads: 2,
            seed_demo: !self.no_seed,
            analytics: match (&self.analytics_url, &self.journal) {
                (Some(url), _) => Some(PgOptions::new(url.clone())),
                // Beside the journal's schema, so that two journals in one database keep two models.
                (None, Some(journal)) => Some(PgOptions::new(journal.clone()).with_schema(match &self.pg_schema {
                    Some(schema) => format!("{schema}_analytics"),
                    None => "cloudcafe_analytics".to_owned(),
                })),
                (None, None) => None,
            },
            cache: self.redis_url.clone().map(|url| (url, projections::read_models::cache::CacheSettings::default())),
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
            Command::Serve(args) => serve(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Demo(args) => demo(args).await.map(|()| ExitCode::SUCCESS),
            Command::Replay(args) => replay(args).await,
            Command::Bench(b) => run_bench(b).await.map(|()| ExitCode::SUCCESS),
            Command::Dlq(d) => dlq(d).await.map(|()| ExitCode::SUCCESS),
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

/// Lag reports of the read models a node feeds from Kinesis, by name.
type StreamFed = Vec<(String, std::sync::Arc<dyn projections::StreamFedLag>)>;

async fn start_server(
    node: &Node,
    listen: SocketAddr,
    workers: Option<usize>,
    api: &ApiSettings,
    stream_fed: StreamFed,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let mut state = ApiState::new(node, telemetry::metrics_handle(), api);
    std::sync::Arc::get_mut(&mut state).expect("just built").stream_fed = stream_fed;
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
    // Before anything starts: what the followers record while the node starts must not be lost.
    telemetry::metrics_handle();
    let mut settings = args.storage.settings();
    let models = args.storage.cloud_models().await?;
    if args.messaging.projections_from == EventSource::Journal {
        settings.extra_projections = models.rebuildable().into_iter().map(|(_, p)| p).collect();
    }
    if args.messaging.payment_queue.is_some() {
        settings.payment.authorizer = actors::cafe::Authorizer::PaymentProcessor;
    }
    let node = Node::start(settings).await.context("cannot start the node")?;
    let stream_fed = start_messaging(&args, &node, &models).await?;
    let api = ApiSettings { body_limit: args.body_limit, max_in_flight: args.max_in_flight };
    let (server, addr) = start_server(&node, args.listen, args.workers, &api, stream_fed).await?;
    tracing::info!(%addr, storage = ?args.storage.settings().storage, "serving the CloudCafe API");
    server.await.context("server failed")?;
    Ok(())
}

/// Starts the outbox publishers, the payment processor and the Kinesis consumers asked for.
#[cfg(feature = "cloud")]
async fn start_messaging(args: &ServeArgs, node: &Node, models: &CloudModels) -> anyhow::Result<StreamFed> {
    use gateways::messaging::{self, KinesisOutbox, KinesisProjections, MessagingSettings, PaymentQueue};
    let m = &args.messaging;
    if !m.any() {
        return Ok(Vec::new());
    }
    let dynamodb = aws_client!(aws_sdk_dynamodb, &args.storage.dynamodb_endpoint);
    let mut settings = MessagingSettings::default();
    if let Some(stream) = &m.kinesis_stream {
        let client = aws_client!(aws_sdk_kinesis, &m.kinesis_endpoint);
        settings.kinesis = Some(KinesisOutbox {
            client,
            stream: stream.clone(),
            shards: m.kinesis_shards.max(1),
            one_record_per_stream: m.projections_from == EventSource::Kinesis,
        });
    }
    if let Some(queue) = &m.payment_queue {
        settings.payments = Some(PaymentQueue {
            sqs: aws_client!(aws_sdk_sqs, &m.sqs_endpoint),
            queue: queue.clone(),
            dead_letter_queue: m.payment_dlq.clone(),
            dynamodb: dynamodb.clone(),
            ledger_table: m.payments_table.clone(),
            wait: Duration::from_secs(m.payment_wait_secs.min(20)),
            visibility: Duration::from_secs(m.payment_visibility_secs.max(1)),
        });
    }
    if m.projections_from == EventSource::Kinesis {
        let sinks = models.stream_ordered();
        if sinks.is_empty() {
            anyhow::bail!(
                "--projections-from kinesis needs a read model that can follow it: --dynamodb-env or --documentdb-url"
            );
        }
        settings.kinesis_projections = Some(KinesisProjections {
            dynamodb,
            sinks,
            lease_table_prefix: m.lease_table_prefix.clone(),
            worker_id: m.worker_id.clone().unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                format!("{}-{}-{}", host.trim(), std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
            }),
            lease_timeout: Duration::from_millis(m.lease_timeout_ms.max(100)),
        });
    }
    let started = messaging::start(node, settings).await.context("cannot start publishing and consuming")?;
    tracing::info!(kinesis = ?m.kinesis_stream, payments = ?m.payment_queue, "events leave the process");
    Ok(started
        .kinesis_lag
        .into_iter()
        .map(|(name, lag)| (name, lag as std::sync::Arc<dyn projections::StreamFedLag>))
        .collect())
}

#[cfg(not(feature = "cloud"))]
async fn start_messaging(args: &ServeArgs, _node: &Node, _models: &CloudModels) -> anyhow::Result<StreamFed> {
    if args.messaging.any() {
        anyhow::bail!("this build cannot publish to Kinesis or SQS: rebuild with `--features cloud`");
    }
    Ok(Vec::new())
}

#[cfg(feature = "cloud")]
async fn dlq(command: DlqCommand) -> anyhow::Result<()> {
    use gateways::payments;
    let queues = match &command {
        DlqCommand::List { queues, .. } | DlqCommand::Redrive { queues, .. } => queues.clone(),
    };
    let sqs = aws_client!(aws_sdk_sqs, &queues.sqs_endpoint);
    let dead_letters =
        payments::queue_url(&sqs, &queues.payment_dlq).await.context("cannot find the dead-letter queue")?;
    match command {
        DlqCommand::List { max, .. } => {
            let letters = payments::dead_letters(&sqs, &dead_letters, max, Duration::from_secs(2)).await?;
            println!("{} message(s) in {}", letters.len(), queues.payment_dlq);
            for l in letters {
                match &l.request {
                    Some(r) => println!(
                        "{}  receives={}  order={} customer={} amount_cents={} event={}",
                        l.message_id, l.receives, r.order_id, r.customer_id, r.amount_cents, r.event_id
                    ),
                    None => println!("{}  receives={}  not a payment request: {}", l.message_id, l.receives, l.body),
                }
            }
        }
        DlqCommand::Redrive { max, .. } => {
            let queue =
                payments::queue_url(&sqs, &queues.payment_queue).await.context("cannot find the payment queue")?;
            let moved = payments::redrive(&sqs, &dead_letters, &queue, max).await?;
            println!("moved {moved} message(s) from {} back to {}", queues.payment_dlq, queues.payment_queue);
        }
    }
    Ok(())
}

#[cfg(not(feature = "cloud"))]
async fn dlq(_command: DlqCommand) -> anyhow::Result<()> {
    anyhow::bail!("this build has no SQS client: rebuild with `--features cloud`")
}

async fn demo(args: StorageArgs) -> anyhow::Result<()> {
    telemetry::metrics_handle();
    let mut settings = args.settings();
    settings.seed_demo = true;
    let node = Node::start(settings).await.context("cannot start the node")?;
    let (server, addr) =
        start_server(&node, "127.0.0.1:0".parse()?, Some(1), &ApiSettings::default(), Vec::new()).await?;
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
    use projections::read_models::replay::{rebuild, ReplayError, ReplayOptions, ReplayOutcome};
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
                targets.push((
                    "analytics",
                    std::sync::Arc::new(projections::read_models::analytics::AnalyticsSink::new(pool).await?),
                ));
            }
            None if args.projection == Projection::Analytics => {
                anyhow::bail!("no analytics store: pass --analytics-url (or use a PostgreSQL journal)")
            }
            None => {}
        }
    }
    for (name, sink) in args.storage.cloud_models().await?.rebuildable() {
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

/// Replay figures of the DynamoDB and DocumentDB models over `journal`, both at once (each is bound
/// by its own emulator process).
#[cfg(feature = "cloud")]
async fn emulated_replay(
    journal: std::sync::Arc<dyn events::Journal>,
    dynamodb_endpoint: Option<String>,
    documentdb_url: Option<String>,
) -> anyhow::Result<Vec<(String, bench::ReplayFigures)>> {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let mut targets: Vec<(String, std::sync::Arc<dyn projections::Rebuildable>)> = Vec::new();
    if let Some(endpoint) = &dynamodb_endpoint {
        let client = aws_client!(aws_sdk_dynamodb, Some(endpoint));
        let names = projections::read_models::dynamo::TableNames::new("bench", format!("replay{suffix}"));
        targets.push((
            "DynamoDB (moto)".into(),
            std::sync::Arc::new(projections::read_models::dynamo::DynamoSink::open(client, names).await?),
        ));
    }
    if let Some(url) = &documentdb_url {
        let client = mongodb::Client::with_uri_str(url).await.context("cannot reach DocumentDB")?;
        let db = client.database(&format!("bench_replay_{suffix}"));
        targets.push((
            "DocumentDB (SecantusDB)".into(),
            std::sync::Arc::new(projections::read_models::documents::DocumentSink::open(db).await?),
        ));
    }
    let runs = targets.into_iter().map(|(store, target)| {
        let journal = journal.clone();
        async move { (store, bench::replay(journal, target).await) }
    });
    Ok(futures::future::join_all(runs).await)
}

#[cfg(not(feature = "cloud"))]
async fn emulated_replay(
    _journal: std::sync::Arc<dyn events::Journal>,
    dynamodb_endpoint: Option<String>,
    documentdb_url: Option<String>,
) -> anyhow::Result<Vec<(String, bench::ReplayFigures)>> {
    if dynamodb_endpoint.is_some() || documentdb_url.is_some() {
        anyhow::bail!("this build has no DynamoDB/DocumentDB read models: rebuild with `--features cloud`");
    }
    Ok(Vec::new())
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
        BenchCommand::Replay { orders, postgres, dynamodb_endpoint, documentdb_url, report } => {
            use std::sync::Arc;
            let history = projections::workload::flood_of_orders(orders, 500, 100_000);
            let mut figures = Vec::new();
            let dir = std::env::temp_dir().join(format!("cloudcafe-bench-replay-{}", uuid::Uuid::new_v4().simple()));
            {
                let journal: Arc<dyn events::Journal> =
                    Arc::new(events::sqlite::SqliteJournal::open(&dir, Default::default())?);
                projections::workload::write_history(journal.as_ref(), &history).await;
                let store = Arc::new(projections::read_models::storefront::sqlite::SqliteStorefront::open(&dir)?);
                figures.push(("SQLite".to_string(), bench::replay(journal.clone(), store).await));
                figures.extend(emulated_replay(journal, dynamodb_endpoint, documentdb_url).await?);
            }
            let _ = std::fs::remove_dir_all(&dir);
            if let Some(url) = postgres {
                let schema = format!("bench_replay_{}", uuid::Uuid::new_v4().simple());
                let options = PgOptions::new(url.clone()).with_schema(schema.clone());
                let journal: Arc<dyn events::Journal> =
                    Arc::new(events::postgres::PgJournal::connect(options.clone()).await?);
                projections::workload::write_history(journal.as_ref(), &history).await;
                let pool = events::postgres::connect_pool(&options).await?;
                let store =
                    Arc::new(projections::read_models::storefront::postgres::PgStorefront::new(pool.clone()).await?);
                figures.push(("PostgreSQL".to_string(), bench::replay(journal.clone(), store).await));
                let analytics = Arc::new(projections::read_models::analytics::AnalyticsSink::new(pool.clone()).await?);
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
        #[cfg(feature = "cloud")]
        BenchCommand::Kinesis { events, shards, kinesis_endpoint, dynamodb_endpoint, report } => {
            let kinesis = aws_client!(aws_sdk_kinesis, &kinesis_endpoint);
            let dynamodb = aws_client!(aws_sdk_dynamodb, &dynamodb_endpoint);
            let figures = bench::kinesis::run(&kinesis, &dynamodb, events.max(1), shards.max(1)).await?;
            let table = bench::kinesis::table(&figures);
            println!("{table}");
            if let Some(file) = report {
                bench::write_section(&file, "kinesis", &invoked, &table)?;
            }
        }
        #[cfg(not(feature = "cloud"))]
        BenchCommand::Kinesis { .. } => {
            anyhow::bail!("this build has no Kinesis client: rebuild with `--features cloud`")
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
            let (server, addr) =
                start_server(&node, "127.0.0.1:0".parse()?, None, &ApiSettings::default(), Vec::new()).await?;
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
