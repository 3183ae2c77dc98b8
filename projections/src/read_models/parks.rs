//! Parked events: the events an operator told a projection to skip because it cannot project them
//! (`cloudcafe projections park`). Each park is a [`ProjectionEventParked`] in the journal, on the
//! stream [`stream_id`] of its projection, so that it is audited, ordered and replicated with
//! everything else, and the runner and replay read the same parks and make the same choice.
//!
//! A parked event is not dropped from a page: it is replaced by its park record, moved to the parked
//! event's position ([`Parks::apply_to`]). Every sink ignores park records (they are in the journal
//! anyway), so the sink's stored position still moves past the parked event, also when a page holds
//! nothing else.

use std::borrow::Cow;
use std::collections::BTreeMap;

use events::domain::ProjectionEventParked;
use events::{DomainEvent, Journal, RecordedEvent, StoreError};

/// The stream that holds the parks of `projection` (a sink's name: `storefront`, `analytics`, ...).
pub fn stream_id(projection: &str) -> String {
    format!("projection-parks-{projection}")
}

/// One park as the journal holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Park {
    pub parked: ProjectionEventParked,
    /// The park record itself.
    pub record: RecordedEvent,
}

/// The parks of one projection, by parked position.
#[derive(Clone, Debug, Default)]
pub struct Parks {
    by_position: BTreeMap<u64, Park>,
}

impl Parks {
    /// Every park of `projection`, read from its stream.
    pub async fn load(journal: &dyn Journal, projection: &str) -> Result<Parks, StoreError> {
        let stream = stream_id(projection);
        let mut by_position = BTreeMap::new();
        for record in events::journal::read_stream_to_end(journal, &stream, 1).await? {
            match record.decode() {
                Ok(DomainEvent::ProjectionEventParked(parked)) => {
                    by_position.insert(parked.position, Park { parked, record });
                }
                Ok(other) => {
                    return Err(StoreError::Corrupt(format!(
                        "{stream} v{} holds a {} where only parks belong",
                        record.stream_version,
                        other.event_type()
                    )))
                }
                Err(e) => return Err(StoreError::Corrupt(format!("{stream} v{}: {e}", record.stream_version))),
            }
        }
        Ok(Parks { by_position })
    }

    pub fn is_empty(&self) -> bool {
        self.by_position.is_empty()
    }

    pub fn contains(&self, position: u64) -> bool {
        self.by_position.contains_key(&position)
    }

    /// Every park, by parked position.
    pub fn iter(&self) -> impl Iterator<Item = &Park> {
        self.by_position.values()
    }

    /// `page` as the projection applies it: each parked event replaced by its park record, moved to
    /// the parked event's position (so the position still moves past it), the rest as it is.
    pub fn apply_to<'a>(&self, page: &'a [RecordedEvent]) -> Cow<'a, [RecordedEvent]> {
        let (Some(first), Some(last)) = (page.first(), page.last()) else { return Cow::Borrowed(page) };
        if self.by_position.range(first.global_position..=last.global_position).next().is_none() {
            return Cow::Borrowed(page);
        }
        Cow::Owned(
            page.iter()
                .map(|e| match self.by_position.get(&e.global_position) {
                    Some(park) => RecordedEvent { global_position: e.global_position, ..park.record.clone() },
                    None => e.clone(),
                })
                .collect(),
        )
    }
}
