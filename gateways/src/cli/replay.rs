//! `cloudcafe replay`: rebuild read models from the journal into a shadow, verify every hash chain,
//! compare with the live model and swap it in.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use projections::read_models::replay::{rebuild, ReplayError, ReplayOptions, ReplayOutcome};

use super::cloud::CloudModels;
use super::storage::StorageArgs;

/// The flags of `cloudcafe replay`.
#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Which read model to rebuild.
    #[arg(long, value_enum, default_value_t = Projection::All)]
    pub projection: Projection,
    /// Start over from this global position (default: resume an interrupted rebuild, or start at 0).
    #[arg(long)]
    pub from: Option<u64>,
    /// Build and compare only; never touch the live model.
    #[arg(long)]
    pub dry_run: bool,
    /// Swap the rebuilt model in even if it differs from the live one.
    #[arg(long)]
    pub accept_differences: bool,
    /// Events per page (and per transaction of the shadow).
    #[arg(long, default_value_t = 2000)]
    pub page_size: usize,
}

/// The read models `replay --projection` can name.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Projection {
    All,
    Storefront,
    Analytics,
    Dynamodb,
    Documents,
}

/// Exit code: a hash chain of the journal is broken.
const BROKEN_CHAIN: u8 = 2;
/// Exit code: a rebuilt model differs from the live one and was left alone.
const MODELS_DIFFER: u8 = 3;

/// Rebuilds the read models asked for, one after the other, and says how each ended.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let settings = args.storage.settings();
    let (journal, storefront) =
        gateways::node::open_stores(&settings.storage).await.context("cannot open the stores")?;
    let mut targets: Vec<(&str, Arc<dyn projections::Rebuildable>)> = Vec::new();
    if matches!(args.projection, Projection::All | Projection::Storefront) {
        targets.push(("storefront", storefront));
    }
    if matches!(args.projection, Projection::All | Projection::Analytics) {
        match &settings.analytics {
            Some(options) => {
                let pool = events::postgres::connect_pool(options).await?;
                targets.push((
                    "analytics",
                    Arc::new(projections::read_models::analytics::AnalyticsSink::new(pool).await?),
                ));
            }
            None if args.projection == Projection::Analytics => {
                anyhow::bail!("no analytics store: pass --analytics-url (or use a PostgreSQL journal)")
            }
            None => {}
        }
    }
    for (name, sink) in CloudModels::open(&args.storage).await?.rebuildable() {
        let wanted = match name {
            "dynamodb" => matches!(args.projection, Projection::All | Projection::Dynamodb),
            _ => matches!(args.projection, Projection::All | Projection::Documents),
        };
        if wanted {
            targets.push((name, sink));
        }
    }
    if targets.is_empty() {
        anyhow::bail!("that read model is not configured (see cloudcafe replay --help)");
    }
    let options = ReplayOptions {
        from: args.from,
        page_size: args.page_size,
        dry_run: args.dry_run,
        accept_differences: args.accept_differences,
    };
    let mut code = ExitCode::SUCCESS;
    for (name, target) in targets {
        let bar = indicatif::ProgressBar::new(journal.head_position().await?);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} events  {per_sec}  ETA {eta}")?
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_owned());
        let shadow_at = target.shadow().await?.position().await?;
        if args.from.is_none() && shadow_at > 0 {
            println!("{name}: resuming from position {shadow_at}");
        }
        let outcome = rebuild(journal.as_ref(), target.as_ref(), &options, &mut |p| {
            bar.set_length(p.head.max(p.position));
            bar.set_position(p.position);
        })
        .await;
        bar.finish_and_clear();
        match outcome {
            Ok(ReplayOutcome::Promoted { fingerprint, resumed_from, applied }) => println!(
                "{name}: rebuilt {applied} events (from position {resumed_from}); {} rows, checksum {}, equal to the live model; swapped in",
                fingerprint.rows, fingerprint.checksum
            ),
            Ok(ReplayOutcome::Equal { fingerprint, applied, .. }) => println!(
                "{name}: dry run: rebuilt {applied} events; {} rows, checksum {}, equal to the live model; live model untouched",
                fingerprint.rows, fingerprint.checksum
            ),
            Ok(ReplayOutcome::Differs { live, shadow, differences, promoted }) => {
                println!(
                    "{name}: the rebuilt model differs from the live one: live {} rows ({}), rebuilt {} rows ({}); {} rows differ",
                    live.rows,
                    live.checksum,
                    shadow.rows,
                    shadow.checksum,
                    differences.len()
                );
                for d in differences.iter().take(20) {
                    println!(
                        "  {}\n    live:    {}\n    rebuilt: {}",
                        d.key,
                        d.live.as_deref().unwrap_or("(absent)"),
                        d.shadow.as_deref().unwrap_or("(absent)")
                    );
                }
                if promoted {
                    println!("{name}: --accept-differences: the rebuilt model was swapped in");
                } else {
                    println!("{name}: live model left alone");
                    code = ExitCode::from(MODELS_DIFFER);
                }
            }
            Err(ReplayError::BrokenChain(link)) => {
                eprintln!("cloudcafe: replay of {name} stopped: {link}");
                return Ok(ExitCode::from(BROKEN_CHAIN));
            }
            Err(e) => return Err(e).context(format!("replay of {name} failed")),
        }
    }
    Ok(code)
}
