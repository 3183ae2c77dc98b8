//! `cloudcafe chaos`: the chaos experiments and the actions and probes they are made of.
//!
//! The experiments are Chaos Toolkit JSON files (`chaos/experiments/`), run by Chaos Toolkit's own
//! `chaos run`; their actions and probes call the subcommands here (`inject`, `revert`, `probe`,
//! `load`), so the format stays the standard one and the work stays in Rust. `run` wraps `chaos run`
//! like the plans' `master-chaos.sh`: it tells the story, asks, runs, always rolls back, and writes
//! a report. `proxy` is the fault proxy process the local cluster puts between the nodes and their
//! stores; `render aws` writes each experiment's AWS plan.

mod faults;
pub(crate) mod probe;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chaos::cluster::Cluster;
use clap::{Args, Subcommand};

pub use faults::{Fault, Revert};
pub use probe::Probe;
pub use run::RunArgs;

/// The subcommands of `cloudcafe chaos`.
#[derive(Subcommand)]
pub enum ChaosCommand {
    /// The experiments, with their stories.
    List(ExperimentsArgs),
    /// Run one experiment (or --all) with Chaos Toolkit against the local cluster and write a report.
    Run(RunArgs),
    /// Inject a fault into the running cluster (an experiment's action).
    Inject {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(subcommand)]
        fault: Fault,
    },
    /// Undo a fault (an experiment's action or rollback); `revert all` undoes every kind.
    Revert {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(subcommand)]
        what: Revert,
    },
    /// Measure something of the running cluster; the exit code says whether it is as expected.
    Probe {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(subcommand)]
        probe: Probe,
    },
    /// The load an experiment runs under: a stress scenario through the cluster's load balancer.
    Load(probe::LoadArgs),
    /// Run the fault proxy: named TCP proxies (`name=LISTEN->UPSTREAM`, `/http` for HTTP services)
    /// controlled over HTTP at --control, until stopped.
    Proxy {
        #[arg(long)]
        control: std::net::SocketAddr,
        #[arg(long = "proxy", required = true)]
        proxies: Vec<chaos::proxy::ProxySpec>,
    },
    /// Write each experiment's AWS plan (an FIS template, or a Chaos Toolkit experiment with the
    /// chaostoolkit-aws actions where FIS has none).
    Render {
        #[command(subcommand)]
        target: RenderTarget,
    },
}

/// Where the plans go.
#[derive(Subcommand)]
pub enum RenderTarget {
    Aws {
        /// The environment whose resources and alarms the plans name.
        #[arg(long, default_value = "prod")]
        env: String,
        #[arg(long, default_value = "chaos/aws")]
        out: PathBuf,
    },
}

/// Where the experiments are.
#[derive(Args, Clone)]
pub struct ExperimentsArgs {
    #[arg(long, env = "CLOUDCAFE_EXPERIMENTS", default_value = "chaos/experiments")]
    pub experiments: PathBuf,
}

/// Which cluster.
#[derive(Args, Clone)]
pub struct ClusterArgs {
    #[arg(long = "cluster", env = "CLOUDCAFE_CLUSTER", default_value = ".cc-local/cluster")]
    pub dir: PathBuf,
}

impl ClusterArgs {
    pub fn load(&self) -> anyhow::Result<Cluster> {
        Cluster::load(&self.dir)
            .with_context(|| format!("no cluster in {} (deploy/local/cluster.sh up starts one)", self.dir.display()))
    }
}

/// Runs a `cloudcafe chaos` subcommand.
pub async fn run(command: ChaosCommand) -> anyhow::Result<ExitCode> {
    match command {
        ChaosCommand::List(args) => {
            for experiment in run::Experiment::all(&args.experiments)? {
                println!("{:<26} {}", experiment.name, experiment.title);
            }
            Ok(ExitCode::SUCCESS)
        }
        ChaosCommand::Run(args) => run::run(args).await,
        ChaosCommand::Inject { cluster, fault } => faults::inject(&cluster, fault).await.map(|()| ExitCode::SUCCESS),
        ChaosCommand::Revert { cluster, what } => faults::revert(&cluster, what).await.map(|()| ExitCode::SUCCESS),
        ChaosCommand::Probe { cluster, probe } => probe::probe(&cluster, probe).await,
        ChaosCommand::Load(args) => probe::load(args).await,
        ChaosCommand::Proxy { control, proxies } => {
            let proxies = chaos::proxy::Proxies::start(proxies).await.context("cannot start the fault proxy")?;
            let (addr, server) =
                chaos::proxy::control::serve(proxies, control).await.context("cannot serve the control API")?;
            tracing::info!(%addr, "fault proxy control API");
            tokio::select! {
                _ = server => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated() => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        ChaosCommand::Render { target: RenderTarget::Aws { env, out } } => {
            let deployment = chaos::aws::Deployment::for_environment(&env);
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            for (file, text) in chaos::aws::render(&deployment) {
                std::fs::write(out.join(&file), text).with_context(|| format!("cannot write {file}"))?;
                println!("{}", out.join(&file).display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
