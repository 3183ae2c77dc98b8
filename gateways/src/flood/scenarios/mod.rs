//! The six stress scenarios of the plans, each with its story, its default load, how it prepares,
//! what each arrival sends, and its own figures and checks. `cloudcafe flood list` prints them.

mod cold_start;
mod loyalty_batch;
mod menu_sync;
mod morning_rush;
mod query_storm;
mod restock_storm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::cafe::Cafe;
use async_trait::async_trait;
use events::domain::Nutrition;
use events::Journal;
use futures::StreamExt;
use projections::read_models::storefront::StorefrontQueries;
use sha2::{Digest, Sha256};

use super::measure::Recorder;
use super::target::{MenuItemSpec, Operation, Target};
use super::{Flow, Load, Plan};
use crate::verify::Check;

/// Why a flood could not run (as opposed to a flood that ran and found something wrong).
#[derive(Debug, thiserror::Error)]
pub enum FloodError {
    #[error("preparing the scenario: {done} of {total} set-up commands failed (first: {first})")]
    Prepare { done: usize, total: usize, first: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("reading the journal")]
    Journal(#[from] events::StoreError),
    #[error("importing loyalty accounts")]
    Import(#[from] crate::loyalty::ImportError),
    #[error("the loyalty batch")]
    Batch(#[from] crate::loyalty::LoyaltyBatchError),
    #[error("reading a read model")]
    ReadModel(#[source] projections::SinkError),
}

/// What a scenario may use besides its target.
#[derive(Clone)]
pub struct Context {
    pub target: Arc<dyn Target>,
    /// Multiplies the scenario's size (and its default rate, so that a run takes as long).
    pub scale: f64,
    pub seed: u64,
    /// The journal the target writes, when this process can read it (always for the actor driver;
    /// with `--target`, when `--journal`/`--data-dir` says where it is).
    pub journal: Option<Arc<dyn Journal>>,
    /// A cafe and a storefront on that journal, for what runs beside the arrivals in this process
    /// (the loyalty batch): the node's own for the actor driver, a batch node's with `--target`.
    pub batch: Option<(Arc<Cafe>, Arc<dyn StorefrontQueries>)>,
    /// The analytics model, when this process can read it (the windows-against-facts check).
    pub analytics: Option<Arc<projections::read_models::analytics::AnalyticsSink>>,
    /// How long the finish waits for the system to settle (projections caught up, caches fresh).
    pub settle: Duration,
}

/// One stress scenario.
#[async_trait]
pub trait Scenario: Send + Sync {
    fn name(&self) -> &'static str;
    /// The story of the plans, and what the scenario measures and checks.
    fn story(&self) -> &'static str;
    /// The load a run at `scale` gets unless `--rate`/`--duration`/`--stages` say otherwise: sized so
    /// that a run at scale 1 takes at most a minute on a 2-core machine.
    fn default_load(&self, scale: f64) -> Load;
    /// The default constant rate at `scale` (what `--duration` alone keeps).
    fn default_rate(&self, scale: f64) -> f64;
    /// Sets up what the arrivals need, through the target; not measured.
    async fn prepare(&self, context: &Context) -> Result<Arc<dyn Plan>, FloodError>;
    /// Runs beside the arrivals, from their start (the loyalty batch); the flood ends when both did.
    async fn beside(&self, _context: &Context, _flow: &Flow) -> Result<Vec<Check>, FloodError> {
        Ok(Vec::new())
    }
    /// After the arrivals: the scenario's own figures (into the recorder) and checks.
    async fn finish(&self, context: &Context, flow: &Flow) -> Result<Vec<Check>, FloodError>;
}

/// Every scenario, in the plans' order.
pub fn all() -> Vec<Box<dyn Scenario>> {
    vec![
        Box::new(morning_rush::MorningRush),
        Box::new(restock_storm::RestockStorm),
        Box::new(loyalty_batch::LoyaltyBatch),
        Box::new(menu_sync::MenuSync),
        Box::new(cold_start::ColdStartAvalanche),
        Box::new(query_storm::QueryStorm),
    ]
}

pub fn by_name(name: &str) -> Option<Box<dyn Scenario>> {
    all().into_iter().find(|s| s.name() == name)
}

/// `n × scale`, at least `min`.
pub(crate) fn scaled(n: f64, scale: f64, min: u64) -> u64 {
    ((n * scale).round() as u64).max(min)
}

/// Draws ranks `0..n` with probability ∝ 1/(rank+1)^s: a few hot stores and SKUs, a long tail.
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut total = 0.0;
        for rank in 0..n.max(1) {
            total += 1.0 / ((rank + 1) as f64).powf(s);
            cdf.push(total);
        }
        cdf.iter_mut().for_each(|c| *c /= total);
        Zipf { cdf }
    }

    pub(crate) fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Store `i`'s id.
pub(crate) fn store_id(i: usize) -> String {
    format!("flood-store-{i}")
}

/// Menu item `i`'s id.
pub(crate) fn item_id(i: usize) -> String {
    format!("flood-item-{i}")
}

/// The bytes of item `i`'s image in its `version`: what a real pipeline would upload, so that the
/// hash the menu keeps can be checked against them.
pub(crate) fn image_bytes(i: usize, version: u32) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(((i as u64) << 32) | u64::from(version));
    (0..2048).map(|_| rng.u8(..)).collect()
}

pub(crate) fn image_sha256(i: usize, version: u32) -> String {
    hex::encode(Sha256::digest(image_bytes(i, version)))
}

/// Menu item `i` as first published: a price between 2.50 and 6.49, nutrition drawn from its index.
pub(crate) fn menu_item(i: usize, category: &str) -> MenuItemSpec {
    let mut rng = fastrand::Rng::with_seed(i as u64);
    MenuItemSpec {
        item_id: item_id(i),
        name: format!("Flood item {i}"),
        category: category.to_owned(),
        price_cents: rng.i64(250..650),
        nutrition: Nutrition { calories: rng.u32(0..600), caffeine_mg: rng.u32(0..300), sugar_g: rng.u32(0..60) },
        image_sha256: image_sha256(i, 1),
    }
}

/// A random order id, from the flood's own seeded generator (so a run can be repeated).
pub(crate) fn order_id(rng: &mut fastrand::Rng) -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes()).into_uuid()
}

/// How long a set-up command keeps being retried while the target is unavailable.
const SET_UP_PATIENCE: Duration = Duration::from_secs(60);

/// Whether a set-up command that failed this way is worth sending again: the target was
/// unavailable, saturated or unreachable (a chaos experiment's fault may land while a flood is still
/// setting up), not a refusal of the command itself.
fn worth_retrying(kind: &str) -> bool {
    kind.starts_with("503")
        || kind.starts_with("429")
        || kind.starts_with("connection")
        || kind == "unavailable"
        || kind == "busy"
}

/// Sends set-up commands `in_flight` at a time; every one must succeed (an idempotent repeat
/// counts). One the target could not take now is sent again for up to [`SET_UP_PATIENCE`]: opening
/// a store and publishing an item are idempotent, and a restock that was applied before its 503 and
/// is applied again only adds stock, which nothing checks as exact.
pub(crate) async fn set_up(
    target: &dyn Target,
    operations: Vec<Operation>,
    in_flight: usize,
) -> Result<(), FloodError> {
    let total = operations.len();
    let results: Vec<_> = futures::stream::iter(operations)
        .map(|op| async move {
            let (started, mut pause) = (Instant::now(), Duration::from_millis(200));
            loop {
                match target.execute(&op).await {
                    Ok(_) => return Ok(()),
                    Err(f) if worth_retrying(&f.kind) && started.elapsed() < SET_UP_PATIENCE => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    Err(f) => return Err(format!("{}: {}", op.name(), f.kind)),
                }
            }
        })
        .buffer_unordered(in_flight.max(1))
        .collect()
        .await;
    let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    match failed.first() {
        None => Ok(()),
        Some(first) => Err(FloodError::Prepare { done: total - failed.len(), total, first: first.clone() }),
    }
}

/// Opens `stores` stores, publishes `items` items and stocks every store with `stock` of each.
pub(crate) async fn set_up_shops(
    target: &dyn Target,
    stores: usize,
    items: usize,
    stock: i64,
) -> Result<(), FloodError> {
    let opening =
        (0..stores).map(|s| Operation::OpenStore { store_id: store_id(s), name: format!("Flood #{s}") }).collect();
    set_up(target, opening, 64).await?;
    let categories = ["coffee", "tea", "bakery", "cold drinks"];
    let menu = (0..items).map(|i| Operation::PublishItem(menu_item(i, categories[i % categories.len()]))).collect();
    set_up(target, menu, 64).await?;
    let stocking = (0..stores)
        .flat_map(|s| {
            (0..items).map(move |i| Operation::Restock { store_id: store_id(s), sku: item_id(i), quantity: stock })
        })
        .collect();
    set_up(target, stocking, 128).await
}

/// Samples every projection's lag into the recorder every `every` until `stop`, as series
/// `lag_events:<projection>` and `lag_seconds:<projection>`; returns the head it saw last.
pub(crate) async fn sample_lag(
    target: Arc<dyn Target>,
    journal: Option<Arc<dyn Journal>>,
    recorder: Recorder,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Some(behind) = match &journal {
            Some(j) => saga_behind(j.as_ref()).await,
            None => None,
        } {
            recorder.observe("lag_events:order-saga", behind as f64);
        }
        if let Ok(lags) = target.projection_lag().await {
            for lag in lags {
                recorder.observe(&format!("lag_events:{}", lag.name), lag.events_behind as f64);
                recorder.observe(&format!("lag_seconds:{}", lag.name), lag.seconds_behind);
            }
        }
        if events::journal::sleep_or_stop(&mut stop, every).await {
            return;
        }
    }
}

/// How many events the order saga has still to react to (from its checkpoint in the journal).
pub(crate) async fn saga_behind(journal: &dyn Journal) -> Option<u64> {
    let head = journal.head_position().await.ok()?;
    let at = journal.load_checkpoint(actors::saga::CHECKPOINT).await.ok()?;
    Some(head.saturating_sub(at))
}

/// Waits (up to `settle`) until the order saga has reacted to everything committed, the events of
/// its own reactions included; returns when, or `None` if it did not within `settle`.
pub(crate) async fn saga_drained(journal: &dyn Journal, settle: Duration) -> Option<Instant> {
    let deadline = Instant::now() + settle;
    while Instant::now() < deadline {
        if saga_behind(journal).await == Some(0) {
            // Its last reactions may still be committing: caught up twice, 100 ms apart.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if saga_behind(journal).await == Some(0) {
                return Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Waits until every projection has caught up with the head (up to `settle`); records the time it
/// took as figure `lag_drain_seconds`. Returns a check.
pub(crate) async fn projections_drain(target: &dyn Target, recorder: &Recorder, settle: Duration) -> Check {
    let started = Instant::now();
    let mut last = String::from("no projection answered");
    while started.elapsed() < settle {
        match target.projection_lag().await {
            Ok(lags) if lags.iter().all(|l| l.events_behind == 0) => {
                let took = started.elapsed().as_secs_f64();
                recorder.figure("lag_drain_seconds", took, "s");
                return Check {
                    name: "projections caught up after the flood".into(),
                    passed: true,
                    detail: format!("{} projections at the head {:.1} s after the last arrival", lags.len(), took),
                };
            }
            Ok(lags) => {
                last =
                    lags.iter().map(|l| format!("{} {} behind", l.name, l.events_behind)).collect::<Vec<_>>().join(", ")
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Check {
        name: "projections caught up after the flood".into(),
        passed: false,
        detail: format!("still behind after {} s: {last}", settle.as_secs()),
    }
}

/// Checks that no operation timed out: a request either answers within the command timeout or is
/// told 503 (unavailable, retry).
pub(crate) fn no_silent_waits(measurements_errors: &std::collections::BTreeMap<String, u64>) -> Check {
    let timeouts = measurements_errors.get("timeout").copied().unwrap_or(0);
    Check {
        name: "no request waited past the command timeout without an answer".into(),
        passed: timeouts == 0,
        detail: if timeouts == 0 {
            "every request answered (or was refused with 503) within the command timeout".into()
        } else {
            format!("{timeouts} requests got no answer within the command timeout")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::worth_retrying;

    #[test]
    fn set_up_retries_what_the_target_could_not_take_now_and_not_what_it_refused() {
        for kind in ["503 unavailable", "429 too many requests", "connection refused", "connection: reset", "busy"] {
            assert!(worth_retrying(kind), "{kind}");
        }
        for kind in ["422 rejected", "400 bad request", "401 unauthorized", "409 conflict", "500 internal"] {
            assert!(!worth_retrying(kind), "{kind}");
        }
    }
}
