//! `cloudcafe flood <scenario>`: a stress scenario, into the actors of a node started here (the
//! default) or into running nodes over HTTP (`--target`), with a report and thresholds; and
//! `cloudcafe flood list`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use gateways::flood::arrivals::{parse_duration, parse_stages, Arrivals};
use gateways::flood::measure::Recorder;
use gateways::flood::report::{terminal_summary, write_report};
use gateways::flood::run::{run as run_flood, FloodSettings, Verification};
use gateways::flood::scenarios::{self, Context, Scenario};
use gateways::flood::target::{operation_timeout, ActorTarget, HttpTarget, Target};
use gateways::flood::thresholds::Threshold;
use gateways::flood::Load;
use gateways::node::{Node, NodeSettings, Storage};
use gateways::verify::AckLedger;

use super::cloud::CloudModels;
use super::storage::StorageArgs;

/// The flags of `cloudcafe flood`.
#[derive(Args)]
pub struct FloodArgs {
    /// The scenario (`cloudcafe flood list` names them), or `list`.
    pub scenario: String,
    /// A constant arrival rate, per second (default: the scenario's, times --scale).
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long arrivals last at --rate (e.g. 30s, 2m; default: the scenario's).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Staged arrivals, each stage ramping to its rate: "10s:2000,30s:20000,10s:0" (from 0).
    #[arg(long, value_parser = parse_stages, conflicts_with_all = ["rate", "duration"])]
    pub stages: Option<Vec<gateways::flood::arrivals::Stage>>,
    /// A closed model instead: N clients, each sending when its previous request answered.
    #[arg(long, conflicts_with = "stages")]
    pub concurrency: Option<usize>,
    /// Multiplies the scenario's size and its default rate.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Drive running nodes over HTTP instead (http://host:port, comma-separated, or one load balancer).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// A bearer token sent on every request (with --target): an admin's acts for every customer and
    /// store the scenario drives (`cloudcafe token issue --role admin --sub flood`).
    #[arg(long, env = "CLOUDCAFE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Write report.json, report.html and the ack ledger (acks.jsonl) here.
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// A pass condition, as k6's: 'p99<20ms', 'errors<0.1%', 'rate>=0.95', 'p99{place_order}<50ms'.
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Requests in flight at most: the open model's memory bound (later arrivals wait, and are still
    /// measured from their intended time).
    #[arg(long, default_value_t = 50_000)]
    pub max_in_flight: usize,
    /// HTTP connections open at once (with --target).
    #[arg(long, default_value_t = 512)]
    pub connections: usize,
    /// How long the end of the flood waits for the system to settle (saga, projections, caches).
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub settle: Duration,
    /// Skip the verify step (the report says it was skipped).
    #[arg(long)]
    pub no_verify: bool,
    /// The seed of the scenario's random choices (its orders' ids among them). Default: a fresh
    /// one each run, printed and kept in the report, so that a second flood on the same journal
    /// places new orders; repeat a run's seed on a fresh journal to repeat the run (on the same
    /// journal its orders are already there, and the nodes answer them from their idempotency keys).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Where the node started here keeps its journal (the actor driver: a fresh directory under
    /// --data-dir, or a fresh schema with --journal), or the journal of the --target nodes, for verify.
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Exit code: a threshold was breached or an invariant failed.
const FAILED: u8 = 5;

pub async fn run(args: FloodArgs) -> anyhow::Result<ExitCode> {
    if args.scenario == "list" {
        for scenario in scenarios::all() {
            println!("{}\n  {}\n", scenario.name(), textwrap(scenario.story(), 96, "  "));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(scenario) = scenarios::by_name(&args.scenario) else {
        let names: Vec<_> = scenarios::all().iter().map(|s| s.name()).collect();
        bail!("no scenario `{}`; there are: {}", args.scenario, names.join(", "));
    };
    let thresholds = args
        .thresholds
        .iter()
        .map(|t| t.parse::<Threshold>().map_err(|e| anyhow::anyhow!("--threshold '{t}': {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let load = load_of(&args, scenario.as_ref());
    let acks = Arc::new(match &args.report_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            AckLedger::create(&dir.join("acks.jsonl")).context("cannot create the ack ledger")?
        }
        None => AckLedger::in_memory(),
    });
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{}: seed {seed}", args.scenario);
    let mut storage = args.storage.clone();
    storage.no_seed = true;
    let settings = FloodSettings {
        load,
        timeout: operation_timeout(storage.settings().host.command_timeout),
        max_in_flight: args.max_in_flight,
        seed,
        thresholds,
        progress: !args.quiet,
        verify: !args.no_verify,
        flags: serde_json::json!({
            "scenario": args.scenario, "rate": args.rate, "duration_s": args.duration.map(|d| d.as_secs_f64()),
            "stages": args.stages, "concurrency": args.concurrency, "scale": args.scale, "target": args.target,
            "seed": seed, "thresholds": args.thresholds,
        }),
    };

    let report = if args.target.is_empty() {
        flood_actors(&args, scenario.as_ref(), storage, &settings, acks).await?
    } else {
        flood_http(&args, scenario.as_ref(), storage, &settings, acks).await?
    };
    println!("{}", terminal_summary(&report));
    if let Some(dir) = &args.report_dir {
        write_report(dir, &report).with_context(|| format!("cannot write the report into {}", dir.display()))?;
        println!("report: {}", dir.join("report.html").display());
    }
    Ok(if report.passed { ExitCode::SUCCESS } else { ExitCode::from(FAILED) })
}

/// The load the flags ask for, or the scenario's default at --scale.
fn load_of(args: &FloodArgs, scenario: &dyn Scenario) -> Load {
    let default = scenario.default_load(args.scale);
    if let Some(concurrency) = args.concurrency {
        return Load::Closed { concurrency, duration: args.duration.unwrap_or(default.duration()) };
    }
    if let Some(stages) = &args.stages {
        return Load::Open(Arrivals::new(0.0, stages.clone()));
    }
    match (args.rate, args.duration) {
        (None, None) => default,
        (rate, duration) => Load::Open(Arrivals::constant(
            rate.unwrap_or(scenario.default_rate(args.scale)),
            duration.unwrap_or(default.duration()),
        )),
    }
}

/// The actor driver: a node of its own, on a fresh journal, started here.
async fn flood_actors(
    args: &FloodArgs,
    scenario: &dyn Scenario,
    mut storage: StorageArgs,
    settings: &FloodSettings,
    acks: Arc<AckLedger>,
) -> anyhow::Result<gateways::flood::report::FloodReport> {
    let run_name = format!("{}-{}", scenario.name(), chrono::Utc::now().format("%Y%m%dT%H%M%S"));
    match &storage.journal {
        Some(_) if storage.pg_schema.is_none() => storage.pg_schema = Some(run_name.replace('-', "_")),
        Some(_) => {}
        None => storage.data_dir = storage.data_dir.join("floods").join(&run_name),
    }
    if storage.journal.is_none() {
        std::fs::create_dir_all(&storage.data_dir)?;
    }
    let journal_name = match &storage.journal {
        Some(_) => format!("postgresql, schema {}", storage.pg_schema.as_deref().unwrap_or_default()),
        None => format!("embedded, {}", storage.data_dir.display()),
    };
    let metrics = gateways::telemetry::metrics_handle();
    let models = CloudModels::open(&storage).await?;
    let node_settings = || {
        let mut s: NodeSettings = storage.settings();
        s.extra_projections = models.rebuildable().into_iter().map(|(_, p)| p).collect();
        s
    };
    let node = Arc::new(Node::start(node_settings()).await.context("cannot start the node")?);
    let context_of = |node: &Arc<Node>| Context {
        target: Arc::new(ActorTarget::of_node(node, journal_name.clone(), Some(metrics.clone()))) as Arc<dyn Target>,
        scale: args.scale,
        seed: settings.seed,
        journal: Some(node.journal.clone()),
        batch: Some((node.cafe.clone(), node.storefront.clone())),
        analytics: node.analytics.clone(),
        settle: args.settle,
    };
    let context = context_of(&node);
    eprintln!("{}: preparing on {journal_name}", scenario.name());
    let plan = scenario.prepare(&context).await?;
    eprintln!("{}: flooding for {:.0} s", scenario.name(), settings.load.duration().as_secs_f64());
    let verification = Verification { journal: node.journal.clone(), read_models: node.read_models.clone() };
    Ok(run_flood(scenario, plan, &context, settings, Some(&verification), acks, Recorder::new()).await?)
}

/// The HTTP driver: running nodes; verify reads the journal the flags name.
async fn flood_http(
    args: &FloodArgs,
    scenario: &dyn Scenario,
    storage: StorageArgs,
    settings: &FloodSettings,
    acks: Arc<AckLedger>,
) -> anyhow::Result<gateways::flood::report::FloodReport> {
    let target: Arc<dyn Target> =
        Arc::new(HttpTarget::connect(&args.target, args.connections, args.token.clone()).await?);
    let node_settings = storage.settings();
    // The nodes' journal and read models, read by this process for the checks. A batch that runs in
    // this process (the loyalty batch) writes through a cafe of its own: the journal's version
    // checks keep its writes and the served nodes' correct together, which SQLite gives only to the
    // one process that owns the file, so that needs PostgreSQL.
    let reachable = match &node_settings.storage {
        Storage::Embedded { data_dir } => data_dir.join("journal.db").exists(),
        Storage::Postgres { .. } => true,
    };
    let opened = if reachable && (!args.no_verify || scenario.name() == "loyalty-batch") {
        match gateways::node::open_stores(&node_settings.storage).await {
            Ok(stores) => Some(stores),
            // An embedded node holds its data directory's lock while it runs.
            Err(e) => {
                eprintln!("cannot read the nodes' journal ({}); the flood runs without verify", events::ErrorChain(&e));
                None
            }
        }
    } else {
        None
    };
    let (journal, read_models, analytics) = if let Some((journal, storefront)) = opened {
        let mut models: Vec<Arc<dyn projections::Rebuildable>> = vec![storefront.clone()];
        let analytics = match &node_settings.analytics {
            Some(options) => {
                let pool = events::postgres::connect_pool(options).await?;
                let sink = Arc::new(projections::read_models::analytics::AnalyticsSink::new(pool).await?);
                models.push(sink.clone());
                Some(sink)
            }
            None => None,
        };
        models.extend(CloudModels::open(&storage).await?.rebuildable().into_iter().map(|(_, p)| p));
        (Some((journal, storefront)), models, analytics)
    } else {
        (None, Vec::new(), None)
    };
    let batch = match (&journal, &node_settings.storage) {
        (Some((journal, storefront)), Storage::Postgres { .. }) => {
            let cafe = actors::cafe::Cafe::new(
                journal.clone(),
                node_settings.host.clone(),
                node_settings.payment,
                actors::host::start_arbiters(1),
            );
            Some((
                Arc::new(cafe),
                storefront.clone() as Arc<dyn projections::read_models::storefront::StorefrontQueries>,
            ))
        }
        _ => None,
    };
    let context = Context {
        target,
        scale: args.scale,
        seed: settings.seed,
        journal: journal.as_ref().map(|(j, _)| j.clone()),
        batch,
        analytics,
        settle: args.settle,
    };
    eprintln!("{}: preparing on {}", scenario.name(), args.target.join(", "));
    let plan = scenario.prepare(&context).await?;
    eprintln!("{}: flooding for {:.0} s", scenario.name(), settings.load.duration().as_secs_f64());
    let verification = journal.map(|(journal, _)| Verification { journal, read_models });
    Ok(run_flood(scenario, plan, &context, settings, verification.as_ref(), acks, Recorder::new()).await?)
}

/// `text` wrapped at `width`, continuation lines indented.
fn textwrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + word.len() + 1 > width {
            out.push('\n');
            out.push_str(indent);
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}
