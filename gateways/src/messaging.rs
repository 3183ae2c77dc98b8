//! What a node runs beside its HTTP API when events leave the process (feature `cloud`): the outbox
//! publishers (Kinesis `order-events`, SQS `payment-requests.fifo`, the notifier to SQS
//! `notification-queue`), the payment processor, the notification worker, and the Kinesis consumers
//! that feed read models from the stream instead of the journal.
//!
//! Every part receives built clients and typed settings; `main` builds both from flags.

use std::sync::Arc;
use std::time::Duration;

use projections::bus::analytics::{self, AnalyticsBus};
use projections::bus::consumer::{
    CheckpointedProjection, ConsumerLag, ConsumerSettings, KinesisConsumer, KinesisProjection,
};
use projections::bus::kinesis::{self, KinesisBus, KinesisSettings};
use projections::bus::leases::LeaseTable;
use projections::bus::notifications::{self, NotificationBus};
use projections::bus::publisher::{Destination, Publisher, PublisherSettings};
use projections::bus::sqs::{self, SqsBus, SqsSettings};
use projections::{ShardCheckpointedSink, StreamOrderedSink};
use tokio::task::JoinHandle;

use crate::node::{spawn_singleton, Node};
use crate::notifications::{Couriers, DeliveryLog, NotificationWorker};
use crate::payments::{PaymentLedger, PaymentProcessor, ProcessorSettings};
use crate::queue::Receiving;

/// Every event to a Kinesis stream.
pub struct KinesisOutbox {
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
    /// Shards of the stream if this node creates it.
    pub shards: i32,
    /// At most one record per stream in a request, so that a shard never carries a stream's later
    /// event before an earlier one. Kinesis-fed read models need it; it costs throughput on hot
    /// streams (BENCHMARKS.md), so it is off when none runs.
    pub one_record_per_stream: bool,
}

/// The events analytics needs to their own Kinesis stream, keyed by store; and, on a node whose
/// analytics model follows that stream, its consumer.
pub struct AnalyticsOutbox {
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
    /// Shards of the stream if this node creates it.
    pub shards: i32,
    pub model: Option<KinesisFedAnalytics>,
}

/// The analytics model as a consumer application of the analytics stream: its shard checkpoints
/// live in its own tables, the lease table shares the shards between nodes.
pub struct KinesisFedAnalytics {
    pub sink: Arc<dyn ShardCheckpointedSink>,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub lease_table: String,
    pub worker_id: String,
    pub lease_timeout: Duration,
}

/// Payment requests to an SQS FIFO queue, and the processor that takes them.
pub struct PaymentQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub queue: String,
    pub dead_letter_queue: String,
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The DynamoDB table of processed payments.
    pub ledger_table: String,
    pub wait: Duration,
    pub visibility: Duration,
}

/// Notifications to the SQS standard queue (the notifier, on one node), and the worker that
/// delivers them by SES or SNS (on every node).
pub struct NotificationQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub queue: String,
    pub dead_letter_queue: String,
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The DynamoDB table of deliveries.
    pub deliveries_table: String,
    pub couriers: Couriers,
    pub wait: Duration,
    pub visibility: Duration,
    /// This node's name in the delivery claims.
    pub worker_id: String,
}

/// Read models that follow the Kinesis stream, each as its own consumer application with its own
/// lease table `{lease_table_prefix}-{projection name}`.
pub struct KinesisProjections {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sinks: Vec<Arc<dyn StreamOrderedSink>>,
    pub lease_table_prefix: String,
    pub worker_id: String,
    pub lease_timeout: Duration,
}

#[derive(Default)]
pub struct MessagingSettings {
    pub kinesis: Option<KinesisOutbox>,
    pub analytics: Option<AnalyticsOutbox>,
    pub payments: Option<PaymentQueue>,
    pub notifications: Option<NotificationQueue>,
    /// Needs `kinesis`.
    pub kinesis_projections: Option<KinesisProjections>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("setting up the broker: {0}")]
    Setup(#[from] projections::bus::publisher::SetupError),
    #[error("lease table: {0}")]
    Leases(#[from] projections::bus::leases::LeaseError),
    #[error("payments: {0}")]
    Payments(#[from] crate::payments::PaymentError),
    #[error("notifications: {0}")]
    Notifications(#[from] crate::notifications::NotificationError),
    #[error("read models follow Kinesis only when a Kinesis stream is configured")]
    NoStream,
}

/// The lease table name of one projection's consumer application.
pub fn lease_table(prefix: &str, projection: &str) -> String {
    let name: String =
        projection.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    format!("{prefix}-{name}")
}

/// What [`start`] started.
pub struct Started {
    pub tasks: Vec<JoinHandle<()>>,
    /// The lag of each Kinesis-fed read model's consumer on this node, by projection name.
    pub kinesis_lag: Vec<(String, Arc<ConsumerLag>)>,
}

/// Creates the stream and queues if absent and starts the publishers, the payment processor and the
/// Kinesis consumers; they stop with the node.
pub async fn start(node: &Node, settings: MessagingSettings) -> Result<Started, MessagingError> {
    let mut destinations = Vec::new();
    let mut tasks = Vec::new();
    let mut kinesis_lag = Vec::new();
    if let Some(outbox) = &settings.kinesis {
        kinesis::ensure_stream(&outbox.client, &outbox.stream, outbox.shards, Duration::from_secs(60)).await?;
        let bus = KinesisSettings {
            stream_name: outbox.stream.clone(),
            shards: outbox.shards,
            one_record_per_stream: outbox.one_record_per_stream || settings.kinesis_projections.is_some(),
            ..KinesisSettings::default()
        };
        destinations.push(Destination::new(
            Arc::new(KinesisBus::new(outbox.client.clone(), &bus)),
            PublisherSettings::new(kinesis::CHECKPOINT),
        ));
    }
    if let Some(outbox) = settings.analytics {
        kinesis::ensure_stream(&outbox.client, &outbox.stream, outbox.shards, Duration::from_secs(60)).await?;
        let bus =
            KinesisSettings { stream_name: outbox.stream.clone(), shards: outbox.shards, ..KinesisSettings::default() };
        destinations.push(Destination::new(
            Arc::new(AnalyticsBus::new(outbox.client.clone(), &bus, node.journal.clone())),
            PublisherSettings::new(analytics::CHECKPOINT),
        ));
        if let Some(model) = outbox.model {
            let leases = LeaseTable::open(model.dynamodb, model.lease_table).await?;
            let worker =
                ConsumerSettings::new(&outbox.stream, &model.worker_id).with_lease_timeout(model.lease_timeout);
            let name = model.sink.name().to_owned();
            let processor = Arc::new(CheckpointedProjection::new(model.sink));
            let consumer = KinesisConsumer::new(outbox.client, leases, processor, worker);
            kinesis_lag.push((name, consumer.lag()));
            tasks.push(consumer.spawn(node.stop_signal()));
        }
    }
    if let Some(payments) = &settings.payments {
        let queues = sqs::ensure_payment_queues(
            &payments.sqs,
            &payments.queue,
            &payments.dead_letter_queue,
            sqs::DEFAULT_MAX_RECEIVE_COUNT,
        )
        .await?;
        destinations.push(Destination::new(
            Arc::new(SqsBus::new(payments.sqs.clone(), &SqsSettings::new(queues.queue_url.clone()))),
            PublisherSettings::new(sqs::CHECKPOINT),
        ));
        let ledger = PaymentLedger::open(payments.dynamodb.clone(), &payments.ledger_table).await?;
        let processor =
            ProcessorSettings { queue_url: queues.queue_url, wait: payments.wait, visibility: payments.visibility };
        tasks.push(
            PaymentProcessor::new(payments.sqs.clone(), node.cafe.clone(), ledger, processor).spawn(node.stop_signal()),
        );
    }
    if let Some(n) = settings.notifications {
        let queues = notifications::ensure_notification_queues(
            &n.sqs,
            &n.queue,
            &n.dead_letter_queue,
            notifications::DEFAULT_MAX_RECEIVE_COUNT,
        )
        .await?;
        destinations.push(Destination::new(
            Arc::new(NotificationBus::new(n.sqs.clone(), queues.queue_url.clone())),
            PublisherSettings::new(notifications::CHECKPOINT),
        ));
        let log = DeliveryLog::open(n.dynamodb.clone(), &n.deliveries_table).await?;
        let receiving = Receiving { queue_url: queues.queue_url, wait: n.wait, visibility: n.visibility };
        let worker = NotificationWorker::new(n.sqs, node.cafe.clone(), log, n.couriers, receiving, n.worker_id);
        tasks.push(worker.spawn(node.stop_signal()));
    }
    if let Some(consumers) = settings.kinesis_projections {
        let outbox = settings.kinesis.as_ref().ok_or(MessagingError::NoStream)?;
        for sink in consumers.sinks {
            let table = lease_table(&consumers.lease_table_prefix, sink.name());
            let leases = LeaseTable::open(consumers.dynamodb.clone(), table).await?;
            let worker =
                ConsumerSettings::new(&outbox.stream, &consumers.worker_id).with_lease_timeout(consumers.lease_timeout);
            let name = sink.name().to_owned();
            let consumer =
                KinesisConsumer::new(outbox.client.clone(), leases, Arc::new(KinesisProjection::new(sink)), worker);
            kinesis_lag.push((name, consumer.lag()));
            tasks.push(consumer.spawn(node.stop_signal()));
        }
    }
    for Destination { bus, settings } in destinations {
        let lock = format!("outbox:{}", settings.checkpoint);
        let publisher = Publisher::new(node.journal.clone(), bus, settings);
        let options = publisher.follow_options();
        let singletons = node.singletons.clone();
        let journal = node.journal.clone();
        tasks.push(spawn_singleton(singletons, lock, journal, Arc::new(publisher), options, node.stop_signal()));
    }
    Ok(Started { tasks, kinesis_lag })
}
