//! Follows the journal into a sink.

use std::sync::Arc;
use std::time::Duration;

use events::journal::sleep_or_stop;
use events::{Journal, Subscription};

use crate::{Sink, SinkError};

pub struct ProjectionRunner {
    journal: Arc<dyn Journal>,
    sink: Arc<dyn Sink>,
    page: usize,
}

impl ProjectionRunner {
    pub fn new(journal: Arc<dyn Journal>, sink: Arc<dyn Sink>) -> Self {
        ProjectionRunner { journal, sink, page: 1000 }
    }

    pub fn with_page_size(mut self, page: usize) -> Self {
        self.page = page.max(1);
        self
    }

    /// Applies everything committed up to now; returns the position reached.
    pub async fn catch_up(&self) -> Result<u64, SinkError> {
        let mut position = self.sink.position().await?;
        let mut page = self.journal.read_all(position, self.page).await?;
        while let Some(last) = page.last().map(|e| e.global_position) {
            // The next page is read while this one is applied.
            let (applied, next) = futures::join!(self.sink.apply(&page), self.journal.read_all(last, self.page));
            applied?;
            page = next?;
            position = last;
        }
        Ok(position)
    }

    /// Follows the journal until `stop` turns true, retrying a failed page with backoff.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let name = self.sink.name().to_owned();
        let start = loop {
            match self.sink.position().await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::warn!(projection = %name, error = %e, "cannot read position; retrying");
                    if sleep_or_stop(&mut stop, Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        };
        let mut subscription = Subscription::new(self.journal.clone(), start).with_page_size(self.page);
        loop {
            let page = tokio::select! {
                page = subscription.next_page() => page,
                _ = stop.changed() => return,
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(projection = %name, error = %e, "cannot read the journal; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut backoff = Duration::from_millis(50);
            while let Err(e) = self.sink.apply(&page).await {
                tracing::warn!(projection = %name, error = %e, "page not applied; retrying");
                metrics::counter!("projection_errors_total", "projection" => name.clone()).increment(1);
                if sleep_or_stop(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            let last = page.last().expect("pages are never empty");
            if let Ok(head) = self.journal.head_position().await {
                let behind = head.saturating_sub(last.global_position);
                metrics::gauge!("projection_lag_events", "projection" => name.clone()).set(behind as f64);
                let seconds = if behind == 0 {
                    0.0
                } else {
                    (events::envelope::now_us() - last.recorded_at_us).max(0) as f64 / 1e6
                };
                metrics::gauge!("projection_lag_seconds", "projection" => name.clone()).set(seconds);
            }
            metrics::counter!("projection_events_total", "projection" => name.clone()).increment(page.len() as u64);
        }
    }
}
