//! `cloudcafe bench hot-stream`: many callers on one stream (one SKU of one store), the case an
//! actor that appended one command per journal round trip could not keep up with.
//!
//! Each caller places orders against the same inventory actor: reserve one unit, then settle it (the
//! two commands a paid order's line costs). The same run measures the actor with batching off (one
//! command per append, as before issue #10), with batching on, and the journal's own group commit of
//! as many single-event appends to streams of their own (the ceiling: no actor, no decision).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actors::domain::inventory::{InventoryCommand, InventoryDecider};
use actors::domain::store::StoreStatus;
use actors::host::{start_arbiters, ExecuteOptions, HostOptions, Registry};
use events::domain::streams;
use events::{Causation, Journal};

/// One journal's figures.
pub struct HotStreamFigures {
    pub adapter: String,
    pub callers: usize,
    pub commands: u64,
    pub max_batch: usize,
    /// Commands per second with one command per append.
    pub unbatched_rate: f64,
    /// Commands per second with batching on.
    pub batched_rate: f64,
    pub batched_p50_ms: f64,
    pub batched_p99_ms: f64,
    /// Single-event appends per second to streams of their own (the journal's group commit).
    pub ceiling_rate: f64,
}

const STORE: &str = "hot-store";
const SKU: &str = "latte";
const QUIET: ExecuteOptions = ExecuteOptions { new_stream: false, return_state: false };

/// Runs `commands` commands from `callers` concurrent callers against one inventory actor whose
/// batches hold at most `max_batch` commands; returns commands/s, p50 and p99 in ms.
async fn one_stream(
    journal: Arc<dyn Journal>,
    stream_suffix: &str,
    commands: u64,
    callers: usize,
    max_batch: usize,
) -> (f64, f64, f64) {
    let options = HostOptions { max_batch, mailbox_capacity: callers.max(256), ..HostOptions::default() };
    let registry = Arc::new(Registry::<InventoryDecider>::new(journal, options, start_arbiters(1)));
    let sku = format!("{SKU}-{stream_suffix}");
    let stream = streams::inventory(STORE, &sku);
    let orders = commands.div_ceil(2);
    let mut stocked = 0;
    while stocked < orders {
        let quantity = (orders - stocked).min(1_000_000);
        let command = InventoryCommand::Restock {
            store_id: STORE.into(),
            sku: sku.clone(),
            store: StoreStatus::Open,
            quantity: quantity as i64,
        };
        registry.execute_with(&stream, command, Causation::new_root(), QUIET).await.expect("restock");
        stocked += quantity;
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (registry, next, stream, sku) = (registry.clone(), next.clone(), stream.clone(), sku.clone());
            tokio::spawn(async move {
                let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= orders {
                        return hist;
                    }
                    let order_id = uuid::Uuid::from_u64_pair(i, 1);
                    let reserve =
                        InventoryCommand::Reserve { store_id: STORE.into(), sku: sku.clone(), order_id, quantity: 1 };
                    for command in [reserve, InventoryCommand::Settle { order_id }] {
                        let t = Instant::now();
                        registry.execute_with(&stream, command, Causation::new_root(), QUIET).await.expect("command");
                        hist.record(t.elapsed().as_micros() as u64).ok();
                    }
                }
            })
        })
        .collect();
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for t in tasks {
        hist.add(t.await.expect("caller")).ok();
    }
    let rate = (orders * 2) as f64 / started.elapsed().as_secs_f64();
    (rate, hist.value_at_quantile(0.5) as f64 / 1000.0, hist.value_at_quantile(0.99) as f64 / 1000.0)
}

/// The hot stream on `journal` with batching off and on, and the journal's group-commit ceiling.
pub async fn hot_stream(
    adapter: &str,
    journal: Arc<dyn Journal>,
    commands: u64,
    callers: usize,
    max_batch: usize,
) -> HotStreamFigures {
    // Batching off sees a few hundred commands/s: a tenth of the commands tells its rate.
    let (unbatched_rate, _, _) = one_stream(journal.clone(), "unbatched", (commands / 10).max(2), callers, 1).await;
    let (batched_rate, p50, p99) = one_stream(journal.clone(), "batched", commands, callers, max_batch).await;
    let (ceiling_rate, _, _) = super::journal::group_commit(journal, commands, callers).await;
    HotStreamFigures {
        adapter: adapter.to_owned(),
        callers,
        commands,
        max_batch,
        unbatched_rate,
        batched_rate,
        batched_p50_ms: p50,
        batched_p99_ms: p99,
        ceiling_rate,
    }
}

pub fn hot_stream_table(figures: &[HotStreamFigures]) -> String {
    let mut s = String::from(
        "| journal | callers | commands | one command per append (commands/s) | batched, ≤ N per append (commands/s) | batched p50 / p99 | group commit, own streams (appends/s: ceiling) | batched / ceiling | batched / one per append |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} | **{:.0}** (N = {}) | {:.2} ms / {:.2} ms | {:.0} | **{:.2}×** | {:.0}× |\n",
            f.adapter,
            f.callers,
            f.commands,
            f.unbatched_rate,
            f.batched_rate,
            f.max_batch,
            f.batched_p50_ms,
            f.batched_p99_ms,
            f.ceiling_rate,
            f.batched_rate / f.ceiling_rate,
            f.batched_rate / f.unbatched_rate,
        ));
    }
    s.push_str(
        "\nEach caller reserves one unit for an order, then settles it, on the one inventory stream of one SKU in one store; every command is answered after its append committed.\n",
    );
    s
}
