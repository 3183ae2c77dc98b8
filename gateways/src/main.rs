//! `cloudcafe`: serve the API, run the demo, replay read models, run the benchmarks, or handle the
//! payment dead-letter queue. This file parses the command line and dispatches to the subcommand's
//! module under `cli/`, which holds its arguments and its body.
//!
//! Architecture Invariant: the binary is the only place that reads flags or the environment; it
//! turns them into typed settings once and hands built clients to the libraries.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::{
    bench, chaos, cluster, dashboard, demo, dlq, flood, loyalty, projections, replay, serve, storage, token, verify,
};

/// The command line of `cloudcafe`.
#[derive(Parser)]
#[command(name = "cloudcafe", version, about = "An event-sourced actor system for a coffee chain")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands, each with its own arguments.
#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (embedded storage under ./data unless --journal names PostgreSQL).
    Serve(Box<serve::ServeArgs>),
    /// Start a node on a free port, place a few orders over HTTP, and show how they ended.
    Demo(storage::StorageArgs),
    /// Rebuild read models from the journal into a shadow, verify every hash chain, compare with the
    /// live model and swap it in. Exit codes: 0 done, 2 broken hash chain, 3 models differ.
    Replay(replay::ReplayArgs),
    /// Measure throughput and latency; optionally write the figures into BENCHMARKS.md.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Inspect or replay the payment requests that failed three times (the dead-letter queue).
    /// Needs a build with `--features cloud`.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Handle a stalled projection: park the event it cannot apply (audited, in the journal; replay
    /// skips it too), or list what was parked.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
    /// Run a stress scenario (`cloudcafe flood list` names them) into the actors of a node started
    /// here, or into running nodes over HTTP with --target; measure it in an open model, write a
    /// report, and verify that nothing acknowledged was lost. Exit codes: 0 passed, 5 a threshold
    /// or an invariant failed.
    Flood(Box<flood::FloodArgs>),
    /// Check the invariants from the journal (acknowledged commands exactly once, orders ended,
    /// stock, loyalty points and tiers, one capture per paid order) and every read model against a
    /// rebuild. Prints each check PASS or FAIL. Exit codes: 0 all hold, 4 an invariant failed, 1 the
    /// check could not run.
    Verify(verify::VerifyArgs),
    /// The loyalty batch: recalculate every customer's tier (hourly), or import synthetic accounts
    /// from the previous system to try it on.
    #[command(subcommand)]
    Loyalty(loyalty::LoyaltyCommand),
    /// Render the CloudWatch dashboards and alarms generated from the metric catalog, or apply them.
    #[command(subcommand)]
    Dashboard(dashboard::DashboardCommand),
    /// A local cluster as on AWS: N nodes on one PostgreSQL journal with a Redis cache, behind
    /// HAProxy configured as the ALB, with the fault proxy between the nodes and their stores.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Chaos experiments (Chaos Toolkit JSON in chaos/experiments/) against the local cluster: list,
    /// run with a report, and the faults, probes and load they are made of. Exit codes: 0 every
    /// experiment held, 6 one did not.
    #[command(subcommand)]
    Chaos(chaos::ChaosCommand),
    /// Bearer tokens from the node's local signing key: `cloudcafe token issue --role customer --sub alice`.
    #[command(subcommand)]
    Token(token::TokenCommand),
}

/// mimalloc rather than the C library's malloc: replay and the projections allocate and free
/// millions of small values (rows, strings, decoded events) between large page buffers, and glibc's
/// malloc spent more than half of replay's client CPU on that (`malloc_consolidate`, `_int_malloc`;
/// see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only `serve` may write JSON logs, on stdout (it is what runs under ECS); every other subcommand
    // talks to a person or a program (a chaos probe's JSON verdict), so its log goes to stderr.
    let (log_format, sink) = match &cli.command {
        Command::Serve(args) => (args.log_format, gateways::logging::LogSink::Stdout),
        _ => (gateways::logging::LogFormat::Text, gateways::logging::LogSink::Stderr),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    gateways::logging::init(log_format, filter, sink);
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Replay(args) => replay::run(args).await,
            Command::Bench(command) => bench::run(command).await.map(|()| ExitCode::SUCCESS),
            Command::Dlq(command) => dlq::run(command).await.map(|()| ExitCode::SUCCESS),
            Command::Projections(command) => projections::run(command).await.map(|()| ExitCode::SUCCESS),
            Command::Flood(args) => flood::run(*args).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Loyalty(command) => loyalty::run(command).await.map(|()| ExitCode::SUCCESS),
            Command::Dashboard(command) => dashboard::run(command).await.map(|()| ExitCode::SUCCESS),
            Command::Cluster(command) => cluster::run(command).await.map(|()| ExitCode::SUCCESS),
            Command::Chaos(command) => chaos::run(command).await,
            Command::Token(command) => token::run(command).map(|()| ExitCode::SUCCESS),
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
