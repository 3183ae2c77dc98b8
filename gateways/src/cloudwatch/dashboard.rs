//! The dashboards as data: widgets whose lines name catalog metrics (or AWS service metrics listed
//! in the catalog as external). [`render`](super::render) turns them into CloudWatch dashboard
//! bodies; the node's own page (`GET /admin/dashboard`) draws the same widgets from its samples.

use events::metric::{self, ExternalMetric, Metric};

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
    /// The `max_connections` the cluster is configured with: the connections alarm fires at 80 % of
    /// it (CloudWatch publishes the connections, not the limit).
    pub aurora_max_connections: u32,
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

/// A catalog metric with a statistic and dimension values. Exported metrics carry the `Environment`
/// dimension besides their own: the renderer adds it, the queries here do not name it.
#[derive(Clone, Debug)]
pub struct MetricQuery {
    pub metric: &'static Metric,
    pub stat: Stat,
    /// Dimension name → value; dimensions of the metric not named here are combined: in CloudWatch
    /// by the statistic's own function over a `SEARCH` (`SUM` for sums and counts, `MAX` for
    /// maxima, …; a percentile gives one line per value), on the node's page by adding up.
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

// ---- The deployment ----

/// The region a deployment is in unless told otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The account of the default alarm topic: a placeholder that `cloudcafe dashboard render|apply
/// --alarm-topic-arn` (or Terraform, replacing `AlarmActions`) overrides with the real topic.
pub const PLACEHOLDER_ACCOUNT: &str = "123456789012";

/// `max_connections` of the Aurora cluster's writer the connections alarm measures against, unless
/// told otherwise: what Aurora PostgreSQL gives a `db.r6g.large` (16 GiB) is about 1,700; 1,000 is
/// the figure the cluster's parameter group is expected to set.
pub const DEFAULT_AURORA_MAX_CONNECTIONS: u32 = 1000;

/// The followers of the journal a node runs, by the name they report lag under (`Follower`):
/// the order saga (`actors::saga::CHECKPOINT`), the freshness follower (`actors::freshness::NAME`),
/// the projections (`projection:<sink name>`: the storefront, analytics, and with `--features cloud`
/// the DynamoDB and DocumentDB read models when fed from the journal), and the outbox publishers
/// (`publisher:kinesis`, `publisher:analytics`, `publisher:sqs`, `publisher:notifications`). A unit
/// test checks these against the code's constants.
pub const FOLLOWERS: &[&str] = &[
    "order-saga",
    "freshness",
    "projection:storefront",
    "projection:analytics",
    "projection:dynamodb-read-models",
    "projection:documents",
    "publisher:kinesis",
    "publisher:analytics",
    "publisher:sqs",
    "publisher:notifications",
];

/// The outbox's destinations (`Destination`: what each bus adapter's `destination()` answers).
pub const OUTBOX_DESTINATIONS: &[&str] = &["kinesis", "analytics", "sqs", "notifications"];

/// How an order request ends (`OrderCreationDuration`'s `Outcome`).
pub const ORDER_OUTCOMES: &[&str] = &["placed", "rejected", "failed"];

/// How a command ends (`Commands`' `Outcome`).
pub const COMMAND_OUTCOMES: &[&str] = &["ok", "rejected", "busy", "unavailable", "contended"];

/// How the payment processor leaves a request (`PaymentRequests`' `Outcome`).
/// The outcomes of `notifications_total`: delivered by email or text, delivered before, failed.
pub const NOTIFICATION_OUTCOMES: &[&str] = &["email", "sms", "duplicate", "failed"];
pub const PAYMENT_OUTCOMES: &[&str] = &["authorized", "declined", "voided", "refunded", "captured", "none", "failed"];

/// The period of every graph and of the rates derived from it, in seconds.
pub const PERIOD_SECS: u32 = 60;

impl Deployment {
    /// The deployment `env` (`prod`, `staging`, …) as the project names its AWS resources:
    /// `cloudcafe-<what>-{env}` (as `TableNames` names the DynamoDB tables and the plans name the
    /// stream), in [`DEFAULT_REGION`], alarms notifying the topic `cloudcafe-alarms-{env}` of
    /// [`PLACEHOLDER_ACCOUNT`]. The load balancer's dimension ends in an id AWS assigns; the default
    /// is a placeholder the CLI's `--load-balancer` replaces.
    pub fn for_environment(env: &str) -> Deployment {
        Deployment {
            environment: env.to_owned(),
            region: DEFAULT_REGION.to_owned(),
            load_balancer: format!("app/cloudcafe-alb-{env}/0000000000000000"),
            aurora_cluster: format!("cloudcafe-journal-{env}"),
            aurora_max_connections: DEFAULT_AURORA_MAX_CONNECTIONS,
            ecs_cluster: format!("cloudcafe-{env}"),
            ecs_service: format!("cloudcafe-node-{env}"),
            cache_cluster: format!("cloudcafe-cache-{env}"),
            kinesis_stream: format!("cloudcafe-order-events-{env}"),
            payment_queue: format!("cloudcafe-payment-requests-{env}.fifo"),
            payment_dlq: format!("cloudcafe-payment-requests-dlq-{env}.fifo"),
            dynamodb_tables: vec![
                format!("cloudcafe-active-orders-{env}-g1"),
                format!("cloudcafe-store-inventory-{env}-g1"),
                format!("cloudcafe-projection-offsets-{env}"),
                format!("cloudcafe-payments-{env}"),
            ],
            alarm_topic_arn: format!("arn:aws:sns:{DEFAULT_REGION}:{PLACEHOLDER_ACCOUNT}:cloudcafe-alarms-{env}"),
        }
    }
}

// ---- Building blocks ----

/// A catalog metric with a statistic and some of its dimensions pinned.
pub fn query(metric: &'static Metric, stat: Stat, dimensions: &[(&'static str, &str)]) -> MetricQuery {
    MetricQuery { metric, stat, dimensions: dimensions.iter().map(|(n, v)| (*n, (*v).to_owned())).collect() }
}

/// An AWS metric with a statistic and its dimensions.
pub fn external(metric: &'static ExternalMetric, stat: Stat, dimensions: &[(&'static str, &str)]) -> ExternalQuery {
    ExternalQuery { metric, stat, dimensions: dimensions.iter().map(|(n, v)| (*n, (*v).to_owned())).collect() }
}

fn line(label: impl Into<String>, series: LineSeries) -> Line {
    Line { label: label.into(), series }
}

fn graph(title: &str, unit_label: &str, lines: Vec<Line>) -> Widget {
    Widget { title: title.to_owned(), view: View::TimeSeries, lines, unit_label: unit_label.to_owned() }
}

fn figure(title: &str, unit_label: &str, lines: Vec<Line>) -> Widget {
    Widget { title: title.to_owned(), view: View::SingleValue, lines, unit_label: unit_label.to_owned() }
}

fn dashboard(d: &Deployment, area: &str, title: &str, widgets: Vec<Widget>) -> Dashboard {
    Dashboard { name: format!("CloudCafe-{area}-{}", d.environment), title: title.to_owned(), widgets }
}

/// One line per value of `dimension`.
fn each(
    values: &[&str],
    metric: &'static Metric,
    stat: Stat,
    dimension: &'static str,
    fixed: &[(&'static str, &str)],
    series: fn(MetricQuery) -> LineSeries,
) -> Vec<Line> {
    values
        .iter()
        .map(|v| {
            let mut dims = fixed.to_vec();
            dims.push((dimension, v));
            line(*v, series(query(metric, stat, &dims)))
        })
        .collect()
}

// ---- Widgets, each used by the overview, a service dashboard or both ----

fn order_rate() -> Widget {
    graph(
        "Order rate",
        "orders/s",
        vec![
            line(
                "order requests answered",
                LineSeries::PerSecond(query(&metric::ORDER_CREATION_DURATION, Stat::SampleCount, &[])),
            ),
            line(
                "order commands",
                LineSeries::PerSecond(query(&metric::COMMANDS, Stat::Sum, &[("Aggregate", "order")])),
            ),
        ],
    )
}

fn command_latency(stat: Stat) -> Widget {
    graph(
        &format!("Command latency {} by aggregate", stat.cloudwatch()),
        "ms",
        each(metric::AGGREGATES, &metric::COMMAND_DURATION, stat, "Aggregate", &[], LineSeries::Metric),
    )
}

fn alb_requests(d: &Deployment) -> Widget {
    let lb = [("LoadBalancer", d.load_balancer.as_str())];
    graph(
        "Load balancer requests and 5XX",
        "requests",
        vec![
            line("requests", LineSeries::External(external(&metric::ALB_REQUESTS, Stat::Sum, &lb))),
            line("target 5XX", LineSeries::External(external(&metric::ALB_TARGET_5XX, Stat::Sum, &lb))),
        ],
    )
}

fn alb_response_time(d: &Deployment) -> Widget {
    let lb = [("LoadBalancer", d.load_balancer.as_str())];
    graph(
        "Load balancer target response time",
        "s",
        vec![
            line("p50", LineSeries::External(external(&metric::ALB_TARGET_RESPONSE_TIME, Stat::P50, &lb))),
            line("p99", LineSeries::External(external(&metric::ALB_TARGET_RESPONSE_TIME, Stat::P99, &lb))),
        ],
    )
}

fn journal_latency() -> Widget {
    graph(
        "Journal append latency",
        "ms",
        vec![
            line("p50", LineSeries::Metric(query(&metric::JOURNAL_APPEND_DURATION, Stat::P50, &[]))),
            line("p99", LineSeries::Metric(query(&metric::JOURNAL_APPEND_DURATION, Stat::P99, &[]))),
        ],
    )
}

fn journal_batches() -> Widget {
    graph(
        "Journal batch size",
        "per commit",
        vec![
            line("requests (avg)", LineSeries::Metric(query(&metric::JOURNAL_APPEND_REQUESTS, Stat::Average, &[]))),
            line("requests (max)", LineSeries::Metric(query(&metric::JOURNAL_APPEND_REQUESTS, Stat::Maximum, &[]))),
            line("events (avg)", LineSeries::Metric(query(&metric::JOURNAL_APPEND_EVENTS, Stat::Average, &[]))),
            line("actor batch (avg)", LineSeries::Metric(query(&metric::ACTOR_BATCH_SIZE, Stat::Average, &[]))),
        ],
    )
}

fn conflicts() -> Widget {
    graph(
        "Conflicts",
        "per period",
        vec![
            line(
                "journal append conflicts",
                LineSeries::Metric(query(&metric::JOURNAL_APPEND_CONFLICTS, Stat::Sum, &[])),
            ),
            line("actor conflicts", LineSeries::Metric(query(&metric::ACTOR_CONFLICTS, Stat::Sum, &[]))),
            line("version races", LineSeries::Metric(query(&metric::JOURNAL_VERSION_RACES, Stat::Sum, &[]))),
        ],
    )
}

fn mailboxes() -> Widget {
    graph(
        "Mailbox depth and busy rejections",
        "messages",
        vec![
            line("mailbox depth p99", LineSeries::Metric(query(&metric::ACTOR_MAILBOX_DEPTH, Stat::P99, &[]))),
            line("mailbox depth max", LineSeries::Metric(query(&metric::ACTOR_MAILBOX_DEPTH, Stat::Maximum, &[]))),
            line("busy rejections", LineSeries::Metric(query(&metric::ACTOR_BUSY_REJECTIONS, Stat::Sum, &[]))),
        ],
    )
}

fn projection_lag_events() -> Widget {
    graph(
        "Projection lag (events)",
        "events",
        each(FOLLOWERS, &metric::FOLLOWER_LAG_EVENTS, Stat::Maximum, "Follower", &[], LineSeries::Metric),
    )
}

fn projection_lag_seconds() -> Widget {
    graph(
        "Projection lag (seconds)",
        "s",
        each(FOLLOWERS, &metric::FOLLOWER_LAG_SECONDS, Stat::Maximum, "Follower", &[], LineSeries::Metric),
    )
}

fn outbox_lag() -> Widget {
    graph(
        "Outbox lag by destination",
        "events",
        each(OUTBOX_DESTINATIONS, &metric::OUTBOX_LAG_EVENTS, Stat::Maximum, "Destination", &[], LineSeries::Metric),
    )
}

fn kinesis_age(d: &Deployment) -> Widget {
    graph(
        "Kinesis iterator age and consumer lag",
        "ms",
        vec![
            line(
                "iterator age",
                LineSeries::External(external(
                    &metric::KINESIS_ITERATOR_AGE,
                    Stat::Maximum,
                    &[("StreamName", &d.kinesis_stream)],
                )),
            ),
            line(
                "consumer millis behind",
                LineSeries::Metric(query(&metric::CONSUMER_MILLIS_BEHIND, Stat::Maximum, &[])),
            ),
        ],
    )
}

fn payment_queue_age(d: &Deployment) -> Widget {
    graph(
        "Payment queue: oldest request",
        "s",
        vec![line(
            "age of oldest message",
            LineSeries::External(external(&metric::SQS_OLDEST_AGE, Stat::Maximum, &[("QueueName", &d.payment_queue)])),
        )],
    )
}

fn payment_dlq(d: &Deployment) -> Widget {
    figure(
        "Payment dead-letter queue",
        "messages",
        vec![line(
            "messages",
            LineSeries::External(external(&metric::SQS_VISIBLE, Stat::Maximum, &[("QueueName", &d.payment_dlq)])),
        )],
    )
}

/// The storefront cache's hit rate as the node sees it: hits over hits and misses.
pub fn cache_hit_rate_series() -> LineSeries {
    LineSeries::Percent {
        part: vec![query(&metric::CACHE_HITS, Stat::Sum, &[])],
        whole: vec![query(&metric::CACHE_HITS, Stat::Sum, &[]), query(&metric::CACHE_MISSES, Stat::Sum, &[])],
    }
}

fn cache_hit_rate() -> Widget {
    graph("Cache hit rate", "%", vec![line("storefront reads", cache_hit_rate_series())])
}

fn elasticache(d: &Deployment) -> Widget {
    let cluster = [("CacheClusterId", d.cache_cluster.as_str())];
    graph(
        "ElastiCache hits and misses",
        "lookups",
        vec![
            line("hits", LineSeries::External(external(&metric::CACHE_NODE_HITS, Stat::Sum, &cluster))),
            line("misses", LineSeries::External(external(&metric::CACHE_NODE_MISSES, Stat::Sum, &cluster))),
        ],
    )
}

fn cache_traffic() -> Widget {
    graph(
        "Cache errors and bypassed reads",
        "reads",
        vec![
            line("errors", LineSeries::Metric(query(&metric::CACHE_ERRORS, Stat::Sum, &[]))),
            line("bypassed", LineSeries::Metric(query(&metric::CACHE_BYPASSED, Stat::Sum, &[]))),
        ],
    )
}

fn aurora(d: &Deployment) -> Widget {
    let cluster = [("DBClusterIdentifier", d.aurora_cluster.as_str())];
    graph(
        "Aurora connections and CPU",
        "connections / %",
        vec![
            line("connections", LineSeries::External(external(&metric::AURORA_CONNECTIONS, Stat::Maximum, &cluster))),
            line("CPU %", LineSeries::External(external(&metric::AURORA_CPU, Stat::Average, &cluster))),
        ],
    )
}

fn dynamodb_throttles(d: &Deployment) -> Widget {
    graph(
        "DynamoDB throttled requests",
        "requests",
        d.dynamodb_tables
            .iter()
            .map(|t| {
                let table = t.strip_prefix("cloudcafe-").unwrap_or(t);
                line(table, LineSeries::External(external(&metric::DYNAMODB_THROTTLES, Stat::Sum, &[("TableName", t)])))
            })
            .collect(),
    )
}

fn ecs(d: &Deployment) -> Widget {
    let service = [("ClusterName", d.ecs_cluster.as_str()), ("ServiceName", d.ecs_service.as_str())];
    graph(
        "ECS tasks and CPU",
        "tasks / %",
        vec![
            line("running tasks", LineSeries::External(external(&metric::ECS_RUNNING_TASKS, Stat::Average, &service))),
            line("desired tasks", LineSeries::External(external(&metric::ECS_DESIRED_TASKS, Stat::Average, &service))),
            line("CPU %", LineSeries::External(external(&metric::ECS_CPU, Stat::Average, &service))),
        ],
    )
}

/// The stress scenarios' names, as `cloudcafe flood list` shows them.
pub fn scenario_names() -> Vec<&'static str> {
    crate::flood::scenarios::all().iter().map(|s| s.name()).collect()
}

fn stress_markers() -> Widget {
    let names = scenario_names();
    graph(
        "Stress scenarios running (markers)",
        "running",
        each(&names, &metric::STRESS_RUNNING, Stat::Maximum, "Scenario", &[], LineSeries::Metric),
    )
}

fn stress_rate() -> Widget {
    let names = scenario_names();
    graph(
        "Stress scenarios: offered rate",
        "arrivals/s",
        each(&names, &metric::STRESS_OFFERED_RATE, Stat::Maximum, "Scenario", &[], LineSeries::Metric),
    )
}

/// Requests per second and p99 latency of every route under `prefix` (`/api/orders`), from the
/// API's own route table.
fn routes(prefixes: &[&str]) -> Vec<Widget> {
    let mut paths: Vec<&'static str> = crate::http::route_table()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| prefixes.iter().any(|prefix| p.starts_with(prefix)))
        .collect();
    paths.dedup();
    vec![
        graph(
            "Requests by route",
            "requests/s",
            each(&paths, &metric::HTTP_REQUESTS, Stat::Sum, "Route", &[], LineSeries::PerSecond),
        ),
        graph(
            "Server errors by route",
            "5xx/s",
            each(&paths, &metric::HTTP_REQUESTS, Stat::Sum, "Route", &[("StatusClass", "5xx")], LineSeries::PerSecond),
        ),
        graph(
            "Latency p99 by route",
            "ms",
            each(&paths, &metric::HTTP_REQUEST_DURATION, Stat::P99, "Route", &[], LineSeries::Metric),
        ),
    ]
}

/// Commands per second by outcome, latency, residents, conflicts and busy rejections of one
/// aggregate's actors.
fn aggregate(aggregate: &str) -> Vec<Widget> {
    let a = [("Aggregate", aggregate)];
    vec![
        graph(
            "Commands by outcome",
            "commands/s",
            each(COMMAND_OUTCOMES, &metric::COMMANDS, Stat::Sum, "Outcome", &a, LineSeries::PerSecond),
        ),
        graph(
            "Command latency",
            "ms",
            vec![
                line("p50", LineSeries::Metric(query(&metric::COMMAND_DURATION, Stat::P50, &a))),
                line("p99", LineSeries::Metric(query(&metric::COMMAND_DURATION, Stat::P99, &a))),
            ],
        ),
        graph(
            "Actors",
            "actors / per period",
            vec![
                line("resident", LineSeries::Metric(query(&metric::ACTORS_ACTIVE, Stat::Maximum, &a))),
                line("conflicts", LineSeries::Metric(query(&metric::ACTOR_CONFLICTS, Stat::Sum, &a))),
                line("busy rejections", LineSeries::Metric(query(&metric::ACTOR_BUSY_REJECTIONS, Stat::Sum, &a))),
                line("catch-ups", LineSeries::Metric(query(&metric::ACTOR_CATCH_UPS, Stat::Sum, &a))),
            ],
        ),
    ]
}

// ---- The dashboards ----

/// What on-call looks at first: the issue's overview, every part of the system on one page.
pub fn overview(d: &Deployment) -> Dashboard {
    dashboard(
        d,
        "Overview",
        "CloudCafe overview",
        vec![
            order_rate(),
            command_latency(Stat::P50),
            command_latency(Stat::P99),
            alb_requests(d),
            alb_response_time(d),
            journal_latency(),
            journal_batches(),
            conflicts(),
            mailboxes(),
            projection_lag_events(),
            projection_lag_seconds(),
            outbox_lag(),
            kinesis_age(d),
            payment_queue_age(d),
            payment_dlq(d),
            cache_hit_rate(),
            elasticache(d),
            aurora(d),
            dynamodb_throttles(d),
            ecs(d),
            stress_markers(),
            stress_rate(),
        ],
    )
}

/// One dashboard per service: orders, inventory, payments, loyalty, menu, analytics, projections.
pub fn services(d: &Deployment) -> Vec<Dashboard> {
    let mut orders = vec![
        order_rate(),
        graph(
            "Order creation time p99 by outcome",
            "ms",
            each(ORDER_OUTCOMES, &metric::ORDER_CREATION_DURATION, Stat::P99, "Outcome", &[], LineSeries::Metric),
        ),
        graph(
            "Order requests by outcome",
            "orders/s",
            each(
                ORDER_OUTCOMES,
                &metric::ORDER_CREATION_DURATION,
                Stat::SampleCount,
                "Outcome",
                &[],
                LineSeries::PerSecond,
            ),
        ),
    ];
    orders.extend(aggregate("order"));
    orders.extend(routes(&["/api/orders", "/api/customers"]));
    orders.extend([
        graph(
            "Notifications by outcome",
            "per second",
            each(NOTIFICATION_OUTCOMES, &metric::NOTIFICATIONS, Stat::Sum, "Outcome", &[], LineSeries::PerSecond),
        ),
        graph(
            "Notification delivery time",
            "ms",
            vec![
                line("p50", LineSeries::Metric(query(&metric::NOTIFICATION_DELIVERY_DURATION, Stat::P50, &[]))),
                line("p99", LineSeries::Metric(query(&metric::NOTIFICATION_DELIVERY_DURATION, Stat::P99, &[]))),
            ],
        ),
    ]);

    let mut inventory = aggregate("inventory");
    inventory.extend(routes(&["/api/inventory"]));
    inventory.push(dynamodb_throttles(d));

    let mut payments = vec![
        graph(
            "Payment requests by outcome",
            "requests/s",
            each(PAYMENT_OUTCOMES, &metric::PAYMENT_REQUESTS, Stat::Sum, "Outcome", &[], LineSeries::PerSecond),
        ),
        graph(
            "Payment processing time",
            "ms",
            vec![
                line("p50", LineSeries::Metric(query(&metric::PAYMENT_PROCESSING_DURATION, Stat::P50, &[]))),
                line("p99", LineSeries::Metric(query(&metric::PAYMENT_PROCESSING_DURATION, Stat::P99, &[]))),
            ],
        ),
        graph(
            "Visibility extensions",
            "per period",
            vec![line("extensions", LineSeries::Metric(query(&metric::PAYMENT_VISIBILITY_EXTENSIONS, Stat::Sum, &[])))],
        ),
        payment_queue_age(d),
        payment_dlq(d),
    ];
    payments.extend(aggregate("payment"));
    payments.extend(routes(&["/api/payments"]));

    let mut loyalty = aggregate("loyalty");
    loyalty.extend(routes(&["/api/loyalty"]));

    let mut menu = aggregate("menu");
    menu.extend(routes(&["/api/menu"]));
    menu.extend([cache_hit_rate(), elasticache(d), cache_traffic()]);

    let mut analytics = routes(&["/api/analytics"]);
    analytics.push(graph(
        "Analytics projection lag",
        "s",
        vec![line(
            "lag",
            LineSeries::Metric(query(
                &metric::FOLLOWER_LAG_SECONDS,
                Stat::Maximum,
                &[("Follower", "projection:analytics")],
            )),
        )],
    ));
    analytics.push(aurora(d));

    let projections = vec![
        projection_lag_events(),
        projection_lag_seconds(),
        graph(
            "Events applied",
            "events/s",
            each(FOLLOWERS, &metric::FOLLOWER_EVENTS, Stat::Sum, "Follower", &[], LineSeries::PerSecond),
        ),
        graph(
            "Follower errors and stalls",
            "per period",
            vec![
                line("errors", LineSeries::Metric(query(&metric::FOLLOWER_ERRORS, Stat::Sum, &[]))),
                line("stalls", LineSeries::Metric(query(&metric::FOLLOWER_STALLS, Stat::Sum, &[]))),
                line("stalled now", LineSeries::Metric(query(&metric::FOLLOWER_STALLED, Stat::Maximum, &[]))),
            ],
        ),
        outbox_lag(),
        graph(
            "Outbox publishing",
            "events/s",
            each(OUTBOX_DESTINATIONS, &metric::OUTBOX_EVENTS, Stat::Sum, "Destination", &[], LineSeries::PerSecond),
        ),
        graph(
            "Outbox publish time p99",
            "ms",
            each(
                OUTBOX_DESTINATIONS,
                &metric::OUTBOX_PUBLISH_DURATION,
                Stat::P99,
                "Destination",
                &[],
                LineSeries::Metric,
            ),
        ),
        kinesis_age(d),
        graph(
            "Kinesis consumer",
            "records / leases",
            vec![
                line("records applied", LineSeries::Metric(query(&metric::CONSUMER_RECORDS, Stat::Sum, &[]))),
                line("leases held", LineSeries::Metric(query(&metric::CONSUMER_LEASES_HELD, Stat::Maximum, &[]))),
                line("lease changes", LineSeries::Metric(query(&metric::CONSUMER_LEASE_CHANGES, Stat::Sum, &[]))),
                line("poison records", LineSeries::Metric(query(&metric::CONSUMER_POISON, Stat::Sum, &[]))),
            ],
        ),
    ];

    vec![
        dashboard(d, "Orders", "CloudCafe orders", orders),
        dashboard(d, "Inventory", "CloudCafe inventory", inventory),
        dashboard(d, "Payments", "CloudCafe payments", payments),
        dashboard(d, "Loyalty", "CloudCafe loyalty", loyalty),
        dashboard(d, "Menu", "CloudCafe menu", menu),
        dashboard(d, "Analytics", "CloudCafe analytics", analytics),
        dashboard(d, "Projections", "CloudCafe projections", projections),
    ]
}

/// The overview, then one dashboard per service.
pub fn all(d: &Deployment) -> Vec<Dashboard> {
    let mut out = vec![overview(d)];
    out.extend(services(d));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use projections::read_models::runner::follower_name;

    #[test]
    fn a_deployment_is_named_after_its_environment() {
        let d = Deployment::for_environment("staging");
        assert_eq!(d.kinesis_stream, "cloudcafe-order-events-staging");
        assert_eq!(d.payment_dlq, "cloudcafe-payment-requests-dlq-staging.fifo");
        assert_eq!(d.alarm_topic_arn, "arn:aws:sns:us-east-1:123456789012:cloudcafe-alarms-staging");
        assert!(d.dynamodb_tables.contains(&"cloudcafe-active-orders-staging-g1".to_owned()));
        for name in [&d.aurora_cluster, &d.ecs_cluster, &d.ecs_service, &d.cache_cluster, &d.kinesis_stream] {
            assert!(name.starts_with("cloudcafe-") && name.ends_with("-staging"), "{name}");
        }
    }

    #[test]
    fn the_followers_are_the_names_the_code_reports_lag_under() {
        #[cfg_attr(not(feature = "cloud"), allow(unused_mut))] // the cloud build adds its followers
        let mut names = vec![
            actors::saga::CHECKPOINT.to_owned(),
            actors::freshness::NAME.to_owned(),
            follower_name(projections::read_models::storefront::NAME),
            follower_name(projections::read_models::analytics::NAME),
        ];
        #[cfg(feature = "cloud")]
        names.extend([
            follower_name(projections::read_models::dynamo::NAME),
            follower_name(projections::read_models::documents::NAME),
            projections::bus::kinesis::CHECKPOINT.to_owned(),
            projections::bus::analytics::CHECKPOINT.to_owned(),
            projections::bus::sqs::CHECKPOINT.to_owned(),
            projections::bus::notifications::CHECKPOINT.to_owned(),
        ]);
        for name in &names {
            assert!(FOLLOWERS.contains(&name.as_str()), "{name} is not in FOLLOWERS");
        }
        assert_eq!(FOLLOWERS.len(), 10);
    }

    #[test]
    fn the_stress_markers_name_every_scenario() {
        let names = scenario_names();
        assert!(names.contains(&"morning-rush") && names.len() >= 6, "{names:?}");
        let markers = overview(&Deployment::for_environment("prod"))
            .widgets
            .into_iter()
            .find(|w| w.title.starts_with("Stress scenarios running"))
            .unwrap();
        assert_eq!(markers.lines.len(), names.len());
    }

    #[test]
    fn the_overview_has_the_issues_widgets_and_every_widget_a_line() {
        let d = Deployment::for_environment("prod");
        let o = overview(&d);
        assert_eq!(o.name, "CloudCafe-Overview-prod");
        let titles: Vec<&str> = o.widgets.iter().map(|w| w.title.as_str()).collect();
        for wanted in [
            "Order rate",
            "Command latency p50 by aggregate",
            "Command latency p99 by aggregate",
            "Load balancer requests and 5XX",
            "Load balancer target response time",
            "Journal append latency",
            "Journal batch size",
            "Conflicts",
            "Mailbox depth and busy rejections",
            "Projection lag (events)",
            "Projection lag (seconds)",
            "Outbox lag by destination",
            "Kinesis iterator age and consumer lag",
            "Payment queue: oldest request",
            "Payment dead-letter queue",
            "Cache hit rate",
            "ElastiCache hits and misses",
            "Aurora connections and CPU",
            "DynamoDB throttled requests",
            "ECS tasks and CPU",
            "Stress scenarios running (markers)",
        ] {
            assert!(titles.contains(&wanted), "the overview has no {wanted:?}");
        }
        let p99 = o.widgets.iter().find(|w| w.title == "Command latency p99 by aggregate").unwrap();
        let labels: Vec<&str> = p99.lines.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, metric::AGGREGATES);
        for board in all(&d) {
            for w in &board.widgets {
                assert!(!w.lines.is_empty(), "{} / {}: a widget needs a line", board.name, w.title);
            }
        }
    }

    #[test]
    fn there_is_one_dashboard_per_service_after_the_overview() {
        let names: Vec<String> = all(&Deployment::for_environment("prod")).into_iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            ["Overview", "Orders", "Inventory", "Payments", "Loyalty", "Menu", "Analytics", "Projections"]
                .map(|s| format!("CloudCafe-{s}-prod"))
        );
    }
}
