//! `cloudcafe loyalty`: the hourly tier recalculation as a command (`recalculate`), and a synthetic
//! import of points from the previous loyalty system to try it on (`import`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::cafe::Cafe;
use actors::host::start_arbiters;
use anyhow::Context;
use clap::{Args, Subcommand};
use events::singleton::{LocalSingletons, PgSingletons, SingletonLocks};
use events::Journal;
use gateways::loyalty::{import_accounts, recalculate_tiers, synthetic_accounts, RecalculationReport};
use gateways::node::{open_stores, Storage, StorefrontStore};
use projections::read_models::runner::ProjectionRunner;
use projections::Sink;

use super::storage::StorageArgs;

/// The subcommands of `cloudcafe loyalty`.
#[derive(Subcommand)]
pub enum LoyaltyCommand {
    /// Recalculate every customer's tier from their points (the hourly batch): a TierChanged only
    /// where the tier differs. Brings the storefront up to the journal's head first (or waits for
    /// the node that runs its projection), since the customers are listed from it.
    Recalculate(RecalculateArgs),
    /// Import synthetic accounts `cust-<i>` as points from the previous system (one PointsAccrued
    /// each, tiers not updated): about a third of them are due a higher tier.
    Import(ImportArgs),
}

/// The flags of `cloudcafe loyalty recalculate`.
#[derive(Args)]
pub struct RecalculateArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Recalculations in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// The flags of `cloudcafe loyalty import`.
#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// How many customers to import.
    #[arg(long)]
    pub customers: u64,
    /// Seed of the points drawn for them.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Accounts per import call, between progress updates.
const IMPORT_CHUNK: usize = 50_000;

pub async fn run(command: LoyaltyCommand) -> anyhow::Result<()> {
    match command {
        LoyaltyCommand::Recalculate(args) => recalculate(args).await,
        LoyaltyCommand::Import(args) => import(args).await,
    }
}

async fn recalculate(args: RecalculateArgs) -> anyhow::Result<()> {
    let settings = args.storage.settings();
    let (journal, storefront) = open_stores(&settings.storage).await.context("cannot open the stores")?;
    storefront_up_to_head(&settings.storage, &journal, &storefront).await?;
    // No freshness follower: each actor reads its stream when it activates, and this command sends
    // each one message.
    let cafe = Cafe::new(journal, settings.host.clone(), settings.payment, start_arbiters(settings.actor_threads));
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} recalculating tiers: {msg}")?);
    bar.enable_steady_tick(Duration::from_millis(200));
    let report = recalculate_tiers(&cafe, storefront.as_ref(), args.concurrency, &mut |r: &RecalculationReport| {
        bar.set_message(format!(
            "{} customers, {} changed, {} failed, {:.0} customers/s",
            r.customers,
            r.changed,
            r.failed,
            r.rate()
        ));
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "recalculated {} customers in {:.2} s ({:.0} customers/s): {} tiers changed, {} failed",
        report.customers,
        report.elapsed.as_secs_f64(),
        report.rate(),
        report.changed,
        report.failed
    );
    if report.failed > 0 {
        anyhow::bail!("{} recalculations failed (see the log); run the command again to retry them", report.failed);
    }
    Ok(())
}

/// Brings the storefront to the journal's head as it is now, since the batch lists the customers
/// from it: applies the missing events itself when it can take the storefront projection's
/// singleton lock (no node runs it), else waits for the node that holds the lock.
async fn storefront_up_to_head(
    storage: &Storage,
    journal: &Arc<dyn Journal>,
    storefront: &Arc<dyn StorefrontStore>,
) -> anyhow::Result<()> {
    let head = journal.head_position().await?;
    let locks: Arc<dyn SingletonLocks> = match storage {
        // One process holds an embedded data directory at a time (the journal's lock file): no
        // node runs the projection while this command has it open.
        Storage::Embedded { .. } => Arc::new(LocalSingletons::default()),
        Storage::Postgres { .. } => {
            let options = storage.pg_options().expect("PostgreSQL storage has PostgreSQL options");
            Arc::new(PgSingletons::new(&options)?)
        }
    };
    let lock = format!("projection:{}", storefront.name());
    let mut waited = false;
    loop {
        let position = storefront.position().await?;
        if position >= head {
            return Ok(());
        }
        if let Some(_held) = locks.try_acquire(&lock).await? {
            println!("storefront at position {position} of {head}: applying the rest first");
            let sink: Arc<dyn Sink> = storefront.clone();
            let reached = ProjectionRunner::new(journal.clone(), sink)
                .catch_up()
                .await
                .context("cannot bring the storefront up to the journal")?;
            println!("storefront at position {reached}");
            return Ok(());
        }
        if !waited {
            println!("storefront at position {position} of {head}: waiting for the node that runs its projection");
            waited = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let settings = args.storage.settings();
    let (journal, _) = open_stores(&settings.storage).await.context("cannot open the stores")?;
    let accounts = synthetic_accounts(args.customers, args.seed);
    let bar = indicatif::ProgressBar::new(accounts.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("importing [{bar:40}] {pos}/{len} accounts  {per_sec}  ETA {eta}")?
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut appended = 0;
    for chunk in accounts.chunks(IMPORT_CHUNK) {
        appended += import_accounts(journal.as_ref(), chunk).await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "imported {appended} accounts in {elapsed:.2} s ({:.0} accounts/s); {} existed already and were skipped",
        appended as f64 / elapsed.max(1e-9),
        accounts.len() as u64 - appended
    );
    Ok(())
}
