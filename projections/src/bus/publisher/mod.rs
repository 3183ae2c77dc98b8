//! The outbox publisher: committed events leave the process.
//!
//! The journal is the outbox. A [`Publisher`] follows the journal's global order from
//! its own checkpoint (`journal.save_checkpoint(name, position)`), turns each event into the message
//! its destination carries ([`Bus::message_for`]), sends the messages in batches, and moves the
//! checkpoint past a page only after the broker acknowledged every message of it. Each destination
//! has its own publisher and checkpoint (`publisher:kinesis`, `publisher:sqs`), so one broker's outage
//! never holds back the other.
//!
//! Delivery is **at least once**: a crash, a timeout or a partial failure sends some messages again,
//! and every message carries its event id so that consumers deduplicate.
//!
//! ## Order
//!
//! Every message has a key (Kinesis partition key = stream id, SQS message group = customer id), and
//! messages of one key are delivered in journal order in this sense: **whenever a message is sent,
//! every later message of its key is sent again after it**. Concretely:
//!
//! - a key always uses the same *lane* (a sequence of requests, one in flight at a time), so requests
//!   carrying one key never overlap;
//! - when a batch partly fails, the publisher sends again, for each key with a failed entry, that
//!   entry *and every later entry of the key in the batch*, even those the broker accepted (the
//!   failed suffix per key); entries of other keys that were accepted are not sent again;
//! - a request that times out or fails whole is sent again whole, and a page that cannot be published
//!   is started over from its first event (as is everything after the checkpoint after a restart);
//! - a bus that cannot take a message again once accepted (SQS FIFO drops a repeated deduplication id
//!   for five minutes) asks for [`BatchLimits::one_per_key`]: a batch then holds at most one message
//!   per key, so a failed message is retried before any later message of its key is sent.
//!
//! So a consumer that reads a Kinesis shard in sequence order and, per stream, applies a record only
//! when its `stream_version` is the next one expected (skipping older ones as duplicates and newer
//! ones, which are certain to come again), sees every stream complete and in order. Equivalently,
//! keeping the *last* copy of each event id leaves each stream in version order.
//!
//! ## Starting it in a node
//!
//! The binary builds the AWS clients (default credential chain, no endpoint override) and hands them
//! to the adapters; a [`Publisher`] per destination is a [`Follower`] of the journal, run by
//! [`events::follow::follow`] (which owns the loop, its backoff and the stop signal):
//!
//! ```ignore
//! let bus = Arc::new(KinesisBus::new(kinesis_client, &KinesisSettings::default()));
//! let publisher = Publisher::new(journal.clone(), bus, PublisherSettings::new(kinesis::CHECKPOINT));
//! let options = publisher.follow_options();
//! let task = tokio::spawn(async move { follow(journal, &publisher, options, stop.subscribe()).await });
//! ```
//!
//! ## Metrics
//!
//! Labelled by `destination`: `publisher_events_total` (messages of acknowledged pages),
//! `publisher_retries_total` (entries sent again), `publisher_publish_seconds` (a page, from its
//! first request to its last acknowledgement, retries included) and `publisher_checkpoint`. The
//! follower metrics, labelled by the checkpoint name (`follower="publisher:kinesis"`), are
//! [`events::follow`]'s: `follower_lag_events` (journal head − checkpoint), `follower_events_total`,
//! and `follower_errors_total` by `stage` (pages given up and started over are `handle`).
//!
//! Architecture Invariant: the publisher never writes events and never moves its checkpoint past a
//! message the broker has not acknowledged; on any failure it stays where it is and sends again.

use events::metric;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use events::follow::{self, FollowOptions, Follower};
use events::{Cause, Journal, RecordedEvent, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// One message bound for a broker, derived from one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The event's id: consumers deduplicate on it (and SQS FIFO uses it as deduplication id).
    pub event_id: Uuid,
    /// The event's place in the journal's global order.
    pub global_position: u64,
    /// The ordering key: Kinesis partition key, SQS message group id.
    pub key: String,
    pub body: Vec<u8>,
}

impl Message {
    /// What the message counts for against a broker's size limits: key and body.
    pub fn size(&self) -> usize {
        self.key.len() + self.body.len()
    }
}

/// How one batch request of a broker is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_messages: usize,
    /// The most bytes ([`Message::size`]) one request carries.
    pub max_bytes: usize,
    /// The largest single message; a larger one is refused before anything is sent.
    pub max_message_bytes: usize,
    /// At most one message per key in a request (see the module docs).
    pub one_per_key: bool,
}

/// What the broker answered for one entry of a batch request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    Accepted,
    /// Refused this time (throttled, internal failure): sending it again may succeed.
    Retry {
        code: String,
    },
    /// Refused for good (malformed, too large): sending it again will not help.
    Refused {
        code: String,
    },
}

/// A failed batch request as a whole.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BusError {
    /// The broker could not be reached, did not answer in time, or answered with a server fault:
    /// nothing is known about the batch, so all of it is sent again.
    #[error("broker unavailable: {reason}")]
    Unavailable {
        /// What was being done, in words.
        reason: String,
        /// The SDK's failure, when there is one.
        #[source]
        cause: Option<Cause>,
    },
    /// The broker refused the request or an event cannot become a message: sending it again will
    /// not help.
    #[error("refused: {reason}")]
    Refused {
        /// What was refused, in words.
        reason: String,
        /// The SDK's or the encoder's failure, when there is one.
        #[source]
        cause: Option<Cause>,
    },
}

impl BusError {
    /// The broker is unavailable for a reason of its own (no underlying error).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        BusError::Unavailable { reason: reason.into(), cause: None }
    }

    /// The request or the event is refused for a reason of its own (no underlying error).
    pub fn refused(reason: impl Into<String>) -> Self {
        BusError::Refused { reason: reason.into(), cause: None }
    }

    /// The request or the event is refused while doing `reason`, because of `cause`.
    pub fn refused_because(reason: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        BusError::Refused { reason: reason.into(), cause: Some(Arc::new(cause)) }
    }

    /// What was being done, without the cause.
    pub fn reason(&self) -> &str {
        match self {
            BusError::Unavailable { reason, .. } | BusError::Refused { reason, .. } => reason,
        }
    }
}

/// Equal by variant and reason: the cause is left out because errors do not compare, and two
/// failures of the same step are the same failure to whoever compares them (tests, mostly).
impl PartialEq for BusError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other) && self.reason() == other.reason()
    }
}

impl Eq for BusError {}

/// A failure to create or inspect a destination (stream, queue).
#[derive(Clone, Debug, thiserror::Error)]
pub enum SetupError {
    /// The broker could not be reached or failed; setting up again later may succeed.
    #[error("broker unavailable: {reason}")]
    Unavailable {
        /// What was being done, in words.
        reason: String,
        /// The SDK's failure, when there is one.
        #[source]
        cause: Option<Cause>,
    },
    /// The broker refused the setup (a bad name, a bad parameter).
    #[error("broker refused the setup: {reason}")]
    Refused {
        /// What was refused, in words.
        reason: String,
        /// The SDK's failure, when there is one.
        #[source]
        cause: Option<Cause>,
    },
    /// The destination was created but did not become usable within the wait.
    #[error("{0} did not become ready in time")]
    NotReady(String),
}

/// Equal by variant and text, the cause left out (see [`BusError`]'s `PartialEq`).
impl PartialEq for SetupError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SetupError::Unavailable { reason: a, .. }, SetupError::Unavailable { reason: b, .. })
            | (SetupError::Refused { reason: a, .. }, SetupError::Refused { reason: b, .. })
            | (SetupError::NotReady(a), SetupError::NotReady(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for SetupError {}

/// A broker error met while setting up keeps its kind, its reason and its cause.
impl From<BusError> for SetupError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Refused { reason, cause } => SetupError::Refused { reason, cause },
            BusError::Unavailable { reason, cause } => SetupError::Unavailable { reason, cause },
        }
    }
}

/// The bus port: one adapter per broker.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The destination's name in metrics and logs, e.g. `kinesis`.
    fn destination(&self) -> &str;

    fn limits(&self) -> BatchLimits;

    /// Learns what the messages of a page need beyond its events, before [`Bus::message_for`] is
    /// asked for each (the analytics stream looks up the store of each order it has not seen
    /// placed). Nothing by default. Any error counts as unavailable (the page is tried again): an
    /// event that can never become a message is refused by [`Bus::message_for`], which names it.
    async fn prepare(&self, _page: &[RecordedEvent]) -> Result<(), BusError> {
        Ok(())
    }

    /// The message this destination carries for `event`, or `None` when it carries none. An error
    /// ([`BusError::Refused`]) means the event can never become a message: the publisher stops at
    /// it rather than skip it.
    fn message_for(&self, event: &RecordedEvent) -> Result<Option<Message>, BusError>;

    /// Sends one batch request (within [`Bus::limits`]) and reports each entry, in the batch's order.
    async fn send_batch(&self, batch: &[Message]) -> Result<Vec<EntryOutcome>, BusError>;
}

/// Why a page could not be published. The checkpoint stays before the page in every case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("journal: {0}")]
    Journal(#[from] StoreError),
    /// Infrastructure: the broker kept failing for the whole retry budget.
    /// `cause` is the last attempt's broker error, when the last attempt failed with one.
    #[error("{destination} unavailable after {attempts} attempts: {reason}")]
    Unavailable {
        destination: String,
        attempts: u32,
        reason: String,
        #[source]
        cause: Option<BusError>,
    },
    /// Rejection: the destination refuses this event for good; it is not skipped. `cause` is the
    /// broker's or the adapter's error, when the refusal came as one.
    #[error("{destination} refuses event {event_id} (global position {global_position}): {reason}")]
    Refused {
        destination: String,
        event_id: Uuid,
        global_position: u64,
        reason: String,
        #[source]
        cause: Option<BusError>,
    },
}

/// Exponential backoff with jitter between attempts at one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts at one batch before the page is given up (and, when following, started over).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { first_backoff: Duration::from_millis(50), max_backoff: Duration::from_secs(5), max_attempts: 8 }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` ≥ 1): `first · 2^(attempt-1)` capped at
    /// `max`, of which a random half is dropped ("equal jitter"), so retrying publishers spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.first_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max_backoff);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Typed settings of one publisher.
#[derive(Clone, Debug, PartialEq)]
pub struct PublisherSettings {
    /// The name its checkpoint is stored under, e.g. `publisher:kinesis`; also its follower name.
    pub checkpoint: String,
    /// Events read from the journal at a time; the checkpoint moves once per page.
    pub page_size: usize,
    /// Sequences of requests in flight at once; a key always uses the same lane.
    pub lanes: usize,
    /// The most messages per request (also bounded by the bus's own limits).
    pub max_batch_messages: usize,
    pub retry: RetryPolicy,
    /// How long one request may take before it counts as failed (and is sent again whole).
    pub request_timeout: Duration,
    /// How often to look for commits of other processes while idle.
    pub poll_interval: Duration,
}

impl PublisherSettings {
    pub fn new(checkpoint: impl Into<String>) -> Self {
        PublisherSettings {
            checkpoint: checkpoint.into(),
            page_size: follow::DEFAULT_PAGE_SIZE,
            lanes: 4,
            max_batch_messages: usize::MAX,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(100),
        }
    }
}

/// Counters since the publisher was made (the `metrics` facade carries the same, labelled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Messages of fully acknowledged pages (each counted once).
    pub published: u64,
    /// Batch requests sent.
    pub requests: u64,
    /// Requests that failed whole (unreachable, timed out, server fault).
    pub failed_requests: u64,
    /// Entries sent again after a failure.
    pub resent: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    requests: AtomicU64,
    failed_requests: AtomicU64,
    resent: AtomicU64,
}

/// Follows the journal into one destination.
pub struct Publisher {
    journal: Arc<dyn Journal>,
    bus: Arc<dyn Bus>,
    settings: PublisherSettings,
    destination: String,
    counters: Counters,
}

impl Publisher {
    /// A publisher of `journal`'s events to `bus`.
    pub fn new(journal: Arc<dyn Journal>, bus: Arc<dyn Bus>, settings: PublisherSettings) -> Self {
        let destination = bus.destination().to_owned();
        Publisher { journal, bus, settings, destination, counters: Counters::default() }
    }

    /// The destination's name, as its bus gives it (`kinesis`, `sqs`).
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &PublisherSettings {
        &self.settings
    }

    /// What it has done since it was made.
    pub fn stats(&self) -> PublisherStats {
        PublisherStats {
            published: self.counters.published.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            failed_requests: self.counters.failed_requests.load(Ordering::Relaxed),
            resent: self.counters.resent.load(Ordering::Relaxed),
        }
    }

    /// The global position of the last event known to be acknowledged (0 before the first).
    pub async fn checkpoint(&self) -> Result<u64, StoreError> {
        self.journal.load_checkpoint(&self.settings.checkpoint).await
    }

    /// How [`follow::follow`] runs this publisher: its page size, poll interval and the backoff of
    /// its retry policy between attempts at a page.
    pub fn follow_options(&self) -> FollowOptions {
        FollowOptions {
            page_size: self.settings.page_size.max(1),
            poll_interval: self.settings.poll_interval,
            first_backoff: self.settings.retry.first_backoff,
            max_backoff: self.settings.retry.max_backoff,
        }
    }

    /// Publishes everything committed up to now, page by page from the stored checkpoint, and
    /// returns the checkpoint reached. Stops at the first page that cannot be published, leaving
    /// the checkpoint before it.
    pub async fn catch_up(&self) -> Result<u64, PublishError> {
        follow::catch_up(self.journal.as_ref(), self, self.settings.page_size).await
    }

    /// Follows the journal until `stop` turns true. A page that cannot be published is tried again,
    /// with backoff, from its first event, for as long as it takes: the checkpoint never skips it.
    /// A page in flight when `stop` changes is abandoned (and sent again by the next run).
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let options = self.follow_options();
        follow::follow(self.journal.clone(), &self, options, stop).await
    }

    /// Runs [`Publisher::run`] on the tokio runtime.
    pub fn spawn(self, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(stop))
    }

    /// Sends the messages `events` (in global order) give rise to; returns once the broker has
    /// acknowledged every one of them. Does not touch the checkpoint.
    pub async fn publish(&self, events: &[RecordedEvent]) -> Result<(), PublishError> {
        let started = Instant::now();
        let limits = self.effective_limits();
        if let Err(e) = self.bus.prepare(events).await {
            return Err(PublishError::Unavailable {
                destination: self.destination.clone(),
                attempts: 1,
                reason: e.reason().to_owned(),
                cause: Some(e),
            });
        }
        let mut messages = Vec::with_capacity(events.len());
        for e in events {
            let refused = |reason: String, cause: Option<BusError>| PublishError::Refused {
                destination: self.destination.clone(),
                event_id: e.event_id,
                global_position: e.global_position,
                reason,
                cause,
            };
            match self.bus.message_for(e) {
                Ok(Some(m)) if m.size() > limits.max_message_bytes => {
                    return Err(refused(
                        format!("{} bytes, over the limit of {}", m.size(), limits.max_message_bytes),
                        None,
                    ))
                }
                Ok(Some(m)) => messages.push(m),
                Ok(None) => {}
                Err(e) => return Err(refused(e.reason().to_owned(), Some(e))),
            }
        }
        let count = messages.len() as u64;
        let lanes = split_into_lanes(messages, self.settings.lanes.max(1));
        let results = futures::future::join_all(lanes.into_iter().map(|lane| self.publish_lane(lane, limits))).await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        self.counters.published.fetch_add(count, Ordering::Relaxed);
        metric::OUTBOX_EVENTS.counter(&[("destination", self.destination.clone())]).increment(count);
        metric::OUTBOX_PUBLISH_DURATION
            .histogram(&[("destination", self.destination.clone())])
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn effective_limits(&self) -> BatchLimits {
        let mut limits = self.bus.limits();
        limits.max_messages = limits.max_messages.min(self.settings.max_batch_messages).max(1);
        limits
    }

    /// One lane: batches one after another, each retried until acknowledged or out of attempts.
    async fn publish_lane(&self, mut pending: Vec<Message>, limits: BatchLimits) -> Result<(), PublishError> {
        while !pending.is_empty() {
            let batch = next_batch(&mut pending, limits);
            self.send_until_acknowledged(batch).await?;
        }
        Ok(())
    }

    async fn send_until_acknowledged(&self, mut batch: Vec<Message>) -> Result<(), PublishError> {
        let retry = self.settings.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let answer = tokio::time::timeout(self.settings.request_timeout, self.bus.send_batch(&batch)).await;
            let failure = match answer {
                Err(_) => Failure::new(format!("no answer within {:?}", self.settings.request_timeout)),
                Ok(Err(refusal @ BusError::Refused { .. })) => {
                    let first = &batch[0];
                    return Err(PublishError::Refused {
                        destination: self.destination.clone(),
                        event_id: first.event_id,
                        global_position: first.global_position,
                        reason: refusal.reason().to_owned(),
                        cause: Some(refusal),
                    });
                }
                Ok(Err(unavailable @ BusError::Unavailable { .. })) => Failure::from(unavailable),
                Ok(Ok(outcomes)) if outcomes.len() != batch.len() => {
                    Failure::new(format!("{} answers for {} entries", outcomes.len(), batch.len()))
                }
                Ok(Ok(outcomes)) => match retry_set(batch, &outcomes) {
                    Retry::Done => return Ok(()),
                    Retry::Refused { message, code } => {
                        return Err(PublishError::Refused {
                            destination: self.destination.clone(),
                            event_id: message.event_id,
                            global_position: message.global_position,
                            reason: code,
                            cause: None,
                        })
                    }
                    Retry::Again { messages, code } => {
                        batch = messages;
                        self.note_retry(attempt, &retry, batch.len(), Failure::new(code)).await?;
                        continue;
                    }
                },
            };
            self.counters.failed_requests.fetch_add(1, Ordering::Relaxed);
            self.note_retry(attempt, &retry, batch.len(), failure).await?;
        }
    }

    /// Counts a retry of `entries` and waits before it, or gives up when out of attempts.
    async fn note_retry(
        &self,
        attempt: u32,
        retry: &RetryPolicy,
        entries: usize,
        failure: Failure,
    ) -> Result<(), PublishError> {
        if attempt >= retry.max_attempts {
            return Err(PublishError::Unavailable {
                destination: self.destination.clone(),
                attempts: attempt,
                reason: failure.reason,
                cause: failure.cause,
            });
        }
        let reason = failure.cause.as_ref().map_or(failure.reason, |e| events::error_chain(e));
        tracing::debug!(destination = %self.destination, attempt, entries, reason, "sending again");
        self.counters.resent.fetch_add(entries as u64, Ordering::Relaxed);
        metric::OUTBOX_RETRIES.counter(&[("destination", self.destination.clone())]).increment(entries as u64);
        tokio::time::sleep(retry.backoff(attempt)).await;
        Ok(())
    }
}

/// Why one attempt at a batch failed, in words, with the broker's error when there was one.
struct Failure {
    reason: String,
    cause: Option<BusError>,
}

impl Failure {
    fn new(reason: String) -> Self {
        Failure { reason, cause: None }
    }
}

impl From<BusError> for Failure {
    fn from(e: BusError) -> Self {
        Failure { reason: e.reason().to_owned(), cause: Some(e) }
    }
}

/// The publisher follows the journal from its checkpoint; a page is handled once the broker has
/// acknowledged all of it, and only then does the checkpoint move.
#[async_trait]
impl Follower for Publisher {
    type Error = PublishError;

    fn name(&self) -> &str {
        &self.settings.checkpoint
    }

    async fn start_position(&self) -> Result<u64, PublishError> {
        metric::OUTBOX_RETRIES.register(&[("destination", self.destination.clone())]);
        Ok(self.checkpoint().await?)
    }

    async fn handle(&self, page: &[RecordedEvent]) -> Result<(), PublishError> {
        self.publish(page).await
    }

    async fn commit(&self, position: u64) -> Result<(), PublishError> {
        self.journal.save_checkpoint(&self.settings.checkpoint, position).await?;
        metric::OUTBOX_CHECKPOINT.gauge(&[("destination", self.destination.clone())]).set(position as f64);
        // The outbox's lag: what is committed and not yet published. A head that cannot be read
        // now leaves the last figure; the next commit reports again.
        if let Ok(head) = self.journal.head_position().await {
            metric::OUTBOX_LAG_EVENTS
                .gauge(&[("destination", self.destination.clone())])
                .set(head.saturating_sub(position) as f64);
        }
        Ok(())
    }

    /// Another node publishes now (or none): this one has no outbox lag to report.
    fn stopped(&self) {
        metric::OUTBOX_LAG_EVENTS.gauge(&[("destination", self.destination.clone())]).set(0.0);
    }

    /// A page may wait long on a broker's retries: stopping abandons it (it is sent again later).
    fn interrupt_on_stop(&self) -> bool {
        true
    }
}

/// One destination of the outbox: a bus and the settings of the publisher that feeds it.
pub struct Destination {
    pub bus: Arc<dyn Bus>,
    pub settings: PublisherSettings,
}

impl Destination {
    pub fn new(bus: Arc<dyn Bus>, settings: PublisherSettings) -> Self {
        Destination { bus, settings }
    }
}

/// Splits messages into lanes by a hash of the key, keeping their order within each lane.
fn split_into_lanes(messages: Vec<Message>, lanes: usize) -> Vec<Vec<Message>> {
    if lanes == 1 {
        return vec![messages];
    }
    let mut out: Vec<Vec<Message>> = (0..lanes).map(|_| Vec::new()).collect();
    for m in messages {
        // SipHash with fixed keys: the same key always lands in the same lane.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        m.key.hash(&mut h);
        out[(h.finish() % lanes as u64) as usize].push(m);
    }
    out.retain(|lane| !lane.is_empty());
    out
}

/// Takes the next batch from the front of `pending`, within `limits`, never letting a message of a
/// key go ahead of an earlier one of the same key that stays behind.
fn next_batch(pending: &mut Vec<Message>, limits: BatchLimits) -> Vec<Message> {
    let mut taken = vec![false; pending.len()];
    let mut blocked: HashSet<&str> = HashSet::new();
    let (mut count, mut bytes) = (0usize, 0usize);
    for (i, m) in pending.iter().enumerate() {
        if count == limits.max_messages {
            break;
        }
        if blocked.contains(m.key.as_str()) {
            continue;
        }
        if count > 0 && bytes + m.size() > limits.max_bytes {
            break;
        }
        taken[i] = true;
        count += 1;
        bytes += m.size();
        if limits.one_per_key {
            blocked.insert(&m.key);
        }
    }
    let mut batch = Vec::with_capacity(count);
    let mut rest = Vec::with_capacity(pending.len() - count);
    for (m, t) in std::mem::take(pending).into_iter().zip(taken) {
        if t {
            batch.push(m);
        } else {
            rest.push(m);
        }
    }
    *pending = rest;
    batch
}

enum Retry {
    Done,
    Again { messages: Vec<Message>, code: String },
    Refused { message: Message, code: String },
}

/// What to send again after a partly failed batch: for each key with a failed entry, that entry and
/// every later entry of the key (accepted or not); nothing of the other keys.
fn retry_set(batch: Vec<Message>, outcomes: &[EntryOutcome]) -> Retry {
    let mut failed_keys: HashSet<String> = HashSet::new();
    let mut again = Vec::new();
    let mut first_code = None;
    for (m, outcome) in batch.into_iter().zip(outcomes) {
        match outcome {
            EntryOutcome::Refused { code } => return Retry::Refused { message: m, code: code.clone() },
            EntryOutcome::Retry { code } => {
                first_code.get_or_insert_with(|| code.clone());
                failed_keys.insert(m.key.clone());
                again.push(m);
            }
            EntryOutcome::Accepted if failed_keys.contains(&m.key) => again.push(m),
            EntryOutcome::Accepted => {}
        }
    }
    match first_code {
        None => Retry::Done,
        Some(code) => Retry::Again { messages: again, code },
    }
}

#[cfg(test)]
mod tests;
