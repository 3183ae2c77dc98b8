//! The chaos experiments, end to end: a real cluster (`cloudcafe cluster up`: three `serve` nodes,
//! their own PostgreSQL and Redis servers, the fault proxy, HAProxy), every experiment of
//! `chaos/experiments/` run by Chaos Toolkit through `cloudcafe chaos run --all` in its short form,
//! each of which must hold (hypothesis met before and after, `verify` clean, rollback done); then an
//! experiment that leaves its fault in place, which must be reported as a deviation, and rolled back
//! all the same; then `cluster down`, which must leave none of the cluster's processes running.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chaos::cluster::{alive, Cluster};

fn cloudcafe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloudcafe"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned()
}

fn summaries(dir: &Path) -> Vec<serde_json::Value> {
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .expect("the reports")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("summary.json"))
        .filter(|p| p.exists())
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("summary")).expect("summary JSON"))
        .collect();
    all.sort_by_key(|s: &serde_json::Value| s["experiment"].as_str().unwrap_or_default().to_owned());
    all
}

/// Stops the cluster even when an assertion failed halfway.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        if let Ok(cluster) = Cluster::load(&self.0) {
            let _ = cluster.down();
        }
    }
}

/// Starts a cluster in `dir` (with the AWS parts when `aws` names the emulators' endpoints).
fn cluster_up(dir: &Path, aws: Option<[&str; 3]>) -> Cluster {
    let mut up = cloudcafe();
    up.args(["cluster", "up", "--nodes", "3", "--dir"]).arg(dir);
    if let Some([dynamodb, kinesis, sqs]) = aws {
        up.args(["--dynamodb-endpoint", dynamodb, "--kinesis-endpoint", kinesis, "--sqs-endpoint", sqs]);
    }
    let up = up.output().expect("cluster up");
    assert!(up.status.success(), "cluster up: {}", String::from_utf8_lossy(&up.stderr));
    Cluster::load(dir).expect("cluster.json")
}

/// `cloudcafe chaos run <which>` in the short form, its reports under `reports`.
fn chaos_run(cluster: &Path, experiments: &Path, which: &[&str], reports: &Path, chaostoolkit: &str) -> Output {
    cloudcafe()
        .args(["chaos", "run"])
        .args(which)
        .args(["--yes", "--rate", "20", "--duration", "20s", "--cluster"])
        .arg(cluster)
        .arg("--experiments")
        .arg(experiments)
        .arg("--report-dir")
        .arg(reports)
        .env("CLOUDCAFE_CHAOSTOOLKIT", chaostoolkit)
        .env("CLOUDCAFE_CHAOS_HOLD", "5")
        .output()
        .expect("chaos run")
}

/// Every summary under `reports` held, and they are the experiments `expected` names. When one did
/// not, the balancer's log (it logs only what failed) is printed first: the cluster's directory is
/// gone once the test ends.
fn assert_held(reports: &Path, expected: &[String], run: &Output, cluster: &Path) {
    eprintln!("{}", String::from_utf8_lossy(&run.stdout));
    if !run.status.success() {
        let log = std::fs::read_to_string(cluster.join("haproxy.log")).unwrap_or_default();
        eprintln!("haproxy.log (failed requests only):\n{log}");
    }
    let done = summaries(reports);
    let names: Vec<String> = done.iter().filter_map(|s| s["experiment"].as_str().map(str::to_owned)).collect();
    assert_eq!(&names, expected, "every experiment ran");
    for summary in &done {
        let name = summary["experiment"].as_str().unwrap_or_default();
        eprintln!("{name}: took {} s", summary["took_s"]);
        assert!(summary["held"] == true, "{name} did not hold:\n{}", serde_json::to_string_pretty(summary).unwrap());
        assert!(summary["requests"].as_u64().unwrap_or(0) > 0, "{name}: the load sent nothing");
        assert!(summary["verify"].as_array().is_some_and(|c| c.len() >= 5), "{name}: verify ran every check");
    }
    assert!(run.status.success(), "chaos run: {}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn every_experiment_holds_under_load_and_an_unreverted_fault_is_a_deviation() {
    use testkit::servers;
    let (Some(_), Some(chaostoolkit)) = (servers::haproxy(), servers::chaostoolkit()) else {
        return;
    };
    let (Some(dynamodb), Some(kinesis), Some(sqs)) =
        (servers::dynamodb_endpoint(), servers::kinesis_endpoint(), servers::sqs_endpoint())
    else {
        return;
    };
    let experiments = repo().join("chaos/experiments");
    let (mut local, mut aws) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(&experiments).expect("experiments") {
        let path = entry.expect("an experiment").path();
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let needs_aws = json["tags"].as_array().unwrap().iter().any(|t| t == "needs:aws");
        if needs_aws {
            aws.push(name)
        } else {
            local.push(name)
        }
    }
    local.sort();
    aws.sort();
    assert!(local.len() >= 8 && aws.len() >= 2, "{local:?} {aws:?}");
    let work = tempfile::tempdir().expect("a temp dir");

    // The experiments that break the AWS parts, on a cluster that runs them.
    let dir = work.path().join("aws-cluster");
    let _down = Down(dir.clone());
    cluster_up(&dir, Some([&dynamodb, &kinesis, &sqs]));
    let reports = work.path().join("aws-reports");
    let names: Vec<&str> = aws.iter().map(String::as_str).collect();
    let run = chaos_run(&dir, &experiments, &names, &reports, &chaostoolkit);
    assert_held(&reports, &aws, &run, &dir);
    drop(_down);

    // Every other experiment on a cluster of its own: `--all` skips what needs the AWS parts.
    let dir = work.path().join("cluster");
    let _down = Down(dir.clone());
    let cluster = cluster_up(&dir, None);
    let reports = work.path().join("reports");
    let run = chaos_run(&dir, &experiments, &["--all"], &reports, &chaostoolkit);
    assert_held(&reports, &local, &run, &dir);

    // The cache probe sees a stale answer: a menu entry rewritten in Redis with another price (as a
    // refill racing an invalidation would leave it) is reported until it is gone.
    let redis_cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &cluster.redis_port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let cache_agrees = || {
        cloudcafe()
            .args(["chaos", "probe", "--cluster"])
            .arg(&dir)
            .args(["cache-agrees", "--within", "1s"])
            .output()
            .expect("chaos probe cache-agrees")
    };
    let agreed = cache_agrees();
    assert!(agreed.status.success(), "{}", String::from_utf8_lossy(&agreed.stdout));
    // (Every cached menu is rewritten: entries of an older cache epoch may still be there.)
    let keys = redis_cli(&["--scan", "--pattern", "*menu:items"]);
    let mut rewritten = Vec::new();
    for key in keys.lines() {
        let Ok(mut menu) = serde_json::from_str::<serde_json::Value>(&redis_cli(&["GET", key])) else { continue };
        let Some(price) = menu[0]["price_cents"].as_i64() else { continue };
        menu[0]["price_cents"] = (price + 1).into();
        assert_eq!(redis_cli(&["SET", key, &menu.to_string(), "KEEPTTL"]), "OK");
        rewritten.push(key.to_owned());
    }
    assert!(!rewritten.is_empty(), "the menu is cached: {keys:?}");
    let stale = cache_agrees();
    assert_eq!(stale.status.code(), Some(1), "a stale menu is reported: {}", String::from_utf8_lossy(&stale.stdout));
    assert!(String::from_utf8_lossy(&stale.stdout).contains("the menu"), "{}", String::from_utf8_lossy(&stale.stdout));
    for key in &rewritten {
        redis_cli(&["DEL", key]);
    }
    let agreed = cache_agrees();
    assert!(agreed.status.success(), "{}", String::from_utf8_lossy(&agreed.stdout));

    // An experiment whose method removes the orders rule and never restores it: the hypothesis after
    // the method must deviate, the run must say so (exit 6), and the rollback must still restore it.
    let broken = work.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let mut experiment: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(experiments.join("alb-routing-failure.json")).unwrap()).unwrap();
    let method = experiment["method"].as_array_mut().unwrap();
    method.retain(|a| !a["provider"]["arguments"].to_string().contains("revert"));
    std::fs::write(broken.join("unreverted-route.json"), experiment.to_string()).unwrap();
    let reports = work.path().join("broken-reports");
    let deviated = chaos_run(&dir, &broken, &["unreverted-route"], &reports, &chaostoolkit);
    assert_eq!(deviated.status.code(), Some(6), "{}", String::from_utf8_lossy(&deviated.stdout));
    let summary = &summaries(&reports)[0];
    assert_eq!(summary["deviated"], true, "{summary}");
    assert_eq!(summary["held"], false);
    let route = summary["after"].as_array().unwrap().iter().find(|p| p["name"] == "the-orders-route-is-there").unwrap();
    assert_eq!(route["met"], false, "the missing rule is what deviated: {route}");
    assert_eq!(summary["rollbacks_succeeded"], true);
    let restored = cloudcafe()
        .args(["chaos", "probe", "--cluster"])
        .arg(&dir)
        .args(["route", "--path", "/api/orders", "--status", "405", "--within", "5s"])
        .output()
        .unwrap();
    assert!(restored.status.success(), "the rollback restored the rule: {}", String::from_utf8_lossy(&restored.stdout));

    // `down` stops exactly what `up` started.
    let cluster = Cluster::load(&dir).unwrap_or(cluster);
    let mut pids: Vec<u32> = cluster.nodes.iter().map(|n| n.process.pid).collect();
    pids.extend([cluster.haproxy.pid, cluster.proxy.pid, cluster.redis.pid]);
    pids.extend(cluster.postgres.pid());
    let down = cloudcafe().args(["cluster", "down", "--dir"]).arg(&dir).output().unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let running: Vec<u32> = pids.into_iter().filter(|pid| alive(*pid)).collect();
    assert!(running.is_empty(), "still running after down: {running:?}");
}
