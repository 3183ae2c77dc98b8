//! The CloudWatch dashboards and alarms generated from the metric catalog: the committed files
//! (`deploy/cloudwatch/`) are what the code renders, every metric the rendered JSON names is in the
//! catalog (or its list of AWS metrics) with dimensions it has, the alarms the issue asks for are
//! there with their thresholds, and `cloudcafe dashboard apply` puts them into CloudWatch (moto;
//! feature `cloud`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use events::metric::{CATALOG, ENVIRONMENT_DIMENSION, EXTERNAL};
use gateways::cloudwatch::dashboard::Deployment;
use gateways::cloudwatch::render;
use serde_json::Value;

/// Every file under `dir` but the README, by path relative to `dir`.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n != "README.md") {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// The default environment rendered into a fresh directory.
fn rendered() -> (tempfile::TempDir, BTreeMap<PathBuf, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let written = render::write_all(&Deployment::for_environment("prod"), dir.path()).unwrap();
    let files = files_under(dir.path());
    assert_eq!(written.len(), files.len());
    (dir, files)
}

fn json(files: &BTreeMap<PathBuf, Vec<u8>>, path: &str) -> Value {
    serde_json::from_slice(&files[Path::new(path)]).unwrap()
}

#[test]
fn the_committed_files_are_what_the_code_renders() {
    let (_dir, fresh) = rendered();
    let committed = files_under(&testkit::repo_root().join("deploy/cloudwatch"));
    let paths: BTreeSet<&PathBuf> = fresh.keys().chain(committed.keys()).collect();
    let mut differing = Vec::new();
    for path in paths {
        match (fresh.get(path), committed.get(path)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => differing.push(format!("{} differs", path.display())),
            (Some(_), None) => differing.push(format!("{} is not committed", path.display())),
            (None, Some(_)) => differing.push(format!("{} is committed but no longer rendered", path.display())),
            (None, None) => unreachable!(),
        }
    }
    assert!(
        differing.is_empty(),
        "deploy/cloudwatch/ is not what the code renders:\n  {}\nRegenerate with `cargo run -p gateways --bin cloudcafe -- \
         dashboard render` and commit the result.",
        differing.join("\n  ")
    );
    assert!(fresh.keys().any(|p| p.starts_with("dashboards")), "no dashboard rendered");
}

/// A metric as the rendered JSON names it: namespace, name, the dimension names it selects by, and
/// the value of `Environment` if it names one.
#[derive(Debug)]
struct Named {
    namespace: String,
    name: String,
    dimensions: Vec<String>,
    environment: Option<String>,
    place: String,
}

/// The text between `start` and the next `end` after it, for each occurrence of `start`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(start) {
        rest = &rest[i + start.len()..];
        let j = rest.find(end).expect("a closed string");
        out.push(&rest[..j]);
        rest = &rest[j..];
    }
    out
}

/// The metrics a dashboard `SEARCH(…)` or an alarm's Metrics Insights `SELECT …` names.
fn named_in_expression(expression: &str, place: &str) -> Vec<Named> {
    let mut out = Vec::new();
    // SEARCH('{"Namespace",Dim1,Dim2} MetricName="Name" Dim1="v" …', 'Stat', 60)
    for search in between(expression, "SEARCH('", "'") {
        let schema = between(search, "{", "}")[0];
        let mut parts = schema.split(',');
        let namespace = parts.next().unwrap().trim_matches('"').to_owned();
        let dimensions: Vec<String> = parts.map(str::to_owned).collect();
        let name = between(search, "MetricName=\"", "\"")[0].to_owned();
        let environment = between(search, "Environment=\"", "\"").first().map(|e| (*e).to_owned());
        out.push(Named { namespace, name, dimensions, environment, place: place.to_owned() });
    }
    // SELECT SUM("Name") FROM SCHEMA("Namespace", Dim1, Dim2) WHERE Dim1 = 'v' …
    if let Some(select) = expression.strip_prefix("SELECT ") {
        let name = between(select, "(\"", "\"")[0].to_owned();
        let schema = between(select, "SCHEMA(", ")")[0];
        let mut parts = schema.split(", ");
        let namespace = parts.next().unwrap().trim_matches('"').to_owned();
        let dimensions: Vec<String> = parts.map(str::to_owned).collect();
        let environment = between(select, "Environment = '", "'").first().map(|e| (*e).to_owned());
        out.push(Named { namespace, name, dimensions, environment, place: place.to_owned() });
    }
    out
}

fn named_by_api_metric(m: &Value, place: &str) -> Named {
    let dims = m["Dimensions"].as_array().cloned().unwrap_or_default();
    Named {
        namespace: m["Namespace"].as_str().unwrap().to_owned(),
        name: m["MetricName"].as_str().unwrap().to_owned(),
        dimensions: dims.iter().map(|d| d["Name"].as_str().unwrap().to_owned()).collect(),
        environment: dims
            .iter()
            .find(|d| d["Name"] == ENVIRONMENT_DIMENSION)
            .map(|d| d["Value"].as_str().unwrap().to_owned()),
        place: place.to_owned(),
    }
}

/// Every metric the rendered dashboards and alarms name.
fn everything_named(files: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<Named> {
    let mut out = Vec::new();
    for (path, bytes) in files.iter().filter(|(p, _)| p.starts_with("dashboards")) {
        let body: Value = serde_json::from_slice(bytes).unwrap();
        for widget in body["widgets"].as_array().unwrap().iter().filter(|w| w["type"] == "metric") {
            let place = format!("{} / {}", path.display(), widget["properties"]["title"]);
            let metrics = widget["properties"]["metrics"].as_array().unwrap();
            let drawn = metrics.iter().filter(|m| m.as_array().unwrap().last().unwrap()["visible"] != false).count();
            assert!(drawn > 0, "{place}: a widget draws at least one line");
            for entry in metrics {
                let entry = entry.as_array().unwrap();
                if let Some(namespace) = entry[0].as_str() {
                    // [namespace, name, dim, value, …, {options}]
                    let pairs = &entry[2..entry.len() - 1];
                    assert_eq!(pairs.len() % 2, 0, "{place}: dimensions come in pairs");
                    let dims: Vec<(&str, &str)> =
                        pairs.chunks(2).map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap())).collect();
                    out.push(Named {
                        namespace: namespace.to_owned(),
                        name: entry[1].as_str().unwrap().to_owned(),
                        dimensions: dims.iter().map(|(n, _)| (*n).to_owned()).collect(),
                        environment: dims
                            .iter()
                            .find(|(n, _)| *n == ENVIRONMENT_DIMENSION)
                            .map(|(_, v)| (*v).to_owned()),
                        place: place.clone(),
                    });
                } else {
                    out.extend(named_in_expression(entry[0]["expression"].as_str().unwrap(), &place));
                }
            }
        }
    }
    for file in [render::ALARMS_FILE] {
        for alarm in json(files, file).as_array().unwrap() {
            let place = format!("{file} / {}", alarm["AlarmName"]);
            if alarm.get("MetricName").is_some() {
                out.push(named_by_api_metric(alarm, &place));
            }
            for q in alarm.get("Metrics").and_then(Value::as_array).into_iter().flatten() {
                if let Some(stat) = q.get("MetricStat") {
                    out.push(named_by_api_metric(&stat["Metric"], &place));
                } else {
                    out.extend(named_in_expression(q["Expression"].as_str().unwrap(), &place));
                }
            }
        }
    }
    out
}

#[test]
fn every_metric_the_rendered_json_names_is_in_the_catalog_with_its_dimensions() {
    let (_dir, files) = rendered();
    let named = everything_named(&files);
    let mut used_external = BTreeSet::new();
    let mut used_custom = BTreeSet::new();
    for n in &named {
        let what = format!("{}: {} {}", n.place, n.namespace, n.name);
        if let Some(m) = CATALOG.iter().find(|m| m.namespace == n.namespace && m.cloudwatch_name == n.name) {
            assert_eq!(
                n.environment.as_deref(),
                Some("prod"),
                "{what}: a custom metric is selected by its environment"
            );
            for dim in &n.dimensions {
                assert!(
                    dim == ENVIRONMENT_DIMENSION || m.dimensions.iter().any(|(_, d)| d == dim),
                    "{what}: the catalog gives it no dimension {dim}"
                );
            }
            used_custom.insert(m.name);
        } else if let Some(m) = EXTERNAL.iter().find(|m| m.namespace == n.namespace && m.name == n.name) {
            for dim in &n.dimensions {
                assert!(m.dimensions.contains(&dim.as_str()), "{what}: AWS publishes it without {dim}");
            }
            used_external.insert(m.name);
        } else {
            panic!("{what} is neither in the catalog nor in its list of AWS metrics");
        }
    }
    // The catalog lists AWS metrics because the dashboards and alarms read them: every one is read.
    let unused: Vec<&str> = EXTERNAL.iter().map(|m| m.name).filter(|n| !used_external.contains(n)).collect();
    assert!(unused.is_empty(), "AWS metrics in the catalog that no dashboard or alarm reads: {unused:?}");
    assert!(used_custom.len() >= 30, "only {} catalog metrics on the dashboards", used_custom.len());
}

#[test]
fn the_alarms_of_the_issue_are_there_with_their_thresholds() {
    let (_dir, files) = rendered();
    let alarms = json(&files, render::ALARMS_FILE);
    let alarms = alarms.as_array().unwrap();
    // Name, threshold, comparison, minutes the condition must hold.
    let wanted = [
        ("AlbTarget5xxRate", 5.0, "GreaterThanThreshold", 5),
        ("DatabaseConnections", 800.0, "GreaterThanThreshold", 10),
        ("DynamoDbThrottles", 100.0, "GreaterThanThreshold", 5),
        ("ErrorRate", 2.0, "GreaterThanThreshold", 5),
        ("RunningTasks", 0.0, "GreaterThanThreshold", 3),
        ("CacheHitRate", 70.0, "LessThanThreshold", 15),
        ("ProjectionLag", 60.0, "GreaterThanThreshold", 5),
        ("PaymentDlqNotEmpty", 0.0, "GreaterThanThreshold", 1),
        ("OutboxLagGrowing", 0.0, "GreaterThanThreshold", 10),
    ];
    assert_eq!(alarms.len(), wanted.len());
    for (what, threshold, comparison, minutes) in wanted {
        let name = format!("CloudCafe-prod-{what}");
        let a = alarms.iter().find(|a| a["AlarmName"] == name.as_str()).unwrap_or_else(|| panic!("no alarm {name}"));
        assert_eq!(a["Threshold"].as_f64(), Some(threshold), "{name}");
        assert_eq!(a["ComparisonOperator"], comparison, "{name}");
        let period = a.get("Period").or_else(|| {
            a["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|q| q.get("Period").or_else(|| q.get("MetricStat").map(|s| &s["Period"])))
        });
        let seconds = period.and_then(Value::as_u64).unwrap() * a["EvaluationPeriods"].as_u64().unwrap();
        assert_eq!(seconds, minutes * 60, "{name}: the condition must hold {minutes} minutes");
        assert_eq!(a["DatapointsToAlarm"], a["EvaluationPeriods"], "{name}");
        assert_eq!(a["AlarmActions"][0], "arn:aws:sns:us-east-1:123456789012:cloudcafe-alarms-prod", "{name}");
    }
    let composites = json(&files, render::COMPOSITE_ALARMS_FILE);
    let degraded = &composites.as_array().unwrap()[0];
    assert_eq!(degraded["AlarmName"], "CloudCafe-prod-Degraded");
    let rule = degraded["AlarmRule"].as_str().unwrap();
    for (what, ..) in wanted {
        assert!(rule.contains(&format!("ALARM(\"CloudCafe-prod-{what}\")")), "{what} missing from {rule}");
    }
}

/// `cloudcafe dashboard apply`'s work against moto's CloudWatch (moto serves it beside DynamoDB), in
/// an environment of the test's own so that runs do not meet.
#[cfg(feature = "cloud")]
#[tokio::test]
async fn apply_puts_every_dashboard_and_alarm() {
    use aws_sdk_cloudwatch::types::AlarmType;
    use gateways::cloudwatch::{apply, dashboard};

    let Some(endpoint) = testkit::servers::cloudwatch_endpoint() else { return };
    let client = aws_sdk_cloudwatch::Client::new(&testkit::aws::emulator(&endpoint).sdk_config().await);
    let d = Deployment::for_environment(&format!("it{}", testkit::names::short_id()));
    let mut applied = apply::Applied::default();
    apply::put_dashboards(&client, &d, &mut applied).await.unwrap();
    apply::put_alarms(&client, &d, &mut applied).await.unwrap();
    // moto 5.2.5 has no PutCompositeAlarm (it answers 500 with an HTML page): there, the composite
    // alarm is checked as rendered only (the_alarms_of_the_issue_are_there_with_their_thresholds).
    let composite_put = match apply::put_composite_alarms(&client, &d, &mut applied).await {
        Ok(()) => true,
        Err(apply::ApplyError::Call { ref what, status: Some(500), .. }) if what.starts_with("PutCompositeAlarm") => {
            eprintln!("moto does not implement PutCompositeAlarm: the composite alarm is not checked against it");
            false
        }
        Err(e) => panic!("{e:?}"),
    };

    let boards = dashboard::all(&d);
    assert_eq!(applied.dashboards.len(), boards.len());
    for board in &boards {
        let got = client.get_dashboard().dashboard_name(&board.name).send().await.unwrap();
        let body: Value = serde_json::from_str(got.dashboard_body().unwrap()).unwrap();
        assert_eq!(body, render::dashboard_body(&d, board).unwrap(), "{}", board.name);
    }

    let described = client
        .describe_alarms()
        .alarm_name_prefix(format!("CloudCafe-{}-", d.environment))
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .max_records(100)
        .send()
        .await
        .unwrap();
    let expected = render::alarm_inputs(&d).unwrap();
    assert_eq!(described.metric_alarms().len(), expected.len());
    for want in &expected {
        let name = want["AlarmName"].as_str().unwrap();
        let got =
            described.metric_alarms().iter().find(|a| a.alarm_name() == Some(name)).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(got.threshold(), want["Threshold"].as_f64(), "{name}");
        assert_eq!(got.comparison_operator().map(|c| c.as_str()), want["ComparisonOperator"].as_str(), "{name}");
        assert_eq!(got.evaluation_periods().map(i64::from), want["EvaluationPeriods"].as_i64(), "{name}");
        let metrics = want.get("Metrics").and_then(Value::as_array).map_or(0, Vec::len);
        assert_eq!(got.metrics().len(), metrics, "{name}: the metric-math queries");
        assert_eq!(got.alarm_actions(), std::slice::from_ref(&d.alarm_topic_arn), "{name}");
    }
    if !composite_put {
        return;
    }
    let composite = &render::composite_inputs(&d)[0];
    let got = described
        .composite_alarms()
        .iter()
        .find(|c| c.alarm_name() == composite["AlarmName"].as_str())
        .expect("the composite alarm");
    assert_eq!(got.alarm_rule(), composite["AlarmRule"].as_str());
}
