//! `cloudcafe bench actors`: what an actor costs.
//!
//! - **Activation**: streams with a snapshot and `events` events after it, written straight through
//!   the journal API, are activated one at a time through a [`Registry`] (an inspect: snapshot load,
//!   stream read, decode, fold, the actor's start and its answer). The ceiling, measured on the same
//!   streams in the same run, is the journal alone: the snapshot load and the read of the same rows,
//!   neither decoded nor folded. The ratio is what decoding, folding and the actor add.
//! - **Idle actors**: `actors` loyalty accounts, one event each, are written through the journal,
//!   then activated through a registry (each reads its stream: a real activation, not an empty
//!   actor) and left idle below the idle timeout. The process's resident memory (`VmRSS`) is read
//!   before, after the activations, after idling, and once the idle timeout has passivated them all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::actors::domain::inventory::InventoryDecider;
use ::actors::domain::loyalty::LoyaltyDecider;
use ::actors::domain::Decider;
use ::actors::host::{start_arbiters, HostOptions, Registry};
use anyhow::{ensure, Context};
use events::domain::{streams, PointsAccrued, StockReserved, StockRestocked, StockSettled};
use events::journal::read_stream_to_end;
use events::{AppendRequest, Causation, DomainEvent, ExpectedVersion, Journal, NewEvent};
use futures::StreamExt;
use uuid::Uuid;

/// Events of an activation stream before its snapshot: a restock and 50 reserve/settle pairs.
const BEFORE_SNAPSHOT: u64 = 101;

/// Appends in flight at once while writing the idle actors' streams.
const IN_FLIGHT: usize = 256;

/// Milliseconds at p50, p99 and the maximum.
#[derive(Clone, Copy, Debug)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Quantiles {
    fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Quantiles { p50_ms: ms(h.value_at_quantile(0.5)), p99_ms: ms(h.value_at_quantile(0.99)), max_ms: ms(h.max()) }
    }
}

pub struct ActivationFigures {
    pub journal: String,
    pub streams: usize,
    pub events_after_snapshot: u64,
    /// The ceiling: snapshot load plus the read of the events after it, nothing decoded.
    pub raw: Quantiles,
    /// `Registry::inspect` of a stream with no actor yet.
    pub activation: Quantiles,
}

/// The events of activation stream `k`: a restock, then reserve/settle pairs (the stock's
/// reservations come and go, so its state stays the size a shop's SKU has).
fn stock_events(k: usize, from: u64, to: u64) -> Vec<DomainEvent> {
    let (store_id, sku) = (format!("bench-store-{k}"), "latte".to_string());
    (from..=to)
        .map(|v| {
            let order_id = Uuid::from_u64_pair(k as u64, v / 2);
            match v {
                1 => StockRestocked { store_id: store_id.clone(), sku: sku.clone(), quantity: 1_000_000 }.into(),
                v if v % 2 == 0 => {
                    StockReserved { store_id: store_id.clone(), sku: sku.clone(), order_id, quantity: 1 }.into()
                }
                _ => StockSettled { store_id: store_id.clone(), sku: sku.clone(), order_id, quantity: 1 }.into(),
            }
        })
        .collect()
}

fn encode(events: &[DomainEvent]) -> anyhow::Result<Vec<NewEvent>> {
    Ok(events.iter().map(|e| NewEvent::from_domain(e, Causation::new_root())).collect::<Result<_, _>>()?)
}

/// Writes stream `k`: the events before the snapshot, the snapshot, then `after` more events.
async fn write_stock_stream(journal: &dyn Journal, k: usize, after: u64) -> anyhow::Result<()> {
    let stream_id = streams::inventory(&format!("bench-store-{k}"), "latte");
    let before = stock_events(k, 1, BEFORE_SNAPSHOT);
    let state = before.iter().fold(<InventoryDecider as Decider>::State::default(), InventoryDecider::evolve);
    let request =
        AppendRequest { stream_id: stream_id.clone(), expected: ExpectedVersion::NoStream, events: encode(&before)? };
    journal.append(request).await?;
    journal
        .save_snapshot(::actors::host::encode_snapshot::<InventoryDecider>(&stream_id, BEFORE_SNAPSHOT, &state)?)
        .await?;
    let tail = stock_events(k, BEFORE_SNAPSHOT + 1, BEFORE_SNAPSHOT + after);
    let mut version = BEFORE_SNAPSHOT;
    for chunk in tail.chunks(1000) {
        let expected = ExpectedVersion::Exact(version);
        let request = AppendRequest { stream_id: stream_id.clone(), expected, events: encode(chunk)? };
        version = journal.append(request).await?.last_version;
    }
    Ok(())
}

/// Activation from a snapshot plus `events` events, against the journal read of the same rows.
pub async fn activation(
    journal: Arc<dyn Journal>,
    label: &str,
    streams: usize,
    events: u64,
) -> anyhow::Result<ActivationFigures> {
    futures::stream::iter(0..streams)
        .map(|k| {
            let journal = journal.clone();
            async move { write_stock_stream(journal.as_ref(), k, events).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()
        .context("writing the activation streams")?;
    let registry = Registry::<InventoryDecider>::new(journal.clone(), HostOptions::default(), start_arbiters(2));
    let (mut raw, mut activated) = (histogram(), histogram());
    let version = BEFORE_SNAPSHOT + events;
    let expected = (0..=version).skip(1).fold(1_000_000u64, |a, v| match v {
        1 => a,
        v if v % 2 == 0 => a - 1,
        _ => a,
    });
    for k in 0..streams {
        let stream_id = streams::inventory(&format!("bench-store-{k}"), "latte");
        // Half the streams are read raw first, half activated first: neither gets the warmer cache.
        for raw_first in [k % 2 == 0, k % 2 != 0] {
            if raw_first {
                let started = Instant::now();
                let snapshot = journal.load_snapshot(&stream_id).await?.context("a snapshot")?;
                let rows = read_stream_to_end(journal.as_ref(), &stream_id, snapshot.version + 1).await?;
                raw.record(started.elapsed().as_micros() as u64)?;
                ensure!(rows.len() as u64 == events, "{stream_id}: read {} events after the snapshot", rows.len());
            } else {
                let started = Instant::now();
                let (stock, at) = registry.inspect(&stream_id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                activated.record(started.elapsed().as_micros() as u64)?;
                ensure!(at == version && stock.available == expected, "{stream_id}: activated at v{at}");
            }
        }
    }
    Ok(ActivationFigures {
        journal: label.to_owned(),
        streams,
        events_after_snapshot: events,
        raw: Quantiles::of(&raw),
        activation: Quantiles::of(&activated),
    })
}

pub fn activation_table(figures: &[ActivationFigures]) -> String {
    let mut s = String::from(
        "| journal | streams | events after the snapshot | journal alone: snapshot + read, p50 / p99 / max ms (ceiling) | activation through the registry: p50 / p99 / max ms | p99 / ceiling's p99 |\n|---|---|---|---|---|---|\n",
    );
    for f in figures {
        let q = |q: &Quantiles| format!("{:.2} / {:.2} / {:.2}", q.p50_ms, q.p99_ms, q.max_ms);
        s.push_str(&format!(
            "| {} | {} | {} | {} | **{}** | {:.2}× |\n",
            f.journal,
            f.streams,
            f.events_after_snapshot,
            q(&f.raw),
            q(&f.activation),
            f.activation.p99_ms / f.raw.p99_ms
        ));
    }
    s
}

fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new(3).expect("histogram")
}

pub struct IdleFigures {
    pub journal: String,
    pub actors: usize,
    pub in_flight: usize,
    pub write: Duration,
    pub activate: Duration,
    pub idle_timeout: Duration,
    /// Resident memory with the streams written and no actor.
    pub rss_before: u64,
    /// After the first half of the activations: what the second half adds is the cost of one more
    /// actor, without what the first activations set up once (the journal's connections and caches).
    pub rss_half: u64,
    /// Right after the last activation.
    pub rss_active: u64,
    /// After idling `idled` (below the idle timeout), with `resident_idle` actors resident.
    pub rss_idle: u64,
    pub idled: Duration,
    pub resident_idle: usize,
    /// Once the idle timeout passivated them (`resident_passivated` left), `passivated_after` the
    /// last activation.
    pub rss_passivated: u64,
    pub passivated_after: Duration,
    pub resident_passivated: usize,
}

impl IdleFigures {
    /// Everything the activations added, over the actors resident when idle.
    pub fn bytes_per_actor(&self) -> f64 {
        self.rss_idle.saturating_sub(self.rss_before) as f64 / self.resident_idle.max(1) as f64
    }

    /// What the second half of the activations added, per actor.
    pub fn marginal_bytes_per_actor(&self) -> f64 {
        self.rss_active.saturating_sub(self.rss_half) as f64 / (self.actors - self.actors / 2).max(1) as f64
    }
}

/// Activates the accounts numbered `range`, `in_flight` at a time, and checks what each loaded.
async fn activate_accounts(
    registry: &Arc<Registry<LoyaltyDecider>>,
    range: std::ops::Range<usize>,
    in_flight: usize,
) -> anyhow::Result<()> {
    futures::stream::iter(range)
        .map(|i| {
            let registry = registry.clone();
            async move {
                let (account, version) = registry
                    .inspect(&streams::loyalty(&customer(i)))
                    .await
                    .map_err(|e| anyhow::anyhow!("activating account {i}: {e}"))?;
                ensure!(version == 1 && account.points == 12, "account {i} activated at v{version}");
                anyhow::Ok(())
            }
        })
        .buffer_unordered(in_flight)
        .fold(Ok(()), |acc: anyhow::Result<()>, r| async move { acc.and(r) })
        .await
}

/// The process's resident set (`VmRSS` in /proc/self/status), in bytes.
pub fn rss() -> anyhow::Result<u64> {
    let rss = status_bytes("VmRSS")?;
    tracing::info!(
        rss_mib = rss >> 20,
        anon_mib = status_bytes("RssAnon")? >> 20,
        file_mib = status_bytes("RssFile")? >> 20,
        shmem_mib = status_bytes("RssShmem")? >> 20,
        "resident memory"
    );
    Ok(rss)
}

/// A `kB` line of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))
        .with_context(|| format!("no {field} line in /proc/self/status"))?;
    let kib: u64 = line.split_whitespace().nth(1).context("a value")?.parse()?;
    Ok(kib * 1024)
}

fn customer(i: usize) -> String {
    format!("bench-{i}")
}

/// `actors` loyalty accounts activated, idle, then passivated, and the resident memory each time.
pub async fn idle(
    journal: Arc<dyn Journal>,
    label: &str,
    actors: usize,
    in_flight: usize,
    idle_timeout: Duration,
) -> anyhow::Result<IdleFigures> {
    let started = Instant::now();
    futures::stream::iter(0..actors)
        .map(|i| {
            let journal = journal.clone();
            async move {
                let customer_id = customer(i);
                let accrued: DomainEvent = PointsAccrued {
                    customer_id: customer_id.clone(),
                    order_id: Uuid::from_u64_pair(i as u64, 1),
                    points: 12,
                }
                .into();
                let request = AppendRequest {
                    stream_id: streams::loyalty(&customer_id),
                    expected: ExpectedVersion::NoStream,
                    events: encode(&[accrued])?,
                };
                journal.append(request).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(Ok(()), |acc: anyhow::Result<()>, r| async move { acc.and(r) })
        .await
        .context("writing the loyalty accounts")?;
    let write = started.elapsed();
    // This measures memory, not latency: on a loaded machine an activation may wait its turn
    // longer than the default command timeout.
    let options = HostOptions { idle_timeout, command_timeout: Duration::from_secs(300), ..HostOptions::default() };
    let registry = Arc::new(Registry::<LoyaltyDecider>::new(journal.clone(), options, start_arbiters(2)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss()?;
    let started = Instant::now();
    activate_accounts(&registry, 0..actors / 2, in_flight).await?;
    let rss_half = rss()?;
    activate_accounts(&registry, actors / 2..actors, in_flight).await?;
    let activate = started.elapsed();
    let rss_active = rss()?;
    let idled = (idle_timeout / 4).min(Duration::from_secs(10));
    tokio::time::sleep(idled).await;
    let (rss_idle, resident_idle) = (rss()?, registry.resident());
    let idle_since = Instant::now();
    while registry.resident() > 0 && idle_since.elapsed() < idle_timeout * 4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let passivated_after = started.elapsed() - activate;
    let (rss_passivated, resident_passivated) = (rss()?, registry.resident());
    Ok(IdleFigures {
        journal: label.to_owned(),
        actors,
        in_flight,
        write,
        activate,
        idle_timeout,
        rss_before,
        rss_half,
        rss_active,
        rss_idle,
        idled,
        resident_idle,
        rss_passivated,
        passivated_after,
        resident_passivated,
    })
}

pub fn idle_table(figures: &[IdleFigures]) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut s = String::from(
        "| journal | actors activated (loyalty accounts, 1 event each) | written in | activated in (rate) | RSS before | RSS after half / all | RSS idle (resident actors) | bytes per idle actor | **bytes per actor, 2nd half** | RSS once passivated (resident, after) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        s.push_str(&format!(
            "| {} | {} | {:.1} s | {:.1} s ({:.0}/s) | {:.0} MiB | {:.0} / {:.0} MiB | {:.0} MiB ({}) | {:.0} | **{:.0}** | {:.0} MiB ({}, {:.0} s) |\n",
            f.journal,
            f.actors,
            f.write.as_secs_f64(),
            f.activate.as_secs_f64(),
            f.actors as f64 / f.activate.as_secs_f64(),
            mib(f.rss_before),
            mib(f.rss_half),
            mib(f.rss_active),
            mib(f.rss_idle),
            f.resident_idle,
            f.bytes_per_actor(),
            f.marginal_bytes_per_actor(),
            mib(f.rss_passivated),
            f.resident_passivated,
            f.passivated_after.as_secs_f64(),
        ));
    }
    if let Some(f) = figures.first() {
        s.push_str(&format!(
            "\nIdle timeout {} s; RSS idle read {} s after the last activation. Bytes per idle actor = (RSS idle − RSS before) / resident actors, which counts what the first activations set up once (the journal's reader connections and their page caches); the second half's bytes per actor leave that out.\n",
            f.idle_timeout.as_secs(),
            f.idled.as_secs()
        ));
    }
    s
}
