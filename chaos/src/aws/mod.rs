//! The AWS plan of every local chaos experiment.
//!
//! Each experiment CloudCafe runs locally (`chaos/experiments/`) has a production counterpart: an
//! [AWS FIS] experiment template where FIS has an action for the fault, or a [Chaos Toolkit]
//! experiment using `chaostoolkit-aws` (and the AWS CLI or `redis-cli` where that has nothing
//! either). [`plans`] builds them for a [`Deployment`], [`render`] turns them into the files under
//! `chaos/aws/`, and [`check`] finds what would make AWS or Chaos Toolkit refuse one, or make it test
//! something else than it says: action ids outside FIS's documented list ([`FIS_ACTIONS`]), an action
//! pointing at an undeclared target, a duration that is not ISO-8601 or shorter than the action
//! allows, a stop condition or probe naming an alarm that the generated alarm set does not have, a
//! provider outside `chaosaws` ([`CHAOSAWS_FUNCTIONS`]) or the `process`/`http` providers.
//!
//! The plans are checked structurally, never run here.
//!
//! [AWS FIS]: https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html
//! [Chaos Toolkit]: https://chaostoolkit.org/reference/api/experiment/

mod fis;
mod plans;
mod toolkit;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use fis::{iso8601_seconds, FisAction, FisParameter, FIS_ACTIONS, FIS_TARGET_PARAMETERS};
pub use toolkit::{ChaosawsFunction, CHAOSAWS_FUNCTIONS};

/// The local experiments, by name, in the order the plans come in.
pub const EXPERIMENTS: [&str; 10] = [
    "ecs-task-kill",
    "aurora-failover",
    "elasticache-flush",
    "memorydb-restart",
    "dynamodb-throttle",
    "broker-outage",
    "network-latency",
    "alb-routing-failure",
    "security-group-lockdown",
    "node-drain",
];

/// The account id the generated files carry until an operator puts the real one in (the same one
/// `deploy/cloudwatch/` uses for the alarm topic).
pub const PLACEHOLDER_ACCOUNT: &str = "123456789012";

/// The region of the default deployment (as `deploy/cloudwatch/`).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where the plans aim: the names the deployment gives its AWS resources.
///
/// These are the names `gateways::cloudwatch::Deployment::for_environment` gives the same resources
/// (this crate may not depend on `gateways`); a test compares them with the dimensions of the
/// generated alarms in `deploy/cloudwatch/alarms.json`, so the two cannot drift apart unnoticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// `prod`, `staging`, …: part of every resource and alarm name.
    pub environment: String,
    pub region: String,
    pub account: String,
    /// The ECS cluster.
    pub cluster: String,
    /// The ECS service that runs the nodes.
    pub service: String,
    /// The Aurora PostgreSQL cluster holding the journal.
    pub aurora_cluster: String,
    /// The cluster (writer) endpoint of [`Self::aurora_cluster`]; its middle part is an id AWS
    /// assigns, a placeholder here.
    pub aurora_endpoint: String,
    /// The ElastiCache (Redis) replication group of the cache.
    pub cache_replication_group: String,
    /// The Availability Zone of the cache's primary node, which the AZ power interruption targets
    /// (a placeholder: look it up before a run).
    pub cache_primary_zone: String,
    /// The Kinesis stream the outbox publishes to.
    pub kinesis_stream: String,
    /// The SQS FIFO queue of payment requests, and its dead-letter queue.
    pub payment_queue: String,
    pub payment_dlq: String,
    /// The DynamoDB tables (the ones the DynamoDB throttles alarm watches).
    pub dynamodb_tables: Vec<String>,
    /// The application load balancer's name, and its CloudWatch dimension (`app/<name>/<id>`, the id
    /// a placeholder).
    pub load_balancer_name: String,
    pub load_balancer: String,
    /// The target group the nodes are registered in.
    pub target_group: String,
    /// The role FIS assumes to run the experiments.
    pub fis_role_arn: String,
    /// The CloudWatch Logs group FIS writes the experiments' logs to.
    pub fis_log_group: String,
}

impl Deployment {
    /// The deployment `env` as the project names its AWS resources (`cloudcafe-<what>-{env}`, the
    /// ECS cluster `cloudcafe-{env}`), in [`DEFAULT_REGION`] of [`PLACEHOLDER_ACCOUNT`].
    pub fn for_environment(env: &str) -> Deployment {
        let region = DEFAULT_REGION;
        let account = PLACEHOLDER_ACCOUNT;
        Deployment {
            environment: env.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            cluster: format!("cloudcafe-{env}"),
            service: format!("cloudcafe-node-{env}"),
            aurora_cluster: format!("cloudcafe-journal-{env}"),
            aurora_endpoint: format!("cloudcafe-journal-{env}.cluster-000000000000.{region}.rds.amazonaws.com"),
            cache_replication_group: format!("cloudcafe-cache-{env}"),
            cache_primary_zone: format!("{region}a"),
            kinesis_stream: format!("cloudcafe-order-events-{env}"),
            payment_queue: format!("cloudcafe-payment-requests-{env}.fifo"),
            payment_dlq: format!("cloudcafe-payment-requests-dlq-{env}.fifo"),
            dynamodb_tables: vec![
                format!("cloudcafe-active-orders-{env}-g1"),
                format!("cloudcafe-store-inventory-{env}-g1"),
                format!("cloudcafe-projection-offsets-{env}"),
                format!("cloudcafe-payments-{env}"),
            ],
            load_balancer_name: format!("cloudcafe-alb-{env}"),
            load_balancer: format!("app/cloudcafe-alb-{env}/0000000000000000"),
            target_group: format!("cloudcafe-node-{env}"),
            fis_role_arn: format!("arn:aws:iam::{account}:role/cloudcafe-fis-{env}"),
            fis_log_group: format!("/aws/fis/cloudcafe-{env}"),
        }
    }

    /// The CloudWatch name of one of the deployment's alarms.
    pub fn alarm_name(&self, alarm: Alarm) -> String {
        format!("CloudCafe-{}-{}", self.environment, alarm.suffix())
    }

    /// The ARN of one of the deployment's alarms (what FIS stop conditions name).
    pub fn alarm_arn(&self, alarm: Alarm) -> String {
        format!("arn:aws:cloudwatch:{}:{}:alarm:{}", self.region, self.account, self.alarm_name(alarm))
    }
}

/// The alarms `deploy/cloudwatch/` generates (`gateways::cloudwatch::alarms`), by the last part of
/// their names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alarm {
    AlbTarget5xxRate,
    DatabaseConnections,
    DynamoDbThrottles,
    ErrorRate,
    RunningTasks,
    CacheHitRate,
    ProjectionLag,
    PaymentDlqNotEmpty,
    OutboxLagGrowing,
    /// The composite alarm: any of the others.
    Degraded,
}

impl Alarm {
    pub const ALL: [Alarm; 10] = [
        Alarm::AlbTarget5xxRate,
        Alarm::DatabaseConnections,
        Alarm::DynamoDbThrottles,
        Alarm::ErrorRate,
        Alarm::RunningTasks,
        Alarm::CacheHitRate,
        Alarm::ProjectionLag,
        Alarm::PaymentDlqNotEmpty,
        Alarm::OutboxLagGrowing,
        Alarm::Degraded,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Alarm::AlbTarget5xxRate => "AlbTarget5xxRate",
            Alarm::DatabaseConnections => "DatabaseConnections",
            Alarm::DynamoDbThrottles => "DynamoDbThrottles",
            Alarm::ErrorRate => "ErrorRate",
            Alarm::RunningTasks => "RunningTasks",
            Alarm::CacheHitRate => "CacheHitRate",
            Alarm::ProjectionLag => "ProjectionLag",
            Alarm::PaymentDlqNotEmpty => "PaymentDlqNotEmpty",
            Alarm::OutboxLagGrowing => "OutboxLagGrowing",
            Alarm::Degraded => "Degraded",
        }
    }
}

/// Which tool runs a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanKind {
    /// An AWS FIS experiment template (`CreateExperimentTemplate`'s request).
    Fis,
    /// A Chaos Toolkit experiment, using `chaostoolkit-aws` where it has what the fault needs.
    ChaosToolkit,
}

/// The AWS plan of one local experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The local experiment's name (one of [`EXPERIMENTS`]).
    pub experiment: &'static str,
    pub kind: PlanKind,
    /// The template or experiment, as the tool reads it.
    pub body: Value,
}

/// The plans of all [`EXPERIMENTS`] for `deployment`, in that order.
pub fn plans(deployment: &Deployment) -> Vec<Plan> {
    plans::all(deployment)
}

/// The plan's file name under `chaos/aws/`: `<name>.fis.json` or `<name>.chaostoolkit.json`.
pub fn file_name(plan: &Plan) -> String {
    match plan.kind {
        PlanKind::Fis => format!("{}.fis.json", plan.experiment),
        PlanKind::ChaosToolkit => format!("{}.chaostoolkit.json", plan.experiment),
    }
}

/// Every plan of `deployment` as (file name, contents): pretty JSON with its object keys sorted and
/// a trailing newline, the same bytes for the same deployment.
pub fn render(deployment: &Deployment) -> Vec<(String, String)> {
    plans(deployment)
        .iter()
        .map(|plan| {
            let mut text = String::new();
            write_sorted(&mut text, &plan.body, 0);
            text.push('\n');
            (file_name(plan), text)
        })
        .collect()
}

/// What is structurally wrong with `plan` (empty when nothing is): for FIS, the template's required
/// keys, action ids and parameters against [`FIS_ACTIONS`], targets, durations and stop conditions;
/// for Chaos Toolkit, the experiment's required keys and its providers. `alarm_names` are the alarms
/// that exist: every alarm a plan names must be one of them.
pub fn check(plan: &Plan, alarm_names: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    match plan.body.get("description").and_then(Value::as_str) {
        Some(text) if text.to_lowercase().contains("local") => {}
        Some(_) => problems.push("the description does not say how the plan maps to the local experiment".to_owned()),
        None => {} // reported by the kind's own check
    }
    match plan.kind {
        PlanKind::Fis => fis::check(&plan.body, alarm_names, &mut problems),
        PlanKind::ChaosToolkit => toolkit::check(&plan.body, alarm_names, &mut problems),
    }
    problems.into_iter().map(|problem| format!("{}: {problem}", plan.experiment)).collect()
}

/// Writes `value` as pretty JSON (two-space indent) with every object's keys in sorted order,
/// whatever order the map keeps them in (serde_json's `preserve_order` feature may be on in a
/// build that links other crates).
fn write_sorted(out: &mut String, value: &Value, depth: usize) {
    let indent = |out: &mut String, depth: usize| out.extend(std::iter::repeat_n("  ", depth));
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push_str("{\n");
            for (i, (key, item)) in entries.iter().enumerate() {
                indent(out, depth + 1);
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push_str(": ");
                write_sorted(out, item, depth + 1);
                if i + 1 < entries.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, depth);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, depth + 1);
                write_sorted(out, item, depth + 1);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, depth);
            out.push(']');
        }
        // Scalars, `{}` and `[]`: serde_json's compact form is already the pretty one.
        other => out.push_str(&other.to_string()),
    }
}
