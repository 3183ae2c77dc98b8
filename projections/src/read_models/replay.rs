//! Rebuilding a read model from the journal and proving it equal to the live one.
//!
//! [`rebuild`] replays the journal into the model's shadow (resuming from the shadow's own position
//! if an earlier run was interrupted), verifying every stream's hash chain on the way. That first
//! pass writes the shadow as a bulk load ([`Rebuildable::bulk_shadow`]), and the model then does
//! once what the bulk load left out ([`Rebuildable::complete_shadow`]). Replay then brings the live
//! model and the shadow to the same position, compares their canonical rows, and promotes the
//! shadow only if they are equal (or the operator accepts the differences).
//!
//! Replay skips the events parked for the model ([`crate::read_models::parks`]) exactly as its runner
//! does, so a model that went past a parked event still compares equal with its rebuild.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::envelope::{BrokenLink, GENESIS_HASH};
use events::{Journal, RecordedEvent, StoreError};

use crate::read_models::parks::Parks;
use crate::{CanonicalRow, Fingerprint, Rebuildable, Sink, SinkError};

#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Start the shadow over at this position; `None` resumes an interrupted shadow (or starts at 0).
    pub from: Option<u64>,
    pub page_size: usize,
    /// Build and compare, then drop the shadow: the live model is never touched.
    pub dry_run: bool,
    /// Promote the shadow even if it differs from the live model (a deliberate change of the model).
    pub accept_differences: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions { from: None, page_size: 1000, dry_run: false, accept_differences: false }
    }
}

/// Where a replay stands, for progress reporting.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub position: u64,
    pub head: u64,
    /// Events applied by this run (not counting what an interrupted run had done).
    pub applied: u64,
    pub elapsed: Duration,
}

/// A row present or different on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub key: String,
    pub live: Option<String>,
    pub shadow: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The shadow equalled the live model and replaced it.
    Promoted { fingerprint: Fingerprint, resumed_from: u64, applied: u64 },
    /// Dry run: the shadow equalled the live model and was dropped.
    Equal { fingerprint: Fingerprint, resumed_from: u64, applied: u64 },
    /// The models differ; the live one was left alone (unless `accept_differences`, then `promoted`).
    Differs { live: Fingerprint, shadow: Fingerprint, differences: Vec<Difference>, promoted: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    BrokenChain(#[from] BrokenLink),
    #[error("journal: {0}")]
    Journal(#[from] StoreError),
    #[error("read model: {0}")]
    Sink(#[from] SinkError),
}

/// Checks each stream's hash chain as its events go by in global order.
#[derive(Default)]
pub struct ChainVerifier {
    heads: HashMap<String, (u64, [u8; 32])>,
}

impl ChainVerifier {
    pub async fn verify(&mut self, journal: &dyn Journal, e: &RecordedEvent) -> Result<(), ReplayError> {
        let broken = || BrokenLink {
            stream_id: e.stream_id.clone(),
            stream_version: e.stream_version,
            global_position: e.global_position,
        };
        let known = self.heads.get(&e.stream_id).copied();
        let previous = match known {
            Some((version, hash)) if version + 1 == e.stream_version => hash,
            Some(_) => return Err(broken().into()),
            None if e.stream_version == 1 => GENESIS_HASH,
            // Resuming mid-stream: the link before this one was checked by the run that applied it.
            None => match journal.read_stream(&e.stream_id, e.stream_version - 1, 1).await?.pop() {
                Some(p) if p.stream_version + 1 == e.stream_version => p.hash,
                _ => return Err(broken().into()),
            },
        };
        if e.expected_hash(&previous) != e.hash {
            return Err(broken().into());
        }
        match self.heads.get_mut(&e.stream_id) {
            Some(head) => *head = (e.stream_version, e.hash),
            None => {
                self.heads.insert(e.stream_id.clone(), (e.stream_version, e.hash));
            }
        }
        Ok(())
    }

    /// Verifies a page in global order; stops at the first broken link.
    pub async fn verify_page(&mut self, journal: &dyn Journal, page: &[RecordedEvent]) -> Result<(), ReplayError> {
        for e in page {
            self.verify(journal, e).await?;
        }
        Ok(())
    }
}

/// One replay's reading of the journal: page size, progress, what it applied.
struct Reader<'a> {
    journal: &'a dyn Journal,
    page_size: usize,
    started: Instant,
    applied: u64,
    progress: &'a mut (dyn FnMut(Progress) + Send),
    /// The model's parked events, applied as their park records (as the runner does).
    parks: &'a Parks,
}

impl Reader<'_> {
    /// Applies the journal after `sink`'s position up to at least `until`, verifying chains if asked.
    ///
    /// Three pages are in flight at once: one is applied while the next is verified and the one after
    /// it is read. The journal's reads, the chain checks and the sink's writes are different work
    /// (often on different servers), so a replay takes about the longest of the three rather than
    /// their sum. A page is applied only once every link in it has been verified, so a broken chain
    /// stops the replay before the shadow takes the broken event.
    async fn apply_until(
        &mut self,
        sink: &dyn Sink,
        until: u64,
        mut verifier: Option<&mut ChainVerifier>,
    ) -> Result<u64, ReplayError> {
        let mut position = sink.position().await?;
        if position >= until {
            return Ok(position);
        }
        let (journal, page_size, parks) = (self.journal, self.page_size, self.parks);
        let mut read = Some(journal.read_all(position, page_size).await?);
        let mut verified: Option<Vec<RecordedEvent>> = None;
        loop {
            let to_verify = read.take().filter(|page| !page.is_empty());
            if to_verify.is_none() && verified.is_none() {
                break;
            }
            let read_at = to_verify.as_ref().and_then(|page| page.last()).map(|e| e.global_position);
            let read_next = async {
                match read_at {
                    Some(at) if at < until => journal.read_all(at, page_size).await.map(Some),
                    _ => Ok(None),
                }
            };
            let verify = async {
                match (verifier.as_deref_mut(), &to_verify) {
                    (Some(v), Some(page)) => v.verify_page(journal, page).await,
                    _ => Ok(()),
                }
            };
            let apply = async {
                match &verified {
                    Some(page) => sink.apply(&parks.apply_to(page)).await,
                    None => Ok(()),
                }
            };
            let (applied, checked, next) = futures::join!(apply, verify, read_next);
            applied?;
            if let Some(page) = verified.take() {
                position = page.last().map_or(position, |e| e.global_position);
                if verifier.is_some() {
                    self.applied += page.len() as u64;
                    let p = Progress { position, head: until, applied: self.applied, elapsed: self.started.elapsed() };
                    (self.progress)(p);
                }
            }
            checked?;
            verified = to_verify;
            read = next?;
        }
        Ok(position)
    }
}

/// Reads the journal after `after` to its head as replay does (the same pages, read ahead the same
/// way) and verifies every hash chain, applying nothing: what a replay costs before any read model
/// is written. Returns the position reached.
pub async fn verify_journal(journal: &dyn Journal, after: u64, page_size: usize) -> Result<u64, ReplayError> {
    let head = journal.head_position().await?;
    let mut verifier = ChainVerifier::default();
    let none_parked = Parks::default();
    let mut reader = Reader {
        journal,
        page_size: page_size.max(1),
        started: Instant::now(),
        applied: 0,
        progress: &mut |_| {},
        parks: &none_parked,
    };
    reader.apply_until(&Discard { position: std::sync::atomic::AtomicU64::new(after) }, head, Some(&mut verifier)).await
}

/// A sink that keeps nothing but its position: [`verify_journal`]'s.
struct Discard {
    position: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl Sink for Discard {
    fn name(&self) -> &str {
        "discard"
    }

    async fn position(&self) -> Result<u64, SinkError> {
        Ok(self.position.load(std::sync::atomic::Ordering::SeqCst))
    }

    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), SinkError> {
        if let Some(last) = events.last() {
            self.position.fetch_max(last.global_position, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    async fn canonical_rows(&self) -> Result<Vec<CanonicalRow>, SinkError> {
        Ok(Vec::new())
    }
}

pub fn differences(mut live: Vec<CanonicalRow>, mut shadow: Vec<CanonicalRow>) -> Vec<Difference> {
    live.sort();
    shadow.sort();
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < live.len() || j < shadow.len() {
        match (live.get(i), shadow.get(j)) {
            (Some(l), Some(s)) if l.key == s.key => {
                if l.content != s.content {
                    out.push(Difference {
                        key: l.key.clone(),
                        live: Some(l.content.clone()),
                        shadow: Some(s.content.clone()),
                    });
                }
                i += 1;
                j += 1;
            }
            (Some(l), Some(s)) if l.key < s.key => {
                out.push(Difference { key: l.key.clone(), live: Some(l.content.clone()), shadow: None });
                i += 1;
            }
            (Some(l), None) => {
                out.push(Difference { key: l.key.clone(), live: Some(l.content.clone()), shadow: None });
                i += 1;
            }
            (_, Some(s)) => {
                out.push(Difference { key: s.key.clone(), live: None, shadow: Some(s.content.clone()) });
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Rebuilds `target` from `journal` through its shadow; see the module docs.
pub async fn rebuild(
    journal: &dyn Journal,
    target: &dyn Rebuildable,
    options: &ReplayOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<ReplayOutcome, ReplayError> {
    if let Some(from) = options.from {
        target.reset_shadow(from).await?;
    }
    let bulk = target.bulk_shadow().await?;
    let resumed_from = bulk.position().await?;
    let mut verifier = ChainVerifier::default();
    let parks = Parks::load(journal, target.name()).await?;
    let mut reader = Reader {
        journal,
        page_size: options.page_size.max(1),
        started: Instant::now(),
        applied: 0,
        progress,
        parks: &parks,
    };
    let head = journal.head_position().await?;
    reader.apply_until(bulk.as_ref(), head, Some(&mut verifier)).await?;
    drop(bulk);
    // The bulk pass may have left work for once at the end (the analytics windows); from here on the
    // shadow is written as the live model is, page by page.
    target.complete_shadow().await?;
    let shadow = target.shadow().await?;

    // Compare at one position: whichever side is behind catches up (the live side idempotently, as its
    // own runner would), a few times over in case a running node moves the live model meanwhile.
    for _ in 0..5 {
        let (live_at, shadow_at) = (target.position().await?, shadow.position().await?);
        if live_at == shadow_at {
            break;
        }
        if live_at > shadow_at {
            reader.apply_until(shadow.as_ref(), live_at, Some(&mut verifier)).await?;
        } else {
            reader.apply_until(target, shadow_at, None).await?;
        }
    }
    let applied = reader.applied;
    match compare(target, shadow.as_ref()).await? {
        Ok(fingerprint) => {
            if options.dry_run {
                target.discard_shadow().await?;
                return Ok(ReplayOutcome::Equal { fingerprint, resumed_from, applied });
            }
            target.promote_shadow().await?;
            Ok(ReplayOutcome::Promoted { fingerprint, resumed_from, applied })
        }
        Err((live, shadow, differences)) => {
            let promote = options.accept_differences && !options.dry_run;
            if promote {
                target.promote_shadow().await?;
            } else if options.dry_run {
                target.discard_shadow().await?;
            }
            Ok(ReplayOutcome::Differs { live, shadow, differences, promoted: promote })
        }
    }
}

/// The live model's and the shadow's canonical rows: their fingerprint when equal, else both
/// fingerprints and the rows that differ.
type Compared = Result<Fingerprint, (Fingerprint, Fingerprint, Vec<Difference>)>;

async fn compare(live: &dyn Sink, shadow: &dyn Sink) -> Result<Compared, SinkError> {
    let (live_rows, shadow_rows) = (live.canonical_rows().await?, shadow.canonical_rows().await?);
    let (live_print, shadow_print) =
        (Fingerprint::of(&mut live_rows.clone()), Fingerprint::of(&mut shadow_rows.clone()));
    if live_print == shadow_print {
        return Ok(Ok(live_print));
    }
    Ok(Err((live_print, shadow_print, differences(live_rows, shadow_rows))))
}

/// A dry-run rebuild into the model's shadow in memory ([`Rebuildable::memory_shadow`]) that is kept
/// between comparisons: each [`MemoryRebuild::compare`] folds only what the journal gained since the
/// last one. `verify` uses it to look at a model fed from a stream (which converges some time after
/// the journal) as often as needed, where a rebuild into the store would start from position 0
/// each time. The hash chains are verified and the parked events skipped as [`rebuild`] does.
pub struct MemoryRebuild {
    shadow: Arc<dyn Sink>,
    verifier: ChainVerifier,
    parks: Parks,
    page_size: usize,
    applied: u64,
}

impl MemoryRebuild {
    /// `None` when `target` has no shadow in memory.
    pub async fn start(
        journal: &dyn Journal,
        target: &dyn Rebuildable,
        page_size: usize,
    ) -> Result<Option<Self>, ReplayError> {
        let Some(shadow) = target.memory_shadow() else { return Ok(None) };
        let parks = Parks::load(journal, target.name()).await?;
        Ok(Some(MemoryRebuild {
            shadow,
            verifier: ChainVerifier::default(),
            parks,
            page_size: page_size.max(1),
            applied: 0,
        }))
    }

    /// Brings the shadow up to the journal's head and compares it with `target`. With
    /// `at_live_position`, both sides are first brought to one position as [`rebuild`] does (for a
    /// model that follows the journal and records its position); without it (a stream-fed model,
    /// whose position says nothing of what it holds) the shadow goes to the head and the rows are
    /// compared as they are. Never changes what `target` holds beyond what its own runner would.
    pub async fn compare(
        &mut self,
        journal: &dyn Journal,
        target: &dyn Rebuildable,
        at_live_position: bool,
    ) -> Result<ReplayOutcome, ReplayError> {
        let mut reader = Reader {
            journal,
            page_size: self.page_size,
            started: Instant::now(),
            applied: 0,
            progress: &mut |_| {},
            parks: &self.parks,
        };
        let shadow = self.shadow.as_ref();
        let head = journal.head_position().await?;
        reader.apply_until(shadow, head, Some(&mut self.verifier)).await?;
        if at_live_position {
            for _ in 0..5 {
                let (live_at, shadow_at) = (target.position().await?, shadow.position().await?);
                if live_at == shadow_at {
                    break;
                }
                if live_at > shadow_at {
                    reader.apply_until(shadow, live_at, Some(&mut self.verifier)).await?;
                } else {
                    reader.apply_until(target, shadow_at, None).await?;
                }
            }
        }
        self.applied += reader.applied;
        Ok(match compare(target, shadow).await? {
            Ok(fingerprint) => ReplayOutcome::Equal { fingerprint, resumed_from: 0, applied: self.applied },
            Err((live, shadow, differences)) => ReplayOutcome::Differs { live, shadow, differences, promoted: false },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str, c: &str) -> CanonicalRow {
        CanonicalRow { key: k.into(), content: c.into() }
    }

    #[test]
    fn differences_name_missing_extra_and_changed_rows() {
        let live = vec![row("b", "1"), row("a", "1"), row("d", "1")];
        let shadow = vec![row("a", "1"), row("b", "2"), row("c", "1")];
        let d = differences(live, shadow);
        assert_eq!(
            d,
            vec![
                Difference { key: "b".into(), live: Some("1".into()), shadow: Some("2".into()) },
                Difference { key: "c".into(), live: None, shadow: Some("1".into()) },
                Difference { key: "d".into(), live: Some("1".into()), shadow: None },
            ]
        );
        assert!(differences(vec![row("a", "1")], vec![row("a", "1")]).is_empty());
    }
}
