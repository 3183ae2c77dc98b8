//! Follows the journal into a sink: a read model as a [`Follower`] of the global order.
//!
//! The sink stores its position with its changes, so there is nothing to commit after a page; the
//! loop itself, its retries and its metrics (`follower_*{follower="projection:<name>"}`) are
//! [`events::follow`]'s.
//!
//! An event the sink cannot project ([`SinkError::Poison`]) stalls the projection: the runner
//! narrows a failed page down to the one event to blame (applying, by halves, what comes before it),
//! and [`events::follow`] reports the stall with that event's position. The operator's way out is to
//! park the event (`cloudcafe projections park`, a [`crate::read_models::parks`] record in the
//! journal): the runner reads its projection's parks when it starts and again before each retry
//! while stalled, and applies a parked event as its park record, which every sink ignores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use events::follow::{self, FollowOptions, Follower, Stalls};
use events::{Journal, RecordedEvent};
use tokio::sync::watch;

use crate::read_models::parks::Parks;
use crate::{Sink, SinkError};

/// Feeds one sink from the journal, from the sink's own position.
pub struct ProjectionRunner {
    journal: Arc<dyn Journal>,
    sink: Arc<dyn Sink>,
    /// `projection:<sink name>`, the follower's name in metrics and logs.
    name: String,
    options: FollowOptions,
    /// The projection's parked events, as last read.
    parks: Mutex<Arc<Parks>>,
    /// The last page failed on an event the sink cannot project.
    stalled: AtomicBool,
    stalls: Option<Stalls>,
}

impl ProjectionRunner {
    /// A runner with the default [`FollowOptions`].
    pub fn new(journal: Arc<dyn Journal>, sink: Arc<dyn Sink>) -> Self {
        let name = follower_name(sink.name());
        ProjectionRunner {
            journal,
            sink,
            name,
            options: FollowOptions::default(),
            parks: Mutex::new(Arc::new(Parks::default())),
            stalled: AtomicBool::new(false),
            stalls: None,
        }
    }

    /// Reads `page` events at a time.
    pub fn with_page_size(mut self, page: usize) -> Self {
        self.options = self.options.with_page_size(page);
        self
    }

    /// Waits at most `max_backoff` between attempts after a failure (also while stalled).
    pub fn with_max_backoff(mut self, max_backoff: std::time::Duration) -> Self {
        self.options.max_backoff = max_backoff;
        self.options.first_backoff = self.options.first_backoff.min(max_backoff);
        self
    }

    /// Publishes this runner's stall in `stalls` (under [`follower_name`]).
    pub fn with_stalls(mut self, stalls: Stalls) -> Self {
        self.stalls = Some(stalls);
        self
    }

    /// The journal this runner follows.
    pub fn journal(&self) -> Arc<dyn Journal> {
        self.journal.clone()
    }

    /// How this runner reads the journal and waits after a failure.
    pub fn options(&self) -> FollowOptions {
        self.options
    }

    /// Applies everything committed up to now; returns the position reached.
    pub async fn catch_up(&self) -> Result<u64, SinkError> {
        follow::catch_up(self.journal.as_ref(), self, self.options.page_size).await
    }

    /// Follows the journal until `stop` turns true, retrying a failed page with backoff.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        follow::follow(self.journal.clone(), &self, self.options, stop).await
    }

    async fn reload_parks(&self) -> Result<(), SinkError> {
        let parks = Parks::load(self.journal.as_ref(), self.sink.name()).await?;
        *self.parks.lock().expect("parks lock") = Arc::new(parks);
        Ok(())
    }

    /// Applies `page`; if it fails as poison, finds the one event to blame by applying halves (what
    /// precedes the event is applied and stays applied), and returns the poison blamed on it.
    async fn apply_blaming(&self, page: &[RecordedEvent]) -> Result<(), SinkError> {
        let mut error = match self.sink.apply(page).await {
            Err(e) if e.is_poison() => e,
            other => return other,
        };
        // Everything before `rest` is applied; `rest`, applied whole, fails with `error`.
        let mut rest = page;
        while rest.len() > 1 {
            let (front, back) = rest.split_at(rest.len() / 2);
            match self.sink.apply(front).await {
                Ok(()) => {
                    rest = back;
                    match self.sink.apply(rest).await {
                        Err(e) if e.is_poison() => error = e,
                        other => return other,
                    }
                }
                Err(e) if e.is_poison() => {
                    rest = front;
                    error = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(error.at(rest[0].global_position))
    }
}

/// The follower name (in metrics, logs and [`Stalls`]) of the projection into the sink `sink_name`.
pub fn follower_name(sink_name: &str) -> String {
    format!("projection:{sink_name}")
}

#[async_trait]
impl Follower for ProjectionRunner {
    type Error = SinkError;

    fn name(&self) -> &str {
        &self.name
    }

    async fn start_position(&self) -> Result<u64, SinkError> {
        self.reload_parks().await?;
        self.sink.position().await
    }

    async fn handle(&self, page: &[RecordedEvent]) -> Result<(), SinkError> {
        if self.stalled.load(Ordering::SeqCst) {
            self.reload_parks().await?;
        }
        let parks = self.parks.lock().expect("parks lock").clone();
        let handled = self.apply_blaming(&parks.apply_to(page)).await;
        self.stalled.store(matches!(&handled, Err(e) if e.is_poison()), Ordering::SeqCst);
        handled
    }

    fn is_permanent(&self, error: &SinkError) -> bool {
        error.is_poison()
    }

    fn failed_position(&self, error: &SinkError) -> Option<u64> {
        match error {
            SinkError::Poison { position, .. } => *position,
            SinkError::Unavailable { .. } => None,
        }
    }

    fn stalls(&self) -> Option<&Stalls> {
        self.stalls.as_ref()
    }
}
