//! Following the journal: the one loop that every follower of the global order runs.
//!
//! A [`Follower`] takes the journal's events page by page, in global order: the order saga, a read
//! model's sink, an outbox publisher. [`follow`] runs one until told to stop, and [`catch_up`] runs
//! one over everything committed so far (tests, replay, benchmarks). Both
//!
//! - start after the follower's own position ([`Follower::start_position`]: a checkpoint, or the
//!   position a sink stores with its changes);
//! - hand it whole pages of at most [`FollowOptions::page_size`] events;
//! - move its position ([`Follower::commit`]) only after the page was handled, so a crash or a
//!   failure handles a page again and never skips one.
//!
//! [`follow`] also retries: a position it cannot read, a page it cannot read, a page the follower
//! fails to handle and a position it fails to commit are each tried again, from the same position,
//! after an exponential backoff ([`FollowOptions::first_backoff`] doubling up to
//! [`FollowOptions::max_backoff`], back to the first after a page succeeds). Every wait ends at once
//! when `stop` changes.
//!
//! ## Metrics
//!
//! Labelled by `follower` ([`Follower::name`]): `follower_events_total` (events of handled pages),
//! `follower_lag_events` (journal head − the last event handled), `follower_lag_seconds` (0 when
//! caught up, else the age of the last event handled), `follower_errors_total`, also labelled by
//! `stage` (`start`, `read`, `handle` or `commit`), and `follower_stalled` (1 while stalled, else 0)
//! with `follower_stalled_position` (the global position of the event it is stalled on, 0 when not)
//! and `follower_stalls_total` (stalls met: one per event stalled on, however often it is retried).
//!
//! ## Stalls
//!
//! A failure the follower calls permanent ([`Follower::is_permanent`]: an event it can never handle,
//! such as a value that does not fit a read model's column) is not retried quietly: the loop records
//! a [`Stall`] (the event's position, stream and type, the error, since when), logs it once at error
//! level, sets `follower_stalled`, publishes it where the follower asks ([`Follower::stalls`], read by
//! `/admin/projections`), and goes on trying the page every [`FollowOptions::max_backoff`], so that
//! whatever unblocks it (an operator parking the event) takes effect. The stall is cleared, and
//! logged, once a page gets through.
//!
//! Architecture Invariant: a follower's position never passes an event it has not handled.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::journal::{sleep_or_stop, Journal, StoreError, Subscription};
use crate::metric;
use crate::RecordedEvent;

/// A follower stopped on an event it cannot handle (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stall {
    /// The follower's name ([`Follower::name`]).
    pub follower: String,
    /// The global position of the event it cannot handle.
    pub position: u64,
    pub stream_id: String,
    pub event_type: String,
    /// The failure, with its causes.
    pub error: String,
    /// When the loop first met it, in microseconds since the Unix epoch.
    pub since_us: i64,
}

/// Where [`follow`] publishes the stalls of the followers that share it, by follower name: what a
/// node's `/admin/projections` reads. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Stalls(Arc<std::sync::Mutex<std::collections::HashMap<String, Stall>>>);

impl Stalls {
    /// The stall of the follower `name`, if it is stalled.
    pub fn get(&self, name: &str) -> Option<Stall> {
        self.0.lock().expect("stalls lock").get(name).cloned()
    }

    fn set(&self, stall: Stall) {
        self.0.lock().expect("stalls lock").insert(stall.follower.clone(), stall);
    }

    fn clear(&self, name: &str) {
        self.0.lock().expect("stalls lock").remove(name);
    }
}

/// The page size of every follower that is not told otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// How a follower reads the journal and waits after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowOptions {
    /// Events read from the journal at a time: the most one page holds (at least 1).
    pub page_size: usize,
    /// How often to look for commits of other processes while idle.
    pub poll_interval: Duration,
    /// The wait after a first failure; it doubles with each failure in a row.
    pub first_backoff: Duration,
    /// The longest wait after a failure.
    pub max_backoff: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            page_size: DEFAULT_PAGE_SIZE,
            poll_interval: Duration::from_millis(100),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl FollowOptions {
    /// The same options with another page size.
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }
}

/// Something that takes the journal's global order page by page: a saga, a read model, a publisher.
#[async_trait]
pub trait Follower: Send + Sync {
    /// What went wrong; a journal failure met on the follower's behalf becomes one.
    type Error: std::error::Error + From<StoreError> + Send + Sync + 'static;

    /// The follower's name in logs and metrics (the `follower` label), e.g. `order-saga`.
    fn name(&self) -> &str;

    /// The global position of the last event handled (0 before the first): the follower resumes
    /// after it.
    async fn start_position(&self) -> Result<u64, Self::Error>;

    /// Handles `page` (in global order, never empty). A failed page is handed over again, whole,
    /// so handling must be idempotent.
    async fn handle(&self, page: &[RecordedEvent]) -> Result<(), Self::Error>;

    /// Stores `position`, the last event of a page just handled, as where to resume. Nothing to do
    /// (the default) for a follower that stores its position with the page's changes.
    async fn commit(&self, _position: u64) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Whether [`follow`] may drop a page's handling half-way when `stop` changes (the page is
    /// handled again, whole, by the next run). The default lets a page finish first.
    fn interrupt_on_stop(&self) -> bool {
        false
    }

    /// Whether `error`, from [`Follower::handle`], is permanent: the same page will fail the same
    /// way however often it is handed over, until somebody acts (an event this follower cannot
    /// handle). [`follow`] reports a permanent failure as a [`Stall`]. The default: none is.
    fn is_permanent(&self, _error: &Self::Error) -> bool {
        false
    }

    /// The global position of the event a permanent `error` is about, when the follower knows it;
    /// otherwise the stall names the page's first event.
    fn failed_position(&self, _error: &Self::Error) -> Option<u64> {
        None
    }

    /// Where [`follow`] publishes this follower's stall, besides logs and metrics (default: nowhere).
    fn stalls(&self) -> Option<&Stalls> {
        None
    }

    /// Work the follower does besides its pages while [`follow`] runs it, such as a timer that
    /// fires when no event comes: `follow` runs it alongside the loop, on the same node (so under
    /// the same singleton lock), and it must return once `stop` changes. The default: none.
    async fn alongside(&self, _stop: watch::Receiver<bool>) {}

    /// Called once when [`follow`] returns: the follower sets the gauges it reports itself back to
    /// 0 (a node that no longer follows has nothing outstanding; another node may have taken over).
    fn stopped(&self) {}
}

/// The step of the loop that failed, for logs and the `stage` label.
#[derive(Clone, Copy, Debug)]
enum Stage {
    Start,
    Read,
    Handle,
    Commit,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Start => "start",
            Stage::Read => "read",
            Stage::Handle => "handle",
            Stage::Commit => "commit",
        }
    }
}

/// Exponential backoff between attempts: first, doubling, capped.
struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    fn new(options: &FollowOptions) -> Self {
        Backoff { next: options.first_backoff, first: options.first_backoff, max: options.max_backoff }
    }

    /// The wait before the next attempt; the one after it is twice as long, up to the cap.
    fn wait(&mut self) -> Duration {
        let wait = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Logs and counts a failure of one step.
fn record_failure(name: &str, stage: Stage, error: &(dyn std::error::Error + 'static)) {
    tracing::warn!(follower = %name, stage = stage.label(), error = %crate::ErrorChain(error), "follower step failed; retrying");
    metric::FOLLOWER_ERRORS.counter(&[("follower", name.to_owned()), ("stage", stage.label().to_owned())]).increment(1);
}

/// What the loop knows of its follower's stall, and how it reports one.
struct StallReporter<'a> {
    name: &'a str,
    stalls: Option<&'a Stalls>,
    current: Option<Stall>,
}

impl<'a> StallReporter<'a> {
    fn new(name: &'a str, stalls: Option<&'a Stalls>) -> Self {
        // A new run of the loop starts unstalled: it will meet the event again if it still fails.
        if let Some(stalls) = stalls {
            stalls.clear(name);
        }
        metric::FOLLOWER_STALLED.gauge(&[("follower", name.to_owned())]).set(0.0);
        metric::FOLLOWER_STALLED_POSITION.gauge(&[("follower", name.to_owned())]).set(0.0);
        metric::FOLLOWER_STALLS.register(&[("follower", name.to_owned())]);
        StallReporter { name, stalls, current: None }
    }

    /// A permanent failure on `event`: reported once per event (not per retry).
    fn stalled(&mut self, event: &RecordedEvent, error: &(dyn std::error::Error + 'static)) {
        metric::FOLLOWER_ERRORS
            .counter(&[("follower", self.name.to_owned()), ("stage", Stage::Handle.label().to_owned())])
            .increment(1);
        if self.current.as_ref().is_some_and(|s| s.position == event.global_position) {
            return;
        }
        let stall = Stall {
            follower: self.name.to_owned(),
            position: event.global_position,
            stream_id: event.stream_id.clone(),
            event_type: event.event_type.clone(),
            error: crate::ErrorChain(error).to_string(),
            since_us: crate::envelope::now_us(),
        };
        tracing::error!(
            follower = %self.name,
            position = stall.position,
            stream_id = %stall.stream_id,
            event_type = %stall.event_type,
            error = %stall.error,
            "follower stalled on an event it cannot handle; retrying until the event is parked or the follower fixed"
        );
        metric::FOLLOWER_STALLS.counter(&[("follower", self.name.to_owned())]).increment(1);
        metric::FOLLOWER_STALLED.gauge(&[("follower", self.name.to_owned())]).set(1.0);
        metric::FOLLOWER_STALLED_POSITION.gauge(&[("follower", self.name.to_owned())]).set(stall.position as f64);
        if let Some(stalls) = self.stalls {
            stalls.set(stall.clone());
        }
        self.current = Some(stall);
    }

    /// A page got through: a stall, if any, is over.
    fn progressed(&mut self) {
        let Some(stall) = self.current.take() else { return };
        tracing::info!(follower = %self.name, position = stall.position, "follower moved past the event it was stalled on");
        metric::FOLLOWER_STALLED.gauge(&[("follower", self.name.to_owned())]).set(0.0);
        metric::FOLLOWER_STALLED_POSITION.gauge(&[("follower", self.name.to_owned())]).set(0.0);
        if let Some(stalls) = self.stalls {
            stalls.clear(self.name);
        }
    }
}

/// Counts a handled page and reports how far the follower trails the journal's head.
async fn record_progress(journal: &dyn Journal, name: &str, page: &[RecordedEvent]) {
    let Some(last) = page.last() else { return };
    metric::FOLLOWER_EVENTS.counter(&[("follower", name.to_owned())]).increment(page.len() as u64);
    if let Ok(head) = journal.head_position().await {
        let behind = head.saturating_sub(last.global_position);
        metric::FOLLOWER_LAG_EVENTS.gauge(&[("follower", name.to_owned())]).set(behind as f64);
        let seconds =
            if behind == 0 { 0.0 } else { (crate::envelope::now_us() - last.recorded_at_us).max(0) as f64 / 1e6 };
        metric::FOLLOWER_LAG_SECONDS.gauge(&[("follower", name.to_owned())]).set(seconds);
    }
}

/// Follows the journal into `follower` from its own position until `stop` changes (or its sender is
/// gone), retrying every failed step from the same position with backoff (see the module docs).
///
/// When it returns, the follower's lag gauges on this node go back to 0: a singleton follower that
/// moved to another node must not leave its last lag behind here, where `/metrics` and the
/// dashboards' maximum across nodes would show it for ever (found by the chaos experiments: after a
/// failover the old holder kept reporting an outbox lag of 124 events).
pub async fn follow<F: Follower + ?Sized>(
    journal: Arc<dyn Journal>,
    follower: &F,
    options: FollowOptions,
    stop: watch::Receiver<bool>,
) {
    let alongside = follower.alongside(stop.clone());
    futures::join!(follow_until_stopped(journal, follower, options, stop), alongside);
    let name = follower.name();
    metric::FOLLOWER_LAG_EVENTS.gauge(&[("follower", name.to_owned())]).set(0.0);
    metric::FOLLOWER_LAG_SECONDS.gauge(&[("follower", name.to_owned())]).set(0.0);
    follower.stopped();
}

async fn follow_until_stopped<F: Follower + ?Sized>(
    journal: Arc<dyn Journal>,
    follower: &F,
    options: FollowOptions,
    mut stop: watch::Receiver<bool>,
) {
    let name = follower.name();
    let mut backoff = Backoff::new(&options);
    if *stop.borrow() {
        return;
    }
    metric::FOLLOWER_EVENTS.register(&[("follower", name.to_owned())]);
    for stage in [Stage::Start, Stage::Read, Stage::Handle, Stage::Commit] {
        metric::FOLLOWER_ERRORS.register(&[("follower", name.to_owned()), ("stage", stage.label().to_owned())]);
    }
    let mut stall = StallReporter::new(name, follower.stalls());
    let start = loop {
        match follower.start_position().await {
            Ok(position) => break position,
            Err(e) => {
                record_failure(name, Stage::Start, &e);
                if sleep_or_stop(&mut stop, backoff.wait()).await {
                    return;
                }
            }
        }
    };
    backoff.reset();
    let mut subscription = Subscription::new(journal.clone(), start)
        .with_page_size(options.page_size)
        .with_poll_interval(options.poll_interval);
    loop {
        let page = tokio::select! {
            biased;
            _ = stop.changed() => return,
            page = subscription.next_page() => page,
        };
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                record_failure(name, Stage::Read, &e);
                if sleep_or_stop(&mut stop, backoff.wait()).await {
                    return;
                }
                continue;
            }
        };
        let Some(last) = page.last().map(|e| e.global_position) else { continue };
        loop {
            let handled = if follower.interrupt_on_stop() {
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    handled = follower.handle(&page) => handled,
                }
            } else {
                follower.handle(&page).await
            };
            let wait = match handled {
                Ok(()) => break,
                Err(e) if follower.is_permanent(&e) => {
                    let position = follower.failed_position(&e);
                    let event = page.iter().find(|e| Some(e.global_position) == position).unwrap_or(&page[0]);
                    stall.stalled(event, &e);
                    // Nothing cures it but a change elsewhere: try again at the slowest pace.
                    options.max_backoff
                }
                Err(e) => {
                    record_failure(name, Stage::Handle, &e);
                    backoff.wait()
                }
            };
            if sleep_or_stop(&mut stop, wait).await {
                return;
            }
        }
        while let Err(e) = follower.commit(last).await {
            record_failure(name, Stage::Commit, &e);
            if sleep_or_stop(&mut stop, backoff.wait()).await {
                return;
            }
        }
        backoff.reset();
        stall.progressed();
        record_progress(journal.as_ref(), name, &page).await;
    }
}

/// Takes `follower` through everything committed up to now, from its own position, in pages of
/// `page_size` (the next page is read while one is handled), committing after each page. Returns
/// the position reached, or the first failure, with the position left before the failed page.
pub async fn catch_up<F: Follower + ?Sized>(
    journal: &dyn Journal,
    follower: &F,
    page_size: usize,
) -> Result<u64, F::Error> {
    let page_size = page_size.max(1);
    let mut position = follower.start_position().await?;
    let mut page = journal.read_all(position, page_size).await?;
    while let Some(last) = page.last().map(|e| e.global_position) {
        let (handled, next) = futures::join!(follower.handle(&page), journal.read_all(last, page_size));
        handled?;
        follower.commit(last).await?;
        record_progress(journal, follower.name(), &page).await;
        page = next?;
        position = last;
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

    use crate::domain::StockRestocked;
    use crate::envelope::{Causation, NewEvent, GENESIS_HASH};
    use crate::journal::{AppendError, AppendRequest, Appended, Snapshot};

    /// A journal in memory: the global order only, and reads that can be made to fail.
    struct FakeJournal {
        events: Mutex<Vec<RecordedEvent>>,
        failing_reads: AtomicU32,
        reads: AtomicU32,
        commits: watch::Sender<u64>,
    }

    impl FakeJournal {
        fn with_events(n: u64) -> Arc<Self> {
            let events = (1..=n)
                .map(|position| {
                    let e = StockRestocked { store_id: "s1".into(), sku: "latte".into(), quantity: 1 };
                    let mut recorded = NewEvent::from_domain(&e.into(), Causation::new_root()).unwrap().record(
                        "inventory-s1:latte",
                        position,
                        &GENESIS_HASH,
                    );
                    recorded.global_position = position;
                    recorded
                })
                .collect();
            Arc::new(FakeJournal {
                events: Mutex::new(events),
                failing_reads: AtomicU32::new(0),
                reads: AtomicU32::new(0),
                commits: watch::channel(0).0,
            })
        }
    }

    #[async_trait]
    impl Journal for FakeJournal {
        async fn append(&self, _: AppendRequest) -> Result<Appended, AppendError> {
            Err(StoreError::Invalid("the fake journal takes no appends".into()).into())
        }
        async fn read_stream(&self, _: &str, _: u64, _: usize) -> Result<Vec<RecordedEvent>, StoreError> {
            Ok(Vec::new())
        }
        async fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let failing = self.failing_reads.load(Ordering::SeqCst);
            if failing > 0 {
                self.failing_reads.store(failing - 1, Ordering::SeqCst);
                return Err(StoreError::unavailable("scripted read failure"));
            }
            let events = self.events.lock().unwrap();
            Ok(events.iter().filter(|e| e.global_position > after).take(max).cloned().collect())
        }
        async fn head_position(&self) -> Result<u64, StoreError> {
            Ok(self.events.lock().unwrap().len() as u64)
        }
        async fn save_snapshot(&self, _: Snapshot) -> Result<(), StoreError> {
            Ok(())
        }
        async fn load_snapshot(&self, _: &str) -> Result<Option<Snapshot>, StoreError> {
            Ok(None)
        }
        async fn load_checkpoint(&self, _: &str) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn save_checkpoint(&self, _: &str, _: u64) -> Result<(), StoreError> {
            Ok(())
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn commits(&self) -> watch::Receiver<u64> {
            self.commits.subscribe()
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum FakeError {
        #[error("scripted failure")]
        Scripted,
        #[error(transparent)]
        Store(#[from] StoreError),
    }

    /// A follower that writes down what it is asked to do, failing the first `failing` pages;
    /// permanently, blaming the event at `blame`, when `blame` is set.
    #[derive(Default)]
    struct FakeFollower {
        failing: AtomicU32,
        log: Mutex<Vec<String>>,
        blame: Option<u64>,
        stalls: Stalls,
    }

    impl FakeFollower {
        fn failing(pages: u32) -> Self {
            FakeFollower { failing: AtomicU32::new(pages), ..Default::default() }
        }
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
        fn committed(&self) -> Option<u64> {
            self.log().iter().rev().find_map(|l| l.strip_prefix("commit ").map(|p| p.parse().unwrap()))
        }
    }

    #[async_trait]
    impl Follower for FakeFollower {
        type Error = FakeError;
        fn name(&self) -> &str {
            "fake"
        }
        async fn start_position(&self) -> Result<u64, FakeError> {
            Ok(0)
        }
        async fn handle(&self, page: &[RecordedEvent]) -> Result<(), FakeError> {
            let span = format!("{}..={}", page[0].global_position, page[page.len() - 1].global_position);
            let failing = self.failing.load(Ordering::SeqCst);
            if failing > 0 {
                self.failing.store(failing - 1, Ordering::SeqCst);
                self.log.lock().unwrap().push(format!("failed {span}"));
                return Err(FakeError::Scripted);
            }
            self.log.lock().unwrap().push(format!("handled {span}"));
            Ok(())
        }
        async fn commit(&self, position: u64) -> Result<(), FakeError> {
            self.log.lock().unwrap().push(format!("commit {position}"));
            Ok(())
        }
        fn is_permanent(&self, error: &FakeError) -> bool {
            matches!(error, FakeError::Scripted) && self.blame.is_some()
        }
        fn failed_position(&self, _: &FakeError) -> Option<u64> {
            self.blame
        }
        fn stalls(&self) -> Option<&Stalls> {
            Some(&self.stalls)
        }
    }

    fn fast() -> FollowOptions {
        FollowOptions {
            page_size: 2,
            poll_interval: Duration::from_millis(5),
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    /// Runs `follow` until the follower committed `position`, then stops it.
    async fn follow_until_committed(journal: Arc<FakeJournal>, follower: &FakeFollower, position: u64) {
        let (stop, stopped) = watch::channel(false);
        let watcher = async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while follower.committed() != Some(position) {
                assert!(Instant::now() < deadline, "never committed {position}: {:?}", follower.log());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.send(true).unwrap();
        };
        tokio::join!(follow(journal, follower, fast(), stopped), watcher);
    }

    #[tokio::test]
    async fn a_failed_page_is_retried_from_the_same_position_and_committed_only_once_handled() {
        let journal = FakeJournal::with_events(3);
        journal.failing_reads.store(2, Ordering::SeqCst);
        let follower = FakeFollower::failing(2);
        follow_until_committed(journal.clone(), &follower, 3).await;
        assert_eq!(
            follower.log(),
            ["failed 1..=2", "failed 1..=2", "handled 1..=2", "commit 2", "handled 3..=3", "commit 3"],
            "a failed page is handed over again whole and nothing is committed before it succeeds"
        );
        assert!(journal.reads.load(Ordering::SeqCst) >= 4, "the failed reads were retried");
    }

    #[tokio::test]
    async fn stop_during_a_backoff_returns_at_once() {
        let hour = FollowOptions {
            first_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            ..fast()
        };
        // Backing off after a failed page, then after a failed read.
        for (failing_pages, failing_reads) in [(1, 0), (0, 1)] {
            let journal = FakeJournal::with_events(3);
            journal.failing_reads.store(failing_reads, Ordering::SeqCst);
            let follower = Arc::new(FakeFollower::failing(failing_pages));
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn({
                let (journal, follower) = (journal.clone(), follower.clone());
                async move { follow(journal, follower.as_ref(), hour, stopped).await }
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while follower.log().is_empty() && journal.reads.load(Ordering::SeqCst) == 0 {
                assert!(Instant::now() < deadline, "the follower never started");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.send(true).unwrap();
            tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .expect("follow must return at once when stopped during a backoff")
                .unwrap();
            assert_eq!(follower.committed(), None);
        }
    }

    #[tokio::test]
    async fn catch_up_commits_each_handled_page_and_stops_at_a_failed_one() {
        let journal = FakeJournal::with_events(5);
        let follower = FakeFollower::default();
        assert_eq!(catch_up(journal.as_ref(), &follower, 2).await.unwrap(), 5);
        assert_eq!(
            follower.log(),
            ["handled 1..=2", "commit 2", "handled 3..=4", "commit 4", "handled 5..=5", "commit 5"]
        );
        let failing = FakeFollower::failing(1);
        assert!(matches!(catch_up(journal.as_ref(), &failing, 2).await, Err(FakeError::Scripted)));
        assert_eq!(failing.committed(), None, "nothing is committed past a failed page");
    }

    #[test]
    fn the_lag_gauges_and_counters_are_labelled_by_follower() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The local recorder sees what runs on this thread: `follow`, on a current-thread runtime.
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let journal = FakeJournal::with_events(5);
                let follower = FakeFollower::failing(1);
                follow_until_committed(journal, &follower, 5).await;
            })
        });
        let text = handle.render();
        for line in [
            "follower_lag_events{follower=\"fake\"} 0",
            "follower_lag_seconds{follower=\"fake\"} 0",
            "follower_events_total{follower=\"fake\"} 5",
            "follower_errors_total{follower=\"fake\",stage=\"handle\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }

    #[test]
    fn a_follower_that_stops_leaves_no_lag_behind_on_this_node() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                // What the node reported while it followed, before another node took over.
                metric::FOLLOWER_LAG_EVENTS.gauge(&[("follower", "fake".to_owned())]).set(124.0);
                metric::FOLLOWER_LAG_SECONDS.gauge(&[("follower", "fake".to_owned())]).set(3.5);
                let (stop, stopped) = watch::channel(false);
                stop.send(true).unwrap();
                follow(FakeJournal::with_events(5), &FakeFollower::default(), fast(), stopped).await;
            })
        });
        let text = handle.render();
        for line in ["follower_lag_events{follower=\"fake\"} 0", "follower_lag_seconds{follower=\"fake\"} 0"] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }

    #[test]
    fn a_permanent_failure_is_reported_once_as_a_stall_and_cleared_after_progress() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let has = |text: &str, line: &str| text.lines().any(|l| l == line);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let journal = FakeJournal::with_events(3);
                let follower = FakeFollower { failing: AtomicU32::new(4), blame: Some(2), ..Default::default() };
                let (stop, stopped) = watch::channel(false);
                let watcher = async {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let stall = loop {
                        if let Some(stall) = follower.stalls.get("fake") {
                            break stall;
                        }
                        assert!(Instant::now() < deadline, "never reported stalled: {:?}", follower.log());
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    };
                    assert_eq!(
                        (stall.position, stall.stream_id.as_str(), stall.event_type.as_str()),
                        (2, "inventory-s1:latte", "StockRestocked"),
                        "the stall names the event the follower blamed, not the page's first"
                    );
                    assert_eq!(stall.error, "scripted failure");
                    let text = handle.render();
                    assert!(has(&text, "follower_stalled{follower=\"fake\"} 1"), "{text}");
                    assert!(has(&text, "follower_stalled_position{follower=\"fake\"} 2"), "{text}");
                    while follower.committed() != Some(3) {
                        assert!(Instant::now() < deadline, "never moved on: {:?}", follower.log());
                        if let Some(now) = follower.stalls.get("fake") {
                            assert_eq!(now, stall, "a retry of the same event is the same stall, since the first");
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    assert_eq!(follower.stalls.get("fake"), None, "progress clears the stall");
                    stop.send(true).unwrap();
                };
                tokio::join!(follow(journal, &follower, fast(), stopped), watcher);
                assert_eq!(
                    follower.log(),
                    [
                        "failed 1..=2",
                        "failed 1..=2",
                        "failed 1..=2",
                        "failed 1..=2",
                        "handled 1..=2",
                        "commit 2",
                        "handled 3..=3",
                        "commit 3"
                    ]
                );
            })
        });
        let text = handle.render();
        for line in [
            "follower_stalls_total{follower=\"fake\"} 1",
            "follower_errors_total{follower=\"fake\",stage=\"handle\"} 4",
            "follower_stalled{follower=\"fake\"} 0",
            "follower_stalled_position{follower=\"fake\"} 0",
        ] {
            assert!(has(&text, line), "no {line:?} in:\n{text}");
        }
    }
}
