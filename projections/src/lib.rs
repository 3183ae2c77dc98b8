//! # CloudCafe projections
//!
//! Read models fed from the journal's global order. A [`Sink`] applies a page of events and stores
//! the position of the last one in the same transaction (or, where a store has no multi-item
//! transactions, writes each item conditionally on its stream version), so a page applied twice
//! changes nothing (effectively-once). A [`read_models::runner::ProjectionRunner`] follows the journal from the
//! sink's own position.
//!
//! Every sink can list its rows in a canonical form ([`CanonicalRow`]), the same text in every store,
//! so that a model rebuilt by replay can be compared with the live one ([`Fingerprint`]). A
//! [`Rebuildable`] sink can build a shadow copy of itself and promote it atomically.
//!
//! Architecture Invariant: projections never write to the journal and never decide anything; a read
//! model can be dropped and rebuilt from the journal at any time.

#[cfg(feature = "aws")]
pub mod aws;
pub mod bus;
pub mod read_models;
pub mod workload;

use std::sync::Arc;

use async_trait::async_trait;
use events::{Cause, RecordedEvent};
use sha2::{Digest, Sha256};

/// Why a sink could not apply, read or rebuild its read model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The store behind the read model did not answer or failed; trying again later may succeed.
    #[error("read model unavailable: {reason}")]
    Unavailable {
        /// What was being done, in words.
        reason: String,
        /// The store's, driver's or SDK's failure, when there is one.
        #[source]
        cause: Option<Cause>,
    },
    /// An event cannot be projected (a value the read model cannot hold, a payload that does not
    /// decode): trying again will not help, until the event is parked or the model changed.
    #[error("event cannot be projected: {reason}")]
    Poison {
        /// The global position of the event, once known (a page's failure may not say which event).
        position: Option<u64>,
        /// What was refused, in words.
        reason: String,
        /// The store's or the codec's refusal, when there is one.
        #[source]
        cause: Option<Cause>,
    },
}

impl SinkError {
    /// The read model is unavailable for a reason of its own (no underlying error).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        SinkError::Unavailable { reason: reason.into(), cause: None }
    }

    /// An event cannot be projected, for a reason of the sink's own.
    pub fn poison(reason: impl Into<String>) -> Self {
        SinkError::Poison { position: None, reason: reason.into(), cause: None }
    }

    /// An event cannot be projected: the store or the codec refused it with `cause`.
    pub fn poison_because(reason: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        SinkError::Poison { position: None, reason: reason.into(), cause: Some(Arc::new(cause)) }
    }

    /// The same failure, blamed on the event at `position` (a poison only; others are returned as they are).
    pub fn at(self, at: u64) -> Self {
        match self {
            SinkError::Poison { reason, cause, .. } => SinkError::Poison { position: Some(at), reason, cause },
            other => other,
        }
    }

    /// Whether trying again cannot help: an event that cannot be projected.
    pub fn is_poison(&self) -> bool {
        matches!(self, SinkError::Poison { .. })
    }

    /// The read model is unavailable while doing `reason`, because of `cause`.
    pub fn unavailable_because(
        reason: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        SinkError::Unavailable { reason: reason.into(), cause: Some(Arc::new(cause)) }
    }
}

/// Equal by variant and text: the cause is left out because errors do not compare, and two
/// failures of the same step are the same failure to whoever compares them (tests, mostly).
impl PartialEq for SinkError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SinkError::Unavailable { reason: a, .. }, SinkError::Unavailable { reason: b, .. }) => a == b,
            (SinkError::Poison { position: p, reason: a, .. }, SinkError::Poison { position: q, reason: b, .. }) => {
                (p, a) == (q, b)
            }
            _ => false,
        }
    }
}

impl Eq for SinkError {}

/// A failed journal (or PostgreSQL) call: the reason repeats the store's, the store's error is the cause.
impl From<events::StoreError> for SinkError {
    fn from(e: events::StoreError) -> Self {
        let reason = match &e {
            events::StoreError::Unavailable { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        SinkError::unavailable_because(reason, e)
    }
}

/// One row of a read model in canonical form: `key` names it uniquely (`table/primary key`),
/// `content` holds its fields as `name=value` pairs in a fixed order. Money is in cents, times in
/// microseconds since the epoch, booleans `true`/`false`, absent values empty.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CanonicalRow {
    pub key: String,
    pub content: String,
}

/// Row count and SHA-256 over the canonical rows sorted by key: equal fingerprints, equal models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub rows: u64,
    pub checksum: String,
}

impl Fingerprint {
    /// `rows` need not be sorted.
    pub fn of(rows: &mut [CanonicalRow]) -> Self {
        rows.sort();
        let mut h = Sha256::new();
        for r in rows.iter() {
            h.update(r.key.as_bytes());
            h.update([0]);
            h.update(r.content.as_bytes());
            h.update([b'\n']);
        }
        Fingerprint { rows: rows.len() as u64, checksum: hex::encode(h.finalize()) }
    }
}

/// The sink port: one per read-model store.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The projection's name, under which its position is stored.
    fn name(&self) -> &str;

    /// The global position of the last event applied (0 before the first).
    async fn position(&self) -> Result<u64, SinkError>;

    /// Applies `events` (in global order). Events at or below the stored position, or older than
    /// what a row already reflects, change nothing, so a repeated page changes nothing.
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError>;

    /// Every row of the model in canonical form (any order).
    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError>;

    async fn fingerprint(&self) -> Result<Fingerprint, SinkError> {
        Ok(Fingerprint::of(&mut self.canonical_rows().await?))
    }
}

/// A sink whose model can be rebuilt beside the live one and swapped in.
#[async_trait]
pub trait Rebuildable: Sink {
    /// The shadow model, created empty if absent and kept if present, so that an interrupted rebuild
    /// resumes from the shadow's own position.
    async fn shadow(&self) -> Result<Arc<dyn Sink>, SinkError>;

    /// The shadow as the first pass of a replay fills it, from its position to the journal's head: a
    /// store may leave out work that [`Rebuildable::complete_shadow`] then does once for the whole
    /// model (the analytics model recomputes its windows there instead of after every page). Its
    /// position and rows stay as consistent as [`Rebuildable::shadow`]'s, so an interrupted bulk pass
    /// resumes. The default is [`Rebuildable::shadow`].
    async fn bulk_shadow(&self) -> Result<Arc<dyn Sink>, SinkError> {
        self.shadow().await
    }

    /// Does what [`Rebuildable::bulk_shadow`] left out, so that the shadow equals a model built page
    /// by page; replay calls it after the bulk pass, before it compares or promotes. Idempotent.
    async fn complete_shadow(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Starts the shadow over, empty, at `position` (events up to it are not applied).
    async fn reset_shadow(&self, position: u64) -> Result<(), SinkError>;

    /// Replaces the live model with the shadow, atomically for readers; the shadow is gone after.
    async fn promote_shadow(&self) -> Result<(), SinkError>;

    /// Drops the shadow, leaving the live model as it is.
    async fn discard_shadow(&self) -> Result<(), SinkError>;

    /// A new, empty shadow held in this process's memory that folds events into the same canonical
    /// rows as the store's own shadow, when the model has one (`None` otherwise). `verify` compares
    /// with it instead of writing a shadow to the store: it costs no request, and it can be brought
    /// up to the journal's head again while a stream-fed model is still converging. It holds every
    /// row, so it is for checks the size of what `verify` folds anyway, not for replaying a
    /// production history (that is [`Rebuildable::shadow`]'s).
    fn memory_shadow(&self) -> Option<Arc<dyn Sink>> {
        None
    }
}

/// A sink whose every write is conditional on the version of the stream it comes from, so that it
/// can take events without the journal's global order: per stream in version order, as a Kinesis
/// shard delivers them (`consumer::KinesisProjection` feeds it).
///
/// The SQL sinks are not among them: they store one global offset with their changes, which needs
/// the global order; they follow the journal.
#[async_trait]
pub trait StreamOrderedSink: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Applies `events`, given per stream in increasing version with no version of a stream skipped
    /// since the events this sink has seen of it (other streams interleaved in any order). An event
    /// older than what an item already reflects changes nothing. The global position is not moved.
    async fn apply_in_stream_order(&self, events: &[RecordedEvent]) -> Result<(), SinkError>;
}

/// Orders Kinesis sequence numbers, which are decimal strings of varying length: by length, then
/// text (the empty string first). The one ordering the lease table, the consumer and the
/// shard-checkpointed models use.
pub fn sequence_key(sequence: &str) -> (usize, &str) {
    (sequence.len(), sequence)
}

/// One shard's records for a [`ShardCheckpointedSink`]: each event with the sequence number of the
/// record that carried it, in sequence order, and the lease counter of the worker that read them.
pub struct ShardBatch<'a> {
    pub shard_id: &'a str,
    /// The counter of the lease the reading worker holds: a write under a smaller counter than the
    /// one stored with the shard's checkpoint comes from a worker that lost the lease.
    pub lease_counter: u64,
    pub records: &'a [(String, RecordedEvent)],
}

/// What a [`ShardCheckpointedSink`] did with a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardApplied {
    /// The records after the stored checkpoint were applied (`records` of them), and the checkpoint
    /// moved to the batch's last record, in one transaction.
    Applied { records: usize },
    /// Nothing was written: a worker with a later lease counter (`stored`) wrote the shard's
    /// checkpoint, so this one lost the lease.
    Fenced { stored: u64 },
}

/// A read model that follows Kinesis shards and keeps each shard's checkpoint in its own store,
/// written in the transaction that applies the shard's records and fenced by the lease counter:
/// a record redelivered (a new lease holder reading again what the old one applied) changes
/// nothing, and a worker that lost its lease writes nothing. Its writes are idempotent as well, so
/// an event the publisher sent twice (two records) counts once.
///
/// The analytics model is one: its facts and windows are SQL, whose one global offset needs the
/// journal's order, so from Kinesis it keeps an offset per shard instead.
#[async_trait]
pub trait ShardCheckpointedSink: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// The sequence number of the last record of `shard_id` this model applied, if any: where a
    /// worker that takes the shard starts reading when the lease table's checkpoint is behind it.
    async fn shard_checkpoint(&self, shard_id: &str) -> Result<Option<String>, SinkError>;

    /// Applies the batch's records after the stored checkpoint and moves the checkpoint to the last
    /// one, in one transaction, unless the stored lease counter is larger than the batch's.
    async fn apply_from_shard(&self, batch: ShardBatch<'_>) -> Result<ShardApplied, SinkError>;
}

/// How far a read model fed from a stream (not the journal) trails: what a node reports for the
/// models its Kinesis consumers feed.
pub trait StreamFedLag: Send + Sync + 'static {
    /// The most milliseconds any shard read here is behind the stream's tip.
    fn millis_behind(&self) -> i64;
    /// The highest journal position applied here (positions below it may still be in flight on
    /// other shards or nodes).
    fn newest_position(&self) -> u64;
    /// The shards read here now.
    fn shards(&self) -> Vec<String>;
}
