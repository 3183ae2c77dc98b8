//! `cloudcafe bench replay`: a read model projected live, then rebuilt by replay, against the
//! journal read with every chain verified and applied nowhere (the ceiling), all in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use events::Journal;
use projections::read_models::replay::{rebuild, verify_journal, ReplayOptions, ReplayOutcome};
use projections::read_models::runner::ProjectionRunner;
use projections::{Rebuildable, Sink};

/// Events per page (and per transaction of the shadow) unless the bench is told otherwise.
pub const REPLAY_PAGE: usize = 5000;

pub struct ReplayFigures {
    pub sink: String,
    pub events: u64,
    /// The journal read from position 0 as replay reads it (pages read ahead) with every hash chain
    /// verified, applied nowhere: the ceiling a replay that overlaps reading with applying can approach.
    pub read_rate: f64,
    /// The live model projected by the runner from position 0.
    pub project_rate: f64,
    /// Replay: hash chains verified and events applied into the shadow, up to the head.
    pub replay_rate: f64,
    /// What the bulk load left for the end, comparing shadow and live (canonical rows,
    /// fingerprints), and swapping.
    pub compare_and_swap: Duration,
    pub equal: bool,
}

impl ReplayFigures {
    /// Replay over the read ceiling of the same run.
    pub fn ratio(&self) -> f64 {
        self.replay_rate / self.read_rate
    }

    /// Events per second from the start of the replay to the swap.
    pub fn end_to_end_rate(&self) -> f64 {
        self.events as f64 / (self.events as f64 / self.replay_rate + self.compare_and_swap.as_secs_f64())
    }
}

/// Projects `journal` into `target` with the runner, then rebuilds it through replay, in pages of
/// [`REPLAY_PAGE`] events.
pub async fn replay(journal: Arc<dyn Journal>, target: Arc<dyn Rebuildable>) -> ReplayFigures {
    replay_paged(journal, target, REPLAY_PAGE).await
}

/// [`replay`] in pages of `page` events.
pub async fn replay_paged(journal: Arc<dyn Journal>, target: Arc<dyn Rebuildable>, page: usize) -> ReplayFigures {
    let events = journal.head_position().await.expect("head");
    let name = target.name().to_owned();
    tracing::info!("bench replay {name}: reading and verifying the journal alone");
    let started = Instant::now();
    verify_journal(journal.as_ref(), 0, page).await.expect("an intact journal");
    let read_rate = events as f64 / started.elapsed().as_secs_f64();
    tracing::info!("bench replay {name}: projecting live");
    let started = Instant::now();
    ProjectionRunner::new(journal.clone(), target.clone() as Arc<dyn Sink>)
        .with_page_size(page)
        .catch_up()
        .await
        .expect("projects");
    let project_rate = events as f64 / started.elapsed().as_secs_f64();
    tracing::info!("bench replay {name}: replaying into the shadow");
    let started = Instant::now();
    let mut reached = None;
    let outcome = rebuild(
        journal.as_ref(),
        target.as_ref(),
        &ReplayOptions { from: Some(0), page_size: page, ..ReplayOptions::default() },
        &mut |p| {
            if p.position >= events && reached.is_none() {
                reached = Some(started.elapsed());
                tracing::info!("bench replay {name}: shadow at the head; completing, comparing, swapping");
            }
        },
    )
    .await
    .expect("replays");
    let to_head = reached.unwrap_or_else(|| started.elapsed());
    tracing::info!("bench replay {name}: done");
    ReplayFigures {
        sink: target.name().to_owned(),
        events,
        read_rate,
        project_rate,
        replay_rate: events as f64 / to_head.as_secs_f64(),
        compare_and_swap: started.elapsed() - to_head,
        equal: matches!(outcome, ReplayOutcome::Promoted { .. }),
    }
}

pub fn replay_table(figures: &[(String, ReplayFigures)]) -> String {
    let mut s = String::from(
        "| read model (store) | events | journal read + chain check alone (events/s) | live projection (events/s) | replay: verify chains + apply to shadow (events/s) | replay / read | compare + swap | replay to swap (events/s) | rebuilt equal to live |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (store, f) in figures {
        s.push_str(&format!(
            "| {} ({store}) | {} | {:.0} | {:.0} | **{:.0}** | {:.2}× | {:.1} s | {:.0} | {} |\n",
            f.sink,
            f.events,
            f.read_rate,
            f.project_rate,
            f.replay_rate,
            f.ratio(),
            f.compare_and_swap.as_secs_f64(),
            f.end_to_end_rate(),
            if f.equal { "yes" } else { "NO" }
        ));
    }
    s
}
