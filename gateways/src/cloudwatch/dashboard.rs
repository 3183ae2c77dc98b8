//! The dashboards as data: widgets whose lines name catalog metrics (or AWS service metrics listed
//! in the catalog as external). [`render`](super::render) turns them into CloudWatch dashboard
//! bodies; the node's own page (`GET /admin/dashboard`) draws the same widgets from its samples.

use events::metric::{ExternalMetric, Metric};

/// The deployment the dashboards are for: its name and the AWS resources the external metrics are
/// published under.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// `prod`, `staging`, …: the `Environment` dimension of every custom metric, and a suffix of
    /// names.
    pub environment: String,
    pub region: String,
    /// The ALB's dimension value (`app/<name>/<id>`).
    pub load_balancer: String,
    pub aurora_cluster: String,
    pub ecs_cluster: String,
    pub ecs_service: String,
    pub cache_cluster: String,
    pub kinesis_stream: String,
    pub payment_queue: String,
    pub payment_dlq: String,
    /// DynamoDB tables whose throttles are watched.
    pub dynamodb_tables: Vec<String>,
    /// The SNS topic alarm actions notify.
    pub alarm_topic_arn: String,
}

/// One dashboard.
#[derive(Clone, Debug)]
pub struct Dashboard {
    /// The CloudWatch dashboard name (`CloudCafe-Overview-prod`).
    pub name: String,
    pub title: String,
    pub widgets: Vec<Widget>,
}

/// One graph or figure.
#[derive(Clone, Debug)]
pub struct Widget {
    pub title: String,
    pub view: View,
    pub lines: Vec<Line>,
    /// The y axis' label (`ms`, `events`, `%`).
    pub unit_label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Lines over time.
    TimeSeries,
    /// The latest value of each line.
    SingleValue,
}

/// One line of a widget.
#[derive(Clone, Debug)]
pub struct Line {
    pub label: String,
    pub series: LineSeries,
}

/// What a line plots.
#[derive(Clone, Debug)]
pub enum LineSeries {
    /// A statistic of a catalog metric, filtered by some of its dimensions (the others summed).
    Metric(MetricQuery),
    /// A statistic of an AWS service metric (only CloudWatch has it; the node's page says so).
    External(ExternalQuery),
    /// A counter per second: the metric's Sum over the period divided by the period.
    PerSecond(MetricQuery),
    /// `100 × Σ part / Σ whole` over the period (hit rate, error rate).
    Percent { part: Vec<MetricQuery>, whole: Vec<MetricQuery> },
}

/// A catalog metric with a statistic and dimension values.
#[derive(Clone, Debug)]
pub struct MetricQuery {
    pub metric: &'static Metric,
    pub stat: Stat,
    /// Dimension name → value; dimensions of the metric not named here are summed over.
    pub dimensions: Vec<(&'static str, String)>,
}

/// An AWS metric with a statistic and dimension values.
#[derive(Clone, Debug)]
pub struct ExternalQuery {
    pub metric: &'static ExternalMetric,
    pub stat: Stat,
    pub dimensions: Vec<(&'static str, String)>,
}

/// A CloudWatch statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Sum,
    Average,
    Maximum,
    Minimum,
    SampleCount,
    P50,
    P99,
}

impl Stat {
    /// As CloudWatch spells it.
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Stat::Sum => "Sum",
            Stat::Average => "Average",
            Stat::Maximum => "Maximum",
            Stat::Minimum => "Minimum",
            Stat::SampleCount => "SampleCount",
            Stat::P50 => "p50",
            Stat::P99 => "p99",
        }
    }
}
