//! menu-sync: a seasonal launch, thousands of menu items published and repriced at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::domain::menu::{MenuDecider, MenuItem};
use async_trait::async_trait;
use events::domain::streams;
use futures::StreamExt;

use super::{image_sha256, item_id, menu_item, projections_drain, scaled, Context, FloodError, Scenario};
use crate::flood::arrivals::Arrivals;
use crate::flood::target::{Operation, ServedItem};
use crate::flood::{Flow, Load, Plan};
use crate::verify::Check;

pub struct MenuSync;

const ITEMS: f64 = 10_000.0;
/// Menu operations per second at scale 1.
const RATE: f64 = 1_000.0;
/// The category the launch publishes under, so its items are told from the rest of the menu.
const CATEGORY: &str = "seasonal";

struct Launch {
    items: u64,
    /// An update names an item published at least this many arrivals earlier (about two seconds).
    gap: u64,
}

impl Plan for Launch {
    /// The first `items` arrivals publish the items, with nutrition and image hashes; the rest change
    /// prices, and retire every tenth item.
    fn arrival(&self, n: u64, rng: &mut fastrand::Rng) -> Vec<Operation> {
        if n < self.items {
            return vec![Operation::PublishItem(menu_item(n as usize, CATEGORY))];
        }
        let published = n.saturating_sub(self.gap).min(self.items);
        if published == 0 {
            return vec![Operation::PublishItem(menu_item((n % self.items) as usize, CATEGORY))];
        }
        let i = rng.u64(0..published) as usize;
        if i % 10 == 9 {
            vec![Operation::RetireItem { item_id: item_id(i) }]
        } else {
            vec![Operation::ChangePrice { item_id: item_id(i), price_cents: rng.i64(250..900) }]
        }
    }
}

/// What the journal says about item `i`, and what a node serves, compared.
fn differences(expected: &BTreeMap<String, MenuItem>, served: &[ServedItem]) -> Vec<String> {
    let served: BTreeMap<&str, &ServedItem> = served.iter().map(|s| (s.item_id.as_str(), s)).collect();
    let mut out = Vec::new();
    for (id, item) in expected {
        match served.get(id.as_str()) {
            None => out.push(format!("{id} missing")),
            Some(s) if s.price_cents != item.price_cents => {
                out.push(format!("{id} at {} cents, the journal says {}", s.price_cents, item.price_cents))
            }
            Some(s) if s.retired != item.retired => {
                out.push(format!("{id} retired={}, the journal says {}", s.retired, item.retired))
            }
            Some(s) if s.image_sha256 != item.image_sha256 => out.push(format!("{id} has another image hash")),
            Some(_) => {}
        }
    }
    out
}

#[async_trait]
impl Scenario for MenuSync {
    fn name(&self) -> &'static str {
        "menu-sync"
    }

    fn story(&self) -> &'static str {
        "A seasonal launch: 10K menu items published with nutrition and SHA-256 image hashes (computed from \
         the image bytes and checked against them), then repriced, every tenth retired, while the caches on \
         every node must be invalidated. Checks that every node serves exactly the menu the journal holds \
         (no retired item as orderable, no old price) once the sync ends, and that every image hash matches \
         its image."
    }

    fn default_rate(&self, scale: f64) -> f64 {
        RATE * scale
    }

    fn default_load(&self, scale: f64) -> Load {
        Load::Open(Arrivals::constant(self.default_rate(scale), Duration::from_secs(15)))
    }

    async fn prepare(&self, context: &Context) -> Result<Arc<dyn Plan>, FloodError> {
        let items = scaled(ITEMS, context.scale, 10);
        let gap = (self.default_rate(context.scale) * 2.0).ceil() as u64;
        Ok(Arc::new(Launch { items, gap }))
    }

    async fn finish(&self, context: &Context, flow: &Flow) -> Result<Vec<Check>, FloodError> {
        let mut checks = vec![projections_drain(context.target.as_ref(), &flow.recorder, context.settle).await];
        let items = scaled(ITEMS, context.scale, 10) as usize;
        let menus = context.target.served_menus().await.map_err(FloodError::Unsupported)?;

        // Every image hash the nodes serve for the launch is the hash of the image's bytes.
        let wrong_hash: Vec<String> = menus
            .iter()
            .flat_map(|(node, menu)| {
                menu.iter()
                    .filter_map(|s| Some((s.item_id.strip_prefix("flood-item-")?.parse::<usize>().ok()?, s)))
                    .filter(|(i, s)| *i < items && s.image_sha256 != image_sha256(*i, 1))
                    .map(move |(_, s)| format!("{node}: {}", s.item_id))
            })
            .collect();
        checks.push(Check {
            name: "every served image hash matches its image".into(),
            passed: wrong_hash.is_empty(),
            detail: if wrong_hash.is_empty() {
                format!("{} nodes checked", menus.len())
            } else {
                format!(
                    "{} wrong: {}",
                    wrong_hash.len(),
                    wrong_hash.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                )
            },
        });

        let Some(journal) = &context.journal else {
            checks.push(Check {
                name: "every node serves the menu the journal holds".into(),
                passed: false,
                detail: "not checked: the journal is not readable from here (pass --journal/--data-dir)".into(),
            });
            return Ok(checks);
        };
        let expected: BTreeMap<String, MenuItem> = futures::stream::iter(0..items)
            .map(|i| {
                let journal = journal.clone();
                async move {
                    let stream = streams::menu_item(&item_id(i));
                    actors::host::activate::<MenuDecider>(journal.as_ref(), &stream)
                        .await
                        .map(|(item, _)| (item_id(i), item))
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .filter(|r| r.as_ref().map_or(true, |(_, item)| item.published))
            .collect::<Result<_, _>>()?;

        // The caches may serve the old menu for a moment after the projection applied the new one.
        let started = Instant::now();
        let mut stale: Vec<String>;
        loop {
            let menus = context.target.served_menus().await.map_err(FloodError::Unsupported)?;
            stale = menus
                .iter()
                .flat_map(|(node, menu)| differences(&expected, menu).into_iter().map(move |d| format!("{node}: {d}")))
                .collect();
            if stale.is_empty() || started.elapsed() > context.settle {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let retired = expected.values().filter(|i| i.retired).count();
        checks.push(Check {
            name: "every node serves the menu the journal holds".into(),
            passed: stale.is_empty(),
            detail: if stale.is_empty() {
                format!("{} items ({retired} retired) on {} nodes", expected.len(), menus.len())
            } else {
                format!("{} stale: {}", stale.len(), stale.iter().take(5).cloned().collect::<Vec<_>>().join("; "))
            },
        });
        Ok(checks)
    }
}
