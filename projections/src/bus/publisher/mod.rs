//! The outbox publisher: committed events leave the process.
//!
//! The journal is the outbox (DESIGN §3.4). A [`Publisher`] follows the journal's global order from
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
//! to the adapters; [`spawn_outbox`] starts one publisher per destination:
//!
//! ```ignore
//! let destinations = vec![
//!     Destination::new(
//!         Arc::new(KinesisBus::new(kinesis_client, &KinesisSettings::default())),
//!         PublisherSettings::new(kinesis::CHECKPOINT),
//!     ),
//!     Destination::new(
//!         Arc::new(SqsBus::new(sqs_client, &SqsSettings::new(queue_url))),
//!         PublisherSettings::new(sqs::CHECKPOINT),
//!     ),
//! ];
//! let tasks = spawn_outbox(journal.clone(), destinations, stop.subscribe());
//! ```
//!
//! ## Metrics
//!
//! Labelled by `destination`: `publisher_events_total` (messages of acknowledged pages),
//! `publisher_retries_total` (entries sent again), `publisher_publish_seconds` (a page, from its
//! first request to its last acknowledgement, retries included), `publisher_lag_events` (journal
//! head − checkpoint), `publisher_checkpoint`, and `publisher_errors_total` by `kind` (pages given up
//! and started over).
//!
//! Architecture Invariant: the publisher never writes events and never moves its checkpoint past a
//! message the broker has not acknowledged; on any failure it stays where it is and sends again.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use events::journal::sleep_or_stop;
use events::{Journal, RecordedEvent, StoreError, Subscription};
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
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The broker could not be reached, did not answer in time, or answered with a server fault:
    /// nothing is known about the batch, so all of it is sent again.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the request or an event cannot become a message: sending it again will
    /// not help.
    #[error("refused: {0}")]
    Refused(String),
}

/// A failure to create or inspect a destination (stream, queue).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker refused the setup: {0}")]
    Refused(String),
    #[error("{0} did not become ready in time")]
    NotReady(String),
}

/// A broker error met while setting up keeps its kind.
impl From<BusError> for SetupError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Refused(text) => SetupError::Refused(text),
            BusError::Unavailable(text) => SetupError::Unavailable(text),
        }
    }
}

/// The bus port: one adapter per broker.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The destination's name in metrics and logs, e.g. `kinesis`.
    fn destination(&self) -> &str;

    fn limits(&self) -> BatchLimits;

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
    #[error("{destination} unavailable after {attempts} attempts: {reason}")]
    Unavailable { destination: String, attempts: u32, reason: String },
    /// Rejection: the destination refuses this event for good; it is not skipped.
    #[error("{destination} refuses event {event_id} (global position {global_position}): {reason}")]
    Refused { destination: String, event_id: Uuid, global_position: u64, reason: String },
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
    /// The name its checkpoint is stored under, e.g. `publisher:kinesis`.
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
            page_size: 2000,
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
    pub fn new(journal: Arc<dyn Journal>, bus: Arc<dyn Bus>, settings: PublisherSettings) -> Self {
        let destination = bus.destination().to_owned();
        Publisher { journal, bus, settings, destination, counters: Counters::default() }
    }

    pub fn destination(&self) -> &str {
        &self.destination
    }

    pub fn settings(&self) -> &PublisherSettings {
        &self.settings
    }

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

    /// Publishes everything committed up to now, page by page from the stored checkpoint, and
    /// returns the checkpoint reached. Stops at the first page that cannot be published, leaving
    /// the checkpoint before it.
    pub async fn catch_up(&self) -> Result<u64, PublishError> {
        let mut position = self.checkpoint().await?;
        loop {
            let page = self.journal.read_all(position, self.settings.page_size.max(1)).await?;
            let Some(last) = page.last().map(|e| e.global_position) else { return Ok(position) };
            self.publish(&page).await?;
            self.journal.save_checkpoint(&self.settings.checkpoint, last).await?;
            position = last;
            self.record_lag(position).await;
        }
    }

    /// Follows the journal until `stop` turns true. A page that cannot be published is tried again,
    /// with backoff, from its first event, for as long as it takes: the checkpoint never skips it.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.destination.clone();
        let mut backoff = self.settings.retry.first_backoff;
        let start = loop {
            match self.checkpoint().await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::warn!(destination = %name, error = %e, "cannot read the publisher's checkpoint; retrying");
                    if sleep_or_stop(&mut stop, Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        };
        let mut subscription = Subscription::new(self.journal.clone(), start)
            .with_page_size(self.settings.page_size)
            .with_poll_interval(self.settings.poll_interval);
        loop {
            let page = tokio::select! {
                page = subscription.next_page() => page,
                _ = stop.changed() => return,
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(destination = %name, error = %e, "cannot read the journal; retrying");
                    if sleep_or_stop(&mut stop, Duration::from_millis(500)).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(last) = page.last().map(|e| e.global_position) else { continue };
            loop {
                let published = tokio::select! {
                    r = self.publish(&page) => r,
                    _ = stop.changed() => return,
                };
                let result = match published {
                    Ok(()) => self.journal.save_checkpoint(&self.settings.checkpoint, last).await.map_err(Into::into),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => break,
                    Err(e) => {
                        let kind = match e {
                            PublishError::Refused { .. } => "refused",
                            PublishError::Unavailable { .. } => "unavailable",
                            PublishError::Journal(_) => "journal",
                        };
                        tracing::warn!(destination = %name, error = %e, "page not published; the checkpoint stays, trying again");
                        metrics::counter!("publisher_errors_total", "destination" => name.clone(), "kind" => kind)
                            .increment(1);
                        if sleep_or_stop(&mut stop, backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(self.settings.retry.max_backoff);
                    }
                }
            }
            backoff = self.settings.retry.first_backoff;
            self.record_lag(last).await;
        }
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
        let mut messages = Vec::with_capacity(events.len());
        for e in events {
            let refused = |reason: String| PublishError::Refused {
                destination: self.destination.clone(),
                event_id: e.event_id,
                global_position: e.global_position,
                reason,
            };
            match self.bus.message_for(e) {
                Ok(Some(m)) if m.size() > limits.max_message_bytes => {
                    return Err(refused(format!("{} bytes, over the limit of {}", m.size(), limits.max_message_bytes)))
                }
                Ok(Some(m)) => messages.push(m),
                Ok(None) => {}
                Err(e) => return Err(refused(e.to_string())),
            }
        }
        let count = messages.len() as u64;
        let lanes = split_into_lanes(messages, self.settings.lanes.max(1));
        let results = futures::future::join_all(lanes.into_iter().map(|lane| self.publish_lane(lane, limits))).await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        self.counters.published.fetch_add(count, Ordering::Relaxed);
        metrics::counter!("publisher_events_total", "destination" => self.destination.clone()).increment(count);
        metrics::histogram!("publisher_publish_seconds", "destination" => self.destination.clone())
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
            let reason = match answer {
                Err(_) => format!("no answer within {:?}", self.settings.request_timeout),
                Ok(Err(BusError::Refused(reason))) => {
                    let first = &batch[0];
                    return Err(PublishError::Refused {
                        destination: self.destination.clone(),
                        event_id: first.event_id,
                        global_position: first.global_position,
                        reason,
                    });
                }
                Ok(Err(BusError::Unavailable(reason))) => reason,
                Ok(Ok(outcomes)) if outcomes.len() != batch.len() => {
                    format!("{} answers for {} entries", outcomes.len(), batch.len())
                }
                Ok(Ok(outcomes)) => match retry_set(batch, &outcomes) {
                    Retry::Done => return Ok(()),
                    Retry::Refused { message, code } => {
                        return Err(PublishError::Refused {
                            destination: self.destination.clone(),
                            event_id: message.event_id,
                            global_position: message.global_position,
                            reason: code,
                        })
                    }
                    Retry::Again { messages, code } => {
                        batch = messages;
                        self.note_retry(attempt, &retry, batch.len(), &code).await?;
                        continue;
                    }
                },
            };
            self.counters.failed_requests.fetch_add(1, Ordering::Relaxed);
            self.note_retry(attempt, &retry, batch.len(), &reason).await?;
        }
    }

    /// Counts a retry of `entries` and waits before it, or gives up when out of attempts.
    async fn note_retry(
        &self,
        attempt: u32,
        retry: &RetryPolicy,
        entries: usize,
        reason: &str,
    ) -> Result<(), PublishError> {
        if attempt >= retry.max_attempts {
            return Err(PublishError::Unavailable {
                destination: self.destination.clone(),
                attempts: attempt,
                reason: reason.to_owned(),
            });
        }
        tracing::debug!(destination = %self.destination, attempt, entries, reason, "sending again");
        self.counters.resent.fetch_add(entries as u64, Ordering::Relaxed);
        metrics::counter!("publisher_retries_total", "destination" => self.destination.clone())
            .increment(entries as u64);
        tokio::time::sleep(retry.backoff(attempt)).await;
        Ok(())
    }

    async fn record_lag(&self, position: u64) {
        if let Ok(head) = self.journal.head_position().await {
            metrics::gauge!("publisher_lag_events", "destination" => self.destination.clone())
                .set(head.saturating_sub(position) as f64);
        }
        metrics::gauge!("publisher_checkpoint", "destination" => self.destination.clone()).set(position as f64);
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
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    use events::sqlite::{SqliteJournal, SqliteOptions};
    use events::{AppendRequest, Causation, ExpectedVersion, NewEvent};

    /// A broker whose answers are scripted: each request takes the next script entry, if any
    /// (`Err` fails the request whole, `Ok(set)` refuses the entries at those indexes with a retryable
    /// code); once the script is spent it accepts everything. It records what it accepted, in order.
    #[derive(Default)]
    struct ScriptedBus {
        limits: Option<BatchLimits>,
        script: Mutex<Vec<Result<Vec<usize>, BusError>>>,
        accepted: Mutex<Vec<Message>>,
        requests: Mutex<Vec<Vec<Uuid>>>,
    }

    impl ScriptedBus {
        fn with(script: Vec<Result<Vec<usize>, BusError>>) -> Self {
            let mut script = script;
            script.reverse();
            ScriptedBus { script: Mutex::new(script), ..Default::default() }
        }
        fn accepted(&self) -> Vec<Message> {
            self.accepted.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Bus for ScriptedBus {
        fn destination(&self) -> &str {
            "scripted"
        }
        fn limits(&self) -> BatchLimits {
            self.limits.unwrap_or(BatchLimits {
                max_messages: 4,
                max_bytes: 1 << 20,
                max_message_bytes: 1 << 16,
                one_per_key: false,
            })
        }
        fn message_for(&self, event: &RecordedEvent) -> Result<Option<Message>, BusError> {
            Ok(Some(Message {
                event_id: event.event_id,
                global_position: event.global_position,
                key: event.stream_id.clone(),
                body: event.to_wire(),
            }))
        }
        async fn send_batch(&self, batch: &[Message]) -> Result<Vec<EntryOutcome>, BusError> {
            self.requests.lock().unwrap().push(batch.iter().map(|m| m.event_id).collect());
            let step = self.script.lock().unwrap().pop();
            let refuse = match step {
                Some(Err(e)) => return Err(e),
                Some(Ok(set)) => set,
                None => Vec::new(),
            };
            let mut accepted = self.accepted.lock().unwrap();
            Ok(batch
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    if refuse.contains(&i) {
                        EntryOutcome::Retry { code: "ProvisionedThroughputExceededException".into() }
                    } else {
                        accepted.push(m.clone());
                        EntryOutcome::Accepted
                    }
                })
                .collect())
        }
    }

    fn fast_settings(name: &str) -> PublisherSettings {
        PublisherSettings {
            lanes: 1,
            retry: RetryPolicy {
                first_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
                max_attempts: 4,
            },
            ..PublisherSettings::new(name)
        }
    }

    fn restock(n: u32) -> NewEvent {
        let e = events::domain::StockRestocked { store_id: "s1".into(), sku: "latte".into(), quantity: n };
        NewEvent::from_domain(&e.into(), Causation::new_root()).unwrap()
    }

    async fn journal_with(streams: &[(&str, u32)]) -> (tempfile::TempDir, Arc<dyn Journal>) {
        let dir = tempfile::tempdir().unwrap();
        let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
        // Interleave the streams one event at a time so that a batch mixes keys.
        let most = streams.iter().map(|(_, n)| *n).max().unwrap_or(0);
        for i in 0..most {
            for (stream, n) in streams {
                if i < *n {
                    let request = AppendRequest {
                        stream_id: (*stream).to_owned(),
                        expected: ExpectedVersion::Any,
                        events: vec![restock(i)],
                    };
                    journal.append(request).await.unwrap();
                }
            }
        }
        (dir, journal)
    }

    /// Per key, the last accepted copy of each event, in acceptance order: must be the journal order.
    fn last_copies_in_order(accepted: &[Message], journal: &[RecordedEvent]) {
        let mut last: HashMap<Uuid, usize> = HashMap::new();
        for (i, m) in accepted.iter().enumerate() {
            last.insert(m.event_id, i);
        }
        let mut by_key: HashMap<&str, Vec<(usize, u64)>> = HashMap::new();
        for e in journal {
            let at = *last.get(&e.event_id).unwrap_or_else(|| panic!("event {} never accepted", e.global_position));
            by_key.entry(&e.stream_id).or_default().push((at, e.stream_version));
        }
        for (key, mut seen) in by_key {
            seen.sort();
            let versions: Vec<u64> = seen.iter().map(|(_, v)| *v).collect();
            let expected: Vec<u64> = (1..=versions.len() as u64).collect();
            assert_eq!(versions, expected, "stream {key}: last copies out of order");
        }
    }

    #[test]
    fn metrics_count_events_and_retries_and_report_lag_by_destination() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The local recorder sees what runs on this thread: the publisher, on a current-thread runtime.
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let (_dir, journal) = journal_with(&[("order-a", 3), ("order-b", 3)]).await;
                // The first request refuses b1 (entry 1): b1 and b2 go again.
                let bus = Arc::new(ScriptedBus::with(vec![Ok(vec![1])]));
                Publisher::new(journal, bus, fast_settings("publisher:metrics")).catch_up().await.unwrap();
            })
        });
        let text = handle.render();
        for line in [
            "publisher_events_total{destination=\"scripted\"} 6",
            "publisher_retries_total{destination=\"scripted\"} 2",
            "publisher_lag_events{destination=\"scripted\"} 0",
            "publisher_checkpoint{destination=\"scripted\"} 6",
            "publisher_publish_seconds_count{destination=\"scripted\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_caps() {
        let p = RetryPolicy {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_attempts: 5,
        };
        for _ in 0..100 {
            let one = p.backoff(1);
            assert!(one >= Duration::from_millis(50) && one <= Duration::from_millis(100), "{one:?}");
            let three = p.backoff(3);
            assert!(three >= Duration::from_millis(200) && three <= Duration::from_millis(400), "{three:?}");
            let ten = p.backoff(10);
            assert!(ten >= Duration::from_millis(500) && ten <= Duration::from_secs(1), "{ten:?}");
        }
    }

    fn msg(key: &str, n: u8, size: usize) -> Message {
        Message {
            event_id: Uuid::from_u128(u128::from(n)),
            global_position: u64::from(n),
            key: key.into(),
            body: vec![0; size],
        }
    }

    #[test]
    fn a_batch_respects_count_and_bytes_and_one_per_key() {
        let limits = BatchLimits { max_messages: 3, max_bytes: 100, max_message_bytes: 100, one_per_key: false };
        let mut pending = vec![msg("a", 1, 10), msg("a", 2, 10), msg("b", 3, 10), msg("c", 4, 10)];
        let batch = next_batch(&mut pending, limits);
        assert_eq!(batch.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(pending.len(), 1);

        let mut pending = vec![msg("a", 1, 60), msg("b", 2, 60)];
        assert_eq!(next_batch(&mut pending, limits).len(), 1, "the byte limit splits the batch");

        let limits = BatchLimits { one_per_key: true, ..limits };
        let mut pending = vec![msg("a", 1, 1), msg("a", 2, 1), msg("b", 3, 1), msg("a", 4, 1), msg("c", 5, 1)];
        let batch = next_batch(&mut pending, limits);
        assert_eq!(batch.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![1, 3, 5]);
        let batch = next_batch(&mut pending, limits);
        assert_eq!(batch.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![2]);
        let batch = next_batch(&mut pending, limits);
        assert_eq!(batch.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn a_partial_failure_resends_the_failed_suffix_of_each_key_and_nothing_else() {
        let batch = vec![msg("a", 1, 1), msg("b", 2, 1), msg("a", 3, 1), msg("c", 4, 1), msg("b", 5, 1)];
        let ok = EntryOutcome::Accepted;
        let fail = EntryOutcome::Retry { code: "InternalFailure".into() };
        // a1 fails, a3 was accepted but must go again after a1; b and c were accepted.
        let outcomes = [fail.clone(), ok.clone(), ok.clone(), ok.clone(), ok.clone()];
        match retry_set(batch, &outcomes) {
            Retry::Again { messages, code } => {
                assert_eq!(messages.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![1, 3]);
                assert_eq!(code, "InternalFailure");
            }
            _ => panic!("expected a retry"),
        }
    }

    #[tokio::test]
    async fn partial_failures_are_retried_and_every_key_stays_in_order() {
        let (_dir, journal) = journal_with(&[("order-a", 6), ("order-b", 6), ("order-c", 3)]).await;
        // Request 1 refuses entries 0 and 2; request 2 fails whole; request 3 refuses entry 1.
        let bus = Arc::new(ScriptedBus::with(vec![
            Ok(vec![0, 2]),
            Err(BusError::Unavailable("connection refused".into())),
            Ok(vec![1]),
        ]));
        let publisher = Publisher::new(journal.clone(), bus.clone(), fast_settings("publisher:test"));
        assert_eq!(publisher.catch_up().await.unwrap(), 15);
        assert_eq!(publisher.checkpoint().await.unwrap(), 15);
        let all = journal.read_all(0, 100).await.unwrap();
        last_copies_in_order(&bus.accepted(), &all);
        let stats = publisher.stats();
        assert_eq!(stats.published, 15);
        assert_eq!(stats.failed_requests, 1);
        assert!(stats.resent >= 3, "{stats:?}");
    }

    #[tokio::test]
    async fn the_checkpoint_does_not_move_when_the_broker_keeps_failing() {
        let (_dir, journal) = journal_with(&[("order-a", 3), ("order-b", 3)]).await;
        // The first page (4 events, one batch) goes through; then every request fails.
        let mut script = vec![Ok(vec![])];
        script.extend((0..50).map(|_| Err(BusError::Unavailable("connection refused".into()))));
        let bus = Arc::new(ScriptedBus::with(script));
        let settings = PublisherSettings { page_size: 4, ..fast_settings("publisher:test") };
        let publisher = Publisher::new(journal.clone(), bus.clone(), settings);
        let err = publisher.catch_up().await.unwrap_err();
        assert!(matches!(err, PublishError::Unavailable { attempts: 4, .. }), "{err:?}");
        assert_eq!(publisher.checkpoint().await.unwrap(), 4, "only the acknowledged page counts");
        assert_eq!(bus.accepted().len(), 4);
        // Partial failures that never end do not move it either.
        let script = (0..50).map(|_| Ok(vec![0])).collect();
        let bus = Arc::new(ScriptedBus::with(script));
        let publisher = Publisher::new(
            journal.clone(),
            bus.clone(),
            PublisherSettings { page_size: 4, ..fast_settings("publisher:test") },
        );
        assert!(publisher.catch_up().await.is_err());
        assert_eq!(publisher.checkpoint().await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_refused_entry_stops_the_publisher_at_that_event() {
        struct Refusing;
        #[async_trait]
        impl Bus for Refusing {
            fn destination(&self) -> &str {
                "refusing"
            }
            fn limits(&self) -> BatchLimits {
                BatchLimits { max_messages: 10, max_bytes: 1 << 20, max_message_bytes: 1 << 20, one_per_key: false }
            }
            fn message_for(&self, e: &RecordedEvent) -> Result<Option<Message>, BusError> {
                if e.stream_version == 2 {
                    return Err(BusError::Refused("payload does not decode".into()));
                }
                Ok(None)
            }
            async fn send_batch(&self, _: &[Message]) -> Result<Vec<EntryOutcome>, BusError> {
                unreachable!("nothing to send")
            }
        }
        let (_dir, journal) = journal_with(&[("order-a", 3)]).await;
        let publisher = Publisher::new(journal.clone(), Arc::new(Refusing), fast_settings("publisher:refusing"));
        let err = publisher.catch_up().await.unwrap_err();
        assert!(matches!(err, PublishError::Refused { global_position: 2, .. }), "{err:?}");
        assert_eq!(publisher.checkpoint().await.unwrap(), 0, "a page is acknowledged whole or not at all");
    }

    #[tokio::test]
    async fn a_running_publisher_keeps_trying_the_same_page_and_then_moves_on() {
        let (_dir, journal) = journal_with(&[("order-a", 5), ("order-b", 5)]).await;
        let script = (0..6).map(|_| Err(BusError::Unavailable("connection refused".into()))).collect();
        let bus = Arc::new(ScriptedBus::with(script));
        let publisher = Publisher::new(journal.clone(), bus.clone(), fast_settings("publisher:run"));
        let (stop, stopped) = watch::channel(false);
        let task = publisher.spawn(stopped);
        let deadline = Instant::now() + Duration::from_secs(10);
        while journal.load_checkpoint("publisher:run").await.unwrap() < 10 {
            assert!(Instant::now() < deadline, "the publisher did not recover");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let more = AppendRequest {
            stream_id: "order-c".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent::from_domain(
                &events::domain::OrderPaid { order_id: Uuid::nil(), amount_cents: 1 }.into(),
                Causation::new_root(),
            )
            .unwrap()],
        };
        journal.append(more).await.unwrap();
        while journal.load_checkpoint("publisher:run").await.unwrap() < 11 {
            assert!(Instant::now() < deadline, "the publisher did not follow");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        let all = journal.read_all(0, 100).await.unwrap();
        last_copies_in_order(&bus.accepted(), &all);
    }
}
