//! The metric catalog: every metric CloudCafe records, declared once, and the AWS service metrics its
//! dashboards and alarms read.
//!
//! A [`Metric`] names a metric twice: as Prometheus knows it (`commands_total`, snake case, the unit in
//! the name, labels) and as CloudWatch knows it (`CloudCafe/Actors` `Commands`, PascalCase, a unit
//! from CloudWatch's list, dimensions). Code records through the declaration
//! (`metric::COMMANDS.counter(labels)`), never through a name written at the call site, so the
//! exporters, the generated dashboards and alarms, and the `/metrics` text cannot disagree.
//!
//! A metric's [`Emitter`] says which part of a node records it: the catalog test runs that part and
//! checks that every metric of the part appeared, and that nothing appeared that is not declared.
//! Metrics a part may have no occasion to record in a short run (a conflict, a stall, an error) are
//! registered at zero when the part starts ([`Metric::register`]), as Prometheus advises.
//!
//! Architecture Invariant: no `metrics::counter!`, `gauge!` or `histogram!` with a literal name
//! outside this module; a label a declaration does not list is a bug caught by a debug assertion.

use metrics::{Counter, Gauge, Histogram, IntoLabels, Label};

/// What a metric measures over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; exported as the increase over an interval.
    Counter,
    /// A value at a moment; exported as the last value of an interval.
    Gauge,
    /// A distribution of observations; exported as values with counts.
    Histogram,
}

/// A unit from CloudWatch's list (`StandardUnit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Milliseconds,
    Percent,
    CountPerSecond,
    Bytes,
    None,
}

impl Unit {
    /// The unit as CloudWatch spells it.
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Milliseconds => "Milliseconds",
            Unit::Percent => "Percent",
            Unit::CountPerSecond => "Count/Second",
            Unit::Bytes => "Bytes",
            Unit::None => "None",
        }
    }
}

/// The part of a node that records a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Emitter {
    /// Every node: HTTP, actors, the journal, the followers.
    Node,
    /// A node on the PostgreSQL journal.
    Postgres,
    /// A node with the Redis cache in front of its storefront reads.
    Cache,
    /// A node publishing the journal to Kinesis (the outbox).
    Outbox,
    /// A node whose read models consume the Kinesis stream.
    KinesisConsumer,
    /// A node running the payment processor on SQS.
    PaymentProcessor,
    /// A node running the notification worker on SQS.
    Notifier,
    /// A node running a stress scenario.
    Stress,
    /// A node exporting its metrics to CloudWatch (either way).
    Export,
    /// A node exporting its metrics with `PutMetricData`.
    PutMetricData,
    /// A node checking bearer tokens and rate limits (`serve` unless `--auth off`).
    Auth,
    /// A node verifying tokens with an identity provider's key set (`--jwks-url`).
    Jwks,
}

/// One metric the code records.
#[derive(Debug)]
pub struct Metric {
    /// The Prometheus name (`/metrics`).
    pub name: &'static str,
    pub kind: Kind,
    /// Every label the code sets, in order.
    pub labels: &'static [&'static str],
    /// The CloudWatch namespace (`CloudCafe/<Service>`).
    pub namespace: &'static str,
    /// The CloudWatch metric name (PascalCase).
    pub cloudwatch_name: &'static str,
    /// The CloudWatch unit of the exported values.
    pub unit: Unit,
    /// Recorded value × scale = exported value (1000 for seconds recorded, milliseconds exported).
    pub scale: f64,
    /// The labels that become CloudWatch dimensions, with the dimension's name. Counters and
    /// histograms are summed over the labels left out; a gauge keeps every label.
    pub dimensions: &'static [(&'static str, &'static str)],
    pub emitter: Emitter,
    /// One line: what it measures.
    pub description: &'static str,
}

/// A metric of an AWS service that the dashboards and alarms read (nothing of ours records it).
#[derive(Debug)]
pub struct ExternalMetric {
    pub namespace: &'static str,
    pub name: &'static str,
    pub unit: Unit,
    /// The dimension names CloudWatch publishes it under.
    pub dimensions: &'static [&'static str],
    pub description: &'static str,
}

/// The labels of a metric that has none: `metric::CACHE_HITS.counter(NO_LABELS)`.
pub const NO_LABELS: &[(&str, &str)] = &[];

/// The dimension every exported metric carries besides its own: the deployment.
pub const ENVIRONMENT_DIMENSION: &str = "Environment";

impl Metric {
    /// The counter of these labels, registered with the installed recorder.
    pub fn counter(&'static self, labels: impl IntoLabels) -> Counter {
        debug_assert_eq!(self.kind, Kind::Counter, "{} is not a counter", self.name);
        let labels = self.checked(labels);
        metrics::counter!(self.name, labels)
    }

    /// The gauge of these labels, registered with the installed recorder.
    pub fn gauge(&'static self, labels: impl IntoLabels) -> Gauge {
        debug_assert_eq!(self.kind, Kind::Gauge, "{} is not a gauge", self.name);
        let labels = self.checked(labels);
        metrics::gauge!(self.name, labels)
    }

    /// The histogram of these labels, registered with the installed recorder.
    pub fn histogram(&'static self, labels: impl IntoLabels) -> Histogram {
        debug_assert_eq!(self.kind, Kind::Histogram, "{} is not a histogram", self.name);
        let labels = self.checked(labels);
        metrics::histogram!(self.name, labels)
    }

    /// Registers the series of these labels at zero, so that it shows before its first occasion
    /// (a counter of conflicts on a node that had none yet). A histogram cannot be registered empty
    /// in Prometheus text; histograms are emitted by use.
    pub fn register(&'static self, labels: impl IntoLabels) {
        match self.kind {
            Kind::Counter => self.counter(labels).increment(0),
            Kind::Gauge => self.gauge(labels).increment(0.0),
            Kind::Histogram => {}
        }
    }

    /// The CloudWatch dimension name of a label, if the label is one.
    pub fn dimension_of(&self, label: &str) -> Option<&'static str> {
        self.dimensions.iter().find(|(l, _)| *l == label).map(|(_, d)| *d)
    }

    fn checked(&self, labels: impl IntoLabels) -> Vec<Label> {
        let labels = labels.into_labels();
        debug_assert!(
            labels.len() == self.labels.len() && labels.iter().zip(self.labels).all(|(l, k)| l.key() == *k),
            "{} recorded with labels {:?}, declared {:?}",
            self.name,
            labels.iter().map(Label::key).collect::<Vec<_>>(),
            self.labels
        );
        labels
    }
}

/// The declaration of a metric by its Prometheus name.
pub fn find(name: &str) -> Option<&'static Metric> {
    CATALOG.iter().copied().find(|m| m.name == name)
}

/// Describes every metric to the installed recorder (units and help text in `/metrics`).
pub fn describe_all() {
    for m in CATALOG {
        let unit = match m.unit {
            Unit::Seconds | Unit::Milliseconds => metrics::Unit::Seconds,
            Unit::Count => metrics::Unit::Count,
            Unit::Bytes => metrics::Unit::Bytes,
            Unit::Percent => metrics::Unit::Percent,
            Unit::CountPerSecond => metrics::Unit::CountPerSecond,
            Unit::None => metrics::Unit::Count,
        };
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, unit, m.description),
            Kind::Gauge => metrics::describe_gauge!(m.name, unit, m.description),
            Kind::Histogram => metrics::describe_histogram!(m.name, unit, m.description),
        }
    }
}

/// Aggregate (stream category) label values: the actors of the domain.
pub const AGGREGATES: &[&str] = &["order", "payment", "inventory", "loyalty", "menu", "store", "customer"];

macro_rules! metric {
    ($ident:ident, $name:literal, $kind:ident, [$($label:literal),*], $ns:literal, $cw:literal, $unit:ident * $scale:literal,
     [$(($l:literal, $d:literal)),*], $emitter:ident, $description:literal) => {
        #[doc = $description]
        pub static $ident: Metric = Metric {
            name: $name,
            kind: Kind::$kind,
            labels: &[$($label),*],
            namespace: $ns,
            cloudwatch_name: $cw,
            unit: Unit::$unit,
            scale: $scale,
            dimensions: &[$(($l, $d)),*],
            emitter: Emitter::$emitter,
            description: $description,
        };
    };
}

// ---- Orders (the plans' OrderService) ----
metric!(
    ORDER_CREATION_DURATION,
    "order_creation_seconds",
    Histogram,
    ["outcome"],
    "CloudCafe/OrderService",
    "OrderCreationDuration",
    Milliseconds * 1000.0,
    [("outcome", "Outcome")],
    Node,
    "Time from an order's request to its answer (placed, rejected or failed), on the node that took it."
);

// ---- Actors: commands by aggregate ----
metric!(
    COMMANDS,
    "commands_total",
    Counter,
    ["category", "outcome"],
    "CloudCafe/Actors",
    "Commands",
    Count * 1.0,
    [("category", "Aggregate"), ("outcome", "Outcome")],
    Node,
    "Commands handled, by aggregate and outcome (ok, rejected, busy, unavailable, contended)."
);
metric!(
    COMMAND_DURATION,
    "command_seconds",
    Histogram,
    ["category"],
    "CloudCafe/Actors",
    "CommandDuration",
    Milliseconds * 1000.0,
    [("category", "Aggregate")],
    Node,
    "Time from a command's arrival at its actor's host to its outcome, by aggregate."
);
metric!(
    ACTORS_ACTIVE,
    "actors_active",
    Gauge,
    ["category"],
    "CloudCafe/Actors",
    "ActiveActors",
    Count * 1.0,
    [("category", "Aggregate")],
    Node,
    "Actors resident in memory, by aggregate."
);
metric!(
    ACTOR_ACTIVATION_DURATION,
    "actor_activation_seconds",
    Histogram,
    [],
    "CloudCafe/Actors",
    "ActivationDuration",
    Milliseconds * 1000.0,
    [],
    Node,
    "Time to load an actor's snapshot and fold the events after it."
);
metric!(
    ACTOR_BATCH_SIZE,
    "actor_batch_commands",
    Histogram,
    [],
    "CloudCafe/Actors",
    "BatchSize",
    Count * 1.0,
    [],
    Node,
    "Commands decided together and appended in one write by one actor."
);
metric!(
    ACTOR_CONFLICTS,
    "actor_conflicts_total",
    Counter,
    ["category"],
    "CloudCafe/Actors",
    "Conflicts",
    Count * 1.0,
    [("category", "Aggregate")],
    Node,
    "Appends refused because another writer moved the stream first (optimistic concurrency), by aggregate."
);
metric!(
    ACTOR_BUSY_REJECTIONS,
    "actor_mailbox_full_total",
    Counter,
    ["category"],
    "CloudCafe/Actors",
    "BusyRejections",
    Count * 1.0,
    [("category", "Aggregate")],
    Node,
    "Commands refused as busy because the actor's mailbox was full, by aggregate."
);
metric!(
    ACTOR_MAILBOX_DEPTH,
    "actor_mailbox_depth",
    Histogram,
    [],
    "CloudCafe/Actors",
    "MailboxDepth",
    Count * 1.0,
    [],
    Node,
    "Messages waiting in an actor's mailbox when one more arrives."
);
metric!(ACTOR_CATCH_UPS, "actor_catch_ups_total", Counter, ["category", "cause"], "CloudCafe/Actors", "CatchUps", Count * 1.0,
    [("category", "Aggregate"), ("cause", "Cause")], Node, "Resident actors that read their stream before a message because another node moved it (moved) or freshness was not vouched for (unvouched).");

// ---- Journal ----
metric!(
    JOURNAL_APPEND_REQUESTS,
    "journal_append_batch_requests",
    Histogram,
    ["adapter"],
    "CloudCafe/Journal",
    "AppendBatchRequests",
    Count * 1.0,
    [("adapter", "Adapter")],
    Node,
    "Append requests committed together in one journal transaction (group commit)."
);
metric!(
    JOURNAL_APPEND_EVENTS,
    "journal_append_batch_events",
    Histogram,
    ["adapter"],
    "CloudCafe/Journal",
    "AppendBatchEvents",
    Count * 1.0,
    [("adapter", "Adapter")],
    Node,
    "Events committed in one journal transaction."
);
metric!(
    JOURNAL_APPEND_DURATION,
    "journal_append_batch_seconds",
    Histogram,
    ["adapter"],
    "CloudCafe/Journal",
    "AppendDuration",
    Milliseconds * 1000.0,
    [("adapter", "Adapter")],
    Node,
    "Time to commit one journal transaction."
);
metric!(
    JOURNAL_APPEND_CONFLICTS,
    "journal_append_conflicts_total",
    Counter,
    ["adapter"],
    "CloudCafe/Journal",
    "AppendConflicts",
    Count * 1.0,
    [("adapter", "Adapter")],
    Node,
    "Append requests refused for a stale expected version."
);
metric!(
    JOURNAL_VERSION_RACES,
    "journal_version_races_total",
    Counter,
    [],
    "CloudCafe/Journal",
    "VersionRaces",
    Count * 1.0,
    [],
    Postgres,
    "Appends that lost a race on a stream's version to another node's transaction (PostgreSQL unique violation)."
);

// ---- Projections: followers of the journal and the Kinesis consumer ----
metric!(
    FOLLOWER_EVENTS,
    "follower_events_total",
    Counter,
    ["follower"],
    "CloudCafe/Projections",
    "EventsApplied",
    Count * 1.0,
    [("follower", "Follower")],
    Node,
    "Events a follower of the journal (projection, saga, outbox, freshness) has handled."
);
metric!(
    FOLLOWER_LAG_EVENTS,
    "follower_lag_events",
    Gauge,
    ["follower"],
    "CloudCafe/Projections",
    "LagEvents",
    Count * 1.0,
    [("follower", "Follower")],
    Node,
    "Events committed to the journal that a follower has not handled yet."
);
metric!(
    FOLLOWER_LAG_SECONDS,
    "follower_lag_seconds",
    Gauge,
    ["follower"],
    "CloudCafe/Projections",
    "LagSeconds",
    Seconds * 1.0,
    [("follower", "Follower")],
    Node,
    "Age of the oldest event a follower has not handled yet (0 when caught up)."
);
metric!(
    FOLLOWER_ERRORS,
    "follower_errors_total",
    Counter,
    ["follower", "stage"],
    "CloudCafe/Projections",
    "FollowerErrors",
    Count * 1.0,
    [("follower", "Follower"), ("stage", "Stage")],
    Node,
    "Failures of a follower, by stage (start, read, handle, commit); each is retried."
);
metric!(
    FOLLOWER_STALLS,
    "follower_stalls_total",
    Counter,
    ["follower"],
    "CloudCafe/Projections",
    "Stalls",
    Count * 1.0,
    [("follower", "Follower")],
    Node,
    "Times a follower stopped on an event it cannot apply (a poison event)."
);
metric!(
    FOLLOWER_STALLED,
    "follower_stalled",
    Gauge,
    ["follower"],
    "CloudCafe/Projections",
    "Stalled",
    Count * 1.0,
    [("follower", "Follower")],
    Node,
    "1 while a follower is stopped on an event it cannot apply, else 0."
);
metric!(
    FOLLOWER_STALLED_POSITION,
    "follower_stalled_position",
    Gauge,
    ["follower"],
    "CloudCafe/Projections",
    "StalledPosition",
    None * 1.0,
    [("follower", "Follower")],
    Node,
    "Global position of the event a follower is stopped on (0 when it is not)."
);
metric!(
    SINGLETON_HELD,
    "singleton_held",
    Gauge,
    ["follower"],
    "CloudCafe/Projections",
    "SingletonHeld",
    Count * 1.0,
    [("follower", "Follower")],
    Node,
    "1 while this node holds the lock that makes it the one runner of a follower, else 0."
);
metric!(
    CONSUMER_MILLIS_BEHIND,
    "kinesis_consumer_millis_behind",
    Gauge,
    ["application", "shard"],
    "CloudCafe/Projections",
    "MillisBehindLatest",
    Milliseconds * 1.0,
    [("application", "Application"), ("shard", "ShardId")],
    KinesisConsumer,
    "How far a Kinesis consumer's last read was behind the shard's tip (GetRecords MillisBehindLatest)."
);
metric!(
    CONSUMER_RECORDS,
    "kinesis_consumer_records_total",
    Counter,
    ["application", "shard"],
    "CloudCafe/Projections",
    "RecordsProcessed",
    Count * 1.0,
    [("application", "Application")],
    KinesisConsumer,
    "Kinesis records a consumer has applied and checkpointed."
);
metric!(
    CONSUMER_POISON,
    "kinesis_consumer_poison_total",
    Counter,
    ["projection"],
    "CloudCafe/Projections",
    "PoisonRecords",
    Count * 1.0,
    [("projection", "Projection")],
    KinesisConsumer,
    "Kinesis records that are not event envelopes, logged and passed over."
);
metric!(
    CONSUMER_LEASES_HELD,
    "kinesis_consumer_leases_held",
    Gauge,
    ["application"],
    "CloudCafe/Projections",
    "LeasesHeld",
    Count * 1.0,
    [("application", "Application")],
    KinesisConsumer,
    "Shard leases this node holds for a consumer application."
);
metric!(
    CONSUMER_LEASE_CHANGES,
    "kinesis_consumer_lease_changes_total",
    Counter,
    ["application", "change"],
    "CloudCafe/Projections",
    "LeaseChanges",
    Count * 1.0,
    [("application", "Application"), ("change", "Change")],
    KinesisConsumer,
    "Shard leases taken, stolen or lost by this node."
);

// ---- Outbox: the journal published to Kinesis ----
metric!(
    OUTBOX_EVENTS,
    "publisher_events_total",
    Counter,
    ["destination"],
    "CloudCafe/Outbox",
    "EventsPublished",
    Count * 1.0,
    [("destination", "Destination")],
    Outbox,
    "Events published to a destination, by destination."
);
metric!(
    OUTBOX_PUBLISH_DURATION,
    "publisher_publish_seconds",
    Histogram,
    ["destination"],
    "CloudCafe/Outbox",
    "PublishDuration",
    Milliseconds * 1000.0,
    [("destination", "Destination")],
    Outbox,
    "Time to publish one batch to a destination, retries included."
);
metric!(
    OUTBOX_RETRIES,
    "publisher_retries_total",
    Counter,
    ["destination"],
    "CloudCafe/Outbox",
    "PublishRetries",
    Count * 1.0,
    [("destination", "Destination")],
    Outbox,
    "Batches or records sent again after a throttle or failure."
);
metric!(
    OUTBOX_CHECKPOINT,
    "publisher_checkpoint",
    Gauge,
    ["destination"],
    "CloudCafe/Outbox",
    "Checkpoint",
    None * 1.0,
    [("destination", "Destination")],
    Outbox,
    "Global position up to which the journal is published to a destination."
);
metric!(
    OUTBOX_LAG_EVENTS,
    "publisher_lag_events",
    Gauge,
    ["destination"],
    "CloudCafe/Outbox",
    "LagEvents",
    Count * 1.0,
    [("destination", "Destination")],
    Outbox,
    "Events committed to the journal and not yet published to a destination."
);

// ---- Payments (the plans' PaymentService) ----
metric!(
    PAYMENT_REQUESTS,
    "payment_requests_total",
    Counter,
    ["outcome"],
    "CloudCafe/PaymentService",
    "PaymentRequests",
    Count * 1.0,
    [("outcome", "Outcome")],
    PaymentProcessor,
    "Payment requests the processor handled, by outcome."
);
metric!(
    PAYMENT_PROCESSING_DURATION,
    "payment_processing_seconds",
    Histogram,
    [],
    "CloudCafe/PaymentService",
    "ProcessingDuration",
    Milliseconds * 1000.0,
    [],
    PaymentProcessor,
    "Time to handle one payment request, from receipt to deletion from the queue."
);
metric!(
    PAYMENT_VISIBILITY_EXTENSIONS,
    "payment_visibility_extensions_total",
    Counter,
    [],
    "CloudCafe/PaymentService",
    "VisibilityExtensions",
    Count * 1.0,
    [],
    PaymentProcessor,
    "Times a payment request under way was kept invisible to other processors for longer."
);

// ---- Notifications (the plans' NotificationService) ----
metric!(
    NOTIFICATIONS,
    "notifications_total",
    Counter,
    ["outcome"],
    "CloudCafe/NotificationService",
    "Notifications",
    Count * 1.0,
    [("outcome", "Outcome")],
    Notifier,
    "Notification messages the worker handled, by outcome: `email` or `sms` (delivered), `duplicate` (delivered before), `failed` (it comes back)."
);
metric!(
    NOTIFICATION_DELIVERY_DURATION,
    "notification_delivery_seconds",
    Histogram,
    [],
    "CloudCafe/NotificationService",
    "DeliveryDuration",
    Milliseconds * 1000.0,
    [],
    Notifier,
    "Time to handle one notification message, from receipt to deletion from the queue."
);
metric!(
    NOTIFICATION_VISIBILITY_EXTENSIONS,
    "notification_visibility_extensions_total",
    Counter,
    [],
    "CloudCafe/NotificationService",
    "VisibilityExtensions",
    Count * 1.0,
    [],
    Notifier,
    "Times a notification under way was kept invisible to other workers for longer."
);

// ---- Cache (Redis in front of the storefront) ----
metric!(
    CACHE_HITS,
    "cache_hits_total",
    Counter,
    [],
    "CloudCafe/Cache",
    "Hits",
    Count * 1.0,
    [],
    Cache,
    "Storefront reads answered from the cache."
);
metric!(
    CACHE_MISSES,
    "cache_misses_total",
    Counter,
    [],
    "CloudCafe/Cache",
    "Misses",
    Count * 1.0,
    [],
    Cache,
    "Storefront reads the cache did not have."
);
metric!(
    CACHE_ERRORS,
    "cache_errors_total",
    Counter,
    [],
    "CloudCafe/Cache",
    "Errors",
    Count * 1.0,
    [],
    Cache,
    "Cache calls that failed (the read went to the store)."
);
metric!(
    CACHE_BYPASSED,
    "cache_bypassed_total",
    Counter,
    [],
    "CloudCafe/Cache",
    "Bypassed",
    Count * 1.0,
    [],
    Cache,
    "Reads sent past the cache while it was marked unhealthy."
);

// ---- HTTP (what the node answered; the ALB's own figures are external) ----
metric!(
    HTTP_REQUESTS,
    "http_requests_total",
    Counter,
    ["method", "route", "status", "class"],
    "CloudCafe/Gateway",
    "Requests",
    Count * 1.0,
    [("route", "Route"), ("class", "StatusClass")],
    Node,
    "HTTP requests answered, by route pattern and status class (2xx, 4xx, 5xx)."
);
metric!(
    HTTP_REQUEST_DURATION,
    "http_request_seconds",
    Histogram,
    ["method", "route"],
    "CloudCafe/Gateway",
    "RequestDuration",
    Milliseconds * 1000.0,
    [("route", "Route")],
    Node,
    "Time to answer an HTTP request, by route pattern."
);

// ---- Stress scenarios ----
metric!(
    STRESS_RUNNING,
    "stress_scenario_running",
    Gauge,
    ["scenario"],
    "CloudCafe/Stress",
    "ScenarioRunning",
    Count * 1.0,
    [("scenario", "Scenario")],
    Stress,
    "1 while a stress scenario runs on this node, else 0 (the dashboards' markers)."
);
metric!(
    STRESS_OFFERED_RATE,
    "stress_offered_per_second",
    Gauge,
    ["scenario"],
    "CloudCafe/Stress",
    "OfferedRate",
    CountPerSecond * 1.0,
    [("scenario", "Scenario")],
    Stress,
    "Arrivals per second a running stress scenario asks for (0 when none runs)."
);
metric!(
    STRESS_ARRIVALS,
    "stress_arrivals_total",
    Counter,
    ["scenario"],
    "CloudCafe/Stress",
    "Arrivals",
    Count * 1.0,
    [("scenario", "Scenario")],
    Stress,
    "Operations a stress scenario has sent."
);

// ---- The CloudWatch export itself ----
metric!(
    EXPORT_DATUMS,
    "cloudwatch_datums_total",
    Counter,
    ["outcome"],
    "CloudCafe/Export",
    "Datums",
    Count * 1.0,
    [("outcome", "Outcome")],
    Export,
    "Metric data points exported to CloudWatch, by outcome (sent, dropped)."
);
metric!(
    EXPORT_FAILURES,
    "cloudwatch_put_failures_total",
    Counter,
    [],
    "CloudCafe/Export",
    "PutFailures",
    Count * 1.0,
    [],
    PutMetricData,
    "PutMetricData calls that failed (each is retried with backoff until its batch is dropped)."
);

// ---- Security: tokens and rate limits ----
metric!(
    AUTH_REFUSED,
    "auth_refused_total",
    Counter,
    ["reason"],
    "CloudCafe/Security",
    "TokensRefused",
    Count * 1.0,
    [("reason", "Reason")],
    Auth,
    "Bearer tokens refused, by why (malformed, unknown_key, wrong_algorithm, invalid, unknown_role); the client only ever sees one 401."
);
metric!(
    RATE_LIMITED,
    "rate_limited_total",
    Counter,
    ["class"],
    "CloudCafe/Security",
    "RateLimited",
    Count * 1.0,
    [("class", "Class")],
    Auth,
    "Requests answered 429 by the rate limiter, by the caller's class (customer, staff, admin, anonymous)."
);
metric!(
    RATE_LIMIT_FALLBACKS,
    "rate_limit_fallbacks_total",
    Counter,
    [],
    "CloudCafe/Security",
    "RateLimitFallbacks",
    Count * 1.0,
    [],
    Auth,
    "Rate-limit decisions taken by the node's own buckets because the shared ones in Redis did not answer in time."
);
metric!(
    JWKS_FETCHES,
    "jwks_fetches_total",
    Counter,
    ["outcome"],
    "CloudCafe/Security",
    "JwksFetches",
    Count * 1.0,
    [("outcome", "Outcome")],
    Jwks,
    "Fetches of the identity provider's key set, by outcome (ok, failed)."
);

/// Every metric the code records.
pub static CATALOG: &[&Metric] = &[
    &ORDER_CREATION_DURATION,
    &COMMANDS,
    &COMMAND_DURATION,
    &ACTORS_ACTIVE,
    &ACTOR_ACTIVATION_DURATION,
    &ACTOR_BATCH_SIZE,
    &ACTOR_CONFLICTS,
    &ACTOR_BUSY_REJECTIONS,
    &ACTOR_MAILBOX_DEPTH,
    &ACTOR_CATCH_UPS,
    &JOURNAL_APPEND_REQUESTS,
    &JOURNAL_APPEND_EVENTS,
    &JOURNAL_APPEND_DURATION,
    &JOURNAL_APPEND_CONFLICTS,
    &JOURNAL_VERSION_RACES,
    &FOLLOWER_EVENTS,
    &FOLLOWER_LAG_EVENTS,
    &FOLLOWER_LAG_SECONDS,
    &FOLLOWER_ERRORS,
    &FOLLOWER_STALLS,
    &FOLLOWER_STALLED,
    &FOLLOWER_STALLED_POSITION,
    &SINGLETON_HELD,
    &CONSUMER_MILLIS_BEHIND,
    &CONSUMER_RECORDS,
    &CONSUMER_POISON,
    &CONSUMER_LEASES_HELD,
    &CONSUMER_LEASE_CHANGES,
    &OUTBOX_EVENTS,
    &OUTBOX_PUBLISH_DURATION,
    &OUTBOX_RETRIES,
    &OUTBOX_CHECKPOINT,
    &OUTBOX_LAG_EVENTS,
    &PAYMENT_REQUESTS,
    &PAYMENT_PROCESSING_DURATION,
    &PAYMENT_VISIBILITY_EXTENSIONS,
    &NOTIFICATIONS,
    &NOTIFICATION_DELIVERY_DURATION,
    &NOTIFICATION_VISIBILITY_EXTENSIONS,
    &CACHE_HITS,
    &CACHE_MISSES,
    &CACHE_ERRORS,
    &CACHE_BYPASSED,
    &HTTP_REQUESTS,
    &HTTP_REQUEST_DURATION,
    &STRESS_RUNNING,
    &STRESS_OFFERED_RATE,
    &STRESS_ARRIVALS,
    &EXPORT_DATUMS,
    &EXPORT_FAILURES,
    &AUTH_REFUSED,
    &RATE_LIMITED,
    &RATE_LIMIT_FALLBACKS,
    &JWKS_FETCHES,
];

macro_rules! external {
    ($ident:ident, $ns:literal, $name:literal, $unit:ident, [$($d:literal),*], $description:literal) => {
        #[doc = $description]
        pub static $ident: ExternalMetric =
            ExternalMetric { namespace: $ns, name: $name, unit: Unit::$unit, dimensions: &[$($d),*], description: $description };
    };
}

external!(
    ALB_REQUESTS,
    "AWS/ApplicationELB",
    "RequestCount",
    Count,
    ["LoadBalancer"],
    "Requests the load balancer received."
);
external!(
    ALB_TARGET_5XX,
    "AWS/ApplicationELB",
    "HTTPCode_Target_5XX_Count",
    Count,
    ["LoadBalancer"],
    "5XX answers from the nodes behind the load balancer."
);
external!(
    ALB_TARGET_RESPONSE_TIME,
    "AWS/ApplicationELB",
    "TargetResponseTime",
    Seconds,
    ["LoadBalancer"],
    "Seconds from the request leaving the load balancer to the node's answer."
);
external!(
    AURORA_CONNECTIONS,
    "AWS/RDS",
    "DatabaseConnections",
    Count,
    ["DBClusterIdentifier"],
    "Connections open to the Aurora cluster."
);
external!(
    AURORA_CPU,
    "AWS/RDS",
    "CPUUtilization",
    Percent,
    ["DBClusterIdentifier"],
    "CPU of the Aurora cluster's instances."
);
external!(
    DYNAMODB_THROTTLES,
    "AWS/DynamoDB",
    "ThrottledRequests",
    Count,
    ["TableName", "Operation"],
    "DynamoDB requests refused for exceeding provisioned or account throughput."
);
external!(
    KINESIS_ITERATOR_AGE,
    "AWS/Kinesis",
    "GetRecords.IteratorAgeMilliseconds",
    Milliseconds,
    ["StreamName"],
    "Age of the last record read from the stream by any consumer."
);
external!(
    SQS_OLDEST_AGE,
    "AWS/SQS",
    "ApproximateAgeOfOldestMessage",
    Seconds,
    ["QueueName"],
    "Age of the oldest message waiting in a queue."
);
external!(
    SQS_VISIBLE,
    "AWS/SQS",
    "ApproximateNumberOfMessagesVisible",
    Count,
    ["QueueName"],
    "Messages waiting in a queue (the dead-letter queue's depth)."
);
external!(
    CACHE_NODE_HITS,
    "AWS/ElastiCache",
    "CacheHits",
    Count,
    ["CacheClusterId"],
    "Successful key lookups in the Redis cluster."
);
external!(
    CACHE_NODE_MISSES,
    "AWS/ElastiCache",
    "CacheMisses",
    Count,
    ["CacheClusterId"],
    "Unsuccessful key lookups in the Redis cluster."
);
external!(ECS_CPU, "AWS/ECS", "CPUUtilization", Percent, ["ClusterName", "ServiceName"], "CPU of the service's tasks.");
external!(
    ECS_RUNNING_TASKS,
    "ECS/ContainerInsights",
    "RunningTaskCount",
    Count,
    ["ClusterName", "ServiceName"],
    "Tasks running for the service (Container Insights)."
);
external!(
    ECS_DESIRED_TASKS,
    "ECS/ContainerInsights",
    "DesiredTaskCount",
    Count,
    ["ClusterName", "ServiceName"],
    "Tasks the service wants running (Container Insights)."
);

/// The AWS service metrics the dashboards and alarms read.
pub static EXTERNAL: &[&ExternalMetric] = &[
    &ALB_REQUESTS,
    &ALB_TARGET_5XX,
    &ALB_TARGET_RESPONSE_TIME,
    &AURORA_CONNECTIONS,
    &AURORA_CPU,
    &DYNAMODB_THROTTLES,
    &KINESIS_ITERATOR_AGE,
    &SQS_OLDEST_AGE,
    &SQS_VISIBLE,
    &CACHE_NODE_HITS,
    &CACHE_NODE_MISSES,
    &ECS_CPU,
    &ECS_RUNNING_TASKS,
    &ECS_DESIRED_TASKS,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_follow_each_systems_conventions() {
        let mut prometheus = HashSet::new();
        let mut cloudwatch = HashSet::new();
        for m in CATALOG {
            assert!(prometheus.insert(m.name), "{} declared twice", m.name);
            assert!(cloudwatch.insert((m.namespace, m.cloudwatch_name)), "{} {} twice", m.namespace, m.cloudwatch_name);
            assert!(m.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", m.name);
            if m.kind == Kind::Counter {
                assert!(m.name.ends_with("_total"), "counter {} must end in _total", m.name);
            }
            assert!(m.namespace.starts_with("CloudCafe/"), "{}", m.namespace);
            let first = m.cloudwatch_name.chars().next().unwrap();
            assert!(
                first.is_ascii_uppercase() && m.cloudwatch_name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{}",
                m.cloudwatch_name
            );
            assert!(!m.description.is_empty() && m.description.len() < 200, "{}", m.name);
        }
    }

    #[test]
    fn dimensions_are_labels_and_a_gauge_keeps_them_all() {
        for m in CATALOG {
            for (label, dimension) in m.dimensions {
                assert!(m.labels.contains(label), "{}: dimension {dimension} is not a label", m.name);
                assert!(dimension.chars().next().unwrap().is_ascii_uppercase(), "{dimension}");
                assert_ne!(*dimension, ENVIRONMENT_DIMENSION);
            }
            if m.kind == Kind::Gauge {
                assert_eq!(m.labels.len(), m.dimensions.len(), "gauge {} drops a label", m.name);
            }
            // CloudWatch allows 30 dimensions per metric; the environment is one.
            assert!(m.dimensions.len() < 30);
        }
    }

    #[test]
    fn every_metric_can_be_found_by_its_prometheus_name() {
        for m in CATALOG {
            assert!(std::ptr::eq(find(m.name).unwrap(), *m));
        }
        assert!(find("made_up_total").is_none());
    }
}
