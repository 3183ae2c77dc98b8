//! Keeping a node's resident actors fresh while other nodes write to the same journal.
//!
//! Several `serve` processes share one journal. Each keeps the streams it touched in actors, with
//! their `(state, version)`, until they are idle for minutes. Writes stay correct without help (an
//! append carries the version it was decided on, and a stale writer loses, reloads and decides
//! again), but reads and refusals do not append: a price looked up, a stock shown, a refusal of an
//! item that another node just published. This module bounds how old that state can be.
//!
//! - [`FreshnessFollower`] runs on every node (not as a cluster singleton). It follows the journal's
//!   global order from its head when the node starts, never stores a checkpoint, and for each event
//!   tells [`Freshness`] that the event's stream reached its version: one map lookup, nothing at all
//!   when the stream has no actor on this node. It also folds menu and store events into the
//!   node's [`Catalogue`] (what an order needs to know, see [`crate::catalogue`]). It polls every [`HostOptions::freshness_poll`]
//!   (25 ms by default) and records when each poll that reached the journal's head began.
//! - An actor whose stream is known to have moved past the version it holds reads the missing
//!   events (one stream read from its version) before it handles its next message. Its own appends
//!   come back with a version it already holds and change nothing.
//! - The bound, [`HostOptions::staleness_bound`] (250 ms by default), is enforced, not hoped for:
//!   an actor trusts its state without reading the journal only while the follower's last complete
//!   poll began less than the bound ago (and after the actor read its stream). When the follower
//!   lags (a slow journal, a failing read, a starved thread), every message reads its stream's
//!   missing events first, so decisions stay within the bound and only cost one more read.
//!
//! A decision or a read at time `t` therefore misses no event committed before `t − bound`.
//!
//! [`HostOptions::freshness_poll`]: crate::host::HostOptions::freshness_poll
//! [`HostOptions::staleness_bound`]: crate::host::HostOptions::staleness_bound

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use events::follow::Follower;
use events::journal::sleep_or_stop;
use events::metric;
use events::{Journal, RecordedEvent, StoreError};
use tokio::sync::watch;

use crate::catalogue::Catalogue;

/// The follower's name in logs and metrics (`follower_lag_seconds{follower="freshness"}`, …).
pub const NAME: &str = "freshness";

/// Events read from the journal at a time.
const PAGE_SIZE: usize = 1000;

/// The longest one poll may take before it counts as failed (and is tried again).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The highest version each resident stream is known to have reached, and how recently this node's
/// [`FreshnessFollower`] was caught up with the journal. Shared by every registry of a node.
pub struct Freshness {
    bound: Duration,
    /// Times below are microseconds since this instant, plus one; 0 means never.
    epoch: Instant,
    /// When the follower read the head it starts from (after the read returned).
    following_since: AtomicU64,
    /// When the follower's last poll that reached the journal's head began.
    synced: AtomicU64,
    /// Resident streams: the highest version the follower saw each reach.
    resident: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// The menu and the stores, folded by the same follower (see [`crate::catalogue`]).
    catalogue: Catalogue,
}

impl Freshness {
    /// Nobody follows the journal yet: no state is trusted without reading its stream.
    pub fn new(bound: Duration) -> Self {
        Freshness {
            bound,
            epoch: Instant::now(),
            following_since: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            resident: Mutex::new(HashMap::new()),
            catalogue: Catalogue::default(),
        }
    }

    /// This node's menu and stores as its follower folds them; an entry answers only while
    /// [`Freshness::covers`] the time it was read.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The oldest state a decision or read may use.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    fn micros(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX - 1) + 1
    }

    /// How long ago the follower's last poll that reached the journal's head began: the oldest an
    /// unread change can be. `None` before the follower's first such poll.
    pub fn lag(&self) -> Option<Duration> {
        match self.synced.load(Ordering::SeqCst) {
            0 => None,
            synced => Some(Duration::from_micros(self.micros(Instant::now()).saturating_sub(synced))),
        }
    }

    /// Whether state read from the journal at `read_at` may be used without reading its stream
    /// again: the follower was already following then, and it was caught up less than the bound ago.
    pub(crate) fn covers(&self, read_at: Instant) -> bool {
        let since = self.following_since.load(Ordering::SeqCst);
        since != 0 && since < self.micros(read_at) && self.lag().is_some_and(|lag| lag <= self.bound)
    }

    /// A stream's actor started on this node: the mark the follower raises when the stream moves.
    pub(crate) fn track(&self, stream_id: &str) -> Arc<AtomicU64> {
        let mark = Arc::new(AtomicU64::new(0));
        self.resident.lock().expect("freshness lock").insert(stream_id.to_owned(), mark.clone());
        mark
    }

    /// The actor holding `mark` left the registry.
    pub(crate) fn untrack(&self, stream_id: &str, mark: &Arc<AtomicU64>) {
        let mut resident = self.resident.lock().expect("freshness lock");
        if resident.get(stream_id).is_some_and(|m| Arc::ptr_eq(m, mark)) {
            resident.remove(stream_id);
        }
    }

    /// Streams with an actor on this node.
    pub fn resident(&self) -> usize {
        self.resident.lock().expect("freshness lock").len()
    }

    /// `stream_id` reached `version` in the journal. An actor of it on this node that holds an older
    /// version reads the rest before its next message. False when the stream has no actor here.
    pub fn stream_moved(&self, stream_id: &str, version: u64) -> bool {
        match self.resident.lock().expect("freshness lock").get(stream_id) {
            Some(mark) => {
                mark.fetch_max(version, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    fn following_from(&self, head_read: Instant) {
        let _ = self.following_since.compare_exchange(0, self.micros(head_read), Ordering::SeqCst, Ordering::SeqCst);
    }

    fn synced(&self, poll_began: Instant) {
        self.synced.fetch_max(self.micros(poll_began), Ordering::SeqCst);
    }
}

/// Follows the journal on one node and tells its [`Freshness`] which streams moved (module docs).
pub struct FreshnessFollower {
    journal: Arc<dyn Journal>,
    freshness: Arc<Freshness>,
    poll_interval: Duration,
}

impl FreshnessFollower {
    pub fn new(journal: Arc<dyn Journal>, freshness: Arc<Freshness>, poll_interval: Duration) -> Self {
        FreshnessFollower { journal, freshness, poll_interval }
    }

    /// Follows from the journal's head until `stop` changes (or its sender is gone). Every failure
    /// is logged, counted and retried with backoff; meanwhile the actors read their streams.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        metric::FOLLOWER_EVENTS.register(&[("follower", NAME)]);
        for stage in ["start", "read", "handle"] {
            metric::FOLLOWER_ERRORS.register(&[("follower", NAME), ("stage", stage)]);
        }
        let mut backoff = Backoff::default();
        let mut after = loop {
            if *stop.borrow() {
                return;
            }
            match tokio::time::timeout(READ_TIMEOUT, self.start_position()).await {
                Ok(Ok(head)) => break head,
                Ok(Err(e)) => failed("start", &e),
                Err(_) => failed("start", &timed_out()),
            }
            if sleep_or_stop(&mut stop, backoff.next()).await {
                return;
            }
        };
        backoff = Backoff::default();
        loop {
            let began = Instant::now();
            let read = tokio::select! {
                biased;
                _ = stop.changed() => return,
                read = tokio::time::timeout(READ_TIMEOUT, self.journal.read_all(after, PAGE_SIZE)) => read,
            };
            let page = match read {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    self.failed_poll("read", &e);
                    if sleep_or_stop(&mut stop, backoff.next()).await {
                        return;
                    }
                    continue;
                }
                Err(_) => {
                    self.failed_poll("read", &timed_out());
                    if sleep_or_stop(&mut stop, backoff.next()).await {
                        return;
                    }
                    continue;
                }
            };
            backoff = Backoff::default();
            let caught_up = page.len() < PAGE_SIZE;
            if let Some(last) = page.last() {
                after = last.global_position;
                let _ = self.handle(&page).await;
                metric::FOLLOWER_EVENTS.counter(&[("follower", NAME)]).increment(page.len() as u64);
            }
            if caught_up {
                // Everything committed before this poll began is marked.
                self.freshness.synced(began);
                metric::FOLLOWER_LAG_EVENTS.gauge(&[("follower", NAME)]).set(0.0);
            } else if let Ok(head) = self.journal.head_position().await {
                metric::FOLLOWER_LAG_EVENTS.gauge(&[("follower", NAME)]).set(head.saturating_sub(after) as f64);
            }
            self.report_lag();
            if caught_up && sleep_or_stop(&mut stop, self.poll_interval).await {
                return;
            }
        }
    }

    fn failed_poll(&self, stage: &'static str, error: &StoreError) {
        failed(stage, error);
        self.report_lag();
    }

    /// `follower_lag_seconds`: how long ago the last poll that reached the head began, which is
    /// the age of the oldest change this node may not have seen yet.
    fn report_lag(&self) {
        let lag = self.freshness.lag().map_or(f64::INFINITY, |l| l.as_secs_f64());
        metric::FOLLOWER_LAG_SECONDS.gauge(&[("follower", NAME)]).set(lag);
    }
}

fn timed_out() -> StoreError {
    StoreError::unavailable(format!("the journal did not answer within {READ_TIMEOUT:?}"))
}

fn failed(stage: &'static str, error: &StoreError) {
    tracing::warn!(follower = NAME, stage, error = %events::ErrorChain(error), "freshness follower step failed; retrying");
    metric::FOLLOWER_ERRORS.counter(&[("follower", NAME), ("stage", stage)]).increment(1);
}

/// Waits between failed attempts: 20 ms doubling up to 1 s.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(20))
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(1));
        wait
    }
}

/// The freshness follower is a [`Follower`] of the global order, with a loop of its own
/// ([`FreshnessFollower::run`]) because the bound needs the time of every poll, empty ones too,
/// and [`events::follow::follow`] reports only pages that hold events.
#[async_trait]
impl Follower for FreshnessFollower {
    type Error = StoreError;

    fn name(&self) -> &str {
        NAME
    }

    /// The journal's head when asked: what was committed before is in any state read from now on.
    async fn start_position(&self) -> Result<u64, StoreError> {
        let head = self.journal.head_position().await?;
        self.freshness.following_from(Instant::now());
        Ok(head)
    }

    async fn handle(&self, page: &[RecordedEvent]) -> Result<(), StoreError> {
        for event in page {
            self.freshness.stream_moved(&event.stream_id, event.stream_version);
            self.freshness.catalogue.follow(event);
        }
        Ok(())
    }

    // `commit` stays the default: nothing is stored, and a restarted node starts from the head.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_trusted_before_the_follower_runs_nor_once_it_lags_past_the_bound() {
        let freshness = Freshness::new(Duration::from_millis(50));
        let tick = || std::thread::sleep(Duration::from_millis(1));
        let read_before = Instant::now();
        assert!(!freshness.covers(read_before), "no follower yet");
        tick();
        freshness.following_from(Instant::now());
        freshness.synced(Instant::now());
        tick();
        let read_after = Instant::now();
        assert!(freshness.covers(read_after));
        assert!(!freshness.covers(read_before), "read before the follower's start head: read it again once");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!freshness.covers(read_after), "the follower's last poll is older than the bound");
        freshness.synced(Instant::now());
        assert!(freshness.covers(read_after));
    }

    #[test]
    fn a_moved_stream_marks_only_a_resident_actor_and_only_upwards() {
        let freshness = Freshness::new(Duration::from_millis(50));
        assert!(!freshness.stream_moved("menu-latte", 3), "no actor, no mark");
        let mark = freshness.track("menu-latte");
        assert!(freshness.stream_moved("menu-latte", 3));
        assert!(freshness.stream_moved("menu-latte", 2));
        assert_eq!(mark.load(Ordering::SeqCst), 3);
        let newer = freshness.track("menu-latte");
        freshness.untrack("menu-latte", &mark);
        assert_eq!(freshness.resident(), 1, "an older actor's leaving does not untrack its successor");
        freshness.untrack("menu-latte", &newer);
        assert_eq!(freshness.resident(), 0);
    }
}
