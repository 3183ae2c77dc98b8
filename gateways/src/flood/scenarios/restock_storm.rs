//! restock-storm: the weekly restock, every store restocks every SKU at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{item_id, menu_item, projections_drain, scaled, set_up, store_id, Context, FloodError, Scenario};
use crate::flood::arrivals::Arrivals;
use crate::flood::target::Operation;
use crate::flood::{Flow, Load, Plan};
use crate::verify::Check;

pub struct RestockStorm;

const STORES: f64 = 200.0;
const SKUS: f64 = 5_000.0;
/// Seconds the storm's arrivals take at scale 1.
const SECONDS: u64 = 40;

/// Store and SKU counts at `scale`: each grows with √scale, so the restocks grow with the scale.
fn size(scale: f64) -> (usize, usize) {
    (scaled(STORES, scale.sqrt(), 1) as usize, scaled(SKUS, scale.sqrt(), 2) as usize)
}

struct Restocks {
    stores: usize,
    skus: usize,
}

impl Plan for Restocks {
    /// Arrival `n` restocks SKU `n / stores` in store `n % stores` (every store at once, SKU by
    /// SKU); past the last pair it starts over, a second delivery.
    fn arrival(&self, n: u64, rng: &mut fastrand::Rng) -> Vec<Operation> {
        let pair = (n % (self.stores * self.skus) as u64) as usize;
        vec![Operation::Restock {
            store_id: store_id(pair % self.stores),
            sku: item_id(pair / self.stores),
            quantity: rng.i64(10..=500),
        }]
    }
}

#[async_trait]
impl Scenario for RestockStorm {
    fn name(&self) -> &'static str {
        "restock-storm"
    }

    fn story(&self) -> &'static str {
        "The weekly restock: every store restocks every SKU at once (200 stores x 5,000 SKUs at scale 1; \
         --scale multiplies the restocks, stores and SKUs each by its square root). The inventory read \
         models (SQL, and DynamoDB store-inventory when configured) must keep up: reports projection lag \
         over time and the time for the lag to return to zero after the last restock."
    }

    fn default_rate(&self, scale: f64) -> f64 {
        let (stores, skus) = size(scale);
        (stores * skus) as f64 / SECONDS as f64
    }

    fn default_load(&self, scale: f64) -> Load {
        Load::Open(Arrivals::constant(self.default_rate(scale), Duration::from_secs(SECONDS)))
    }

    async fn prepare(&self, context: &Context) -> Result<Arc<dyn Plan>, FloodError> {
        let (stores, skus) = size(context.scale);
        let target = context.target.as_ref();
        let opening =
            (0..stores).map(|s| Operation::OpenStore { store_id: store_id(s), name: format!("Flood #{s}") }).collect();
        set_up(target, opening, 64).await?;
        set_up(target, (0..skus).map(|i| Operation::PublishItem(menu_item(i, "grocery"))).collect(), 64).await?;
        Ok(Arc::new(Restocks { stores, skus }))
    }

    async fn finish(&self, context: &Context, flow: &Flow) -> Result<Vec<Check>, FloodError> {
        Ok(vec![projections_drain(context.target.as_ref(), &flow.recorder, context.settle).await])
    }
}
