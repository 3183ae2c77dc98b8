//! Follows the journal into a sink: a read model as a [`Follower`] of the global order.
//!
//! The sink stores its position with its changes, so there is nothing to commit after a page; the
//! loop itself, its retries and its metrics (`follower_*{follower="projection:<name>"}`) are
//! [`events::follow`]'s.

use std::sync::Arc;

use async_trait::async_trait;
use events::follow::{self, FollowOptions, Follower};
use events::{Journal, RecordedEvent};
use tokio::sync::watch;

use crate::{Sink, SinkError};

/// Feeds one sink from the journal, from the sink's own position.
pub struct ProjectionRunner {
    journal: Arc<dyn Journal>,
    sink: Arc<dyn Sink>,
    /// `projection:<sink name>`, the follower's name in metrics and logs.
    name: String,
    options: FollowOptions,
}

impl ProjectionRunner {
    /// A runner with the default [`FollowOptions`].
    pub fn new(journal: Arc<dyn Journal>, sink: Arc<dyn Sink>) -> Self {
        let name = format!("projection:{}", sink.name());
        ProjectionRunner { journal, sink, name, options: FollowOptions::default() }
    }

    /// Reads `page` events at a time.
    pub fn with_page_size(mut self, page: usize) -> Self {
        self.options = self.options.with_page_size(page);
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
}

#[async_trait]
impl Follower for ProjectionRunner {
    type Error = SinkError;

    fn name(&self) -> &str {
        &self.name
    }

    async fn start_position(&self) -> Result<u64, SinkError> {
        self.sink.position().await
    }

    async fn handle(&self, page: &[RecordedEvent]) -> Result<(), SinkError> {
        self.sink.apply(page).await
    }
}
