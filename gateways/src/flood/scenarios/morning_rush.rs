//! morning-rush: Monday 7:45, corporate bulk orders spike.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    item_id, order_id, projections_drain, scaled, set_up_shops, store_id, Context, FloodError, Scenario, Zipf,
};
use crate::flood::arrivals::{Arrivals, Stage};
use crate::flood::target::Operation;
use crate::flood::{Flow, Load, Plan};
use crate::verify::Check;

pub struct MorningRush;

/// Orders per second at scale 1, once the ramp is over.
const RATE: f64 = 2_500.0;
const STORES: f64 = 40.0;
const ITEMS: usize = 60;
const CUSTOMERS: f64 = 50_000.0;
/// Units of each item each store starts with: enough that only the hottest pairs can sell out.
const STOCK: i64 = 200_000;

/// The orders: Zipf-hot stores and items, one in five a bulk order of 10–50 lines.
pub(crate) struct Orders {
    pub stores: usize,
    pub store_pick: Zipf,
    pub item_pick: Zipf,
    pub customers: u64,
    /// One order in `bulk_every` is a bulk order.
    pub bulk_every: u64,
}

impl Orders {
    pub(crate) fn new(stores: usize, items: usize, customers: u64) -> Self {
        Orders {
            stores,
            store_pick: Zipf::new(stores, 1.1),
            item_pick: Zipf::new(items, 1.0),
            customers: customers.max(1),
            bulk_every: 5,
        }
    }

    /// An order from customer `cust-<c>`; distinct items, Zipf-hot.
    pub(crate) fn order(&self, n: u64, rng: &mut fastrand::Rng) -> Operation {
        let lines = if n % self.bulk_every == self.bulk_every - 1 { rng.usize(10..=50) } else { rng.usize(1..=3) };
        let mut items: Vec<usize> = Vec::with_capacity(lines);
        let mut tries = 0;
        while items.len() < lines && tries < lines * 20 {
            let i = self.item_pick.sample(rng);
            if !items.contains(&i) {
                items.push(i);
            }
            tries += 1;
        }
        Operation::PlaceOrder {
            order_id: order_id(rng),
            customer_id: format!("cust-{}", rng.u64(0..self.customers)),
            store_id: store_id(self.store_pick.sample(rng) % self.stores.max(1)),
            items: items.into_iter().map(|i| (item_id(i), rng.i64(1..=3))).collect(),
        }
    }
}

impl Plan for Orders {
    fn arrival(&self, n: u64, rng: &mut fastrand::Rng) -> Vec<Operation> {
        vec![self.order(n, rng)]
    }
}

#[async_trait]
impl Scenario for MorningRush {
    fn name(&self) -> &'static str {
        "morning-rush"
    }

    fn story(&self) -> &'static str {
        "Monday 7:45, corporate bulk orders spike. Arrivals ramp from 10% to 100% of the rate in 30 s and \
         hold for 15 s; one order in five is a bulk order of 10-50 lines; stores and items follow a Zipf \
         distribution, so a few stores and SKUs are hot. Measures order latency and the events committed \
         per second (each order becomes about 20 events through the saga: placed, reserved per line, \
         authorized, captured, settled per line, paid, points)."
    }

    fn default_rate(&self, scale: f64) -> f64 {
        RATE * scale
    }

    fn default_load(&self, scale: f64) -> Load {
        let rate = self.default_rate(scale);
        Load::Open(Arrivals::new(
            rate * 0.1,
            vec![Stage { duration: Duration::from_secs(30), rate }, Stage { duration: Duration::from_secs(15), rate }],
        ))
    }

    async fn prepare(&self, context: &Context) -> Result<Arc<dyn Plan>, FloodError> {
        let stores = scaled(STORES, context.scale.sqrt(), 2) as usize;
        set_up_shops(context.target.as_ref(), stores, ITEMS, STOCK).await?;
        Ok(Arc::new(Orders::new(stores, ITEMS, scaled(CUSTOMERS, context.scale, 10))))
    }

    async fn finish(&self, context: &Context, flow: &Flow) -> Result<Vec<Check>, FloodError> {
        Ok(vec![projections_drain(context.target.as_ref(), &flow.recorder, context.settle).await])
    }
}
