//! The journal port: append with optimistic concurrency, read a stream, read the global order,
//! follow it, and keep snapshots.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::envelope::{NewEvent, RecordedEvent};
use crate::error_chain::Cause;

/// What the writer believes about a stream's version before appending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose current version is `actual` (0 = no stream) satisfies this expectation.
    pub fn admits(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// What a successful append committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub first_version: u64,
    pub last_version: u64,
    pub last_position: u64,
}

/// A failure of the store itself, as opposed to a rejected expectation.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer or failed to do the work; trying again later may succeed.
    #[error("journal unavailable: {reason}")]
    Unavailable {
        /// What was being done, in words.
        reason: String,
        /// The driver's or the OS's failure, when there is one.
        #[source]
        cause: Option<Cause>,
    },
    /// The request can never succeed as it is.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// What the store holds does not decode or breaks an invariant.
    #[error("journal data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The store is unavailable for a reason of its own (no underlying error).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        StoreError::Unavailable { reason: reason.into(), cause: None }
    }

    /// The store is unavailable while doing `reason`, because of `cause`.
    pub fn unavailable_because(
        reason: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Unavailable { reason: reason.into(), cause: Some(Arc::new(cause)) }
    }
}

/// Equal by variant and text: the cause is left out because errors do not compare, and two
/// failures of the same step are the same failure to whoever compares them (tests, mostly).
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StoreError::Unavailable { reason: a, .. }, StoreError::Unavailable { reason: b, .. }) => a == b,
            (StoreError::Invalid(a), StoreError::Invalid(b)) | (StoreError::Corrupt(a), StoreError::Corrupt(b)) => {
                a == b
            }
            _ => false,
        }
    }
}

impl Eq for StoreError {}

/// Why an append did not commit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Somebody else wrote to the stream first: reload and decide again.
    #[error("stream {stream_id} is at version {actual}, the writer expected {expected:?}")]
    Conflict { stream_id: String, expected: ExpectedVersion, actual: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stream's state folded up to `version`, encoded by its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub stream_id: String,
    pub version: u64,
    pub state: Vec<u8>,
}

#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Appends atomically: all of the request's events or none. Concurrent calls are group-committed.
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError>;

    /// Events of one stream with `stream_version >= from_version`, in order, at most `max`.
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events with `global_position > after`, in global order, at most `max`. The result is always a
    /// prefix that can no longer change: no event will later commit at a position already passed.
    async fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The last committed global position (0 for an empty journal).
    async fn head_position(&self) -> Result<u64, StoreError>;

    /// Keeps the newer of the stored and the given snapshot.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError>;

    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError>;

    /// The stored position of a named follower of the global order (0 when it has none).
    async fn load_checkpoint(&self, name: &str) -> Result<u64, StoreError>;

    /// Stores a follower's position; a position never moves backwards.
    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError>;

    /// A cheap check that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Changes whenever this process commits; followers also poll, for other processes' commits.
    fn commits(&self) -> watch::Receiver<u64>;
}

/// Reads a whole stream from `from_version`, page by page.
pub async fn read_stream_to_end(
    journal: &dyn Journal,
    stream_id: &str,
    from_version: u64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    const PAGE: usize = 1000;
    let mut out = Vec::new();
    let mut next = from_version.max(1);
    loop {
        let page = journal.read_stream(stream_id, next, PAGE).await?;
        let n = page.len();
        if let Some(last) = page.last() {
            next = last.stream_version + 1;
        }
        out.extend(page);
        if n < PAGE {
            return Ok(out);
        }
    }
}

/// A follower's pause: sleeps `wait` unless `stop` turns true first. True if the follower must stop
/// (`stop` changed, its sender is gone, or it reads true when the sleep ends).
pub async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Follows the global order from a position: catches up page by page, then waits for new commits.
pub struct Subscription {
    journal: Arc<dyn Journal>,
    after: u64,
    page: usize,
    commits: watch::Receiver<u64>,
    poll: Duration,
}

impl Subscription {
    pub fn new(journal: Arc<dyn Journal>, after: u64) -> Self {
        let commits = journal.commits();
        Subscription { journal, after, page: 1000, commits, poll: Duration::from_millis(100) }
    }

    pub fn with_page_size(mut self, page: usize) -> Self {
        self.page = page.max(1);
        self
    }

    /// How often to look for commits made by other processes.
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next non-empty page of events; waits for one to commit.
    pub async fn next_page(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            self.commits.borrow_and_update();
            let page = self.journal.read_all(self.after, self.page).await?;
            if let Some(last) = page.last() {
                self.after = last.global_position;
                return Ok(page);
            }
            let _ = tokio::time::timeout(self.poll, self.commits.changed()).await;
        }
    }
}

/// A caller's append waiting in a group-commit queue.
pub(crate) struct PendingAppend {
    pub request: AppendRequest,
    pub reply: tokio::sync::oneshot::Sender<Result<Appended, AppendError>>,
}

/// Rejects requests no adapter should see.
pub(crate) fn validate(request: &AppendRequest) -> Result<(), StoreError> {
    if request.events.is_empty() {
        return Err(StoreError::Invalid("an append needs at least one event".into()));
    }
    if request.stream_id.is_empty() {
        return Err(StoreError::Invalid("stream id is empty".into()));
    }
    Ok(())
}

/// Records journal metrics for one committed batch.
pub(crate) fn record_batch_metrics(
    adapter: &'static str,
    requests: usize,
    events: usize,
    conflicts: usize,
    took: Duration,
) {
    use crate::metric;
    metric::JOURNAL_APPEND_REQUESTS.histogram(&[("adapter", adapter)]).record(requests as f64);
    metric::JOURNAL_APPEND_EVENTS.histogram(&[("adapter", adapter)]).record(events as f64);
    metric::JOURNAL_APPEND_DURATION.histogram(&[("adapter", adapter)]).record(took.as_secs_f64());
    // Counted even when 0: the series exists from the first batch, conflicts or not.
    metric::JOURNAL_APPEND_CONFLICTS.counter(&[("adapter", adapter)]).increment(conflicts as u64);
}
