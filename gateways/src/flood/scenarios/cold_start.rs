//! cold-start-avalanche: Black Friday midnight, thousands of checkouts at once against cold actors.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use events::domain::streams;
use events::journal::read_stream_to_end;
use futures::StreamExt;

use super::morning_rush::Orders;
use super::{no_silent_waits, projections_drain, scaled, set_up_shops, Context, FloodError, Scenario};
use crate::flood::arrivals::Arrivals;
use crate::flood::measure::Recorder;
use crate::flood::target::Operation;
use crate::flood::{Flow, Load, Plan};
use crate::verify::Check;

pub struct ColdStartAvalanche;

const CHECKOUTS: f64 = 10_000.0;
const STORES: usize = 10;
const ITEMS: usize = 8;

/// Checkout `n`: customer `cust-<n>` opens their account (a cold loyalty actor with history), then
/// places an order (whose saga wakes cold inventory and new payment actors).
struct Checkouts {
    orders: Orders,
}

impl Plan for Checkouts {
    fn arrival(&self, n: u64, rng: &mut fastrand::Rng) -> Vec<Operation> {
        let customer_id = format!("cust-{n}");
        let mut order = self.orders.order(n, rng);
        if let Operation::PlaceOrder { customer_id: c, .. } = &mut order {
            c.clone_from(&customer_id);
        }
        vec![Operation::LoyaltyBalance { customer_id }, order]
    }
}

#[async_trait]
impl Scenario for ColdStartAvalanche {
    fn name(&self) -> &'static str {
        "cold-start-avalanche"
    }

    fn story(&self) -> &'static str {
        "Black Friday midnight: 10K checkouts arrive within one second against passivated actors (the actor \
         driver passivates every actor after preparing; running nodes only those idle past their timeout). Each checkout reads the \
         customer's loyalty account (a cold actor with history) and places an order. Reports the actors' \
         activation latency separately from the command latency; checks that every payment is scored once \
         and that no request waits past the command timeout without a 503."
    }

    fn default_rate(&self, scale: f64) -> f64 {
        CHECKOUTS * scale
    }

    fn default_load(&self, scale: f64) -> Load {
        Load::Open(Arrivals::constant(self.default_rate(scale), Duration::from_secs(1)))
    }

    async fn prepare(&self, context: &Context) -> Result<Arc<dyn Plan>, FloodError> {
        set_up_shops(context.target.as_ref(), STORES, ITEMS, 1_000_000).await?;
        let customers = scaled(CHECKOUTS, context.scale, 10);
        if let Some(journal) = &context.journal {
            let accounts = crate::loyalty::synthetic_accounts(customers, context.seed);
            crate::loyalty::import_accounts(journal.as_ref(), &accounts).await?;
            // Accounts as they stand on the night: their tiers current (the hourly batch ran).
            if let Some((cafe, storefront)) = &context.batch {
                projections_drain(context.target.as_ref(), &Recorder::new(), Duration::from_secs(600)).await;
                crate::loyalty::recalculate_tiers(cafe, storefront.as_ref(), 64, &mut |_| {}).await?;
            }
        }
        let mut orders = Orders::new(STORES, ITEMS, customers);
        orders.bulk_every = u64::MAX;
        // Midnight: every actor passivated, as the idle sweep leaves them after a quiet evening.
        match context.target.passivate_actors().await {
            Ok(n) => tracing::info!(actors = n, "passivated every actor before the avalanche"),
            Err(why) => tracing::warn!(%why, "actors not passivated: only those idle past the timeout are cold"),
        }
        Ok(Arc::new(Checkouts { orders }))
    }

    async fn finish(&self, context: &Context, flow: &Flow) -> Result<Vec<Check>, FloodError> {
        let mut checks = vec![projections_drain(context.target.as_ref(), &flow.recorder, context.settle).await];
        let measured = flow.recorder.finish(None);
        checks.push(no_silent_waits(&measured.errors_by_kind));
        if let Some(activation) = measured.operations.get("loyalty_balance") {
            flow.recorder.figure("cold_read_p99_ms", activation.latency.p99_ms, "ms");
        }
        if let Ok(figures) = context.target.activation_seconds().await {
            for (q, seconds) in figures.quantiles {
                flow.recorder.figure(&format!("activation_q{q}_ms"), seconds * 1e3, "ms");
            }
        }
        let Some(journal) = &context.journal else {
            checks.push(Check {
                name: "every payment is scored once".into(),
                passed: false,
                detail: "not checked: the journal is not readable from here (pass --journal/--data-dir)".into(),
            });
            return Ok(checks);
        };
        // Every order this flood placed: its payment stream holds one scoring (authorized or declined).
        let orders: Vec<String> = flow
            .acks
            .entries()
            .into_iter()
            .filter(|a| a.answered && a.event_type == "OrderPlaced")
            .filter_map(|a| a.stream_id.strip_prefix("order-").map(str::to_owned))
            .collect();
        let scored: Vec<(String, usize)> = futures::stream::iter(orders)
            .map(|order| {
                let journal = journal.clone();
                async move {
                    let stream = streams::payment(order.parse().unwrap_or_default());
                    let events = read_stream_to_end(journal.as_ref(), &stream, 0).await?;
                    let n = events
                        .iter()
                        .filter(|e| matches!(e.event_type.as_str(), "PaymentAuthorized" | "PaymentDeclined"))
                        .count();
                    Ok::<_, events::StoreError>((order, n))
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        // An order cancelled for want of stock is never scored; none may be scored twice (and the
        // verify step checks that every paid order has exactly one captured payment).
        let wrong: Vec<String> =
            scored.iter().filter(|(_, n)| *n > 1).map(|(o, n)| format!("order {o} scored {n} times")).collect();
        let unscored = scored.iter().filter(|(_, n)| *n == 0).count();
        checks.push(Check {
            name: "every payment is scored once".into(),
            passed: wrong.is_empty() && !scored.is_empty(),
            detail: if wrong.is_empty() {
                format!(
                    "{} orders: {} scored once, {unscored} never scored (cancelled before payment)",
                    scored.len(),
                    scored.len() - unscored
                )
            } else {
                format!("{} wrong: {}", wrong.len(), wrong.iter().take(5).cloned().collect::<Vec<_>>().join(", "))
            },
        });
        Ok(checks)
    }
}
