//! loyalty-batch: the hourly tier recalculation over many customers while orders keep accruing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::morning_rush::Orders;
use super::{projections_drain, scaled, set_up_shops, Context, FloodError, Scenario};
use crate::flood::arrivals::Arrivals;
use crate::flood::{Flow, Load, Plan};
use crate::verify::Check;

pub struct LoyaltyBatch;

/// Accounts at scale 1. The plans' 1M (`--scale 2`) takes about 80 s to recalculate on a 2-core
/// machine (one actor activation each), past the minute a default run may take.
const CUSTOMERS: f64 = 500_000.0;
/// Orders per second while the batch runs, at scale 1.
const RATE: f64 = 300.0;
const SECONDS: u64 = 30;
const STORES: usize = 4;
const ITEMS: usize = 12;

#[async_trait]
impl Scenario for LoyaltyBatch {
    fn name(&self) -> &'static str {
        "loyalty-batch"
    }

    fn story(&self) -> &'static str {
        "The hourly loyalty recalculation over many customers (500K at scale 1; the plans' 1M is --scale 2), whose points were imported \
         from the previous system without their tiers: the batch job (`cloudcafe loyalty recalculate`) pages \
         through every account and emits TierChanged only where the tier is wrong, while orders from the \
         same customers keep accruing points. Reports the batch's rate and the tiers it changed; checks \
         that every tier matches its points at the end."
    }

    fn default_rate(&self, scale: f64) -> f64 {
        RATE * scale.max(0.01)
    }

    fn default_load(&self, scale: f64) -> Load {
        Load::Open(Arrivals::constant(self.default_rate(scale), Duration::from_secs(SECONDS)))
    }

    async fn prepare(&self, context: &Context) -> Result<Arc<dyn Plan>, FloodError> {
        let journal = context.journal.as_ref().ok_or_else(|| {
            FloodError::Unsupported("loyalty-batch imports accounts into the journal: pass --journal/--data-dir".into())
        })?;
        if context.batch.is_none() {
            return Err(FloodError::Unsupported(
                "loyalty-batch runs its batch in this process: with --target, pass the nodes' --journal postgres://…"
                    .into(),
            ));
        }
        set_up_shops(context.target.as_ref(), STORES, ITEMS, 1_000_000).await?;
        let customers = scaled(CUSTOMERS, context.scale, 10);
        let accounts = crate::loyalty::synthetic_accounts(customers, context.seed);
        let started = Instant::now();
        crate::loyalty::import_accounts(journal.as_ref(), &accounts).await?;
        tracing::info!(customers, seconds = started.elapsed().as_secs_f64(), "imported the loyalty accounts");
        // The batch lists the accounts from the storefront: it must hold them all first.
        projections_drain(context.target.as_ref(), &crate::flood::measure::Recorder::new(), Duration::from_secs(600))
            .await;
        Ok(Arc::new(Orders::new(STORES, ITEMS, customers)) as Arc<dyn Plan>)
    }

    async fn beside(&self, context: &Context, flow: &Flow) -> Result<Vec<Check>, FloodError> {
        let Some((cafe, storefront)) = &context.batch else { return Ok(Vec::new()) };
        let started = Instant::now();
        let recorder = flow.recorder.clone();
        let mut progress = |r: &crate::loyalty::RecalculationReport| {
            recorder.observe("batch_customers_done", r.customers as f64);
            recorder.observe("batch_tiers_changed", r.changed as f64);
        };
        let report = crate::loyalty::recalculate_tiers(cafe, storefront.as_ref(), 64, &mut progress).await?;
        let seconds = started.elapsed().as_secs_f64();
        flow.recorder.figure("batch_seconds", seconds, "s");
        flow.recorder.figure("batch_customers", report.customers as f64, "customers");
        flow.recorder.figure("batch_customers_per_second", report.customers as f64 / seconds.max(1e-9), "customers/s");
        flow.recorder.figure("batch_tiers_changed", report.changed as f64, "customers");
        flow.recorder.figure("batch_failed", report.failed as f64, "customers");
        Ok(vec![Check {
            name: "the batch recalculated every account".into(),
            passed: report.failed == 0 && report.customers > 0,
            detail: format!(
                "{} accounts in {seconds:.1} s, {} tiers changed, {} failed",
                report.customers, report.changed, report.failed
            ),
        }])
    }

    async fn finish(&self, context: &Context, flow: &Flow) -> Result<Vec<Check>, FloodError> {
        Ok(vec![projections_drain(context.target.as_ref(), &flow.recorder, context.settle).await])
    }
}
