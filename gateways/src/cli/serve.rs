//! `cloudcafe serve`: a node serving the REST API, with the messaging (Kinesis outbox, SQS payment
//! processor, Kinesis-fed read models) its flags ask for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use anyhow::Context;
use clap::Args;
use gateways::cloudwatch::history::History;
use gateways::cloudwatch::{emf, sample};
use gateways::http::{ApiSettings, ApiState};
use gateways::node::Node;
use gateways::telemetry;
use tokio::sync::{broadcast, watch};

use super::auth::{AuthArgs, RateLimitArgs};
use super::cloud::{self, CloudModels, StreamFed};
use super::storage::StorageArgs;

/// The flags of `cloudcafe serve`.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    #[arg(long, env = "CLOUDCAFE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// HTTP worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub body_limit: usize,
    /// Commands in flight on this node before 503 (counted once their body has arrived).
    #[arg(long, default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Milliseconds a request body may take to arrive before 408 and a closed connection.
    #[arg(long, default_value_t = 5000)]
    pub body_timeout_ms: u64,
    /// Milliseconds a connection's first request head may take to arrive before 408.
    #[arg(long, default_value_t = 5000)]
    pub head_timeout_ms: u64,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub rate_limits: RateLimitArgs,
    /// How log lines are written: `text` for a terminal, or `json`, one object per line with
    /// `timestamp`, `level`, `service`, `trace_id` (the command's correlation id), `customer_id` and
    /// `message`, for CloudWatch Logs Insights. Which lines: `RUST_LOG` (default `info`).
    #[arg(long, env = "CLOUDCAFE_LOG_FORMAT", default_value_t = gateways::logging::LogFormat::Text)]
    pub log_format: gateways::logging::LogFormat,
    #[command(flatten)]
    pub messaging: MessagingArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Where the node's metrics go besides `/metrics`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CloudWatchExport {
    /// Only `/metrics` and the node's dashboard page.
    Off,
    /// Embedded Metric Format lines (stdout or --cloudwatch-emf-file) for the CloudWatch agent or
    /// the ECS awslogs driver.
    Emf,
    /// `PutMetricData` calls (needs a build with `--features cloud`).
    Api,
}

/// How the node's metrics are sampled and exported to CloudWatch.
#[derive(Args, Clone)]
pub struct MetricsArgs {
    /// Export the metrics to CloudWatch, and how.
    #[arg(long, value_enum, env = "CLOUDCAFE_CLOUDWATCH", default_value_t = CloudWatchExport::Off)]
    pub cloudwatch: CloudWatchExport,
    /// The deployment's name: the `Environment` dimension of every exported metric.
    #[arg(long, env = "CLOUDCAFE_ENVIRONMENT", default_value = "local")]
    pub environment: String,
    /// Seconds of metrics per CloudWatch data point (per EMF line set or PutMetricData batch).
    #[arg(long, default_value_t = 60)]
    pub cloudwatch_interval_secs: u64,
    /// Write the EMF lines to this file (appending) instead of stdout.
    #[arg(long, env = "CLOUDCAFE_CLOUDWATCH_EMF_FILE")]
    pub cloudwatch_emf_file: Option<std::path::PathBuf>,
    /// A CloudWatch endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_CLOUDWATCH_ENDPOINT")]
    pub cloudwatch_endpoint: Option<String>,
    /// Milliseconds between samples of the metrics: the resolution of the dashboard page
    /// (`/admin/dashboard`, which keeps the newest 720 samples, an hour at 5 s); the exports add
    /// samples up to --cloudwatch-interval-secs.
    #[arg(long, default_value_t = 5000)]
    pub metrics_sample_ms: u64,
}

/// Where the DynamoDB and DocumentDB read models take their events from.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventSource {
    /// The journal's global order (every read model can).
    Journal,
    /// The Kinesis stream, through a consumer sharing shards with the other nodes by leases.
    Kinesis,
}

/// How events leave the process: the Kinesis outbox, the SQS payment queue and the Kinesis-fed read
/// models (each needs a build with `--features cloud`).
#[derive(Args, Clone)]
pub struct MessagingArgs {
    /// Publish every event to this Kinesis stream (created with --kinesis-shards shards if absent).
    #[arg(long, env = "CLOUDCAFE_KINESIS_STREAM")]
    pub kinesis_stream: Option<String>,
    #[arg(long, default_value_t = 4)]
    pub kinesis_shards: i32,
    /// A Kinesis endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_KINESIS_ENDPOINT")]
    pub kinesis_endpoint: Option<String>,
    /// Publish the events analytics needs (orders placed, paid, cancelled; payments) to this Kinesis
    /// stream, keyed by store (created with --analytics-shards shards if absent).
    #[arg(long, env = "CLOUDCAFE_ANALYTICS_STREAM")]
    pub analytics_stream: Option<String>,
    #[arg(long, default_value_t = 2)]
    pub analytics_shards: i32,
    /// Where the analytics model takes its events from: the journal, or the --analytics-stream
    /// through a consumer sharing its shards with the other nodes by leases (lease table
    /// `{lease-table-prefix}-analytics`), each shard's checkpoint kept in the analytics database.
    #[arg(long, value_enum, env = "CLOUDCAFE_ANALYTICS_FROM", default_value_t = EventSource::Journal)]
    pub analytics_from: EventSource,
    /// Publish a payment request per order to this SQS FIFO queue and run the payment processor on
    /// it (the saga then leaves authorization to the processor).
    #[arg(long, env = "CLOUDCAFE_PAYMENT_QUEUE")]
    pub payment_queue: Option<String>,
    /// The payment queue's dead-letter queue (a message moves there after 3 receives).
    #[arg(long, env = "CLOUDCAFE_PAYMENT_DLQ", default_value = "payment-requests-dlq.fifo")]
    pub payment_dlq: String,
    /// An SQS endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_SQS_ENDPOINT")]
    pub sqs_endpoint: Option<String>,
    /// The DynamoDB table of processed payments.
    #[arg(long, env = "CLOUDCAFE_PAYMENTS_TABLE", default_value = "payments")]
    pub payments_table: String,
    /// Seconds a receive of payment requests waits for messages (long polling, at most 20).
    #[arg(long, default_value_t = 20)]
    pub payment_wait_secs: u64,
    /// Seconds a received payment request stays invisible to other processors (extended while it is
    /// handled).
    #[arg(long, default_value_t = 30)]
    pub payment_visibility_secs: u64,
    /// Tell customers about their orders: publish a notification per order confirmed, payment
    /// declined, order ready and refund to this SQS standard queue, and deliver them by SES or SNS.
    #[arg(long, env = "CLOUDCAFE_NOTIFICATION_QUEUE")]
    pub notification_queue: Option<String>,
    /// The notification queue's dead-letter queue (a message moves there after 3 receives).
    #[arg(long, env = "CLOUDCAFE_NOTIFICATION_DLQ", default_value = "notification-queue-dlq")]
    pub notification_dlq: String,
    /// The DynamoDB table of delivered notifications (one item per event).
    #[arg(long, env = "CLOUDCAFE_NOTIFICATIONS_TABLE", default_value = "notifications")]
    pub notifications_table: String,
    /// The verified SES identity notification emails come from.
    #[arg(long, env = "CLOUDCAFE_NOTIFICATION_SENDER", default_value = "orders@cloudcafe.example")]
    pub notification_sender: String,
    /// Customers who chose no channel are emailed at `<customer id>@<this domain>`.
    #[arg(long, env = "CLOUDCAFE_NOTIFICATION_EMAIL_DOMAIN", default_value = "customers.cloudcafe.example")]
    pub notification_email_domain: String,
    /// Seconds a received notification stays invisible to other workers (extended while it is
    /// handled); a claim older than this was left by a worker that stopped.
    #[arg(long, default_value_t = 30)]
    pub notification_visibility_secs: u64,
    /// An SES endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_SES_ENDPOINT")]
    pub ses_endpoint: Option<String>,
    /// An SNS endpoint to use instead of AWS (an emulator; static test credentials).
    #[arg(long, env = "CLOUDCAFE_SNS_ENDPOINT")]
    pub sns_endpoint: Option<String>,
    /// Where the DynamoDB and DocumentDB read models take their events from.
    #[arg(long, value_enum, env = "CLOUDCAFE_PROJECTIONS_FROM", default_value_t = EventSource::Journal)]
    pub projections_from: EventSource,
    /// Prefix of the lease tables of the Kinesis consumers (one table per read model).
    #[arg(long, env = "CLOUDCAFE_LEASE_TABLE_PREFIX", default_value = "cloudcafe-leases")]
    pub lease_table_prefix: String,
    /// A lease not renewed for this long is taken over by another node.
    #[arg(long, default_value_t = 10_000)]
    pub lease_timeout_ms: u64,
    /// This node's name in the lease tables (default: host name, process id and a random suffix).
    #[arg(long)]
    pub worker_id: Option<String>,
}

impl MessagingArgs {
    /// Whether any messaging is asked for.
    pub fn any(&self) -> bool {
        self.kinesis_stream.is_some()
            || self.analytics_stream.is_some()
            || self.analytics_from == EventSource::Kinesis
            || self.payment_queue.is_some()
            || self.notification_queue.is_some()
            || self.projections_from == EventSource::Kinesis
    }
}

/// Serves the API until the server stops.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Before anything starts: what the followers record while the node starts must not be lost.
    telemetry::metrics_handle();
    let mut settings = args.storage.settings();
    let models = CloudModels::open(&args.storage).await?;
    if args.messaging.projections_from == EventSource::Journal {
        settings.extra_projections = models.rebuildable().into_iter().map(|(_, p)| p).collect();
    }
    if args.messaging.analytics_from == EventSource::Kinesis {
        if args.messaging.analytics_stream.is_none() || settings.analytics.is_none() {
            anyhow::bail!(
                "--analytics-from kinesis needs --analytics-stream and an analytics model (--analytics-url, or a PostgreSQL journal)"
            );
        }
        settings.analytics_from_stream = true;
    }
    if args.messaging.payment_queue.is_some() {
        settings.payment.authorizer = actors::cafe::Authorizer::PaymentProcessor;
    }
    // Before the node starts: bad auth settings are refused before anything is opened.
    let auth = args.auth.verifier(&args.storage.data_dir, args.listen)?;
    let rate_limiter = args.rate_limits.limiter(settings.cache.as_ref())?;
    if let Some(verifier) = &auth {
        verifier.prefetch().await;
    }
    let node = Node::start(settings).await.context("cannot start the node")?;
    let stream_fed = cloud::start_messaging(&args.messaging, &args.storage, &node, &models).await?;
    // One ticker samples the node's metrics for everything that reads the samples (each sample drains
    // the one before): the dashboard page's history and the CloudWatch export.
    let sample_every = Duration::from_millis(args.metrics.metrics_sample_ms.max(50));
    let samples = sample::spawn_ticker(telemetry::sampler(), sample_every);
    let history = Arc::new(History::default());
    history.follow(&samples);
    let api = ApiSettings {
        body_limit: args.body_limit,
        max_in_flight: args.max_in_flight,
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        head_timeout: Duration::from_millis(args.head_timeout_ms),
        auth,
        rate_limiter,
        trust_forwarded_for: args.rate_limits.trust_forwarded_for,
        history,
    };
    let (stop_export, export_stopped) = watch::channel(false);
    let export = start_export(&args.metrics, &samples, export_stopped).await?;
    let (server, addr) = start_server(&node, args.listen, args.workers, &api, stream_fed).await?;
    tracing::info!(%addr, storage = ?args.storage.settings().storage, "serving the CloudCafe API");
    match (args.auth.auth, &args.auth.jwks_url) {
        (super::auth::AuthMode::Off, _) => tracing::warn!("--auth off: every route is open"),
        (_, Some(url)) => tracing::info!(%url, "bearer tokens are verified with the identity provider's JWKS"),
        (_, None) if super::auth::KeyArgs::is_in_env() => tracing::info!(
            "bearer tokens are verified with the key in {}: `cloudcafe token issue --auth-key-file FILE` with that key issues them",
            super::auth::AUTH_KEY_ENV
        ),
        (_, None) => tracing::info!(
            key = %args.auth.key.path(&args.storage.data_dir).display(),
            "bearer tokens: TOKEN=$(cloudcafe token issue --role customer --sub alice --data-dir {}), then \
             curl -H \"Authorization: Bearer $TOKEN\" …",
            args.storage.data_dir.display()
        ),
    }
    let served = server.await.context("server failed");
    let _ = stop_export.send(true);
    if let Some(export) = export {
        let _ = export.await;
    }
    served
}

/// Starts the CloudWatch export `metrics` asks for, on the ticker's samples.
async fn start_export(
    metrics: &MetricsArgs,
    samples: &broadcast::Sender<Arc<sample::Sample>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let interval = Duration::from_secs(metrics.cloudwatch_interval_secs.max(1));
    let environment = metrics.environment.clone();
    match metrics.cloudwatch {
        CloudWatchExport::Off => Ok(None),
        CloudWatchExport::Emf => {
            let out: Box<dyn std::io::Write + Send> = match &metrics.cloudwatch_emf_file {
                Some(path) => Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| format!("cannot open the EMF file {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            let writer = emf::EmfWriter::new(out);
            Ok(Some(tokio::spawn(emf::run(writer, environment, interval, samples.subscribe(), stop))))
        }
        CloudWatchExport::Api => {
            cloud::start_put_metric_data(metrics, environment, interval, samples.subscribe(), stop).await
        }
    }
}

/// How long in-flight requests get after SIGTERM (or SIGINT) before the server closes their
/// connections; the deployment's load balancer drains a node for longer, and ECS waits longer still
/// before SIGKILL (deploy/terraform/locals.tf, checked by a test).
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// How long a connection answered before its body was read is drained before it is closed.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds the HTTP server of `node` to `listen` (port 0: a free one) and returns it, not yet polled,
/// with the address it listens on.
pub async fn start_server(
    node: &Node,
    listen: SocketAddr,
    workers: Option<usize>,
    api: &ApiSettings,
    stream_fed: StreamFed,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let mut state = ApiState::new(node, telemetry::metrics_handle(), api);
    Arc::get_mut(&mut state).expect("just built").stream_fed = stream_fed;
    let mut server = HttpServer::new(move || gateways::app(state.clone()))
        // A request head must arrive within this (408, JSON body, from the patched actix-http);
        // its body within `api.body_timeout` (408 from the body reader).
        .client_request_timeout(api.head_timeout)
        // After an answer to a request whose body was not read, what the client still sends is
        // read and dropped for at most this long, then the connection is closed.
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
    if let Some(w) = workers {
        server = server.workers(w.max(1));
    }
    let addr = server.addrs().first().copied().context("no listening address")?;
    Ok((server.run(), addr))
}
