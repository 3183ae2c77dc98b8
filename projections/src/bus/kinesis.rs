//! The Kinesis adapter of the bus port: every event to the `order-events` stream.
//!
//! - **Record data** is the event's wire envelope, [`RecordedEvent::to_wire`]: the MessagePack map
//!   documented in the `events` crate, which a consumer in any language decodes and whose hash chain
//!   it can check (`deploy/local/verify_kinesis.py` does so with boto3 and msgpack).
//! - **Partition key** is the stream id, so all events of one stream go to one shard, in order (see
//!   [`crate::bus::publisher`] for what "in order" means when a batch partly fails).
//! - `PutRecords` carries at most 500 records and 5 MiB (keys included) per request, each record at
//!   most 1 MiB; an event larger than that is refused rather than skipped.
//! - A record the service refuses in a `PutRecords` answer (`ProvisionedThroughputExceededException`,
//!   `InternalFailure`, KMS throttling) is sent again with its key's later records.
//! - Order inside one request: the publisher relies on Kinesis giving a shard's records increasing
//!   sequence numbers in the order of the request (kinesalite does, and the tests check it), which
//!   AWS does not promise in so many words: it promises strictly increasing numbers only for puts
//!   made one after another, and calls other records "coarsely ordered by arrival". Where that
//!   matters more than throughput, [`KinesisSettings::one_record_per_stream`] puts at most one
//!   record of each stream in a request, so order rests on sequential requests alone (a hot stream
//!   then gets one record per request).
//!
//! The adapter receives a built [`Client`]: the binary builds it with the default credential chain,
//! tests and examples point it at an emulator.
//!
//! Besides the bus, [`ensure_stream`] creates the stream (setup), and [`read_stream`] reads a whole
//! stream back from every shard (for tests, tools and the benchmark; it is not a KCL consumer: no
//! leases, no checkpoints).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;
use events::RecordedEvent;

use crate::aws::{classify, AwsFailure};
use crate::bus::publisher::{BatchLimits, Bus, BusError, EntryOutcome, Message, SetupError};

/// The checkpoint name of the Kinesis publisher.
pub const CHECKPOINT: &str = "publisher:kinesis";
/// The stream's name in the original plans is `cloudcafe-order-events-{env}`; this is its base.
pub const DEFAULT_STREAM: &str = "order-events";
/// The most records one `PutRecords` request carries.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// The most bytes (data and partition keys) one `PutRecords` request carries.
pub const MAX_BYTES_PER_REQUEST: usize = 5 * 1024 * 1024;
/// The largest record (data and partition key).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// The longest partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Typed settings of the Kinesis destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisSettings {
    pub stream_name: String,
    /// Shards of a stream that [`ensure_stream`] creates.
    pub shards: i32,
    /// Records per request, at most [`MAX_RECORDS_PER_REQUEST`].
    pub max_batch_records: usize,
    /// Bytes per request, at most [`MAX_BYTES_PER_REQUEST`].
    pub max_batch_bytes: usize,
    /// At most one record per stream (partition key) in a request: see the module docs.
    pub one_record_per_stream: bool,
}

impl Default for KinesisSettings {
    fn default() -> Self {
        KinesisSettings {
            stream_name: DEFAULT_STREAM.into(),
            shards: 4,
            max_batch_records: MAX_RECORDS_PER_REQUEST,
            max_batch_bytes: MAX_BYTES_PER_REQUEST,
            one_record_per_stream: false,
        }
    }
}

/// Publishes every event's envelope to one Kinesis stream.
pub struct KinesisBus {
    client: Client,
    stream_name: String,
    limits: BatchLimits,
}

impl KinesisBus {
    pub fn new(client: Client, settings: &KinesisSettings) -> Self {
        KinesisBus {
            client,
            stream_name: settings.stream_name.clone(),
            limits: BatchLimits {
                max_messages: settings.max_batch_records.clamp(1, MAX_RECORDS_PER_REQUEST),
                max_bytes: settings.max_batch_bytes.clamp(1, MAX_BYTES_PER_REQUEST),
                max_message_bytes: MAX_RECORD_BYTES,
                one_per_key: settings.one_record_per_stream,
            },
        }
    }

    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }
}

#[async_trait]
impl Bus for KinesisBus {
    fn destination(&self) -> &str {
        "kinesis"
    }

    fn limits(&self) -> BatchLimits {
        self.limits
    }

    fn message_for(&self, event: &RecordedEvent) -> Result<Option<Message>, BusError> {
        if event.stream_id.is_empty() || event.stream_id.chars().count() > MAX_PARTITION_KEY_CHARS {
            return Err(BusError::refused(format!(
                "stream id of {} characters cannot be a partition key (1 to {MAX_PARTITION_KEY_CHARS})",
                event.stream_id.chars().count()
            )));
        }
        Ok(Some(Message {
            event_id: event.event_id,
            global_position: event.global_position,
            key: event.stream_id.clone(),
            body: event.to_wire(),
        }))
    }

    async fn send_batch(&self, batch: &[Message]) -> Result<Vec<EntryOutcome>, BusError> {
        let mut entries = Vec::with_capacity(batch.len());
        for m in batch {
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(m.body.clone()))
                .partition_key(m.key.clone())
                .build()
                .map_err(|e| BusError::refused_because("cannot build a Kinesis record", e))?;
            entries.push(entry);
        }
        let answer = self
            .client
            .put_records()
            .stream_name(&self.stream_name)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| bus_error(&self.stream_name, e))?;
        Ok(answer
            .records()
            .iter()
            .map(|r| match r.error_code() {
                None => EntryOutcome::Accepted,
                // Every per-record error Kinesis documents (throughput, internal failure, KMS) is
                // worth another try; none says the record itself is malformed.
                Some(code) => EntryOutcome::Retry { code: code.to_owned() },
            })
            .collect())
    }
}

/// A failed request as the bus port's error, read by [`crate::aws::classify`] (`what` names the
/// stream or shard).
pub(crate) fn bus_error<E, R>(what: &str, e: SdkError<E, R>) -> BusError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    classify(what, e).into()
}

fn setup_error<E, R>(what: &str, e: SdkError<E, R>) -> SetupError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    bus_error(what, e).into()
}

/// Creates the stream with `shards` shards if it does not exist, and waits until it is ACTIVE.
/// An existing stream is kept as it is, whatever its shard count.
pub async fn ensure_stream(client: &Client, name: &str, shards: i32, ready_within: Duration) -> Result<(), SetupError> {
    let deadline = Instant::now() + ready_within;
    loop {
        match client.describe_stream_summary().stream_name(name).send().await {
            Ok(answer) => {
                let status = answer.stream_description_summary().map(|s| s.stream_status().clone());
                if status == Some(StreamStatus::Active) {
                    return Ok(());
                }
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                match client.create_stream().stream_name(name).shard_count(shards).send().await {
                    Ok(_) => tracing::info!(stream = name, shards, "created the Kinesis stream"),
                    Err(e) if e.code() == Some("ResourceInUseException") => {}
                    Err(e) => return Err(setup_error(name, e)),
                }
            }
            Err(e) => return Err(setup_error(name, e)),
        }
        if Instant::now() >= deadline {
            return Err(SetupError::NotReady(format!("Kinesis stream {name}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One record as read back from a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KinesisRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl KinesisRecord {
    /// Orders records of one shard by sequence number ([`crate::sequence_key`]).
    pub fn sequence_key(&self) -> (usize, &str) {
        crate::sequence_key(&self.sequence_number)
    }
}

/// A shard as `ListShards` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    /// The parent (after a split) or the two parents (after a merge), sorted.
    pub parents: Vec<String>,
    /// A closed shard (split or merged away) has an ending sequence number.
    pub closed: bool,
}

/// Every shard of a stream, open or closed, with its parents.
pub async fn describe_shards(client: &Client, stream_name: &str) -> Result<Vec<ShardInfo>, AwsFailure> {
    let mut shards = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let request = match &next {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream_name),
        };
        let answer = request.send().await.map_err(|e| classify(stream_name, e))?;
        for shard in answer.shards() {
            let mut parents: Vec<String> = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect();
            parents.sort();
            shards.push(ShardInfo {
                shard_id: shard.shard_id().to_owned(),
                parents,
                closed: shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some(),
            });
        }
        match answer.next_token() {
            Some(token) => next = Some(token.to_owned()),
            None => return Ok(shards),
        }
    }
}

/// The shard ids of a stream.
pub async fn list_shards(client: &Client, stream_name: &str) -> Result<Vec<String>, BusError> {
    Ok(describe_shards(client, stream_name).await?.into_iter().map(|s| s.shard_id).collect())
}

/// Reads one shard from its oldest record (TRIM_HORIZON) until it is caught up: a read that returns
/// nothing while 0 ms behind the tip.
pub async fn read_shard(client: &Client, stream_name: &str, shard_id: &str) -> Result<Vec<KinesisRecord>, BusError> {
    let iterator = client
        .get_shard_iterator()
        .stream_name(stream_name)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .map_err(|e| bus_error(shard_id, e))?;
    let mut iterator = iterator.shard_iterator().map(str::to_owned);
    let mut out = Vec::new();
    while let Some(it) = iterator.take() {
        let answer =
            client.get_records().shard_iterator(it).limit(10_000).send().await.map_err(|e| bus_error(shard_id, e))?;
        let records = answer.records();
        out.extend(records.iter().map(|r| KinesisRecord {
            shard_id: shard_id.to_owned(),
            sequence_number: r.sequence_number().to_owned(),
            partition_key: r.partition_key().unwrap_or_default().to_owned(),
            data: r.data().as_ref().to_vec(),
        }));
        if records.is_empty() && answer.millis_behind_latest().unwrap_or(0) == 0 {
            break;
        }
        iterator = answer.next_shard_iterator().map(str::to_owned);
    }
    Ok(out)
}

/// Every record of every shard of a stream, each shard in sequence order (shards read concurrently).
pub async fn read_stream(client: &Client, stream_name: &str) -> Result<Vec<KinesisRecord>, BusError> {
    let shards = list_shards(client, stream_name).await?;
    let reads = futures::future::join_all(shards.iter().map(|s| read_shard(client, stream_name, s))).await;
    let mut out = Vec::new();
    for r in reads {
        out.extend(r?);
    }
    Ok(out)
}
