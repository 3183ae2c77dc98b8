//! `verify`: the invariants a flood, a chaos experiment or an operator checks after the fact, read
//! from the journal and the read models alone.
//!
//! One pass over the journal's global order (paged) folds every order, payment, inventory and
//! loyalty stream with its decider's own `evolve` ([`facts`]); the checks are computed on those
//! facts, never on a read model. While the saga is still moving something the checks depend on (an
//! order not ended, a sale not settled, points not accrued), only the tail of the journal is read
//! again, until everything holds or `settle` has passed. Then every read model given is waited for
//! and compared with a rebuild from the journal, as `cloudcafe replay --dry-run` compares (kept in
//! memory for the models that can fold themselves there, such as the DynamoDB tables).

pub mod facts;
mod ledger;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use events::domain::CodecError;
use events::{Journal, StoreError};
use projections::read_models::replay::{rebuild, MemoryRebuild, ReplayError, ReplayOptions, ReplayOutcome};
use projections::{Rebuildable, SinkError};
use serde::{Deserialize, Serialize};

pub use facts::{
    Facts, Judgement, ACKNOWLEDGED, LOYALTY_POINTS, LOYALTY_TIERS, ORDERS_ENDED, PAYMENTS, READ_MODELS, STOCK,
};
pub use ledger::{AckLedger, Acknowledgement};

/// One invariant, checked: its name, whether it held, and what was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was counted or what broke the invariant (the first few offenders), for people.
    pub detail: String,
}

/// How `verify` waits for a system that is still settling.
#[derive(Clone, Debug)]
pub struct VerifySettings {
    /// How long to wait for orders to end (and their sales and points to follow) and, then, for each
    /// read model to reach the journal's head.
    pub settle: Duration,
    /// The read models that follow a stream (Kinesis) rather than the journal: they hold no journal
    /// position to wait for, so each is compared with a rebuild until it equals it or `settle` is
    /// over (it converges once its consumer has caught up).
    pub stream_fed: Vec<String>,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings { settle: Duration::from_secs(30), stream_fed: Vec::new() }
    }
}

/// Why the invariants could not be checked at all (as opposed to a check that failed).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read the journal after position {after}")]
    Journal {
        after: u64,
        #[source]
        source: StoreError,
    },
    #[error("the event at position {position} ({event_type} on {stream_id}) does not decode")]
    Decode {
        position: u64,
        stream_id: String,
        event_type: String,
        #[source]
        source: CodecError,
    },
    #[error("cannot read the position of read model `{model}`")]
    ReadModel {
        model: String,
        #[source]
        source: SinkError,
    },
    #[error("cannot rebuild read model `{model}` to compare it with the live one")]
    Replay {
        model: String,
        #[source]
        source: ReplayError,
    },
}

/// Events read from the journal at a time.
const PAGE: usize = 5_000;
/// How often a settling system is looked at again.
const RECHECK: Duration = Duration::from_millis(250);
/// How many differing rows a failed comparison names.
const DIFFERENCES_NAMED: usize = 3;

/// Checks every invariant: the acknowledgements, the orders, the stock, the loyalty points and
/// tiers, the payments (from the journal), then each of `read_models` against a rebuild. Returns one
/// [`Check`] per invariant, in that order (names in [`facts`]); an `Err` only when something could
/// not be read.
pub async fn verify(
    journal: &dyn Journal,
    read_models: &[Arc<dyn Rebuildable>],
    acks: &[Acknowledgement],
    settings: &VerifySettings,
) -> Result<Vec<Check>, VerifyError> {
    let started = Instant::now();
    let mut facts = Facts::new(acks);
    read_to_head(journal, &mut facts).await?;
    let mut judgement = facts.judge(now_us());
    while judgement.moving && started.elapsed() < settings.settle {
        tokio::time::sleep(RECHECK).await;
        read_to_head(journal, &mut facts).await?;
        judgement = facts.judge(now_us());
    }
    tracing::debug!(events = facts.events(), position = facts.position(), "verify: journal folded");
    let mut checks = judgement.checks;
    checks.push(compare_read_models(journal, read_models, settings).await?);
    Ok(checks)
}

/// Folds the journal after what `facts` holds, up to the head.
async fn read_to_head(journal: &dyn Journal, facts: &mut Facts) -> Result<(), VerifyError> {
    loop {
        let after = facts.position();
        let page = journal.read_all(after, PAGE).await.map_err(|source| VerifyError::Journal { after, source })?;
        for e in &page {
            facts.fold(e).map_err(|source| VerifyError::Decode {
                position: e.global_position,
                stream_id: e.stream_id.clone(),
                event_type: e.event_type.clone(),
                source,
            })?;
        }
        if page.len() < PAGE {
            return Ok(());
        }
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Waits for each model to reach the journal's head (up to `settle`), then rebuilds it from position
/// 0 and compares: in memory when the model has a shadow there ([`Rebuildable::memory_shadow`]),
/// else into its shadow in the store (a dry run: the live model is left alone).
async fn compare_read_models(
    journal: &dyn Journal,
    read_models: &[Arc<dyn Rebuildable>],
    settings: &VerifySettings,
) -> Result<Check, VerifyError> {
    let settle = settings.settle;
    if read_models.is_empty() {
        return Ok(facts::pass(READ_MODELS, "no read model given".into()));
    }
    let (mut passed, mut details) = (true, Vec::new());
    for model in read_models {
        let name = model.name().to_owned();
        let position_error = |source| VerifyError::ReadModel { model: name.clone(), source };
        let head = journal.head_position().await.map_err(|source| VerifyError::Journal { after: 0, source })?;
        let waiting = Instant::now();
        let stream_fed = settings.stream_fed.contains(&name);
        let mut at = if stream_fed { head } else { model.position().await.map_err(position_error)? };
        while at < head && waiting.elapsed() < settle {
            tokio::time::sleep(RECHECK).await;
            at = model.position().await.map_err(position_error)?;
        }
        if at < head {
            passed = false;
            details.push(format!(
                "{name}: at position {} of {} after {} s",
                facts::n(at),
                facts::n(head),
                settle.as_secs()
            ));
            continue;
        }
        // A stream-fed model still catching up differs from the rebuild: look again until it
        // equals it or the settle time is over. A rebuild in memory is kept and only folds what
        // the journal gained; one in the store starts over each time.
        let replay_error = |source| VerifyError::Replay { model: name.clone(), source };
        let outcome = match MemoryRebuild::start(journal, model.as_ref(), PAGE).await.map_err(replay_error)? {
            Some(mut memory) => {
                let mut outcome = memory.compare(journal, model.as_ref(), !stream_fed).await;
                while stream_fed && matches!(outcome, Ok(ReplayOutcome::Differs { .. })) && waiting.elapsed() < settle {
                    tokio::time::sleep(RECHECK).await;
                    outcome = memory.compare(journal, model.as_ref(), false).await;
                }
                outcome
            }
            None => {
                let options =
                    ReplayOptions { from: Some(0), page_size: 2_000, dry_run: true, accept_differences: false };
                let mut outcome = rebuild(journal, model.as_ref(), &options, &mut |_| {}).await;
                while stream_fed && matches!(outcome, Ok(ReplayOutcome::Differs { .. })) && waiting.elapsed() < settle {
                    tokio::time::sleep(RECHECK * 4).await;
                    outcome = rebuild(journal, model.as_ref(), &options, &mut |_| {}).await;
                }
                outcome
            }
        };
        match outcome {
            Ok(ReplayOutcome::Equal { fingerprint, .. } | ReplayOutcome::Promoted { fingerprint, .. }) => {
                details.push(format!("{name}: equal, {} rows", facts::n(fingerprint.rows)));
            }
            Ok(ReplayOutcome::Differs { live, shadow, differences, .. }) => {
                passed = false;
                let named: Vec<String> = differences
                    .iter()
                    .take(DIFFERENCES_NAMED)
                    .map(|d| {
                        format!(
                            "{} live `{}` rebuilt `{}`",
                            d.key,
                            shortened(d.live.as_deref().unwrap_or("(absent)")),
                            shortened(d.shadow.as_deref().unwrap_or("(absent)"))
                        )
                    })
                    .collect();
                let more = differences.len().saturating_sub(DIFFERENCES_NAMED);
                details.push(format!(
                    "{name}: {} rows differ (live {} rows, rebuilt {}): {}{}",
                    facts::n(differences.len()),
                    facts::n(live.rows),
                    facts::n(shadow.rows),
                    named.join("; "),
                    if more > 0 { format!("; and {} more", facts::n(more)) } else { String::new() }
                ));
            }
            Err(ReplayError::BrokenChain(link)) => {
                passed = false;
                details.push(format!("{name}: not rebuilt: {link}"));
            }
            Err(source) => return Err(VerifyError::Replay { model: name, source }),
        }
    }
    let detail = details.join("; ");
    Ok(if passed { facts::pass(READ_MODELS, detail) } else { facts::fail(READ_MODELS, detail) })
}

/// A row's canonical text, cut to a length a summary line can hold.
fn shortened(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The process exit code for a set of checks: 0 when all hold, [`INVARIANT_FAILED`] otherwise.
pub fn exit_code(checks: &[Check]) -> u8 {
    if checks.iter().all(|c| c.passed) {
        0
    } else {
        INVARIANT_FAILED
    }
}

/// The exit code of `cloudcafe verify` (and of a flood) when an invariant does not hold.
pub const INVARIANT_FAILED: u8 = 4;
#[cfg(test)]
mod tests {
    use super::*;

    /// A flood started by `POST /admin/stress` or a chaos probe may run `verify` on any worker of a
    /// multi-threaded runtime (`tokio::spawn`): its future must be `Send`. This test fails to compile otherwise.
    #[test]
    fn verify_can_be_spawned_on_a_multi_threaded_runtime() {
        fn spawnable<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let journal = events::sqlite::SqliteJournal::open(dir.path(), Default::default()).unwrap();
        let (models, acks, settings): (Vec<Arc<dyn Rebuildable>>, Vec<Acknowledgement>, _) =
            (Vec::new(), Vec::new(), VerifySettings::default());
        let future = verify(&journal, &models, &acks, &settings);
        spawnable(&future);
    }

    #[test]
    fn a_long_row_is_cut_for_the_summary() {
        assert_eq!(shortened("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(shortened(&long), format!("{}…", "é".repeat(80)));
    }
}
