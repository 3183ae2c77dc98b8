//! query-storm: end of quarter, hundreds of analytics and order-history readers while orders arrive.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::morning_rush::Orders;
use super::{projections_drain, scaled, set_up_shops, store_id, Context, FloodError, Scenario};
use crate::flood::arrivals::Arrivals;
use crate::flood::target::Operation;
use crate::flood::{Flow, Load, Plan};
use crate::verify::Check;

pub struct QueryStorm;

const READERS: f64 = 500.0;
/// Orders per second beside the readers, at scale 1.
const RATE: f64 = 400.0;
const STORES: usize = 20;
const ITEMS: usize = 16;
const CUSTOMERS: u64 = 5_000;

struct Storm {
    orders: Orders,
    readers: usize,
    /// Whether the node keeps the analytics model (else the readers read order histories only).
    analytics: bool,
}

impl Plan for Storm {
    fn arrival(&self, n: u64, rng: &mut fastrand::Rng) -> Vec<Operation> {
        vec![self.orders.order(n, rng)]
    }

    fn readers(&self) -> usize {
        self.readers
    }

    /// Half the readers (the analysts) read a store's minute windows, half (customers) their history.
    fn read(&self, reader: usize, _i: u64, rng: &mut fastrand::Rng) -> Option<Operation> {
        Some(if self.analytics && reader.is_multiple_of(2) {
            Operation::StoreMinutes { store_id: store_id(self.orders.store_pick.sample(rng)) }
        } else {
            Operation::CustomerOrders { customer_id: format!("cust-{}", rng.u64(0..self.orders.customers)) }
        })
    }
}

#[async_trait]
impl Scenario for QueryStorm {
    fn name(&self) -> &'static str {
        "query-storm"
    }

    fn story(&self) -> &'static str {
        "End of quarter: 500 concurrent readers (closed loop) of the analytics windows \
         (/api/analytics/stores/{store}/minutes) and order histories (/api/customers/{id}/orders) while \
         orders keep arriving. Reports query latency and projection lag over time; checks that the \
         analytics windows agree with the fact tables at the end (when the node keeps the analytics model)."
    }

    fn default_rate(&self, scale: f64) -> f64 {
        RATE * scale
    }

    fn default_load(&self, scale: f64) -> Load {
        Load::Open(Arrivals::constant(self.default_rate(scale), Duration::from_secs(30)))
    }

    async fn prepare(&self, context: &Context) -> Result<Arc<dyn Plan>, FloodError> {
        set_up_shops(context.target.as_ref(), STORES, ITEMS, 1_000_000).await?;
        let analytics = context.target.execute(&Operation::StoreMinutes { store_id: store_id(0) }).await.is_ok();
        Ok(Arc::new(Storm {
            orders: Orders::new(STORES, ITEMS, CUSTOMERS),
            readers: scaled(READERS, context.scale, 2) as usize,
            analytics,
        }))
    }

    async fn finish(&self, context: &Context, flow: &Flow) -> Result<Vec<Check>, FloodError> {
        let mut checks = vec![projections_drain(context.target.as_ref(), &flow.recorder, context.settle).await];
        let Some(analytics) = &context.analytics else {
            checks.push(Check {
                name: "analytics windows agree with the fact tables".into(),
                passed: true,
                detail: "not applicable: no analytics model here (pass --analytics-url or use PostgreSQL)".into(),
            });
            return Ok(checks);
        };
        let disagreeing = analytics.windows_disagreeing_with_facts().await.map_err(FloodError::ReadModel)?;
        checks.push(Check {
            name: "analytics windows agree with the fact tables".into(),
            passed: disagreeing.is_empty(),
            detail: if disagreeing.is_empty() {
                "every store minute equals the sum of its facts".into()
            } else {
                format!("windows that differ: {}", disagreeing.join(", "))
            },
        });
        Ok(checks)
    }
}
