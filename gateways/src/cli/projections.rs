//! `cloudcafe projections`: the operator's way out of a stalled projection. `park` records, in the
//! journal, that a projection skips one event it cannot apply (the projection and its replays then
//! skip it alike); `parks` lists what was parked, by whom and why.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use gateways::parks::{self, ParkRequest};
use projections::{Rebuildable, Sink};

use super::cloud::CloudModels;
use super::storage::StorageArgs;

/// The subcommands of `cloudcafe projections`.
#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Park the event a projection is stalled on (see `GET /admin/projections`, `stalled`): the
    /// projection skips it from now on, and replay makes the same choice. Refused for any other
    /// event unless --force.
    Park(ParkArgs),
    /// List the events parked for a projection.
    Parks(ParksArgs),
}

/// The flags of `cloudcafe projections park`.
#[derive(Args)]
pub struct ParkArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The projection, by the name `/admin/projections` shows (`storefront`, `analytics`, ...).
    #[arg(long)]
    pub projection: String,
    /// The global position of the event to park.
    #[arg(long)]
    pub position: u64,
    /// Why (kept in the journal with the park).
    #[arg(long)]
    pub reason: String,
    /// Who parks it (kept in the journal; default: $USER).
    #[arg(long, env = "USER", default_value = "unknown")]
    pub by: String,
    /// Park it even if it is not the event the projection is stalled on.
    #[arg(long)]
    pub force: bool,
}

/// The flags of `cloudcafe projections parks`.
#[derive(Args)]
pub struct ParksArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The projection, by the name `/admin/projections` shows.
    #[arg(long, default_value = "storefront")]
    pub projection: String,
}

pub async fn run(command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Park(args) => {
            let settings = args.storage.settings();
            let (journal, storefront) =
                gateways::node::open_stores(&settings.storage).await.context("cannot open the stores")?;
            let sink = find_projection(&args.storage, storefront, &args.projection).await?;
            let request =
                ParkRequest { position: args.position, reason: args.reason, parked_by: args.by, force: args.force };
            let parked = parks::park(journal.as_ref(), sink.as_ref(), &request)
                .await
                .with_context(|| format!("event {} not parked for {}", args.position, args.projection))?;
            println!(
                "{}: parked event {} ({} on {}); the projection skips it from now on",
                parked.projection, parked.position, parked.event_type, parked.stream_id
            );
        }
        ProjectionsCommand::Parks(args) => {
            let settings = args.storage.settings();
            let (journal, _) =
                gateways::node::open_stores(&settings.storage).await.context("cannot open the stores")?;
            let parks = parks::list(journal.as_ref(), &args.projection).await?;
            if parks.is_empty() {
                println!("{}: no event parked", args.projection);
            }
            for p in parks {
                let at = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(p.parked_at_us)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                println!(
                    "{}: position {} ({} on {}) parked by {} at {}: {}",
                    p.projection, p.position, p.event_type, p.stream_id, p.parked_by, at, p.reason
                );
            }
        }
    }
    Ok(())
}

/// The read model named `name` among those these flags configure.
async fn find_projection(
    storage: &StorageArgs,
    storefront: Arc<dyn Rebuildable>,
    name: &str,
) -> anyhow::Result<Arc<dyn Rebuildable>> {
    if storefront.name() == name {
        return Ok(storefront);
    }
    let settings = storage.settings();
    let mut known = vec![storefront.name().to_owned()];
    if let Some(options) = &settings.analytics {
        let pool = events::postgres::connect_pool(options).await?;
        let analytics = Arc::new(projections::read_models::analytics::AnalyticsSink::new(pool).await?);
        if analytics.name() == name {
            return Ok(analytics);
        }
        known.push(analytics.name().to_owned());
    }
    for (_, sink) in CloudModels::open(storage).await?.rebuildable() {
        if sink.name() == name {
            return Ok(sink);
        }
        known.push(sink.name().to_owned());
    }
    anyhow::bail!("no projection {name} is configured (these are: {})", known.join(", "))
}
