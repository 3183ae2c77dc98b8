//! The one place where a build with the AWS SDK and the mongodb driver (feature `cloud`) and a build
//! without them part ways. Both offer the same items; without the feature, each one that is asked
//! for something answers that this build has no such client and to rebuild with `--features cloud`.
//!
//! AWS clients are built here, and only here, through [`projections::aws::AwsSettings`].

pub use imp::*;

/// Lag reports of the read models a node feeds from Kinesis, by name.
pub type StreamFed = Vec<(String, std::sync::Arc<dyn projections::StreamFedLag>)>;

/// One message of the payment dead-letter queue, as `cloudcafe dlq list` shows it.
#[cfg_attr(not(feature = "cloud"), allow(dead_code))] // only a build with SQS finds any
pub struct DeadLetter {
    pub message_id: String,
    pub body: String,
    /// Receives counted by SQS (in the payment queue and in the dead-letter queue).
    pub receives: u32,
    /// The payment request, when the body is one.
    pub request: Option<DeadPaymentRequest>,
}

/// What `cloudcafe dlq list` shows of a payment request that failed.
#[cfg_attr(not(feature = "cloud"), allow(dead_code))] // only a build with SQS finds any
pub struct DeadPaymentRequest {
    pub order_id: uuid::Uuid,
    pub customer_id: String,
    pub amount_cents: i64,
    /// The `OrderPlaced` event's id.
    pub event_id: uuid::Uuid,
}

#[cfg(feature = "cloud")]
mod imp {
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::Context;
    use gateways::bench::{self, ReplayFigures};
    use gateways::messaging::{
        self, AnalyticsOutbox, KinesisFedAnalytics, KinesisOutbox, KinesisProjections, MessagingSettings,
        NotificationQueue, PaymentQueue,
    };
    use gateways::node::Node;
    use gateways::notifications::Couriers;
    use gateways::payments;
    use projections::aws::AwsSettings;
    use projections::read_models::documents::DocumentSink;
    use projections::read_models::dynamo::{DynamoSink, TableNames};
    use projections::{Rebuildable, StreamOrderedSink};

    use super::{DeadLetter, DeadPaymentRequest, StreamFed};
    use crate::cli::serve::{EventSource, MessagingArgs};
    use crate::cli::storage::StorageArgs;

    async fn dynamodb_client(endpoint: &Option<String>) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&AwsSettings::new(endpoint.clone()).sdk_config().await)
    }

    async fn kinesis_client(endpoint: &Option<String>) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&AwsSettings::new(endpoint.clone()).sdk_config().await)
    }

    async fn sqs_client(endpoint: &Option<String>) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&AwsSettings::new(endpoint.clone()).sdk_config().await)
    }

    /// With `--pg-iam-auth`: IAM authentication tokens for the journal's user, made at every new
    /// connection with the default AWS credentials ([`gateways::rds_iam`]).
    pub fn pg_password_source(storage: &StorageArgs) -> Option<events::postgres::SharedPasswordSource> {
        let url = storage.journal.as_ref().filter(|_| storage.pg_iam_auth)?;
        let auth = gateways::rds_iam::RdsIamAuth::for_url(url, AwsSettings::new(None));
        Some(events::postgres::SharedPasswordSource(Arc::new(auth)))
    }

    /// The DynamoDB and DocumentDB read models asked for.
    #[derive(Default)]
    pub struct CloudModels {
        dynamodb: Option<Arc<DynamoSink>>,
        documents: Option<Arc<DocumentSink>>,
    }

    impl CloudModels {
        /// The models `storage` asks for (`--dynamodb-env`, `--documentdb-url`), opened.
        pub async fn open(storage: &StorageArgs) -> anyhow::Result<Self> {
            let mut out = CloudModels::default();
            if let Some(env) = &storage.dynamodb_env {
                let client = dynamodb_client(&storage.dynamodb_endpoint).await;
                let names = TableNames::new("cloudcafe", env.clone());
                out.dynamodb = Some(Arc::new(DynamoSink::open(client, names).await?));
            }
            if let Some(url) = &storage.documentdb_url {
                let password = storage.documentdb_password();
                let client = projections::read_models::documents::open_documentdb_with(
                    url,
                    storage.documentdb_ca_file.as_deref(),
                    password.as_ref(),
                )
                .await
                .context("cannot reach DocumentDB")?;
                out.documents = Some(Arc::new(DocumentSink::open(client.database("cloudcafe")).await?));
            }
            Ok(out)
        }

        /// As rebuildable sinks, named as `replay --projection` names them.
        pub fn rebuildable(&self) -> Vec<(&'static str, Arc<dyn Rebuildable>)> {
            let mut out: Vec<(&'static str, Arc<dyn Rebuildable>)> = Vec::new();
            if let Some(d) = &self.dynamodb {
                out.push(("dynamodb", d.clone()));
            }
            if let Some(d) = &self.documents {
                out.push(("documents", d.clone()));
            }
            out
        }

        /// As sinks that can follow a Kinesis shard.
        fn stream_ordered(&self) -> Vec<Arc<dyn StreamOrderedSink>> {
            let mut out: Vec<Arc<dyn StreamOrderedSink>> = Vec::new();
            if let Some(d) = &self.dynamodb {
                out.push(d.clone());
            }
            if let Some(d) = &self.documents {
                out.push(d.clone());
            }
            out
        }
    }

    /// Starts the outbox publishers, the payment processor and the Kinesis consumers `m` asks for.
    pub async fn start_messaging(
        m: &MessagingArgs,
        storage: &StorageArgs,
        node: &Node,
        models: &CloudModels,
    ) -> anyhow::Result<StreamFed> {
        if !m.any() {
            return Ok(Vec::new());
        }
        let dynamodb = dynamodb_client(&storage.dynamodb_endpoint).await;
        let mut settings = MessagingSettings::default();
        if let Some(stream) = &m.kinesis_stream {
            settings.kinesis = Some(KinesisOutbox {
                client: kinesis_client(&m.kinesis_endpoint).await,
                stream: stream.clone(),
                shards: m.kinesis_shards.max(1),
                one_record_per_stream: m.projections_from == EventSource::Kinesis,
            });
        }
        if let Some(queue) = &m.payment_queue {
            settings.payments = Some(PaymentQueue {
                sqs: sqs_client(&m.sqs_endpoint).await,
                queue: queue.clone(),
                dead_letter_queue: m.payment_dlq.clone(),
                dynamodb: dynamodb.clone(),
                ledger_table: m.payments_table.clone(),
                wait: Duration::from_secs(m.payment_wait_secs.min(20)),
                visibility: Duration::from_secs(m.payment_visibility_secs.max(1)),
            });
        }
        // Both consumer applications (the Kinesis-fed models, the analytics model) lease alike.
        let lease_timeout = Duration::from_millis(m.lease_timeout_ms.max(100));
        let worker_id = m.worker_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}-{}", host.trim(), std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
        });
        if let Some(queue) = &m.notification_queue {
            let config = |endpoint: &Option<String>| AwsSettings::new(endpoint.clone());
            settings.notifications = Some(NotificationQueue {
                sqs: sqs_client(&m.sqs_endpoint).await,
                queue: queue.clone(),
                dead_letter_queue: m.notification_dlq.clone(),
                dynamodb: dynamodb.clone(),
                deliveries_table: m.notifications_table.clone(),
                couriers: Couriers {
                    ses: aws_sdk_sesv2::Client::new(&config(&m.ses_endpoint).sdk_config().await),
                    sns: aws_sdk_sns::Client::new(&config(&m.sns_endpoint).sdk_config().await),
                    sender: m.notification_sender.clone(),
                    default_email_domain: m.notification_email_domain.clone(),
                },
                wait: Duration::from_secs(20),
                visibility: Duration::from_secs(m.notification_visibility_secs.max(1)),
                worker_id: worker_id.clone(),
            });
        }
        if let Some(stream) = &m.analytics_stream {
            let model = match (m.analytics_from, &node.analytics) {
                (EventSource::Kinesis, Some(sink)) => Some(KinesisFedAnalytics {
                    sink: sink.clone(),
                    dynamodb: dynamodb.clone(),
                    lease_table: messaging::lease_table(
                        &m.lease_table_prefix,
                        projections::read_models::analytics::NAME,
                    ),
                    worker_id: worker_id.clone(),
                    lease_timeout,
                }),
                (EventSource::Kinesis, None) => anyhow::bail!("--analytics-from kinesis needs an analytics model"),
                (EventSource::Journal, _) => None,
            };
            settings.analytics = Some(AnalyticsOutbox {
                client: kinesis_client(&m.kinesis_endpoint).await,
                stream: stream.clone(),
                shards: m.analytics_shards.max(1),
                model,
            });
        }
        if m.projections_from == EventSource::Kinesis {
            let sinks = models.stream_ordered();
            if sinks.is_empty() {
                anyhow::bail!(
                    "--projections-from kinesis needs a read model that can follow it: --dynamodb-env or --documentdb-url"
                );
            }
            settings.kinesis_projections = Some(KinesisProjections {
                dynamodb,
                sinks,
                lease_table_prefix: m.lease_table_prefix.clone(),
                worker_id,
                lease_timeout,
            });
        }
        let started = messaging::start(node, settings).await.context("cannot start publishing and consuming")?;
        tracing::info!(kinesis = ?m.kinesis_stream, analytics = ?m.analytics_stream, payments = ?m.payment_queue, notifications = ?m.notification_queue, "events leave the process");
        Ok(started
            .kinesis_lag
            .into_iter()
            .map(|(name, lag)| (name, lag as Arc<dyn projections::StreamFedLag>))
            .collect())
    }

    /// Replay figures of the DynamoDB and DocumentDB models over `journal`, both at once (each is
    /// bound by its own emulator process).
    pub async fn emulated_replay(
        journal: Arc<dyn events::Journal>,
        dynamodb_endpoint: Option<String>,
        documentdb_url: Option<String>,
    ) -> anyhow::Result<Vec<(String, ReplayFigures)>> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
        let mut targets: Vec<(String, Arc<dyn Rebuildable>)> = Vec::new();
        if let Some(endpoint) = &dynamodb_endpoint {
            let client = dynamodb_client(&Some(endpoint.clone())).await;
            let names = TableNames::new("bench", format!("replay{suffix}"));
            targets.push(("DynamoDB (moto)".into(), Arc::new(DynamoSink::open(client, names).await?)));
        }
        if let Some(url) = &documentdb_url {
            let client = projections::read_models::documents::open_documentdb(url, None)
                .await
                .context("cannot reach DocumentDB")?;
            let db = client.database(&format!("bench_replay_{suffix}"));
            targets.push(("DocumentDB (SecantusDB)".into(), Arc::new(DocumentSink::open(db).await?)));
        }
        let runs = targets.into_iter().map(|(store, target)| {
            let journal = journal.clone();
            async move { (store, bench::replay(journal, target).await) }
        });
        Ok(futures::future::join_all(runs).await)
    }

    /// Runs `cloudcafe bench kinesis` against the given endpoints and returns its table.
    pub async fn kinesis_bench(
        events: usize,
        shards: i32,
        kinesis_endpoint: &Option<String>,
        dynamodb_endpoint: &Option<String>,
    ) -> anyhow::Result<String> {
        let kinesis = kinesis_client(kinesis_endpoint).await;
        let dynamodb = dynamodb_client(dynamodb_endpoint).await;
        let figures = bench::kinesis::run(&kinesis, &dynamodb, events.max(1), shards.max(1)).await?;
        Ok(bench::kinesis::table(&figures))
    }

    /// Puts the dashboards and alarms of `deployment` into CloudWatch, or into the emulator at
    /// `endpoint`; a summary to print.
    pub async fn apply_dashboards(
        deployment: &gateways::cloudwatch::dashboard::Deployment,
        endpoint: &Option<String>,
    ) -> anyhow::Result<String> {
        let settings = AwsSettings { region: Some(deployment.region.clone()), ..AwsSettings::new(endpoint.clone()) };
        let client = aws_sdk_cloudwatch::Client::new(&settings.sdk_config().await);
        let applied = gateways::cloudwatch::apply::apply(&client, deployment).await?;
        let mut summary = format!(
            "put {} dashboard(s), {} alarm(s) and {} composite alarm(s) for {}",
            applied.dashboards.len(),
            applied.alarms.len(),
            applied.composite_alarms.len(),
            deployment.environment
        );
        for (dashboard, message) in applied.warnings {
            summary.push_str(&format!("\nCloudWatch about {dashboard}: {message}"));
        }
        Ok(summary)
    }

    /// The payment dead-letter queue, found by name.
    pub struct DeadLetterQueue {
        sqs: aws_sdk_sqs::Client,
        url: String,
    }

    impl DeadLetterQueue {
        /// Finds `--payment-dlq` on the SQS `queues` names.
        pub async fn open(queues: &crate::cli::dlq::QueueArgs) -> anyhow::Result<Self> {
            let sqs = sqs_client(&queues.sqs_endpoint).await;
            let url =
                payments::queue_url(&sqs, &queues.payment_dlq).await.context("cannot find the dead-letter queue")?;
            Ok(DeadLetterQueue { sqs, url })
        }

        /// Up to `max` of its messages (they stay in it).
        pub async fn list(&self, max: usize) -> anyhow::Result<Vec<DeadLetter>> {
            let letters = payments::dead_letters(&self.sqs, &self.url, max, Duration::from_secs(2)).await?;
            Ok(letters
                .into_iter()
                .map(|l| DeadLetter {
                    message_id: l.message_id,
                    body: l.body,
                    receives: l.receives,
                    request: l.request.map(|r| DeadPaymentRequest {
                        order_id: r.order_id,
                        customer_id: r.customer_id,
                        amount_cents: r.amount_cents,
                        event_id: r.event_id,
                    }),
                })
                .collect())
        }

        /// Moves up to `max` of its messages back to the queue named `payment_queue`; how many moved.
        pub async fn redrive(&self, payment_queue: &str, max: usize) -> anyhow::Result<usize> {
            let queue = payments::queue_url(&self.sqs, payment_queue).await.context("cannot find the payment queue")?;
            Ok(payments::redrive(&self.sqs, &self.url, &queue, max).await?)
        }
    }

    /// Starts the `PutMetricData` export of the ticker's samples.
    pub async fn start_put_metric_data(
        metrics: &crate::cli::serve::MetricsArgs,
        environment: String,
        interval: Duration,
        samples: tokio::sync::broadcast::Receiver<Arc<gateways::cloudwatch::sample::Sample>>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        use gateways::cloudwatch::put;
        let config = AwsSettings::new(metrics.cloudwatch_endpoint.clone()).sdk_config().await;
        let client = aws_sdk_cloudwatch::Client::new(&config);
        let settings = put::PutSettings { environment, interval, ..put::PutSettings::default() };
        Ok(Some(tokio::spawn(put::run(client, settings, samples, stop))))
    }
}

#[cfg(not(feature = "cloud"))]
mod imp {
    use std::sync::Arc;

    use gateways::bench::ReplayFigures;
    use gateways::node::Node;

    use super::{DeadLetter, StreamFed};
    use crate::cli::serve::MessagingArgs;
    use crate::cli::storage::StorageArgs;

    const NO_CLOUD_MODELS: &str = "this build has no DynamoDB/DocumentDB read models: rebuild with `--features cloud`";
    const NO_IAM_AUTH: &str = "--pg-iam-auth signs tokens with the AWS SDK: rebuild with `--features cloud`";

    /// The password source `--pg-iam-auth` asks for, which this build cannot make: one that says so
    /// at every connection (`serve` refuses to start with the flag, through [`CloudModels::open`]).
    pub fn pg_password_source(storage: &StorageArgs) -> Option<events::postgres::SharedPasswordSource> {
        struct Unsupported;
        #[async_trait::async_trait]
        impl events::postgres::PasswordSource for Unsupported {
            async fn password(&self) -> Result<events::secret::Password, events::Cause> {
                Err(Arc::new(std::io::Error::other(NO_IAM_AUTH)))
            }
        }
        storage.pg_iam_auth.then(|| events::postgres::SharedPasswordSource(Arc::new(Unsupported)))
    }

    /// No DynamoDB or DocumentDB read models: this build has none.
    #[derive(Default)]
    pub struct CloudModels;

    impl CloudModels {
        /// None, or an error if `storage` asks for any (or for IAM authentication, which needs the
        /// AWS SDK too).
        pub async fn open(storage: &StorageArgs) -> anyhow::Result<Self> {
            if storage.dynamodb_env.is_some() || storage.documentdb_url.is_some() {
                anyhow::bail!(NO_CLOUD_MODELS);
            }
            if storage.pg_iam_auth {
                anyhow::bail!(NO_IAM_AUTH);
            }
            Ok(CloudModels)
        }

        /// None.
        pub fn rebuildable(&self) -> Vec<(&'static str, Arc<dyn projections::Rebuildable>)> {
            Vec::new()
        }
    }

    /// Nothing, or an error if `m` asks for any messaging.
    pub async fn start_messaging(
        m: &MessagingArgs,
        _storage: &StorageArgs,
        _node: &Node,
        _models: &CloudModels,
    ) -> anyhow::Result<StreamFed> {
        if m.any() {
            anyhow::bail!("this build cannot publish to Kinesis or SQS or notify: rebuild with `--features cloud`");
        }
        Ok(Vec::new())
    }

    /// No figures, or an error if an emulator is named.
    pub async fn emulated_replay(
        _journal: Arc<dyn events::Journal>,
        dynamodb_endpoint: Option<String>,
        documentdb_url: Option<String>,
    ) -> anyhow::Result<Vec<(String, ReplayFigures)>> {
        if dynamodb_endpoint.is_some() || documentdb_url.is_some() {
            anyhow::bail!(NO_CLOUD_MODELS);
        }
        Ok(Vec::new())
    }

    /// An error: this build has no Kinesis client.
    pub async fn kinesis_bench(
        _events: usize,
        _shards: i32,
        _kinesis_endpoint: &Option<String>,
        _dynamodb_endpoint: &Option<String>,
    ) -> anyhow::Result<String> {
        anyhow::bail!("this build has no Kinesis client: rebuild with `--features cloud`")
    }

    /// An error: this build has no CloudWatch client.
    pub async fn apply_dashboards(
        _deployment: &gateways::cloudwatch::dashboard::Deployment,
        _endpoint: &Option<String>,
    ) -> anyhow::Result<String> {
        anyhow::bail!("this build has no CloudWatch client: rebuild with `--features cloud`")
    }

    /// Never opened: this build has no SQS client.
    pub struct DeadLetterQueue(std::convert::Infallible);

    impl DeadLetterQueue {
        /// An error: this build has no SQS client.
        pub async fn open(_queues: &crate::cli::dlq::QueueArgs) -> anyhow::Result<Self> {
            anyhow::bail!("this build has no SQS client: rebuild with `--features cloud`")
        }

        /// Unreachable: no queue is ever opened.
        pub async fn list(&self, _max: usize) -> anyhow::Result<Vec<DeadLetter>> {
            match self.0 {}
        }

        /// Unreachable: no queue is ever opened.
        pub async fn redrive(&self, _payment_queue: &str, _max: usize) -> anyhow::Result<usize> {
            match self.0 {}
        }
    }

    /// `PutMetricData` needs the AWS SDK.
    pub async fn start_put_metric_data(
        _: &crate::cli::serve::MetricsArgs,
        _: String,
        _: std::time::Duration,
        _: tokio::sync::broadcast::Receiver<Arc<gateways::cloudwatch::sample::Sample>>,
        _: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        anyhow::bail!("this build has no CloudWatch client: rebuild with `--features cloud`, or use --cloudwatch emf")
    }
}
