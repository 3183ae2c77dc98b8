//! What an experiment measures (its steady-state probes) and the load it runs under.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use chaos::cluster::Cluster;
use chaos::haproxy::RuntimeApi;
use clap::{Args, Parser, Subcommand};
use gateways::flood::arrivals::parse_duration;
use gateways::load::{HttpConnection, HttpResponse};
use gateways::verify;

use super::ClusterArgs;
use crate::cli::serve::EventSource;
use crate::cli::storage::StorageArgs;

/// A probe: prints what it measured; exit 0 when it is within tolerance, 1 when it is not.
#[derive(Subcommand)]
pub enum Probe {
    /// The load balancer sees at least --min nodes up (default: every node), waiting up to --within.
    HealthyNodes {
        #[arg(long)]
        min: Option<usize>,
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        within: Duration,
    },
    /// A GET through the load balancer answers --status, waiting up to --within.
    Route {
        #[arg(long, default_value = "/api/menu/items")]
        path: String,
        #[arg(long, default_value_t = 200)]
        status: u16,
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        within: Duration,
    },
    /// The data-level hypothesis: every acknowledged command of the load (--acks) in the journal
    /// exactly once, orders ended, no stock oversold, loyalty and captures right, every read model
    /// equal to a rebuild. Prints the checks as JSON; exit 4 if one fails.
    Verify {
        /// The load's ack ledger; when the file does not exist yet (before the load ran), only the
        /// journal-wide invariants are checked.
        #[arg(long)]
        acks: Option<PathBuf>,
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        settle: Duration,
    },
    /// The load's report: the share of requests that failed is at most --max-share, and the p99 at
    /// most --max-p99-ms (met when no load has run yet: the hypothesis before the method).
    Load {
        #[arg(long)]
        report: PathBuf,
        #[arg(long, default_value_t = 0.0)]
        max_share: f64,
        #[arg(long)]
        max_p99_ms: Option<f64>,
    },
    /// The cache answers again: over --for, at least --min-rate of the nodes' cache lookups hit.
    /// With --drive PATH, the probe itself reads PATH through the balancer meanwhile (10 a second),
    /// so that it measures the same way whether a load runs or not.
    CacheHitRate {
        #[arg(long, default_value_t = 0.5)]
        min_rate: f64,
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        r#for: Duration,
        #[arg(long)]
        drive: Option<String>,
    },
    /// What the cache answers is what the read model holds: the menu and the loyalty balances of up to
    /// --customers customers, read through every node (the cached path) and straight from the
    /// storefront, agree, waiting up to --within for an invalidation in flight.
    CacheAgrees {
        #[arg(long, default_value_t = 50)]
        customers: usize,
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        within: Duration,
    },
    /// The payment dead-letter queue holds at most --max messages (a cluster with the AWS parts).
    DeadLetters {
        #[arg(long, default_value_t = 0)]
        max: usize,
    },
    /// The outbox has published everything the journal holds: every node's `publisher_lag_events`
    /// is 0 (a cluster with the AWS parts), waiting up to --within.
    OutboxCaughtUp {
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        within: Duration,
    },
    /// No Kinesis shard lease was lost or stolen since the baseline: the first call writes
    /// --baseline (the nodes' `kinesis_consumer_lease_changes_total` for `lost` and `stolen`), later
    /// calls compare with it.
    LeasesKept {
        #[arg(long)]
        baseline: PathBuf,
    },
}

/// Runs `probe`.
pub async fn probe(args: &ClusterArgs, probe: Probe) -> anyhow::Result<ExitCode> {
    let cluster = args.load()?;
    let within = |ok: bool, what: String| {
        println!("{what}");
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    };
    match probe {
        Probe::HealthyNodes { min, within: wait } => {
            let want = min.unwrap_or(cluster.nodes.len());
            let api = RuntimeApi::new(&cluster.haproxy_socket, &cluster.routes_map);
            let deadline = Instant::now() + wait;
            loop {
                let servers = api.servers().await?;
                let up = servers.iter().filter(|s| s.status == "UP").count();
                if up >= want || Instant::now() > deadline {
                    let states: Vec<String> = servers.iter().map(|s| format!("{} {}", s.name, s.status)).collect();
                    return within(up >= want, format!("{up} of {} nodes up ({})", servers.len(), states.join(", ")));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Probe::Route { path, status, within: wait } => {
            let addr = balancer_addr(&cluster)?;
            let deadline = Instant::now() + wait;
            loop {
                let got = get(addr, &path, &cluster.admin_token).await.map(|r| r.status);
                if got == Some(status) || Instant::now() > deadline {
                    return within(got == Some(status), format!("GET {path}: {got:?} (want {status})"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Probe::DeadLetters { max } => {
            let aws = cluster.aws.as_ref().context("the cluster runs no payment queue (cluster up --sqs-endpoint)")?;
            let queues = crate::cli::dlq::QueueArgs {
                payment_queue: aws.payment_queue.clone(),
                payment_dlq: aws.payment_dlq.clone(),
                sqs_endpoint: Some(aws.sqs_endpoint.clone()),
            };
            let letters = crate::cli::cloud::DeadLetterQueue::open(&queues).await?.list(max + 10).await?;
            within(letters.len() <= max, format!("{} message(s) in {}", letters.len(), aws.payment_dlq))
        }
        Probe::OutboxCaughtUp { within: wait } => {
            cluster.aws.as_ref().context("the cluster runs no outbox (cluster up --kinesis-endpoint)")?;
            let deadline = Instant::now() + wait;
            loop {
                let lag = metric_sum(&cluster, events::metric::OUTBOX_LAG_EVENTS.name, &[]).await;
                if lag == 0.0 || Instant::now() > deadline {
                    return within(lag == 0.0, format!("outbox lag {lag} events"));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Probe::LeasesKept { baseline } => {
            let name = events::metric::CONSUMER_LEASE_CHANGES.name;
            let now = [
                metric_sum(&cluster, name, &[("change", "lost")]).await,
                metric_sum(&cluster, name, &[("change", "stolen")]).await,
            ];
            match std::fs::read_to_string(&baseline).ok().and_then(|t| serde_json::from_str::<[f64; 2]>(&t).ok()) {
                None => {
                    if let Some(dir) = baseline.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    std::fs::write(&baseline, serde_json::to_string(&now)?)?;
                    within(true, format!("baseline: {} lost, {} stolen", now[0], now[1]))
                }
                Some(before) => {
                    let (lost, stolen) = (now[0] - before[0], now[1] - before[1]);
                    within(
                        lost <= 0.0 && stolen <= 0.0,
                        format!("since the baseline: {lost} leases lost, {stolen} stolen"),
                    )
                }
            }
        }
        Probe::Verify { acks, settle } => {
            let storage = cluster_storage(&cluster);
            let acks = acks.filter(|p| p.exists());
            let from = if cluster.aws.is_some() { EventSource::Kinesis } else { EventSource::Journal };
            let checks =
                crate::cli::verify::checks(&storage, acks.as_deref(), settle, from, EventSource::Journal).await?;
            crate::cli::verify::print(&checks, true)?;
            Ok(ExitCode::from(verify::exit_code(&checks)))
        }
        Probe::Load { report, max_share, max_p99_ms } => {
            if !report.exists() {
                return within(true, format!("no load has run yet ({} does not exist)", report.display()));
            }
            let text = std::fs::read_to_string(&report).with_context(|| format!("cannot read {}", report.display()))?;
            let report: serde_json::Value = serde_json::from_str(&text)?;
            let m = &report["measurements"];
            let (requests, errors) = (m["requests"].as_f64().unwrap_or(0.0), m["errors"].as_f64().unwrap_or(0.0));
            let share = if requests > 0.0 { errors / requests } else { 0.0 };
            let p99 = m["latency"]["p99_ms"].as_f64().unwrap_or(f64::NAN);
            let ok = requests > 0.0 && share <= max_share && max_p99_ms.is_none_or(|max| p99 <= max);
            within(ok, format!("{errors} of {requests} requests failed ({:.2} %), p99 {p99:.1} ms", share * 100.0))
        }
        Probe::CacheAgrees { customers, within: wait } => {
            let settings = cluster_storage(&cluster).settings();
            let (_, storefront) =
                gateways::node::open_stores(&settings.storage).await.context("cannot open the storefront")?;
            let deadline = Instant::now() + wait;
            loop {
                let (checked, disagreements) = cache_disagreements(&cluster, storefront.as_ref(), customers).await?;
                if disagreements.is_empty() || Instant::now() >= deadline {
                    let what = if disagreements.is_empty() {
                        format!(
                            "every node answers the menu and {checked} customers' points as the read model holds them"
                        )
                    } else {
                        format!("answers that differ from the read model: {}", disagreements.join("; "))
                    };
                    return within(disagreements.is_empty(), what);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Probe::CacheHitRate { min_rate, r#for, drive } => {
            let before = cache_counts(&cluster).await;
            let deadline = Instant::now() + r#for;
            let mut failed = 0;
            while Instant::now() < deadline {
                if let Some(path) = &drive {
                    if get(balancer_addr(&cluster)?, path, &cluster.admin_token).await.is_none_or(|r| r.status != 200) {
                        failed += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let after = cache_counts(&cluster).await;
            let (hits, misses) = (after.0 - before.0, after.1 - before.1);

            let rate = if hits + misses > 0.0 { hits / (hits + misses) } else { 0.0 };
            within(
                rate >= min_rate && failed == 0,
                format!("cache hit rate {:.1} % ({hits} hits, {misses} misses; {failed} reads failed)", rate * 100.0),
            )
        }
    }
}

/// The sum over every node of a metric's series whose labels include `labels` (a node that does not
/// answer counts 0).
pub(crate) async fn metric_sum(cluster: &Cluster, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for node in &cluster.nodes {
        let Some(response) = get(node.listen, "/metrics", &cluster.admin_token).await else { continue };
        sum += prometheus_sum(&String::from_utf8_lossy(&response.body), name, labels);
    }
    sum
}

/// The sum of a metric's series in a Prometheus text exposition whose labels include `labels`.
fn prometheus_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The storage flags that name the cluster's journal, reached directly (a probe must not go through
/// the fault it is judging).
fn cluster_storage(cluster: &Cluster) -> StorageArgs {
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        storage: StorageArgs,
    }
    let mut flags = vec!["verify", "--journal", &cluster.journal_direct, "--pg-schema", &cluster.pg_schema];
    if let Some(aws) = &cluster.aws {
        flags.extend(["--dynamodb-env", &aws.dynamodb_env, "--dynamodb-endpoint", &aws.dynamodb_endpoint]);
    }
    Flags::parse_from(flags).storage
}

/// `GET path` on `addr` with the cluster's admin token, with a 3 s budget.
async fn get(addr: SocketAddr, path: &str, token: &str) -> Option<HttpResponse> {
    let mut connection = HttpConnection::with_bearer(addr, token);
    tokio::time::timeout(Duration::from_secs(3), connection.request("GET", path, &[], b"")).await.ok()?.ok()
}

fn balancer_addr(cluster: &Cluster) -> anyhow::Result<SocketAddr> {
    cluster.balancer_url.trim_start_matches("http://").parse().context("the balancer's URL is not host:port")
}

/// Where a node's answer (through its cache) differs from the storefront: the menu, and the points
/// and tier of the first `customers` loyalty accounts. Answers how many accounts were compared, and
/// what differs (empty when everything agrees).
async fn cache_disagreements(
    cluster: &Cluster,
    storefront: &dyn projections::read_models::storefront::StorefrontQueries,
    customers: usize,
) -> anyhow::Result<(usize, Vec<String>)> {
    type MenuRow = (String, String, String, i64, bool);
    let mut menu: Vec<MenuRow> = storefront
        .menu()
        .await?
        .into_iter()
        .map(|i| (i.item_id, i.name, i.category, i.price_cents, i.retired))
        .collect();
    menu.sort();
    let mut balances = Vec::new();
    for customer in storefront.loyalty_customers(None, customers).await? {
        let balance = storefront.loyalty(&customer).await?;
        balances.push((customer, balance.map(|b| (b.points.max(0), b.tier))));
    }
    let mut out = Vec::new();
    for node in &cluster.nodes {
        let name = &node.name;
        let Some(answer) = get(node.listen, "/api/menu/items", &cluster.admin_token).await.filter(|r| r.status == 200)
        else {
            out.push(format!("{name}: the menu did not answer 200"));
            continue;
        };
        let json: serde_json::Value = serde_json::from_slice(&answer.body).context("the menu is not JSON")?;
        let mut served: Vec<MenuRow> = json["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                let text = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
                (
                    text("item_id"),
                    text("name"),
                    text("category"),
                    i["price_cents"].as_i64().unwrap_or(-1),
                    i["retired"] == true,
                )
            })
            .collect();
        served.sort();
        if served != menu {
            out.push(format!(
                "{name}: the menu ({} items) differs from the read model's ({} items)",
                served.len(),
                menu.len()
            ));
        }
        for (customer, expected) in &balances {
            let Some((points, tier)) = expected else { continue };
            let answer = get(node.listen, &format!("/api/loyalty/{customer}"), &cluster.admin_token)
                .await
                .filter(|r| r.status == 200);
            let json: serde_json::Value =
                answer.and_then(|r| serde_json::from_slice(&r.body).ok()).unwrap_or(serde_json::Value::Null);
            if json["points"].as_i64() != Some(*points) || json["tier"].as_str() != Some(tier.as_str()) {
                out.push(format!(
                    "{name}: {customer} answered {} points ({}), the read model holds {points} ({tier})",
                    json["points"], json["tier"]
                ));
            }
        }
    }
    Ok((balances.len(), out))
}

/// The cache hits and misses every node has counted so far.
async fn cache_counts(cluster: &Cluster) -> (f64, f64) {
    (
        metric_sum(cluster, events::metric::CACHE_HITS.name, &[]).await,
        metric_sum(cluster, events::metric::CACHE_MISSES.name, &[]).await,
    )
}

/// The flags of `cloudcafe chaos load`.
#[derive(Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(long, default_value = "morning-rush")]
    pub scenario: String,
    #[arg(long, default_value = "40")]
    pub rate: String,
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// Where the flood writes report.json and acks.jsonl.
    #[arg(long)]
    pub report_dir: PathBuf,
}

/// Runs a flood through the cluster's load balancer (`cloudcafe flood --target`), without its own
/// verify: the experiment's hypothesis verifies after the rollback.
pub async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let cluster = args.cluster.load()?;
    let program = std::env::current_exe()?;
    let mut flood = std::process::Command::new(program);
    flood
        .args(["flood", &args.scenario, "--target", &cluster.balancer_url, "--rate", &args.rate, "--duration"])
        .arg(&args.duration)
        .arg("--report-dir")
        .arg(&args.report_dir)
        .args(["--no-verify", "--quiet", "--settle", "30s"])
        .env("CLOUDCAFE_TOKEN", &cluster.admin_token);
    let status = tokio::task::spawn_blocking(move || flood.status()).await?.context("cannot start the flood")?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {
    use super::prometheus_sum;

    #[test]
    fn a_metric_is_summed_over_the_series_whose_labels_match() {
        let text = "# TYPE kinesis_consumer_lease_changes_total counter\n\
                    kinesis_consumer_lease_changes_total{application=\"a\",change=\"lost\"} 2\n\
                    kinesis_consumer_lease_changes_total{application=\"b\",change=\"lost\"} 1\n\
                    kinesis_consumer_lease_changes_total{application=\"a\",change=\"taken\"} 7\n\
                    kinesis_consumer_lease_changes_total_other 100\n\
                    cache_hits_total 5\n";
        assert_eq!(prometheus_sum(text, "kinesis_consumer_lease_changes_total", &[("change", "lost")]), 3.0);
        assert_eq!(prometheus_sum(text, "kinesis_consumer_lease_changes_total", &[]), 10.0);
        assert_eq!(prometheus_sum(text, "cache_hits_total", &[]), 5.0);
    }
}
