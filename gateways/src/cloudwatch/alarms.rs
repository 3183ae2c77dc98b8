//! The alarms, over catalog and AWS metrics: the plans' six, three of our own, and one composite
//! alarm over them all that says "CloudCafe is degraded". [`render`](super::render) writes them as
//! `PutMetricAlarm` / `PutCompositeAlarm` inputs.
//!
//! | alarm | fires when |
//! |---|---|
//! | `AlbTarget5xxRate` | the nodes' 5XX answers are more than 5 % of the ALB's requests, 5 minutes running |
//! | `DatabaseConnections` | Aurora's connections exceed 80 % of the configured `max_connections`, 10 minutes running |
//! | `DynamoDbThrottles` | DynamoDB throttled more than 100 requests of our tables in 5 minutes |
//! | `ErrorRate` | more than 2 % of the nodes' HTTP answers are 5xx, 5 minutes running |
//! | `RunningTasks` | fewer ECS tasks run than the service wants, 3 minutes running |
//! | `CacheHitRate` | fewer than 70 % of storefront reads hit the cache, 15 minutes running |
//! | `ProjectionLag` | a follower of the journal is more than 60 s behind, 5 minutes running |
//! | `PaymentDlqNotEmpty` | a payment request is in the dead-letter queue |
//! | `OutboxLagGrowing` | the outbox lag of a destination grew in each of 10 consecutive minutes |
//! | `Degraded` (composite) | any of the above is in alarm |
//!
//! Architecture Invariant: an alarm names a metric only through the catalog ([`MetricQuery`]) or its
//! list of AWS metrics ([`ExternalQuery`]), like the dashboards.

use events::metric::{self, ExternalMetric, Metric};

use super::dashboard::{
    cache_hit_rate_series, external, query, Deployment, ExternalQuery, LineSeries, MetricQuery, Stat,
};
use super::dashboard::{OUTBOX_DESTINATIONS, PERIOD_SECS};

/// One metric alarm.
#[derive(Clone, Debug)]
pub struct Alarm {
    /// `CloudCafe-<env>-<What>`.
    pub name: String,
    pub description: String,
    pub signal: Signal,
    /// Seconds per datapoint.
    pub period_secs: u32,
    pub evaluation_periods: u32,
    /// Of the last `evaluation_periods` datapoints, how many must breach.
    pub datapoints_to_alarm: u32,
    pub threshold: f64,
    pub comparison: Comparison,
    pub missing_data: MissingData,
    /// SNS topics notified when the alarm fires and when it recovers.
    pub actions: Vec<String>,
}

/// What an alarm watches.
#[derive(Clone, Debug)]
pub enum Signal {
    /// One metric (summed over the dimensions the query leaves open).
    Single(Input),
    /// A metric-math expression over inputs named by their ids.
    Math { inputs: Vec<(&'static str, Input)>, expression: String, label: String },
}

/// A metric an alarm reads.
#[derive(Clone, Debug)]
pub enum Input {
    Metric(MetricQuery),
    External(ExternalQuery),
    /// An AWS metric over several values of one of its dimensions, combined by the statistic (the
    /// throttles of several tables).
    ExternalAnyOf {
        query: ExternalQuery,
        dimension: &'static str,
        values: Vec<String>,
    },
}

impl Input {
    /// The catalog metric it reads, if it is one.
    pub fn metric(&self) -> Option<&'static Metric> {
        match self {
            Input::Metric(q) => Some(q.metric),
            Input::External(_) | Input::ExternalAnyOf { .. } => None,
        }
    }

    /// The AWS metric it reads, if it is one.
    pub fn external(&self) -> Option<&'static ExternalMetric> {
        match self {
            Input::Metric(_) => None,
            Input::External(q) | Input::ExternalAnyOf { query: q, .. } => Some(q.metric),
        }
    }
}

/// `ComparisonOperator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
}

impl Comparison {
    /// As the API spells it.
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Comparison::GreaterThan => "GreaterThanThreshold",
            Comparison::GreaterThanOrEqual => "GreaterThanOrEqualToThreshold",
            Comparison::LessThan => "LessThanThreshold",
            Comparison::LessThanOrEqual => "LessThanOrEqualToThreshold",
        }
    }
}

/// `TreatMissingData`: how a period without data counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingData {
    Breaching,
    NotBreaching,
    Ignore,
    Missing,
}

impl MissingData {
    /// As the API spells it.
    pub fn cloudwatch(self) -> &'static str {
        match self {
            MissingData::Breaching => "breaching",
            MissingData::NotBreaching => "notBreaching",
            MissingData::Ignore => "ignore",
            MissingData::Missing => "missing",
        }
    }
}

/// An alarm over other alarms (`PutCompositeAlarm`).
#[derive(Clone, Debug)]
pub struct CompositeAlarm {
    pub name: String,
    pub description: String,
    /// The alarms it watches; it is in alarm while any of them is.
    pub children: Vec<String>,
    pub actions: Vec<String>,
}

impl CompositeAlarm {
    /// The `AlarmRule`: `ALARM("a") OR ALARM("b") …`.
    pub fn rule(&self) -> String {
        self.children.iter().map(|c| format!("ALARM(\"{c}\")")).collect::<Vec<_>>().join(" OR ")
    }
}

fn name(d: &Deployment, what: &str) -> String {
    format!("CloudCafe-{}-{what}", d.environment)
}

#[allow(clippy::too_many_arguments)] // an alarm has this many parts; a builder would hide none of them
fn alarm(
    d: &Deployment,
    what: &str,
    description: String,
    signal: Signal,
    (period_secs, evaluation_periods, datapoints_to_alarm): (u32, u32, u32),
    comparison: Comparison,
    threshold: f64,
    missing_data: MissingData,
) -> Alarm {
    Alarm {
        name: name(d, what),
        description,
        signal,
        period_secs,
        evaluation_periods,
        datapoints_to_alarm,
        threshold,
        comparison,
        missing_data,
        actions: vec![d.alarm_topic_arn.clone()],
    }
}

fn math(inputs: Vec<(&'static str, Input)>, expression: &str, label: &str) -> Signal {
    Signal::Math { inputs, expression: expression.to_owned(), label: label.to_owned() }
}

/// Every metric alarm of the deployment, the plans' six first.
pub fn alarms(d: &Deployment) -> Vec<Alarm> {
    let minute = PERIOD_SECS;
    let lb = [("LoadBalancer", d.load_balancer.as_str())];
    let ecs = [("ClusterName", d.ecs_cluster.as_str()), ("ServiceName", d.ecs_service.as_str())];
    let connections_limit = 0.8 * f64::from(d.aurora_max_connections);
    let cache_inputs = match cache_hit_rate_series() {
        LineSeries::Percent { part, whole } => (part, whole),
        _ => unreachable!("the cache hit rate is a percentage"),
    };
    let (hits, misses) = (cache_inputs.0[0].clone(), cache_inputs.1[1].clone());
    vec![
        alarm(
            d,
            "AlbTarget5xxRate",
            "The nodes answered more than 5 % of the load balancer's requests with a 5XX, 5 minutes running.".into(),
            math(
                vec![
                    ("errors", Input::External(external(&metric::ALB_TARGET_5XX, Stat::Sum, &lb))),
                    ("requests", Input::External(external(&metric::ALB_REQUESTS, Stat::Sum, &lb))),
                ],
                "IF(requests > 0, 100 * errors / requests, 0)",
                "target 5XX % of requests",
            ),
            (minute, 5, 5),
            Comparison::GreaterThan,
            5.0,
            MissingData::NotBreaching,
        ),
        alarm(
            d,
            "DatabaseConnections",
            format!(
                "Aurora has more than 80 % of its configured max_connections ({}) open, 10 minutes running: \
                 the threshold is 80 % of Deployment::aurora_max_connections, since CloudWatch publishes \
                 the connections and not the limit.",
                d.aurora_max_connections
            ),
            Signal::Single(Input::External(external(
                &metric::AURORA_CONNECTIONS,
                Stat::Maximum,
                &[("DBClusterIdentifier", &d.aurora_cluster)],
            ))),
            (minute, 10, 10),
            Comparison::GreaterThan,
            connections_limit,
            MissingData::Missing,
        ),
        alarm(
            d,
            "DynamoDbThrottles",
            "DynamoDB throttled more than 100 requests to CloudCafe's tables in 5 minutes.".into(),
            Signal::Single(Input::ExternalAnyOf {
                query: external(&metric::DYNAMODB_THROTTLES, Stat::Sum, &[]),
                dimension: "TableName",
                values: d.dynamodb_tables.clone(),
            }),
            (300, 1, 1),
            Comparison::GreaterThan,
            100.0,
            MissingData::NotBreaching,
        ),
        alarm(
            d,
            "ErrorRate",
            "More than 2 % of the nodes' HTTP answers were 5xx, 5 minutes running.".into(),
            math(
                vec![
                    ("errors", Input::Metric(query(&metric::HTTP_REQUESTS, Stat::Sum, &[("StatusClass", "5xx")]))),
                    ("answers", Input::Metric(query(&metric::HTTP_REQUESTS, Stat::Sum, &[]))),
                ],
                "IF(answers > 0, 100 * errors / answers, 0)",
                "5xx % of answers",
            ),
            (minute, 5, 5),
            Comparison::GreaterThan,
            2.0,
            MissingData::NotBreaching,
        ),
        alarm(
            d,
            "RunningTasks",
            "Fewer ECS tasks run than the service wants, 3 minutes running (no figures count as too few).".into(),
            math(
                vec![
                    ("desired", Input::External(external(&metric::ECS_DESIRED_TASKS, Stat::Average, &ecs))),
                    ("running", Input::External(external(&metric::ECS_RUNNING_TASKS, Stat::Average, &ecs))),
                ],
                "desired - running",
                "tasks missing",
            ),
            (minute, 3, 3),
            Comparison::GreaterThan,
            0.0,
            MissingData::Breaching,
        ),
        alarm(
            d,
            "CacheHitRate",
            "Fewer than 70 % of storefront reads were answered from the cache, 15 minutes running.".into(),
            math(
                vec![("hits", Input::Metric(hits)), ("misses", Input::Metric(misses))],
                "IF(hits + misses > 0, 100 * hits / (hits + misses), 100)",
                "hit rate %",
            ),
            (minute, 15, 15),
            Comparison::LessThan,
            70.0,
            MissingData::NotBreaching,
        ),
        alarm(
            d,
            "ProjectionLag",
            "A follower of the journal (projection, saga, outbox) is more than 60 s behind, 5 minutes running.".into(),
            Signal::Single(Input::Metric(query(&metric::FOLLOWER_LAG_SECONDS, Stat::Maximum, &[]))),
            (minute, 5, 5),
            Comparison::GreaterThan,
            60.0,
            MissingData::Missing,
        ),
        alarm(
            d,
            "PaymentDlqNotEmpty",
            format!("A payment request failed three times and waits in {} (cloudcafe dlq list).", d.payment_dlq),
            Signal::Single(Input::External(external(
                &metric::SQS_VISIBLE,
                Stat::Maximum,
                &[("QueueName", &d.payment_dlq)],
            ))),
            (minute, 1, 1),
            Comparison::GreaterThan,
            0.0,
            MissingData::NotBreaching,
        ),
        alarm(
            d,
            "OutboxLagGrowing",
            "The outbox lag of a destination grew in each of 10 consecutive minutes: DIFF of the lag from one \
             minute to the next, the largest over the destinations, above 0 in 10 of 10 periods. A steady \
             lag, or one that is being worked off, does not fire it."
                .into(),
            outbox_growth(),
            (minute, 10, 10),
            Comparison::GreaterThan,
            0.0,
            MissingData::NotBreaching,
        ),
    ]
}

/// The largest minute-to-minute growth of the outbox lag over the destinations (each destination's
/// name is its input's id: `kinesis`, `analytics`, `sqs`, `notifications`).
fn outbox_growth() -> Signal {
    let inputs: Vec<(&'static str, Input)> = OUTBOX_DESTINATIONS
        .iter()
        .map(|d| (*d, Input::Metric(query(&metric::OUTBOX_LAG_EVENTS, Stat::Maximum, &[("Destination", d)]))))
        .collect();
    let diffs = OUTBOX_DESTINATIONS.iter().map(|id| format!("DIFF({id})")).collect::<Vec<_>>().join(", ");
    Signal::Math { inputs, expression: format!("MAX([{diffs}])"), label: "lag growth per minute".into() }
}

/// "CloudCafe degraded": in alarm while any of `alarms` is.
pub fn composite(d: &Deployment, alarms: &[Alarm]) -> CompositeAlarm {
    CompositeAlarm {
        name: name(d, "Degraded"),
        description: "CloudCafe degraded: at least one of its alarms fires (see the alarm rule).".into(),
        children: alarms.iter().map(|a| a.name.clone()).collect(),
        actions: vec![d.alarm_topic_arn.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plans_six_and_ours_have_their_thresholds_and_windows() {
        let d = Deployment::for_environment("prod");
        let alarms = alarms(&d);
        let find = |what: &str| alarms.iter().find(|a| a.name == format!("CloudCafe-prod-{what}")).unwrap();
        let window = |a: &Alarm| (a.period_secs * a.evaluation_periods, a.threshold, a.comparison);
        assert_eq!(window(find("AlbTarget5xxRate")), (300, 5.0, Comparison::GreaterThan));
        assert_eq!(window(find("DatabaseConnections")), (600, 800.0, Comparison::GreaterThan));
        assert_eq!(window(find("DynamoDbThrottles")), (300, 100.0, Comparison::GreaterThan));
        assert_eq!(window(find("ErrorRate")), (300, 2.0, Comparison::GreaterThan));
        assert_eq!(window(find("RunningTasks")), (180, 0.0, Comparison::GreaterThan));
        assert_eq!(window(find("CacheHitRate")), (900, 70.0, Comparison::LessThan));
        assert_eq!(window(find("ProjectionLag")), (300, 60.0, Comparison::GreaterThan));
        assert_eq!(window(find("PaymentDlqNotEmpty")).1, 0.0);
        assert_eq!(window(find("OutboxLagGrowing")), (600, 0.0, Comparison::GreaterThan));
        assert_eq!(alarms.len(), 9);
        for a in &alarms {
            assert_eq!(a.datapoints_to_alarm, a.evaluation_periods, "{}: every period of the window breaches", a.name);
            assert_eq!(a.actions, vec![d.alarm_topic_arn.clone()]);
        }
    }

    #[test]
    fn the_connections_threshold_follows_the_configured_limit() {
        let mut d = Deployment::for_environment("staging");
        d.aurora_max_connections = 200;
        let a = alarms(&d).into_iter().find(|a| a.name.ends_with("-DatabaseConnections")).unwrap();
        assert_eq!(a.threshold, 160.0);
        assert!(a.description.contains("(200)"));
    }

    #[test]
    fn the_composite_fires_on_any_alarm() {
        let d = Deployment::for_environment("prod");
        let alarms = alarms(&d);
        let c = composite(&d, &alarms);
        assert_eq!(c.name, "CloudCafe-prod-Degraded");
        let rule = c.rule();
        assert!(rule.starts_with("ALARM(\"CloudCafe-prod-AlbTarget5xxRate\") OR ALARM("), "{rule}");
        assert_eq!(rule.matches(" OR ").count(), alarms.len() - 1);
        for a in &alarms {
            assert!(rule.contains(&format!("ALARM(\"{}\")", a.name)));
        }
    }

    #[test]
    fn math_ids_are_what_the_expressions_use() {
        let d = Deployment::for_environment("prod");
        for a in alarms(&d) {
            if let Signal::Math { inputs, expression, .. } = &a.signal {
                for (id, _) in inputs {
                    assert!(
                        id.starts_with(|c: char| c.is_ascii_lowercase()),
                        "{id}: ids start with a lowercase letter"
                    );
                    assert!(expression.contains(id), "{}: {id} unused in {expression}", a.name);
                }
                assert!(inputs.len() <= 10, "an alarm's math reads at most 10 metrics");
            }
        }
    }
}
