//! `cloudcafe verify`: check the invariants of a journal and its read models after a flood or a
//! chaos experiment (or whenever an operator doubts them), optionally against the ack ledger the
//! load wrote.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gateways::verify::{self, AckLedger, VerifySettings};

use super::cloud::CloudModels;
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
}

/// Checks every invariant and prints each check; the exit code says whether all held.
pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let settings = args.storage.settings();
    let acks = match &args.acks {
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
    models.extend(CloudModels::open(&args.storage).await?.rebuildable().into_iter().map(|(_, model)| model));
    let checks = verify::verify(journal.as_ref(), &models, &acks, &VerifySettings { settle: args.settle })
        .await
        .context("cannot verify")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for check in &checks {
            println!("{} {}: {}", if check.passed { "PASS" } else { "FAIL" }, check.name, check.detail);
        }
    }
    Ok(ExitCode::from(verify::exit_code(&checks)))
}

/// A duration as people write it: a number and a unit (`ms`, `s`, `m`, `h`), e.g. "500ms", "1.5s".
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration such as 500ms, 30s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}`: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateways::verify::Check;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn the_exit_code_is_4_when_any_invariant_fails() {
        let check = |passed| Check { name: "n".into(), passed, detail: String::new() };
        assert_eq!(verify::exit_code(&[check(true), check(true)]), 0);
        assert_eq!(verify::exit_code(&[check(true), check(false)]), 4);
        assert_eq!(verify::exit_code(&[]), 0);
    }
}
