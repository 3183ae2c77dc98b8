//! Chaos Toolkit experiments: the `chaostoolkit-aws` functions the plans call, the pieces they
//! share, and the structural check.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{Alarm, Deployment};

/// One `chaostoolkit-aws` function: module, function, and its arguments (name, required) apart
/// from `configuration` and `secrets`, which Chaos Toolkit passes itself.
#[derive(Clone, Copy, Debug)]
pub struct ChaosawsFunction {
    pub module: &'static str,
    pub func: &'static str,
    pub arguments: &'static [(&'static str, bool)],
}

/// The `chaostoolkit-aws` functions the plans call, with their signatures as
/// `chaostoolkit-incubator/chaostoolkit-aws` defines them (`chaosaws/cloudwatch/probes.py`,
/// `chaosaws/elbv2/probes.py`). Note `get_alarm_state_value` reads `MetricAlarms` only: it cannot
/// read the composite alarm, so the plans give it metric alarms.
pub const CHAOSAWS_FUNCTIONS: [ChaosawsFunction; 3] = [
    ChaosawsFunction {
        module: "chaosaws.cloudwatch.probes",
        func: "get_alarm_state_value",
        arguments: &[("alarm_name", true)],
    },
    ChaosawsFunction {
        module: "chaosaws.cloudwatch.probes",
        func: "get_metric_statistics",
        arguments: &[
            ("namespace", true),
            ("metric_name", true),
            ("dimension_name", false),
            ("dimension_value", false),
            ("dimensions", false),
            ("duration", false),
            ("offset", false),
            ("statistic", false),
            ("extended_statistic", false),
            ("unit", false),
        ],
    },
    ChaosawsFunction { module: "chaosaws.elbv2.probes", func: "all_targets_healthy", arguments: &[("tg_names", true)] },
];

// ---- Building blocks ----

/// A whole experiment: the local format's top-level keys.
pub(super) struct Experiment<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub tags: &'a [&'a str],
    /// (name, environment variable, default) of each configuration value.
    pub configuration: &'a [(&'a str, &'a str, Option<&'a str>)],
    pub probes: Vec<Value>,
    pub method: Vec<Value>,
    pub rollbacks: Vec<Value>,
}

impl Experiment<'_> {
    pub(super) fn into_json(self, deployment: &Deployment) -> Value {
        let mut configuration = serde_json::Map::new();
        configuration.insert(
            "aws_region".to_owned(),
            json!({ "type": "env", "key": "AWS_REGION", "default": deployment.region }),
        );
        for (name, key, default) in self.configuration {
            let mut entry = json!({ "type": "env", "key": key });
            if let (Some(default), Some(map)) = (default, entry.as_object_mut()) {
                map.insert("default".to_owned(), json!(default));
            }
            configuration.insert((*name).to_owned(), entry);
        }
        let mut tags = vec!["cloudcafe".to_owned(), deployment.environment.clone(), "aws".to_owned()];
        tags.extend(self.tags.iter().map(|tag| (*tag).to_owned()));
        json!({
            "version": "1.0.0",
            "title": self.title,
            "description": self.description,
            "tags": tags,
            "configuration": configuration,
            "steady-state-hypothesis": { "title": "CloudCafe serves its traffic", "probes": self.probes },
            "method": self.method,
            "rollbacks": self.rollbacks,
        })
    }
}

/// A steady-state probe: `alarm` is OK.
pub(super) fn alarm_ok(deployment: &Deployment, alarm: Alarm) -> Value {
    json!({
        "type": "probe",
        "name": format!("alarm-{}-is-ok", alarm.suffix()),
        "tolerance": "OK",
        "provider": {
            "type": "python",
            "module": "chaosaws.cloudwatch.probes",
            "func": "get_alarm_state_value",
            "arguments": { "alarm_name": deployment.alarm_name(alarm) },
        },
    })
}

/// A steady-state probe: the p99 of orders placed over the last 5 minutes (the catalog's
/// `OrderCreationDuration`, milliseconds) is at most `ceiling_ms`.
pub(super) fn order_latency(deployment: &Deployment, ceiling_ms: u32) -> Value {
    json!({
        "type": "probe",
        "name": "order-p99-within-bounds",
        "tolerance": { "type": "range", "range": [0, ceiling_ms] },
        "provider": {
            "type": "python",
            "module": "chaosaws.cloudwatch.probes",
            "func": "get_metric_statistics",
            "arguments": {
                "namespace": "CloudCafe/OrderService",
                "metric_name": "OrderCreationDuration",
                "dimensions": [
                    { "Name": "Environment", "Value": deployment.environment },
                    { "Name": "Outcome", "Value": "placed" },
                ],
                "extended_statistic": "p99",
                "duration": 300,
            },
        },
    })
}

/// An activity running a program (`aws`, `redis-cli`, `cloudcafe`) with `arguments`, in which
/// `${name}` is a configuration value.
pub(super) fn process(kind: &str, name: &str, path: &str, arguments: &[&str], timeout_s: u32) -> Value {
    json!({
        "type": kind,
        "name": name,
        "provider": { "type": "process", "path": path, "arguments": arguments, "timeout": timeout_s },
    })
}

// ---- The check ----

/// Appends what is wrong with the experiment `body` to `problems`.
pub(super) fn check(body: &Value, alarm_names: &[String], problems: &mut Vec<String>) {
    let Some(experiment) = body.as_object() else {
        problems.push("the experiment is not a JSON object".to_owned());
        return;
    };
    for key in
        ["version", "title", "description", "tags", "configuration", "steady-state-hypothesis", "method", "rollbacks"]
    {
        if !experiment.contains_key(key) {
            problems.push(format!("missing required key {key:?}"));
        }
    }
    for key in ["title", "description"] {
        if experiment.get(key).is_some_and(|value| value.as_str().is_none_or(str::is_empty)) {
            problems.push(format!("{key} is not a non-empty string"));
        }
    }
    if experiment.get("tags").is_some_and(|tags| !tags.as_array().is_some_and(|t| t.iter().all(Value::is_string))) {
        problems.push("tags is not a list of strings".to_owned());
    }
    let configured: BTreeSet<&str> = experiment
        .get("configuration")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();

    let hypothesis = experiment.get("steady-state-hypothesis");
    if hypothesis.and_then(|h| h.get("title")).and_then(Value::as_str).is_none() && hypothesis.is_some() {
        problems.push("the steady-state hypothesis has no title".to_owned());
    }
    let probes = hypothesis.and_then(|h| h.get("probes")).and_then(Value::as_array);
    if hypothesis.is_some() && probes.is_none_or(Vec::is_empty) {
        problems.push("the steady-state hypothesis has no probes".to_owned());
    }
    for probe in probes.into_iter().flatten() {
        check_activity("steady-state probe", probe, &configured, alarm_names, problems);
        if probe.get("tolerance").is_none() {
            problems.push(format!("steady-state probe {:?} has no tolerance", name_of(probe)));
        }
    }
    match experiment.get("method").and_then(Value::as_array) {
        Some(method) if !method.is_empty() => {
            for activity in method {
                check_activity("method activity", activity, &configured, alarm_names, problems);
            }
        }
        _ if experiment.contains_key("method") => problems.push("the method is not a non-empty list".to_owned()),
        _ => {}
    }
    match experiment.get("rollbacks") {
        Some(Value::Array(rollbacks)) => {
            for activity in rollbacks {
                check_activity("rollback", activity, &configured, alarm_names, problems);
            }
        }
        Some(_) => problems.push("rollbacks is not a list".to_owned()),
        None => {}
    }
}

fn name_of(activity: &Value) -> &str {
    activity.get("name").and_then(Value::as_str).unwrap_or("?")
}

fn check_activity(
    what: &str,
    activity: &Value,
    configured: &BTreeSet<&str>,
    alarm_names: &[String],
    problems: &mut Vec<String>,
) {
    let name = name_of(activity);
    if activity.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
        problems.push(format!("a {what} has no name"));
    }
    match activity.get("type").and_then(Value::as_str) {
        Some("probe" | "action") => {}
        kind => problems.push(format!("{what} {name:?} has type {kind:?}, not probe or action")),
    }
    let Some(provider) = activity.get("provider") else {
        problems.push(format!("{what} {name:?} has no provider"));
        return;
    };
    match provider.get("type").and_then(Value::as_str) {
        Some("python") => check_python(what, name, provider, alarm_names, problems),
        Some("process") => {
            if provider.get("path").and_then(Value::as_str).is_none_or(str::is_empty) {
                problems.push(format!("{what} {name:?}: a process provider needs a path"));
            }
            match provider.get("arguments") {
                None => {}
                Some(Value::Array(arguments)) if arguments.iter().all(Value::is_string) => {}
                Some(_) => problems.push(format!("{what} {name:?}: process arguments are not a list of strings")),
            }
        }
        Some("http") => {
            if provider.get("url").and_then(Value::as_str).is_none_or(str::is_empty) {
                problems.push(format!("{what} {name:?}: an http provider needs a url"));
            }
        }
        kind => problems.push(format!("{what} {name:?}: provider type {kind:?} is not python, process or http")),
    }
    for reference in references(provider) {
        if !configured.contains(reference.as_str()) {
            problems.push(format!("{what} {name:?} uses ${{{reference}}}, which the configuration does not define"));
        }
    }
}

fn check_python(what: &str, name: &str, provider: &Value, alarm_names: &[String], problems: &mut Vec<String>) {
    let module = provider.get("module").and_then(Value::as_str).unwrap_or_default();
    let func = provider.get("func").and_then(Value::as_str).unwrap_or_default();
    if !module.starts_with("chaosaws.") {
        problems.push(format!("{what} {name:?}: module {module:?} is not part of chaostoolkit-aws"));
        return;
    }
    let Some(known) = CHAOSAWS_FUNCTIONS.iter().find(|f| f.module == module && f.func == func) else {
        problems.push(format!("{what} {name:?}: {module}.{func} is not a chaostoolkit-aws function the plans know"));
        return;
    };
    let arguments = provider.get("arguments").and_then(Value::as_object);
    for argument in arguments.into_iter().flatten().map(|(k, _)| k) {
        if !known.arguments.iter().any(|(known, _)| known == argument) {
            problems.push(format!("{what} {name:?}: {func} takes no argument {argument:?}"));
        }
    }
    for (required, _) in known.arguments.iter().filter(|(_, required)| *required) {
        if !arguments.is_some_and(|map| map.contains_key(*required)) {
            problems.push(format!("{what} {name:?}: {func} needs the argument {required:?}"));
        }
    }
    if func == "get_alarm_state_value" {
        let alarm = arguments.and_then(|map| map.get("alarm_name")).and_then(Value::as_str).unwrap_or_default();
        if !alarm_names.iter().any(|known| known == alarm) {
            problems.push(format!(
                "{what} {name:?} reads the alarm {alarm:?}, which the generated alarm set does not have"
            ));
        }
    }
}

/// The `${name}` configuration references anywhere in `value`'s strings.
fn references(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) => {
                let mut rest = text.as_str();
                while let Some(start) = rest.find("${") {
                    let after = &rest[start + 2..];
                    let Some(end) = after.find('}') else { break };
                    found.push(after[..end].to_owned());
                    rest = &after[end + 1..];
                }
            }
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    found
}
