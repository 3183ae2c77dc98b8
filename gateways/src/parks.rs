//! Parking an event a projection cannot apply: the operator's audited way out of a stall
//! (`cloudcafe projections park`). A park is a `ProjectionEventParked` appended to the projection's
//! parks stream; the projection's runner and its replays read it and skip the event alike
//! (`projections::read_models::parks`).
//!
//! Unless forced, only the event the projection is stalled on can be parked: the projection's next
//! event (the first after its stored position that is not parked already), and one that the
//! read model still refuses when it is tried once more. If that try succeeds, the event was not
//! poison: it stays applied (as the runner would have applied it) and nothing is parked.

use events::domain::ProjectionEventParked;
use events::{AppendError, AppendRequest, Causation, ExpectedVersion, Journal, NewEvent, RecordedEvent, StoreError};
use projections::read_models::parks::{self, Parks};
use projections::{Sink, SinkError};

/// What the operator asks to park.
#[derive(Clone, Debug)]
pub struct ParkRequest {
    /// The global position of the event.
    pub position: u64,
    /// Why, in the operator's words (kept in the journal).
    pub reason: String,
    /// Who asks (kept in the journal).
    pub parked_by: String,
    /// Park it even if it is not the event the projection is stalled on.
    pub force: bool,
}

/// Why an event was not parked.
#[derive(Debug, thiserror::Error)]
pub enum ParkError {
    #[error("the journal holds no event at position {0}")]
    NoSuchEvent(u64),
    #[error("event {0} is already parked for this projection")]
    AlreadyParked(u64),
    #[error("the reason must not be empty")]
    NoReason,
    #[error("event {position} is not the event {projection} is stalled on: {why} (pass --force to park it anyway)")]
    NotStalled { projection: String, position: u64, why: String },
    #[error("cannot read the journal")]
    Journal(#[from] StoreError),
    #[error("cannot append the park")]
    Append(#[from] AppendError),
    #[error("cannot reach the read model")]
    ReadModel(#[source] SinkError),
    #[error("cannot encode the park")]
    Encode(#[from] events::domain::CodecError),
}

/// The event at `position`, if the journal has one.
async fn event_at(journal: &dyn Journal, position: u64) -> Result<Option<RecordedEvent>, StoreError> {
    if position == 0 {
        return Ok(None);
    }
    Ok(journal.read_all(position - 1, 1).await?.into_iter().find(|e| e.global_position == position))
}

/// The next event `sink` would apply: the first after its position that is not parked.
async fn next_event(journal: &dyn Journal, sink: &dyn Sink, parks: &Parks) -> Result<Option<u64>, ParkError> {
    let mut after = sink.position().await.map_err(ParkError::ReadModel)?;
    loop {
        let page = journal.read_all(after, 100).await?;
        let Some(last) = page.last().map(|e| e.global_position) else { return Ok(None) };
        if let Some(next) = page.iter().find(|e| !parks.contains(e.global_position)) {
            return Ok(Some(next.global_position));
        }
        after = last;
    }
}

/// Parks the event at `request.position` for the projection `sink` (see the module docs); returns
/// the park as recorded.
pub async fn park(
    journal: &dyn Journal,
    sink: &dyn Sink,
    request: &ParkRequest,
) -> Result<ProjectionEventParked, ParkError> {
    let projection = sink.name().to_owned();
    if request.reason.trim().is_empty() {
        return Err(ParkError::NoReason);
    }
    let event = event_at(journal, request.position).await?.ok_or(ParkError::NoSuchEvent(request.position))?;
    let parks = Parks::load(journal, &projection).await?;
    if parks.contains(request.position) {
        return Err(ParkError::AlreadyParked(request.position));
    }
    if !request.force {
        let not_stalled =
            |why: String| ParkError::NotStalled { projection: projection.clone(), position: request.position, why };
        match next_event(journal, sink, &parks).await? {
            Some(next) if next == request.position => {}
            Some(next) => return Err(not_stalled(format!("its next event is {next}"))),
            None => return Err(not_stalled("it has applied everything".into())),
        }
        match sink.apply(std::slice::from_ref(&event)).await {
            Err(e) if e.is_poison() => {}
            Ok(()) => return Err(not_stalled("tried once more, it applied: it is not poison".into())),
            Err(e) => return Err(ParkError::ReadModel(e)),
        }
    }
    let parked = ProjectionEventParked {
        projection: projection.clone(),
        position: request.position,
        event_type: event.event_type.clone(),
        stream_id: event.stream_id.clone(),
        reason: request.reason.clone(),
        parked_by: request.parked_by.clone(),
        parked_at_us: events::envelope::now_us(),
    };
    let new = NewEvent::from_domain(&parked.clone().into(), Causation::new_root())?;
    journal
        .append(AppendRequest {
            stream_id: parks::stream_id(&projection),
            expected: ExpectedVersion::Any,
            events: vec![new],
        })
        .await?;
    Ok(parked)
}

/// Every park of the projection `projection`, by parked position.
pub async fn list(journal: &dyn Journal, projection: &str) -> Result<Vec<ProjectionEventParked>, StoreError> {
    Ok(Parks::load(journal, projection).await?.iter().map(|p| p.parked.clone()).collect())
}
