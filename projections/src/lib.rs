//! # CloudCafe projections
//!
//! Read models fed from the journal's global order. A [`Sink`] applies a page of events and stores
//! the position of the last one in the same transaction, so a page applied twice changes nothing
//! (effectively-once). A [`runner::ProjectionRunner`] follows the journal from the sink's own position.
//!
//! Architecture Invariant: projections never write to the journal and never decide anything; a read
//! model can be dropped and rebuilt from the journal at any time.

pub mod runner;
pub mod storefront;

use async_trait::async_trait;
use events::RecordedEvent;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("read model unavailable: {0}")]
    Unavailable(String),
    #[error("event cannot be projected: {0}")]
    Poison(String),
}

impl From<events::StoreError> for SinkError {
    fn from(e: events::StoreError) -> Self {
        SinkError::Unavailable(e.to_string())
    }
}

/// The sink port: one per read-model store.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The projection's name, under which its position is stored.
    fn name(&self) -> &str;

    /// The global position of the last event applied (0 before the first).
    async fn position(&self) -> Result<u64, SinkError>;

    /// Applies `events` (in global order) and stores the last one's position, atomically. Events at or
    /// below the stored position are skipped, so a repeated page changes nothing.
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError>;
}
