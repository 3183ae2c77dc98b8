//! `cloudcafe chaos run`: one experiment (or all) through Chaos Toolkit's `chaos run`, always rolled
//! back, and a report: Chaos Toolkit's journal plus a summary (the hypothesis before and after, when
//! the clients first saw the fault and when they stopped seeing it, the requests that failed, and the
//! `verify` result).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use super::{ClusterArgs, ExperimentsArgs};

/// Exit code of `chaos run` when an experiment did not hold (its hypothesis deviated, an activity
/// failed, or verify found a broken invariant).
pub const EXPERIMENT_FAILED: u8 = 6;

/// An experiment file.
pub struct Experiment {
    pub name: String,
    pub path: PathBuf,
    pub title: String,
    pub description: String,
    /// Tagged `needs:aws`: it breaks the AWS parts (DynamoDB, Kinesis, SQS), which a cluster runs
    /// only when started with their endpoints.
    pub needs_aws: bool,
}

impl Experiment {
    /// Every `*.json` in `dir`, by name.
    pub fn all(dir: &Path) -> anyhow::Result<Vec<Experiment>> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("json") {
                all.push(Experiment::load(&path)?);
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    pub fn load(path: &Path) -> anyhow::Result<Experiment> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let json: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        Ok(Experiment {
            name: path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned(),
            path: path.to_owned(),
            title: json["title"].as_str().unwrap_or_default().to_owned(),
            description: json["description"].as_str().unwrap_or_default().to_owned(),
            needs_aws: json["tags"].as_array().is_some_and(|tags| tags.iter().any(|t| t == "needs:aws")),
        })
    }
}

/// The flags of `cloudcafe chaos run`.
#[derive(Args)]
pub struct RunArgs {
    /// The experiments, one after the other (`cloudcafe chaos list` names them).
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Every experiment, one after the other.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Do not ask before injecting the faults.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub experiments: ExperimentsArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Each run writes `<name>-<time>/` here: Chaos Toolkit's journal and log, the load's report and
    /// ack ledger, summary.json and summary.md.
    #[arg(long, default_value = ".cc-local/chaos-reports")]
    pub report_dir: PathBuf,
    /// The load's arrival rate, per second.
    #[arg(long, default_value = "40")]
    pub rate: String,
    /// How long the load runs (the fault lands inside it).
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// Chaos Toolkit's command.
    #[arg(long, env = "CLOUDCAFE_CHAOSTOOLKIT", default_value = "chaos")]
    pub chaostoolkit: String,
}

/// Runs the experiments `args` names; exit 0 when every one held.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.experiments.experiments;
    let experiments = if args.all {
        Experiment::all(dir)?
    } else {
        args.names
            .iter()
            .map(|name| {
                Experiment::load(&dir.join(format!("{name}.json")))
                    .with_context(|| format!("no experiment {name} (cloudcafe chaos list)"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let cluster = args.cluster.load()?;
    let mut summaries = Vec::new();
    for experiment in &experiments {
        println!("\n== {}: {}\n{}\n", experiment.name, experiment.title, experiment.description);
        if experiment.needs_aws && cluster.aws.is_none() {
            println!(
                "skipped: it breaks the AWS parts, and this cluster runs none \
                 (cluster up --dynamodb-endpoint … --kinesis-endpoint … --sqs-endpoint …)"
            );
            continue;
        }
        if !args.yes && !confirm(&format!("Inject this fault into the cluster in {}?", args.cluster.dir.display()))? {
            println!("skipped");
            continue;
        }
        let summary = tokio::task::spawn_blocking({
            let (experiment, args) = (Experiment::load(&experiment.path)?, RunSettings::from(&args));
            move || run_one(&experiment, &args)
        })
        .await??;
        println!("{}", summary.markdown());
        summaries.push(summary);
    }
    if summaries.len() > 1 {
        let table = table(&summaries);
        println!("\n{table}");
        let path = args.report_dir.join(format!("table-{}.md", Utc::now().format("%Y%m%dT%H%M%SZ")));
        let command: Vec<String> = std::env::args().collect();
        std::fs::write(&path, format!("`{}`\n\n{table}", command.join(" ")))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("table: {}", path.display());
    }
    let held = summaries.iter().all(|s| s.held);
    Ok(if held { ExitCode::SUCCESS } else { ExitCode::from(EXPERIMENT_FAILED) })
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("not asking without a terminal: pass --yes to run the experiment");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// What one run needs from the flags.
struct RunSettings {
    cluster: PathBuf,
    report_dir: PathBuf,
    rate: String,
    duration: String,
    chaostoolkit: String,
}

impl From<&RunArgs> for RunSettings {
    fn from(args: &RunArgs) -> Self {
        RunSettings {
            cluster: std::path::absolute(&args.cluster.dir).unwrap_or_else(|_| args.cluster.dir.clone()),
            report_dir: args.report_dir.clone(),
            rate: args.rate.clone(),
            duration: args.duration.clone(),
            chaostoolkit: chaostoolkit(&args.chaostoolkit),
        }
    }
}

/// Chaos Toolkit's command: as given, or, when left at `chaos` and that is not on the PATH, the one
/// `deploy/local/cluster.sh` installed into `.cc-local/venv`.
fn chaostoolkit(given: &str) -> String {
    let on_path =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(given).is_file()));
    let installed = Path::new(".cc-local/venv/bin/chaos");
    if given == "chaos" && !on_path && installed.is_file() {
        std::path::absolute(installed).map(|p| p.display().to_string()).unwrap_or_else(|_| given.to_owned())
    } else {
        given.to_owned()
    }
}

fn run_one(experiment: &Experiment, settings: &RunSettings) -> anyhow::Result<Summary> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let run_dir = std::path::absolute(settings.report_dir.join(format!("{}-{stamp}", experiment.name)))?;
    std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    // The experiment's actions and probes call `cloudcafe`: this very program.
    let program = std::env::current_exe()?;
    let bin_dir = program.parent().context("the program has no directory")?;
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let cluster = chaos::cluster::Cluster::load(&settings.cluster)?;
    let journal = run_dir.join("journal.json");
    let status = std::process::Command::new(&settings.chaostoolkit)
        .arg("--no-version-check")
        .arg("--log-file")
        .arg(run_dir.join("chaostoolkit.log"))
        .arg("run")
        .arg("--journal-path")
        .arg(&journal)
        .args(["--rollback-strategy", "always"])
        .arg(&experiment.path)
        .env("PATH", path)
        .env("CLOUDCAFE_CLUSTER", &settings.cluster)
        .env("CLOUDCAFE_CHAOS_RUN_DIR", &run_dir)
        .env("CLOUDCAFE_CHAOS_RATE", &settings.rate)
        .env("CLOUDCAFE_CHAOS_DURATION", &settings.duration)
        .env("CLOUDCAFE_BALANCER", &cluster.balancer_url)
        .status()
        .with_context(|| {
            format!("cannot run Chaos Toolkit ({}; deploy/local/cluster.sh installs it)", settings.chaostoolkit)
        })?;
    let text = std::fs::read_to_string(&journal).with_context(|| {
        format!("Chaos Toolkit wrote no journal ({status}); see {}/chaostoolkit.log", run_dir.display())
    })?;
    let journal: Value = serde_json::from_str(&text)?;
    let load =
        std::fs::read_to_string(run_dir.join("load/report.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let summary = Summary::read(experiment, &run_dir, &journal, load.as_ref());
    std::fs::write(run_dir.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    std::fs::write(run_dir.join("summary.md"), summary.markdown())?;
    Ok(summary)
}

/// One probe of a steady-state hypothesis, as it came out.
#[derive(Debug, Serialize)]
pub struct ProbeResult {
    pub name: String,
    pub met: bool,
    pub output: String,
}

/// An experiment's report.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub experiment: String,
    pub title: String,
    pub run_dir: PathBuf,
    /// Chaos Toolkit's status: completed, failed, aborted, interrupted.
    pub status: String,
    pub deviated: bool,
    /// How long the whole experiment took (hypothesis, method, hypothesis, rollbacks), from Chaos
    /// Toolkit's journal.
    pub took_s: Option<f64>,
    pub before: Vec<ProbeResult>,
    pub after: Vec<ProbeResult>,
    /// Seconds from the load's start to the fault's injection, and how long the fault was in.
    pub fault_at_s: Option<f64>,
    pub fault_for_s: Option<f64>,
    /// Seconds from the fault's injection to the first failed request (None: no client saw it).
    pub time_to_detect_s: Option<f64>,
    /// Seconds from the fault's injection to the end of the last second with a failed request.
    pub time_to_recover_s: Option<f64>,
    pub requests: u64,
    pub failed_requests: u64,
    /// Failed requests from the fault's injection to 10 s after it was undone.
    pub failed_during_fault: u64,
    pub errors_by_kind: Value,
    /// The after-hypothesis's `verify` checks.
    pub verify: Value,
    pub verify_passed: bool,
    pub rollbacks_succeeded: bool,
    /// The experiment's load ran and sent nothing, or wrote no report: how it ended, with the end of
    /// what it printed.
    pub load_failure: Option<String>,
    /// Everything held: completed, hypotheses met, verify clean, rollbacks done, and the load (if
    /// the experiment has one) sent requests.
    pub held: bool,
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => DateTime::from_timestamp_millis((n.as_f64()? * 1000.0) as i64),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc())),
        _ => None,
    }
}

fn arguments(activity: &Value) -> String {
    activity["activity"]["provider"]["arguments"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn probes(state: &Value) -> Vec<ProbeResult> {
    state["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| ProbeResult {
            name: p["activity"]["name"].as_str().unwrap_or_default().to_owned(),
            met: p["tolerance_met"].as_bool().unwrap_or(false),
            output: match &p["output"] {
                Value::Object(o) => o.get("stdout").and_then(|s| s.as_str()).unwrap_or_default().trim().to_owned(),
                other => other.to_string(),
            },
        })
        .collect()
}

impl Summary {
    /// Reads Chaos Toolkit's journal and the load's report.
    pub fn read(experiment: &Experiment, run_dir: &Path, journal: &Value, load: Option<&Value>) -> Summary {
        let before = probes(&journal["steady_states"]["before"]);
        let after = probes(&journal["steady_states"]["after"]);
        let run = journal["run"].as_array().cloned().unwrap_or_default();
        let inject = run.iter().find(|a| arguments(a).starts_with("chaos inject"));
        let fault_start = inject.and_then(|a| time(&a["start"]));
        let fault_end = run
            .iter()
            .rev()
            .filter(|a| arguments(a).starts_with("chaos revert"))
            .find_map(|a| time(&a["end"]))
            .or_else(|| inject.and_then(|a| time(&a["end"])));
        let m = load.map(|l| &l["measurements"]);
        let load_start = load.and_then(|l| time(&l["started_at"]));
        let seconds: Vec<(f64, u64)> = m
            .and_then(|m| m["seconds"].as_array())
            .into_iter()
            .flatten()
            .map(|s| (s["t_s"].as_f64().unwrap_or(0.0), s["errors"].as_u64().unwrap_or(0)))
            .collect();
        let offset =
            |t: Option<DateTime<Utc>>| -> Option<f64> { Some((t? - load_start?).num_milliseconds() as f64 / 1000.0) };
        let fault_at = offset(fault_start);
        let fault_until = offset(fault_end);
        let failing: Vec<f64> =
            seconds.iter().filter(|(t, e)| *e > 0 && fault_at.is_none_or(|f| *t + 1.0 >= f)).map(|(t, _)| *t).collect();
        let time_to_detect_s = fault_at.and_then(|f| failing.first().map(|t| (t - f).max(0.0)));
        let time_to_recover_s = fault_at.and_then(|f| failing.last().map(|t| (t + 1.0 - f).max(0.0)));
        let failed_during_fault = match (fault_at, fault_until) {
            (Some(from), Some(until)) => {
                seconds.iter().filter(|(t, _)| *t + 1.0 >= from && *t <= until + 10.0).map(|(_, e)| e).sum()
            }
            _ => 0,
        };
        let verify_probe = journal["steady_states"]["after"]["probes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| arguments(p).starts_with("chaos probe verify"));
        let verify: Value = verify_probe
            .and_then(|p| p["output"]["stdout"].as_str())
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let verify_passed = verify
            .as_array()
            .is_some_and(|checks| !checks.is_empty() && checks.iter().all(|c| c["passed"].as_bool() == Some(true)));
        let rollbacks_succeeded =
            journal["rollbacks"].as_array().into_iter().flatten().all(|r| r["status"].as_str() == Some("succeeded"));
        let status = journal["status"].as_str().unwrap_or("unknown").to_owned();
        let deviated = journal["deviated"].as_bool().unwrap_or(true);
        let met = |p: &[ProbeResult]| !p.is_empty() && p.iter().all(|p| p.met);
        let requests = m.and_then(|m| m["requests"].as_u64()).unwrap_or(0);
        // A fault nobody was using the system through proves nothing: a load that sent nothing fails.
        let load_failure =
            run.iter().find(|a| arguments(a).starts_with("chaos load")).filter(|_| requests == 0).map(|a| {
                let output = &a["output"];
                let printed = [&output["stderr"], &output["stdout"]]
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                let tail: String = printed.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
                format!(
                    "the load sent no request (activity {}, exit {}){}",
                    a["status"].as_str().unwrap_or("?"),
                    output["status"],
                    if tail.trim().is_empty() { String::new() } else { format!(": {}", tail.trim()) }
                )
            });
        let held = status == "completed"
            && !deviated
            && met(&before)
            && met(&after)
            && verify_passed
            && rollbacks_succeeded
            && load_failure.is_none();
        Summary {
            experiment: experiment.name.clone(),
            title: experiment.title.clone(),
            run_dir: run_dir.to_owned(),
            status,
            deviated,
            took_s: journal["duration"].as_f64(),
            before,
            after,
            fault_at_s: fault_at,
            fault_for_s: fault_at.zip(fault_until).map(|(a, b)| b - a),
            time_to_detect_s,
            time_to_recover_s,
            requests,
            failed_requests: m.and_then(|m| m["errors"].as_u64()).unwrap_or(0),
            failed_during_fault,
            errors_by_kind: m.map(|m| m["errors_by_kind"].clone()).unwrap_or(Value::Null),
            verify,
            verify_passed,
            rollbacks_succeeded,
            load_failure,
            held,
        }
    }

    /// The summary as Markdown.
    pub fn markdown(&self) -> String {
        let secs = |v: Option<f64>| v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "—".into());
        let mut md = format!(
            "# {} — {}\n\n**{}** in {} (Chaos Toolkit: {}, deviated: {}; rollbacks {})\n\n",
            self.experiment,
            self.title,
            if self.held { "HELD" } else { "DID NOT HOLD" },
            secs(self.took_s),
            self.status,
            self.deviated,
            if self.rollbacks_succeeded { "done" } else { "FAILED" }
        );
        md += "| probe | before | after |\n|---|---|---|\n";
        for p in &self.before {
            let after = self.after.iter().find(|a| a.name == p.name).map(|a| if a.met { "met" } else { "NOT MET" });
            md += &format!("| {} | {} | {} |\n", p.name, if p.met { "met" } else { "NOT MET" }, after.unwrap_or("—"));
        }
        md += &format!(
            "\n| fault at | fault for | time to detect | time to recover | requests | failed | failed during the fault |\n\
             |---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} |\n",
            secs(self.fault_at_s),
            secs(self.fault_for_s),
            secs(self.time_to_detect_s),
            secs(self.time_to_recover_s),
            self.requests,
            self.failed_requests,
            self.failed_during_fault
        );
        if let Some(failure) = &self.load_failure {
            md += &format!("\n**The load failed**: {failure}\n");
        }
        md += &format!("\nErrors by kind: {}\n\nverify:\n", self.errors_by_kind);
        for check in self.verify.as_array().into_iter().flatten() {
            md += &format!(
                "- {} {}: {}\n",
                if check["passed"].as_bool() == Some(true) { "PASS" } else { "FAIL" },
                check["name"].as_str().unwrap_or_default(),
                check["detail"].as_str().unwrap_or_default()
            );
        }
        md += &format!("\nReport: {}\n", self.run_dir.display());
        md
    }
}

/// One line per experiment.
fn table(summaries: &[Summary]) -> String {
    let secs = |v: Option<f64>| v.map(|s| format!("{s:.1}")).unwrap_or_else(|| "—".into());
    let mut t = String::from(
        "| experiment | held | took (s) | detect (s) | recover (s) | requests | failed during the fault | verify |\n|---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        t += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.experiment,
            if s.held { "yes" } else { "NO" },
            secs(s.took_s),
            secs(s.time_to_detect_s),
            secs(s.time_to_recover_s),
            s.requests,
            s.failed_during_fault,
            if s.verify_passed { "clean" } else { "FAILED" }
        );
    }
    t
}
