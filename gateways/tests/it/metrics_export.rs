//! The metric catalog against a running node, and the two CloudWatch exports: a `cloudcafe serve`
//! process takes orders over HTTP and runs a short stress scenario; then its `/metrics` must name
//! only catalog metrics and every metric of the parts it runs, its EMF lines must follow the
//! format's rules and add up to what was done, and (on moto) `GetMetricData` must return the sums.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chaos::process::{free_loopback_addr, Node};
use events::metric::{self, Emitter, Kind};
use serde_json::Value;
use testkit::names::short_id;
use testkit::wait_until;

use crate::security::{admin_bearer, admin_client, key_file};

/// Every metric family a Prometheus text names, with the base name of a histogram's series.
pub fn families(prometheus: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in prometheus.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                metric::find(base).filter(|m| m.kind == Kind::Histogram).map(|_| base)
            })
            .unwrap_or(name);
        out.insert(base.to_owned());
    }
    out
}

/// Checks both ways: everything `/metrics` shows is declared, and every declared metric of
/// `emitters` was shown.
pub fn check_catalog(prometheus: &str, emitters: &[Emitter]) {
    let shown = families(prometheus);
    let undeclared: Vec<&String> = shown.iter().filter(|n| metric::find(n).is_none()).collect();
    assert!(undeclared.is_empty(), "metrics missing from the catalog (events/src/metric.rs): {undeclared:?}");
    let missing: Vec<&str> = metric::CATALOG
        .iter()
        .filter(|m| emitters.contains(&m.emitter) && !shown.contains(m.name))
        .map(|m| m.name)
        .collect();
    assert!(missing.is_empty(), "catalog metrics of {emitters:?} the node never emitted: {missing:?}");
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let bearer = admin_bearer();
    let auth = [("Authorization", bearer.as_str())];
    let mut conn = admin_client(addr);
    let r = conn.request(method, path, &auth, body.as_bytes()).await.expect("the node answers");
    (r.status, r.body)
}

/// Places `n` orders over HTTP (the seeded demo menu and stock); answers how many were placed.
async fn place_orders(addr: SocketAddr, n: usize) -> usize {
    let mut placed = 0;
    for i in 0..n {
        let body =
            format!(r#"{{"customer_id":"c-{i}","store_id":"store-1","items":[{{"item_id":"latte","quantity":1}}]}}"#);
        let (status, body) = call(addr, "POST", "/api/orders", &body).await;
        assert!(status == 201 || status == 422, "{status} {}", String::from_utf8_lossy(&body));
        placed += usize::from(status == 201);
    }
    placed
}

/// Runs a short morning rush inside the node and waits until it has passed.
async fn short_flood(addr: SocketAddr) {
    let (status, body) =
        call(addr, "POST", "/admin/stress/morning-rush", r#"{"duration_seconds": 2, "rate": 20, "scale": 0.002}"#)
            .await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let run: Value = serde_json::from_slice(&body).unwrap();
    let location = format!("/admin/stress/{}", run["run_id"].as_str().unwrap());
    let mut shown = Value::Null;
    for _ in 0..1200 {
        shown = serde_json::from_slice(&call(addr, "GET", &location, "").await.1).unwrap();
        if shown["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown["status"], "passed", "{shown}");
}

fn serve_args(addr: SocketAddr, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--listen",
        &addr.to_string(),
        "--workers",
        "1",
        "--data-dir",
        dir.to_str().unwrap(),
        "--auth-key-file",
        key_file(),
        "--metrics-sample-ms",
        "200",
        "--cloudwatch-interval-secs",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The EMF documents of a file, each checked against the format's rules.
fn emf_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let doc: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let aws = doc["_aws"].as_object().unwrap_or_else(|| panic!("no _aws object: {line}"));
        assert!(aws["Timestamp"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "Timestamp in ms: {line}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
        assert!(!directives.is_empty());
        for directive in directives {
            assert!(directive["Namespace"].as_str().is_some_and(|n| !n.is_empty() && n.len() <= 255));
            for set in directive["Dimensions"].as_array().expect("Dimensions") {
                let set = set.as_array().expect("a dimension set is an array");
                assert!(!set.is_empty() && set.len() <= 30, "1 to 30 dimensions: {line}");
                for d in set {
                    let value = doc[d.as_str().unwrap()].as_str();
                    assert!(
                        value.is_some_and(|v| !v.is_empty() && v.len() <= 1024),
                        "dimension {d} is a string member: {line}"
                    );
                }
            }
            let metrics = directive["Metrics"].as_array().expect("Metrics");
            assert!(metrics.len() <= 100, "at most 100 metrics per directive");
            for m in metrics {
                let name = m["Name"].as_str().expect("Name");
                let unit = m["Unit"].as_str().expect("Unit");
                assert!(
                    ["Count", "Seconds", "Milliseconds", "Percent", "Count/Second", "Bytes", "None"].contains(&unit),
                    "{unit}"
                );
                match &doc[name] {
                    Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite)),
                    Value::Object(h) => {
                        let values = h["Values"].as_array().unwrap();
                        assert!(!values.is_empty() && values.len() <= 100, "1 to 100 values");
                        assert_eq!(values.len(), h["Counts"].as_array().unwrap().len());
                    }
                    other => panic!("{name} is {other}"),
                }
            }
        }
        out.push(doc);
    }
    out
}

/// The sum over the EMF documents of one histogram's count, where the dimensions match.
fn emf_count(docs: &[Value], metric: &str, dimensions: &[(&str, &str)]) -> u64 {
    docs.iter()
        .filter(|d| dimensions.iter().all(|(k, v)| d[*k] == *v))
        .filter_map(|d| d[metric]["Count"].as_u64())
        .sum()
}

/// A node with the EMF export: its `/metrics` against the catalog after orders and a flood, then
/// its EMF lines against the format's rules and against the orders it took.
#[actix_web::test]
async fn the_catalog_names_what_a_node_emits_and_its_emf_lines_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let emf = dir.path().join("metrics.emf");
    let env = format!("test{}", short_id());
    let addr = free_loopback_addr();
    let extra = ["--cloudwatch", "emf", "--cloudwatch-emf-file", emf.to_str().unwrap(), "--environment", &env];
    let mut node = Node::new(env!("CARGO_BIN_EXE_cloudcafe"), serve_args(addr, &dir.path().join("data"), &extra), addr);
    node.start(Duration::from_secs(60)).expect("the node starts");

    let placed = place_orders(addr, 20).await;
    assert!(placed > 0);
    short_flood(addr).await;

    let (status, text) = call(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    check_catalog(&String::from_utf8(text).unwrap(), &[Emitter::Node, Emitter::Stress, Emitter::Export]);

    // Every order placed over HTTP is one OrderCreationDuration observation in the lines, and the
    // flood's marker went up and came down again.
    let counted =
        |docs: &[Value]| emf_count(docs, "OrderCreationDuration", &[("Environment", &env), ("Outcome", "placed")]);
    let marker = |docs: &[Value]| -> BTreeMap<u64, f64> {
        docs.iter()
            .filter(|d| d["Scenario"] == "morning-rush")
            .filter_map(|d| Some((d["_aws"]["Timestamp"].as_u64()?, d["ScenarioRunning"].as_f64()?)))
            .collect()
    };
    wait_until("the EMF lines count every order and the flood's end", Duration::from_secs(20), || async {
        let docs = emf_documents(&emf);
        counted(&docs) >= placed as u64 && marker(&docs).values().last() == Some(&0.0)
    })
    .await;
    let docs = emf_documents(&emf);
    assert_eq!(counted(&docs), placed as u64);
    assert!(marker(&docs).values().any(|v| *v == 1.0), "the scenario marked running: {:?}", marker(&docs));
    let namespaces: BTreeSet<&str> =
        docs.iter().map(|d| d["_aws"]["CloudWatchMetrics"][0]["Namespace"].as_str().unwrap()).collect();
    for ns in
        ["CloudCafe/OrderService", "CloudCafe/Actors", "CloudCafe/Journal", "CloudCafe/Projections", "CloudCafe/Stress"]
    {
        assert!(namespaces.contains(ns), "{ns} in {namespaces:?}");
    }
    node.kill().unwrap();
}

/// A node with the `PutMetricData` export to moto: after orders, `GetMetricData` returns how many
/// were placed, and the HTTP requests' sum.
#[cfg(feature = "cloud")]
#[actix_web::test]
async fn put_metric_data_reaches_cloudwatch_and_get_metric_data_sums_it() {
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

    let Some(endpoint) = testkit::servers::cloudwatch_endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = format!("test{}", short_id());
    let addr = free_loopback_addr();
    let extra = ["--cloudwatch", "api", "--cloudwatch-endpoint", &endpoint, "--environment", &env];
    let mut node = Node::new(env!("CARGO_BIN_EXE_cloudcafe"), serve_args(addr, &dir.path().join("data"), &extra), addr);
    node.start(Duration::from_secs(60)).expect("the node starts");
    let started = std::time::SystemTime::now() - Duration::from_secs(120);
    let placed = place_orders(addr, 25).await as f64;

    let config = projections::aws::AwsSettings::new(Some(endpoint.clone())).sdk_config().await;
    let client = aws_sdk_cloudwatch::Client::new(&config);
    let query = |id: &str, namespace: &str, name: &str, stat: &str, dims: &[(&str, &str)]| {
        let metric = Metric::builder()
            .namespace(namespace)
            .metric_name(name)
            .set_dimensions(Some(dims.iter().map(|(k, v)| Dimension::builder().name(*k).value(*v).build()).collect()))
            .build();
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(MetricStat::builder().metric(metric).period(3600).stat(stat).build())
            .build()
    };
    let sums = || async {
        let end = std::time::SystemTime::now() + Duration::from_secs(120);
        let out = client
            .get_metric_data()
            .metric_data_queries(query(
                "orders",
                "CloudCafe/OrderService",
                "OrderCreationDuration",
                "SampleCount",
                &[("Environment", &env), ("Outcome", "placed")],
            ))
            .metric_data_queries(query(
                "requests",
                "CloudCafe/Gateway",
                "Requests",
                "Sum",
                &[("Environment", &env), ("Route", "/api/orders"), ("StatusClass", "2xx")],
            ))
            .start_time(aws_sdk_cloudwatch::primitives::DateTime::from(started))
            .end_time(aws_sdk_cloudwatch::primitives::DateTime::from(end))
            .send()
            .await
            .expect("GetMetricData");
        let total = |id: &str| -> f64 {
            out.metric_data_results().iter().filter(|r| r.id() == Some(id)).flat_map(|r| r.values().iter()).sum()
        };
        (total("orders"), total("requests"))
    };
    wait_until("CloudWatch holds every order placed", Duration::from_secs(30), || async { sums().await.0 >= placed })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (orders, requests) = sums().await;
    assert_eq!(orders, placed, "one OrderCreationDuration observation per order placed");
    assert_eq!(requests, placed, "one 2xx request per order placed");

    let (_, text) = call(addr, "GET", "/metrics", "").await;
    let text = String::from_utf8(text).unwrap();
    check_catalog(&text, &[Emitter::Node, Emitter::Export, Emitter::PutMetricData]);
    assert!(
        text.lines().any(|l| l.starts_with("cloudwatch_datums_total{outcome=\"sent\"}") && !l.ends_with(" 0")),
        "datums counted as sent"
    );
    node.kill().unwrap();
}
