//! `cloudcafe dashboard`: the CloudWatch dashboards and alarms generated from the metric catalog.
//! `render` writes them as JSON (what `deploy/cloudwatch/` holds for the default environment, and
//! Terraform reads); `apply` puts them into CloudWatch (needs a build with `--features cloud`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use gateways::cloudwatch::dashboard::{Deployment, DEFAULT_REGION};
use gateways::cloudwatch::render;

use super::cloud;

/// The subcommands of `cloudcafe dashboard`.
#[derive(Subcommand)]
pub enum DashboardCommand {
    /// Write the dashboard bodies (`dashboards/<name>.json`), `alarms.json` (PutMetricAlarm inputs)
    /// and `composite-alarms.json` (PutCompositeAlarm inputs) of a deployment.
    Render {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// The directory to write into; dashboard files no dashboard has any more are removed.
        #[arg(long, default_value = "deploy/cloudwatch")]
        out: PathBuf,
    },
    /// Put the dashboards and alarms of a deployment into CloudWatch (PutDashboard, PutMetricAlarm,
    /// PutCompositeAlarm). Needs a build with `--features cloud`.
    Apply {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// A CloudWatch endpoint to use instead of AWS (an emulator; static test credentials).
        #[arg(long, env = "CLOUDCAFE_CLOUDWATCH_ENDPOINT")]
        endpoint: Option<String>,
    },
}

/// Which deployment, and what of its resources differs from the project's naming.
#[derive(Args, Clone)]
pub struct DeploymentArgs {
    /// The environment: the `Environment` dimension of the custom metrics and a part of every name.
    #[arg(long, default_value = "prod")]
    pub env: String,
    /// The AWS region of the dashboards' metrics (and of the CloudWatch that `apply` calls).
    #[arg(long, default_value = DEFAULT_REGION)]
    pub region: String,
    /// The SNS topic the alarms notify (default: `cloudcafe-alarms-<env>` of a placeholder account).
    #[arg(long)]
    pub alarm_topic_arn: Option<String>,
    /// The load balancer's dimension value, `app/<name>/<id>` (default: a placeholder id).
    #[arg(long)]
    pub load_balancer: Option<String>,
    /// The Aurora cluster's `max_connections`: the connections alarm fires at 80 % of it.
    #[arg(long)]
    pub db_max_connections: Option<u32>,
}

impl DeploymentArgs {
    /// The deployment these arguments name.
    pub fn deployment(&self) -> Deployment {
        let mut d = Deployment::for_environment(&self.env);
        if d.region != self.region {
            d.alarm_topic_arn =
                d.alarm_topic_arn.replacen(&format!(":{}:", d.region), &format!(":{}:", self.region), 1);
            d.region = self.region.clone();
        }
        if let Some(arn) = &self.alarm_topic_arn {
            d.alarm_topic_arn = arn.clone();
        }
        if let Some(lb) = &self.load_balancer {
            d.load_balancer = lb.clone();
        }
        if let Some(max) = self.db_max_connections {
            d.aurora_max_connections = max;
        }
        d
    }
}

/// Renders or applies.
pub async fn run(command: DashboardCommand) -> anyhow::Result<()> {
    match command {
        DashboardCommand::Render { deployment, out } => {
            let d = deployment.deployment();
            let written =
                render::write_all(&d, &out).with_context(|| format!("cannot render into {}", out.display()))?;
            println!("wrote {} file(s) for {} under {}", written.len(), d.environment, out.display());
        }
        DashboardCommand::Apply { deployment, endpoint } => {
            println!("{}", cloud::apply_dashboards(&deployment.deployment(), &endpoint).await?);
        }
    }
    Ok(())
}
