//! `cloudcafe verify`: check the invariants of a journal and its read models after a flood or a
//! chaos experiment (or whenever an operator doubts them), optionally against the ack ledger the
//! load wrote.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gateways::flood::arrivals::parse_duration;
use gateways::verify::{self, AckLedger, VerifySettings};

use super::cloud::CloudModels;
use super::serve::EventSource;
use super::storage::StorageArgs;

/// The flags of `cloudcafe verify`.
#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The ack ledger a flood wrote (JSON lines, one acknowledgement a line): every command answered
    /// must be in the journal exactly once, every command unanswered at most once.
    #[arg(long, value_name = "FILE")]
    pub acks: Option<PathBuf>,
    /// How long to wait for orders still moving through the saga, and then for each read model to
    /// reach the journal's head, before a check fails ("500ms", "30s", "2m").
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Print the checks as a JSON array of {name, passed, detail} instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the DynamoDB and DocumentDB read models take their events from (as the nodes were
    /// started): fed from Kinesis, they hold no journal position and are compared with a rebuild
    /// until they equal it or --settle is over.
    #[arg(long, value_enum, default_value_t = EventSource::Journal)]
    pub projections_from: EventSource,
    /// Where the analytics model takes its events from (as the nodes were started): fed from the
    /// analytics stream, it is compared with a rebuild until it equals it or --settle is over.
    #[arg(long, value_enum, default_value_t = EventSource::Journal)]
    pub analytics_from: EventSource,
}

/// Checks every invariant and prints each check; the exit code says whether all held.
pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let checks =
        checks(&args.storage, args.acks.as_deref(), args.settle, args.projections_from, args.analytics_from).await?;
    print(&checks, args.json)?;
    Ok(ExitCode::from(verify::exit_code(&checks)))
}

/// Every invariant of the journal `storage` names, and every read model against a rebuild, with the
/// ack ledger at `acks` if given (the chaos experiments' probe calls this too).
pub async fn checks(
    storage: &StorageArgs,
    acks: Option<&std::path::Path>,
    settle: Duration,
    projections_from: EventSource,
    analytics_from: EventSource,
) -> anyhow::Result<Vec<verify::Check>> {
    let settings = storage.settings();
    let acks = match acks {
        Some(path) => {
            AckLedger::load(path).with_context(|| format!("cannot read the ack ledger {}", path.display()))?
        }
        None => Vec::new(),
    };
    let (journal, storefront) =
        gateways::node::open_stores(&settings.storage).await.context("cannot open the stores")?;
    let mut models: Vec<Arc<dyn projections::Rebuildable>> = vec![storefront];
    if let Some(options) = &settings.analytics {
        let pool = events::postgres::connect_pool(options).await?;
        models.push(Arc::new(projections::read_models::analytics::AnalyticsSink::new(pool).await?));
    }
    let cloud: Vec<_> = CloudModels::open(storage).await?.rebuildable().into_iter().map(|(_, model)| model).collect();
    let mut stream_fed: Vec<String> = match projections_from {
        EventSource::Kinesis => cloud.iter().map(|model| model.name().to_owned()).collect(),
        EventSource::Journal => Vec::new(),
    };
    if analytics_from == EventSource::Kinesis {
        stream_fed.push(projections::read_models::analytics::NAME.to_owned());
    }
    models.extend(cloud);
    verify::verify(journal.as_ref(), &models, &acks, &VerifySettings { settle, stream_fed })
        .await
        .context("cannot verify")
}

/// Prints the checks as text lines or as a JSON array.
pub fn print(checks: &[verify::Check], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(checks)?);
    } else {
        for check in checks {
            println!("{} {}: {}", if check.passed { "PASS" } else { "FAIL" }, check.name, check.detail);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateways::verify::Check;

    #[test]
    fn the_exit_code_is_4_when_any_invariant_fails() {
        let check = |passed| Check { name: "n".into(), passed, detail: String::new() };
        assert_eq!(verify::exit_code(&[check(true), check(true)]), 0);
        assert_eq!(verify::exit_code(&[check(true), check(false)]), 4);
        assert_eq!(verify::exit_code(&[]), 0);
    }
}
