//! A Kinesis consumer that several processes share, in the manner of the Kinesis Client Library
//! (features `kinesis` and `dynamodb`).
//!
//! Each process runs one [`KinesisConsumer`] (a *worker*) per consumer application. The workers of
//! an application share a lease table ([`crate::bus::leases`]) and split the stream's shards between
//! them; each shard a worker holds is read by a task of its own, which hands records to a
//! [`RecordProcessor`] and checkpoints after the processor succeeded.
//!
//! Every `renew_every` the worker:
//! 1. adds a lease for each shard the stream has and the table does not (with its parents);
//! 2. lists the lease table and lets `balance::rebalance` (pure, unit-tested) decide: renew the
//!    leases it holds (a renewal that fails means the lease was taken, and its shard task stops),
//!    drop those the table gives to another worker, and, if it holds fewer than its share (open
//!    shards / live workers, rounded up), take expired or unowned leases, or else steal one lease
//!    from the busiest worker if that one holds more than its share (or its share, while this
//!    worker is two or more short). A child shard is not taken before its parents are read to
//!    their end. When the table cannot be listed, the held leases are still renewed.
//!
//! A shard task:
//! - waits until every parent shard's checkpoint is `SHARD_END`, so that after a split or a merge a
//!   stream's records are processed in order across the parent and the child;
//! - reads from its checkpoint (`AFTER_SEQUENCE_NUMBER`, or `TRIM_HORIZON`), making at most
//!   `1 / min_poll_interval` `GetRecords` calls a second (5 a second per shard is the service's
//!   limit), and backing off up to `max_idle_backoff` while the shard is empty;
//! - retries a failed batch until it succeeds or the lease is lost, then checkpoints it; the
//!   checkpoint write is fenced by the lease counter, so a worker that lost the lease cannot move it;
//! - at the end of a closed shard checkpoints `SHARD_END` and ends.
//!
//! Delivery is **at least once**: records processed but not yet checkpointed when a worker dies (or
//! loses its lease) are processed again by the next holder. Processors must be idempotent.
//!
//! Metrics, labelled by `application` and `shard`: `kinesis_consumer_millis_behind` (from
//! `GetRecords`), `kinesis_consumer_records_total`, `kinesis_consumer_leases_held` (by
//! `application`), `kinesis_consumer_lease_changes_total` (by `change`: taken, stolen, lost).

use events::metric;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client as KinesisClient;
use events::journal::sleep_or_stop;
use events::RecordedEvent;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use self::balance::{LeasePlan, Observed, Worker};
use crate::aws::{classify, AwsFailure};
use crate::bus::kinesis::KinesisRecord;
use crate::bus::leases::{Checkpoint, Lease, LeaseError, LeaseTable};
use crate::{ShardApplied, ShardBatch, ShardCheckpointedSink, SinkError, StreamOrderedSink};

mod balance;

/// Why the consumer could not read the stream or keep its leases.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// A Kinesis call failed (listing shards, getting an iterator, reading records).
    #[error("stream unavailable: {0}")]
    Stream(#[from] AwsFailure),
    /// Kinesis answered a `GetShardIterator` without an iterator.
    #[error("no shard iterator for {0}")]
    NoIterator(String),
    /// The lease table could not be read or written.
    #[error(transparent)]
    Leases(#[from] LeaseError),
}

/// Hands a batch of one shard's records, in sequence order, to the application.
#[async_trait]
pub trait RecordProcessor: Send + Sync + 'static {
    /// Processes the records; an error makes the worker offer the same batch again (after a pause).
    /// `lease_counter` is the counter of the lease the reader holds, for a processor that fences its
    /// own writes with it.
    async fn process(&self, shard_id: &str, lease_counter: u64, records: &[KinesisRecord]) -> Result<(), SinkError>;

    /// Where the application's own store says `shard_id` was processed up to (the last sequence
    /// number), when it keeps one: a reader that takes the shard starts after the later of this and
    /// the lease table's checkpoint.
    async fn resume_after(&self, _shard_id: &str) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
}

#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    pub stream_name: String,
    /// This worker's name in the lease table (unique per process).
    pub worker_id: String,
    /// A lease whose counter has not moved for this long is free to take.
    pub lease_timeout: Duration,
    /// How often the worker renews, balances and looks for new shards.
    pub renew_every: Duration,
    /// The least time between two `GetRecords` calls on one shard (200 ms: 5 a second).
    pub min_poll_interval: Duration,
    /// The longest pause between reads of an empty shard.
    pub max_idle_backoff: Duration,
    /// Records per `GetRecords` call (at most 10,000).
    pub max_records: i32,
}

impl ConsumerSettings {
    pub fn new(stream_name: impl Into<String>, worker_id: impl Into<String>) -> Self {
        ConsumerSettings {
            stream_name: stream_name.into(),
            worker_id: worker_id.into(),
            lease_timeout: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            min_poll_interval: Duration::from_millis(200),
            max_idle_backoff: Duration::from_secs(1),
            max_records: 10_000,
        }
    }

    /// Lease timeout `timeout`, renewing three times within it.
    pub fn with_lease_timeout(mut self, timeout: Duration) -> Self {
        self.lease_timeout = timeout;
        self.renew_every = timeout / 3;
        self
    }
}

/// How far this worker's shard readers trail the stream, as the last `GetRecords` of each said, and
/// the newest journal position its processor applied. Shared with whoever reports lag (the admin
/// endpoint); the `kinesis_consumer_millis_behind` gauge carries the same per shard.
#[derive(Default)]
pub struct ConsumerLag {
    shards: std::sync::Mutex<HashMap<String, i64>>,
    newest_position: std::sync::atomic::AtomicU64,
}

impl crate::StreamFedLag for ConsumerLag {
    fn millis_behind(&self) -> i64 {
        self.shards.lock().expect("lag").values().copied().max().unwrap_or(0)
    }

    fn newest_position(&self) -> u64 {
        self.newest_position.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn shards(&self) -> Vec<String> {
        let mut shards: Vec<String> = self.shards.lock().expect("lag").keys().cloned().collect();
        shards.sort();
        shards
    }
}

impl ConsumerLag {
    fn reading(&self, shard: &str, millis_behind: i64) {
        self.shards.lock().expect("lag").insert(shard.to_owned(), millis_behind);
    }

    fn stopped(&self, shard: &str) {
        self.shards.lock().expect("lag").remove(shard);
    }

    fn processed(&self, position: u64) {
        self.newest_position.fetch_max(position, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A held lease, shared by the worker (renewals) and the shard task (checkpoints): every write
/// goes through the mutex, so each uses the counter the other wrote last.
type Held = Arc<Mutex<Lease>>;

struct ShardTask {
    lease: Held,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

/// A worker that dies (its task aborted) takes its shard readers with it, as a killed process would.
impl Drop for ShardTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// One worker of a consumer application.
pub struct KinesisConsumer {
    kinesis: KinesisClient,
    leases: LeaseTable,
    processor: Arc<dyn RecordProcessor>,
    settings: ConsumerSettings,
    lag: Arc<ConsumerLag>,
}

impl KinesisConsumer {
    pub fn new(
        kinesis: KinesisClient,
        leases: LeaseTable,
        processor: Arc<dyn RecordProcessor>,
        settings: ConsumerSettings,
    ) -> Self {
        KinesisConsumer { kinesis, leases, processor, settings, lag: Arc::new(ConsumerLag::default()) }
    }

    /// This worker's lag, updated as it reads.
    pub fn lag(&self) -> Arc<ConsumerLag> {
        self.lag.clone()
    }

    pub fn spawn(self, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(stop))
    }

    /// Works until `stop` turns true, then releases its leases for the other workers.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let application = self.leases.table_name().to_owned();
        let mut tasks: HashMap<String, ShardTask> = HashMap::new();
        let mut observed: HashMap<String, Observed> = HashMap::new();
        let mut last_shard_sync: Option<Instant> = None;
        loop {
            let sync_due = last_shard_sync.is_none_or(|t| t.elapsed() >= self.settings.lease_timeout)
                || tasks.values().any(|t| t.handle.is_finished());
            if sync_due {
                // Bounded: a slow or throttled Kinesis control plane must not hold up lease renewal.
                match tokio::time::timeout(self.settings.renew_every, self.sync_shards()).await {
                    Ok(Ok(())) => last_shard_sync = Some(Instant::now()),
                    Ok(Err(e)) => {
                        tracing::warn!(%application, error = %events::ErrorChain(&e), "cannot list the stream's shards")
                    }
                    Err(_) => tracing::warn!(%application, "listing the stream's shards timed out"),
                }
            }
            let started = Instant::now();
            if let Err(e) = self.tick(&mut tasks, &mut observed).await {
                tracing::warn!(%application, error = %events::ErrorChain(&e), "lease table unavailable; keeping the leases held");
            }
            if started.elapsed() > self.settings.renew_every {
                tracing::warn!(%application, took = ?started.elapsed(), "renewing and balancing leases took longer than the renewal interval");
            }
            metric::CONSUMER_LEASES_HELD.gauge(&[("application", application.clone())]).set(tasks.len() as f64);
            tokio::select! {
                _ = tokio::time::sleep(self.settings.renew_every) => {}
                _ = stop.changed() => break,
            }
        }
        for (_, mut task) in tasks.drain() {
            let _ = task.stop.send(true);
            let _ = (&mut task.handle).await;
            let lease = task.lease.lock().await.clone();
            if lease.checkpoint != Checkpoint::ShardEnd {
                if let Err(e) = self.leases.release(&lease).await {
                    tracing::debug!(shard = %lease.shard_id, error = %e, "lease not released");
                }
            }
        }
    }

    /// Adds a lease for every shard of the stream the table does not have.
    async fn sync_shards(&self) -> Result<(), ConsumerError> {
        let known: HashSet<String> = self.leases.list().await?.into_iter().map(|l| l.shard_id).collect();
        for shard in crate::bus::kinesis::describe_shards(&self.kinesis, &self.settings.stream_name).await? {
            if !known.contains(&shard.shard_id) {
                self.leases.create_if_absent(&shard.shard_id, &shard.parents).await?;
            }
        }
        Ok(())
    }

    /// One balancing round: lists the lease table, asks [`balance::rebalance`] what to do, and
    /// does it. When the table cannot be listed, the held leases are still renewed.
    async fn tick(
        &self,
        tasks: &mut HashMap<String, ShardTask>,
        observed: &mut HashMap<String, Observed>,
    ) -> Result<(), LeaseError> {
        // Finished tasks: shard ended (nothing to hold) or lease lost.
        tasks.retain(|_, t| !t.handle.is_finished());
        let held: BTreeSet<String> = tasks.keys().cloned().collect();
        let now = Instant::now();
        let (plan, listing) = match self.leases.list().await {
            Ok(all) => {
                balance::observe(observed, &all, now);
                let me = Worker {
                    id: &self.settings.worker_id,
                    held: &held,
                    lease_timeout: self.settings.lease_timeout,
                    now,
                };
                (balance::rebalance(&all, observed, &me), Ok(()))
            }
            Err(e) => (LeasePlan::renew_only(&held), Err(e)),
        };
        self.execute(plan, tasks).await?;
        listing
    }

    /// Makes a plan's lease writes: drops, renewals, takes, then the steal.
    async fn execute(&self, plan: LeasePlan, tasks: &mut HashMap<String, ShardTask>) -> Result<(), LeaseError> {
        let me = &self.settings.worker_id;
        let application = self.leases.table_name().to_owned();
        let mut lost = plan.drop;
        for shard in plan.renew {
            let Some(task) = tasks.get(&shard) else { continue };
            let mut lease = task.lease.lock().await;
            match self.leases.renew(&lease).await {
                Ok(renewed) => *lease = renewed,
                Err(LeaseError::Lost(_)) => lost.push(shard.clone()),
                Err(e) => return Err(e),
            }
        }
        for shard in lost {
            if let Some(task) = tasks.remove(&shard) {
                tracing::info!(%shard, worker = %me, "lease lost to another worker; shard task stopped");
                metric::CONSUMER_LEASE_CHANGES
                    .counter(&[("application", application.clone()), ("change", "lost".to_owned())])
                    .increment(1);
                let _ = task.stop.send(true);
            }
        }
        let wanted = plan.take.into_iter().map(|lease| (lease, false)).chain(plan.steal.map(|lease| (lease, true)));
        for (lease, steal) in wanted {
            let taken = if steal { self.leases.steal(&lease, me).await } else { self.leases.take(&lease, me).await };
            match taken {
                Ok(taken) => {
                    let change = if steal { "stolen" } else { "taken" };
                    tracing::info!(shard = %taken.shard_id, worker = %me, from = ?lease.owner, change, "lease acquired");
                    metric::CONSUMER_LEASE_CHANGES
                        .counter(&[("application", application.clone()), ("change", change.to_owned())])
                        .increment(1);
                    let shard = taken.shard_id.clone();
                    tasks.insert(shard, self.start_shard(taken));
                }
                Err(LeaseError::Lost(_)) => {} // someone else was quicker
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn start_shard(&self, lease: Lease) -> ShardTask {
        let lease = Arc::new(Mutex::new(lease));
        let (stop, stopped) = watch::channel(false);
        let reader = ShardReader {
            kinesis: self.kinesis.clone(),
            leases: self.leases.clone(),
            processor: self.processor.clone(),
            settings: self.settings.clone(),
            lease: lease.clone(),
            lag: self.lag.clone(),
        };
        ShardTask { lease, stop, handle: tokio::spawn(reader.run(stopped)) }
    }
}

/// Reads one leased shard.
struct ShardReader {
    kinesis: KinesisClient,
    leases: LeaseTable,
    processor: Arc<dyn RecordProcessor>,
    settings: ConsumerSettings,
    lease: Held,
    lag: Arc<ConsumerLag>,
}

enum Read {
    Records { records: Vec<KinesisRecord>, next: Option<String>, millis_behind: i64 },
    ExpiredIterator,
}

impl ShardReader {
    async fn run(self, stop: watch::Receiver<bool>) {
        let shard = self.lease.lock().await.shard_id.clone();
        let lag = self.lag.clone();
        self.read_shard(stop).await;
        lag.stopped(&shard);
    }

    async fn read_shard(self, mut stop: watch::Receiver<bool>) {
        let (shard, parents) = {
            let lease = self.lease.lock().await;
            (lease.shard_id.clone(), lease.parents.clone())
        };
        let application = self.leases.table_name().to_owned();
        let labels = [("application", application.clone()), ("shard", shard.clone())];
        // A child waits for its parents to be read to their end.
        while !parents.is_empty() {
            match self.leases.list().await {
                Ok(all) => {
                    let pending = parents
                        .iter()
                        .any(|p| all.iter().any(|l| &l.shard_id == p && l.checkpoint != Checkpoint::ShardEnd));
                    if !pending {
                        break;
                    }
                }
                Err(e) => tracing::warn!(%shard, error = %events::ErrorChain(&e), "cannot read the parents' leases"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.renew_every) => {}
                _ = stop.changed() => return,
            }
        }
        // An application that checkpoints in its own store may be further than the lease table
        // (it commits first); reading from the lease table's checkpoint would only read again what
        // it skips, so a failure to ask is not fatal.
        match self.processor.resume_after(&shard).await {
            Ok(Some(sequence)) => {
                let mut lease = self.lease.lock().await;
                let own = Checkpoint::After(sequence);
                if own > lease.checkpoint && lease.checkpoint != Checkpoint::ShardEnd {
                    lease.checkpoint = own;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%shard, error = %events::ErrorChain(&e), "cannot read the application's checkpoint; starting from the lease's")
            }
        }
        let mut iterator: Option<String> = None;
        let mut idle = self.settings.min_poll_interval;
        let mut last_call = Instant::now() - self.settings.min_poll_interval;
        loop {
            if *stop.borrow() {
                return;
            }
            let position = self.lease.lock().await.checkpoint.clone();
            if position == Checkpoint::ShardEnd {
                return;
            }
            let it = match iterator.take() {
                Some(it) => it,
                None => match self.iterator_at(&shard, &position).await {
                    Ok(it) => it,
                    Err(e) => {
                        tracing::warn!(%shard, error = %events::ErrorChain(&e), "no shard iterator; retrying");
                        if sleep_or_stop(&mut stop, self.settings.max_idle_backoff).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            // At most one GetRecords per min_poll_interval on this shard.
            let since = last_call.elapsed();
            if since < self.settings.min_poll_interval
                && sleep_or_stop(&mut stop, self.settings.min_poll_interval - since).await
            {
                return;
            }
            last_call = Instant::now();
            let (records, next, millis_behind) = match self.read(it).await {
                Ok(Read::Records { records, next, millis_behind }) => (records, next, millis_behind),
                Ok(Read::ExpiredIterator) => continue,
                Err(e) => {
                    tracing::warn!(%shard, error = %events::ErrorChain(&e), "GetRecords failed; backing off");
                    if sleep_or_stop(&mut stop, self.settings.max_idle_backoff).await {
                        return;
                    }
                    continue;
                }
            };
            metric::CONSUMER_MILLIS_BEHIND.gauge(&labels).set(millis_behind as f64);
            self.lag.reading(&shard, millis_behind);
            if let Some(last) = records.last() {
                let mut backoff = Duration::from_millis(50);
                let counter = self.lease.lock().await.counter;
                while let Err(e) = self.processor.process(&shard, counter, &records).await {
                    tracing::warn!(%shard, error = %events::ErrorChain(&e), "records not processed; retrying");
                    if sleep_or_stop(&mut stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                metric::CONSUMER_RECORDS.counter(&labels).increment(records.len() as u64);
                // A shard carries the journal's order (resends aside): its last record is its newest.
                if let Some(position) = wire_position(last) {
                    self.lag.processed(position);
                }
                if !self.checkpoint(Checkpoint::After(last.sequence_number.clone()), &mut stop).await {
                    return;
                }
                idle = self.settings.min_poll_interval;
            } else if next.is_some() {
                idle = (idle * 2).min(self.settings.max_idle_backoff);
                if sleep_or_stop(&mut stop, idle).await {
                    return;
                }
            }
            match next {
                Some(next) => iterator = Some(next),
                None => {
                    // The shard is closed and read to its end: its children may start.
                    self.checkpoint(Checkpoint::ShardEnd, &mut stop).await;
                    tracing::info!(%shard, "shard read to its end");
                    return;
                }
            }
        }
    }

    /// Checkpoints under the lease; `false` if the lease is lost (the task must end).
    async fn checkpoint(&self, to: Checkpoint, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            let mut lease = self.lease.lock().await;
            match self.leases.checkpoint(&lease, to.clone()).await {
                Ok(written) => {
                    *lease = written;
                    return true;
                }
                Err(LeaseError::Lost(shard)) => {
                    tracing::info!(%shard, "lease lost: checkpoint refused");
                    return false;
                }
                Err(LeaseError::Backwards { .. }) => return true, // already further: another holder did it
                Err(e) => {
                    drop(lease);
                    tracing::warn!(error = %events::ErrorChain(&e), "checkpoint not written; retrying");
                    if sleep_or_stop(stop, self.settings.max_idle_backoff).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn iterator_at(&self, shard: &str, position: &Checkpoint) -> Result<String, ConsumerError> {
        let request = self.kinesis.get_shard_iterator().stream_name(&self.settings.stream_name).shard_id(shard);
        let request = match position {
            Checkpoint::After(sequence) => {
                request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(sequence)
            }
            _ => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let out = request.send().await.map_err(|e| classify(shard, e))?;
        out.shard_iterator().map(str::to_owned).ok_or_else(|| ConsumerError::NoIterator(shard.to_owned()))
    }

    async fn read(&self, iterator: String) -> Result<Read, ConsumerError> {
        let shard = self.lease.lock().await.shard_id.clone();
        let answer = self.kinesis.get_records().shard_iterator(iterator).limit(self.settings.max_records).send().await;
        let answer = match answer.map_err(|e| classify(&shard, e)) {
            Ok(a) => a,
            Err(failure) if failure.code.as_deref() == Some("ExpiredIteratorException") => {
                return Ok(Read::ExpiredIterator)
            }
            Err(failure) => return Err(failure.into()),
        };
        let records = answer
            .records()
            .iter()
            .map(|r| KinesisRecord {
                shard_id: shard.clone(),
                sequence_number: r.sequence_number().to_owned(),
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                data: r.data().as_ref().to_vec(),
            })
            .collect();
        Ok(Read::Records {
            records,
            next: answer.next_shard_iterator().map(str::to_owned),
            millis_behind: answer.millis_behind_latest().unwrap_or(0),
        })
    }
}

/// The journal position of a record that carries an event envelope.
fn wire_position(record: &KinesisRecord) -> Option<u64> {
    RecordedEvent::from_wire(&record.data).ok().map(|e| e.global_position)
}

/// The records that carry an event envelope, with their events. A record that does not is not an
/// event of ours: no retry would ever apply it, so it is logged, counted against `projection` and
/// passed over.
fn envelopes<'a>(
    records: &'a [KinesisRecord],
    projection: &'a str,
) -> impl Iterator<Item = (&'a KinesisRecord, RecordedEvent)> + 'a {
    records.iter().filter_map(move |record| match RecordedEvent::from_wire(&record.data) {
        Ok(event) => Some((record, event)),
        Err(e) => {
            tracing::error!(shard = %record.shard_id, sequence = %record.sequence_number, error = %events::ErrorChain(&e), "record is not an event envelope; skipped");
            metric::CONSUMER_POISON.counter(&[("projection", projection.to_owned())]).increment(1);
            None
        }
    })
}

/// Feeds the events of Kinesis records into a sink that is idempotent per stream version.
///
/// A shard delivers each stream's events in version order, with repeats (the publisher sends again
/// after a failure, and a new lease holder processes again what was not checkpointed) but, when the
/// publisher runs with one record per stream per request, never a later version before an earlier
/// one. Within a batch, only each stream's first increasing run is kept (a repeat inside one batch
/// must not count twice), and the sink skips what its items already reflect.
pub struct KinesisProjection {
    sink: Arc<dyn StreamOrderedSink>,
}

impl KinesisProjection {
    pub fn new(sink: Arc<dyn StreamOrderedSink>) -> Self {
        metric::CONSUMER_POISON.register(&[("projection", sink.name().to_owned())]);
        KinesisProjection { sink }
    }
}

#[async_trait]
impl RecordProcessor for KinesisProjection {
    async fn process(&self, _shard_id: &str, _lease_counter: u64, records: &[KinesisRecord]) -> Result<(), SinkError> {
        let mut newest: HashMap<String, u64> = HashMap::new();
        let mut events: Vec<RecordedEvent> = Vec::with_capacity(records.len());
        for (_, event) in envelopes(records, self.sink.name()) {
            let seen = newest.entry(event.stream_id.clone()).or_insert(0);
            if event.stream_version > *seen {
                *seen = event.stream_version;
                events.push(event);
            }
        }
        self.sink.apply_in_stream_order(&events).await
    }
}

/// Feeds the events of Kinesis records into a model that keeps each shard's checkpoint with its
/// changes ([`ShardCheckpointedSink`]), fenced by the lease counter: effectively once. The model
/// skips what it already applied, so this passes every record on, in sequence order.
pub struct CheckpointedProjection {
    sink: Arc<dyn ShardCheckpointedSink>,
}

impl CheckpointedProjection {
    pub fn new(sink: Arc<dyn ShardCheckpointedSink>) -> Self {
        metric::CONSUMER_POISON.register(&[("projection", sink.name().to_owned())]);
        CheckpointedProjection { sink }
    }
}

#[async_trait]
impl RecordProcessor for CheckpointedProjection {
    async fn process(&self, shard_id: &str, lease_counter: u64, records: &[KinesisRecord]) -> Result<(), SinkError> {
        let events: Vec<(String, RecordedEvent)> = envelopes(records, self.sink.name())
            .map(|(record, event)| (record.sequence_number.clone(), event))
            .collect();
        match self.sink.apply_from_shard(ShardBatch { shard_id, lease_counter, records: &events }).await? {
            ShardApplied::Applied { .. } => {}
            // The lease table's checkpoint write, next, fails the same way and ends the reader.
            ShardApplied::Fenced { stored } => {
                tracing::info!(shard = %shard_id, lease_counter, stored, "a later lease holder wrote this shard; nothing applied")
            }
        }
        Ok(())
    }

    async fn resume_after(&self, shard_id: &str) -> Result<Option<String>, SinkError> {
        self.sink.shard_checkpoint(shard_id).await
    }
}
