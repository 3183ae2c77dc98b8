//! Every stress scenario, in a short form, through the `cloudcafe flood` binary: each must end with
//! its invariants and `verify` holding (exit 0) and write its report; one is driven over HTTP into a
//! `serve` process on PostgreSQL; a breached threshold exits 5. No test asserts a timing.

use std::path::Path;
use std::process::Command;

use chaos::process::{free_loopback_addr, Node};
use serde_json::Value;
use testkit::servers;

/// Runs `cloudcafe flood <args>` with its report in `dir`; returns the exit code and the report.
fn flood(dir: &Path, args: &[&str]) -> (i32, Value) {
    let report_dir = dir.join("report");
    let output = Command::new(env!("CARGO_BIN_EXE_cloudcafe"))
        .arg("flood")
        .args(args)
        .args(["--quiet", "--settle", "90s", "--report-dir"])
        .arg(&report_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run cloudcafe flood");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report = std::fs::read(report_dir.join("report.json"))
        .map(|b| serde_json::from_slice(&b).expect("report.json is JSON"))
        .unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), report)
}

/// The checks of a report that failed, by name, with their detail.
fn failed_checks(report: &Value) -> Vec<String> {
    report["invariants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["passed"] != Value::Bool(true))
        .map(|c| format!("{}: {}", c["name"], c["detail"]))
        .collect()
}

/// A scenario in a short form on the embedded journal: it passes, and its report holds what the
/// scenario is about.
fn short_form(scenario: &str, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = vec![scenario, "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, report) = flood(dir.path(), &args);
    assert_eq!(failed_checks(&report), Vec::<String>::new(), "{scenario}: every invariant holds");
    assert_eq!(code, 0, "{scenario} passes");
    assert_eq!(report["scenario"], scenario);
    assert_eq!(report["driver"], "actors");
    assert!(report["measurements"]["requests"].as_u64().unwrap() > 0, "{scenario} sent requests");
    let names: Vec<&str> =
        report["invariants"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap_or_default()).collect();
    for expected in [
        "acknowledged commands are in the journal exactly once",
        "every order ended paid or cancelled",
        "every read model equals a rebuild",
    ] {
        assert!(names.iter().any(|n| n.starts_with(expected)), "{scenario}: `{expected}` was checked: {names:?}");
    }
    assert!(std::fs::metadata(dir.path().join("report/report.html")).unwrap().len() > 1000);
    report
}

#[test]
fn morning_rush_in_a_short_form() {
    let report = short_form("morning-rush", &["--scale", "0.004", "--duration", "3s"]);
    // Bulk orders (one in five) went through with the rest.
    assert!(report["measurements"]["operations"]["place_order"]["requests"].as_u64().unwrap() >= 20);
    assert!(report["measurements"]["figures"]["events_committed"]["value"].as_f64().unwrap() > 0.0);
}

#[test]
fn restock_storm_in_a_short_form() {
    let report = short_form("restock-storm", &["--scale", "0.0001", "--rate", "40", "--duration", "3s"]);
    assert!(report["measurements"]["figures"]["lag_drain_seconds"].is_object(), "the drain time is reported");
    let series = report["measurements"]["series"].as_object().unwrap();
    assert!(series.keys().any(|k| k.starts_with("lag_events:")), "the lag is sampled over time: {series:?}");
}

#[test]
fn loyalty_batch_in_a_short_form() {
    let report = short_form("loyalty-batch", &["--scale", "0.001", "--duration", "3s"]);
    let figures = &report["measurements"]["figures"];
    assert_eq!(figures["batch_customers"]["value"].as_f64().unwrap(), 500.0, "every imported account");
    assert!(figures["batch_tiers_changed"]["value"].as_f64().unwrap() > 0.0, "imported tiers lagged");
    let names: Vec<&str> =
        report["invariants"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap_or_default()).collect();
    assert!(names.contains(&"every loyalty tier matches its points"), "{names:?}");
}

#[test]
fn menu_sync_in_a_short_form() {
    let report = short_form("menu-sync", &["--scale", "0.005", "--rate", "40", "--duration", "3s"]);
    let ops = &report["measurements"]["operations"];
    assert!(ops["publish_item"]["requests"].as_u64().unwrap() >= 50);
    assert!(
        ops["change_price"]["requests"].as_u64().unwrap_or(0) + ops["retire_item"]["requests"].as_u64().unwrap_or(0)
            > 0
    );
}

#[test]
fn cold_start_avalanche_in_a_short_form() {
    let report = short_form("cold-start-avalanche", &["--scale", "0.005"]);
    let ops = &report["measurements"]["operations"];
    assert_eq!(ops["loyalty_balance"]["requests"].as_u64(), Some(50), "every checkout read a cold account");
    assert!(report["measurements"]["figures"]["activations"]["value"].as_f64().unwrap() >= 50.0);
}

#[test]
fn query_storm_in_a_short_form() {
    let report = short_form("query-storm", &["--scale", "0.01", "--duration", "3s"]);
    assert!(report["measurements"]["operations"]["customer_orders"]["requests"].as_u64().unwrap() > 0);
}

#[test]
fn a_breached_threshold_fails_the_flood() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, report) = flood(
        dir.path(),
        &[
            "morning-rush",
            "--data-dir",
            data.to_str().unwrap(),
            "--scale",
            "0.002",
            "--duration",
            "1s",
            "--threshold",
            "p99<1us",
        ],
    );
    assert_eq!(code, 5, "a breached threshold exits 5");
    assert_eq!(report["passed"], false);
    assert_eq!(report["thresholds"][0]["passed"], false);
}

#[test]
fn list_names_every_scenario() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudcafe")).args(["flood", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for s in ["morning-rush", "restock-storm", "loyalty-batch", "menu-sync", "cold-start-avalanche", "query-storm"] {
        assert!(text.contains(s), "{s} listed");
    }
}

/// The same scenario driven over HTTP into a running node on PostgreSQL, verified on its journal.
#[test]
fn a_flood_drives_a_serve_process_over_http() {
    let Some(url) = servers::postgres_url() else { return };
    let schema = testkit::servers::fresh_schema("flood_http");
    let addr = free_loopback_addr();
    let token = crate::security::admin_token();
    let token = token.as_str();
    let args: Vec<String> = [
        "serve",
        "--listen",
        &addr.to_string(),
        "--workers",
        "2",
        "--journal",
        &url,
        "--pg-schema",
        &schema,
        "--no-seed",
        "--auth-key-file",
        crate::security::key_file(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut node = Node::new(env!("CARGO_BIN_EXE_cloudcafe"), args, addr);
    node.start(std::time::Duration::from_secs(60)).expect("serve starts");
    let dir = tempfile::tempdir().unwrap();
    let target = format!("http://{addr}");
    let (code, report) = flood(
        dir.path(),
        &[
            "menu-sync",
            "--target",
            &target,
            "--token",
            token,
            "--journal",
            &url,
            "--pg-schema",
            &schema,
            "--scale",
            "0.005",
            "--rate",
            "40",
            "--duration",
            "3s",
        ],
    );
    assert_eq!(failed_checks(&report), Vec::<String>::new(), "every invariant holds over HTTP");
    assert_eq!(code, 0);
    assert_eq!(report["driver"], "http");
    assert_eq!(report["targets"][0], target.as_str());
    let acks = std::fs::read_to_string(dir.path().join("report/acks.jsonl")).unwrap();
    assert!(acks.lines().count() >= 50, "the ack ledger holds every acknowledged command");
}

/// `POST /admin/stress/{scenario}` starts a flood inside the node; `GET /admin/stress/{run_id}`
/// shows it running, then its report with the invariants held.
#[actix_web::test]
async fn a_stress_run_started_over_http_reports_its_invariants() {
    use actix_web::test;
    use gateways::http::{ApiSettings, ApiState};
    use gateways::node::{Node, NodeSettings};

    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(NodeSettings::embedded(dir.path())).await.unwrap();
    let state = ApiState::new(&node, gateways::telemetry::metrics_handle(), &ApiSettings::default());
    let app = test::init_service(gateways::app(state)).await;

    let start = |scenario: &str, body: Value| {
        test::TestRequest::post().uri(&format!("/admin/stress/{scenario}")).set_json(body).to_request()
    };
    let refused = test::call_service(&app, start("no-such-scenario", serde_json::json!({"duration_seconds": 1}))).await;
    assert_eq!(refused.status(), 404);
    let too_long = test::call_service(&app, start("morning-rush", serde_json::json!({"duration_seconds": 0}))).await;
    assert_eq!(too_long.status(), 422);

    let started = test::call_service(
        &app,
        start("morning-rush", serde_json::json!({"duration_seconds": 2, "rate": 10, "scale": 0.002})),
    )
    .await;
    assert_eq!(started.status(), 202);
    let location = started.headers().get("location").unwrap().to_str().unwrap().to_owned();
    let run: Value = test::read_body_json(started).await;
    assert_eq!(run["status"], "running");

    let mut shown = Value::Null;
    for _ in 0..1200 {
        shown = test::call_and_read_body_json(&app, test::TestRequest::get().uri(&location).to_request()).await;
        if shown["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(shown["status"], "passed", "{shown}");
    assert!(shown["live"]["completed"].as_u64().unwrap() >= 20);
    assert_eq!(failed_checks(&shown["report"]), Vec::<String>::new());
    assert!(shown["report"]["invariants"].as_array().unwrap().len() >= 7);
}
