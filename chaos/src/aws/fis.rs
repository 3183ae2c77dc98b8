//! AWS FIS experiment templates: the documented actions the plans rely on, the pieces every
//! template shares, and the structural check.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::{Alarm, Deployment};

/// One FIS action as documented: its id, the target it acts on (the key under the action's
/// `targets` and the resource type of the template target it names; `None` for actions without a
/// target), and its parameters.
#[derive(Clone, Copy, Debug)]
pub struct FisAction {
    pub id: &'static str,
    pub target: Option<(&'static str, &'static str)>,
    pub parameters: &'static [FisParameter],
}

/// One parameter of a [`FisAction`].
#[derive(Clone, Copy, Debug)]
pub struct FisParameter {
    pub name: &'static str,
    pub required: bool,
    /// An ISO-8601 duration; `Some(minimum seconds)` (0 where the reference states no minimum).
    pub duration_at_least: Option<u64>,
}

const fn text(name: &'static str, required: bool) -> FisParameter {
    FisParameter { name, required, duration_at_least: None }
}

const fn duration(at_least: u64) -> FisParameter {
    FisParameter { name: "duration", required: true, duration_at_least: Some(at_least) }
}

const ECS_TASK: Option<(&str, &str)> = Some(("Tasks", "aws:ecs:task"));

/// The FIS actions the plans use, and the ones they considered and say why not, as the
/// [AWS FIS actions reference](https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html)
/// documents them: ids, resource types, parameters, and the minimum durations it states ("from one
/// minute to 12 hours"; no minimum where it states none). The target keys (`Tasks`, `Clusters`,
/// `ReplicationGroups`, `Subnets`, `VPCEndpoints`, `Roles`) are the ones `aws fis get-action` reports
/// and AWS's example templates use; the reference page does not list them.
pub const FIS_ACTIONS: [FisAction; 13] = [
    FisAction {
        id: "aws:cloudwatch:assert-alarm-state",
        target: None,
        parameters: &[text("alarmArns", true), text("alarmStates", true)],
    },
    FisAction { id: "aws:fis:wait", target: None, parameters: &[duration(60)] },
    FisAction { id: "aws:ecs:stop-task", target: ECS_TASK, parameters: &[] },
    FisAction {
        id: "aws:ecs:task-kill-process",
        target: ECS_TASK,
        parameters: &[text("processName", true), text("signal", false), text("installDependencies", false)],
    },
    FisAction {
        id: "aws:ecs:task-network-latency",
        target: ECS_TASK,
        parameters: &[
            duration(0),
            text("delayMilliseconds", false),
            text("jitterMilliseconds", false),
            text("flowsPercent", false),
            text("sources", false),
            text("installDependencies", false),
            text("useEcsFaultInjectionEndpoints", false),
        ],
    },
    FisAction {
        id: "aws:ecs:task-network-packet-loss",
        target: ECS_TASK,
        parameters: &[
            duration(0),
            text("lossPercent", false),
            text("flowsPercent", false),
            text("sources", false),
            text("installDependencies", false),
            text("useEcsFaultInjectionEndpoints", false),
        ],
    },
    FisAction {
        id: "aws:ecs:task-network-blackhole-port",
        target: ECS_TASK,
        parameters: &[
            duration(0),
            text("port", true),
            text("trafficType", true),
            text("protocol", false),
            text("installDependencies", false),
            text("useEcsFaultInjectionEndpoints", false),
        ],
    },
    FisAction { id: "aws:rds:failover-db-cluster", target: Some(("Clusters", "aws:rds:cluster")), parameters: &[] },
    FisAction {
        id: "aws:elasticache:replicationgroup-interrupt-az-power",
        target: Some(("ReplicationGroups", "aws:elasticache:replicationgroup")),
        parameters: &[duration(60)],
    },
    FisAction {
        id: "aws:network:disrupt-vpc-endpoint",
        target: Some(("VPCEndpoints", "aws:ec2:vpc-endpoint")),
        parameters: &[duration(0)],
    },
    // Considered for security-group-lockdown and broker-outage; not used (see those plans).
    FisAction {
        id: "aws:network:disrupt-connectivity",
        target: Some(("Subnets", "aws:ec2:subnet")),
        parameters: &[text("scope", true), duration(60), text("prefixListIdentifier", false)],
    },
    // Considered for dynamodb-throttle: its `service` is documented as `ec2` or `kinesis` only.
    FisAction {
        id: "aws:fis:inject-api-throttle-error",
        target: Some(("Roles", "aws:iam:role")),
        parameters: &[duration(60), text("service", true), text("percentage", true), text("operations", true)],
    },
    FisAction {
        id: "aws:fis:inject-api-unavailable-error",
        target: Some(("Roles", "aws:iam:role")),
        parameters: &[duration(60), text("service", true), text("percentage", true), text("operations", true)],
    },
];

/// The target parameters FIS documents per resource type (name, required), from
/// [Targets for AWS FIS](https://docs.aws.amazon.com/fis/latest/userguide/targets.html#target-parameters).
/// A resource type not listed takes none.
pub const FIS_TARGET_PARAMETERS: [(&str, &[(&str, bool)]); 4] = [
    ("aws:ecs:task", &[("cluster", false), ("service", false)]),
    ("aws:elasticache:replicationgroup", &[("availabilityZoneIdentifier", true)]),
    ("aws:rds:cluster", &[("writerAvailabilityZoneIdentifiers", false)]),
    ("aws:ec2:subnet", &[("availabilityZoneIdentifier", false), ("vpc", false)]),
];

/// At most this many stop conditions per template, and alarms per `assert-alarm-state`.
const MAX_ALARMS: usize = 5;
/// The API's limit on template and action descriptions.
const MAX_DESCRIPTION: usize = 512;

// ---- Building blocks ----

/// The tags a CloudCafe experiment template carries.
fn tags(deployment: &Deployment, experiment: &str) -> Value {
    json!({ "Project": "cloudcafe", "Environment": deployment.environment, "Experiment": experiment })
}

/// A complete template: what every plan shares (role, tags, logs, options, stop conditions) around
/// its own targets and actions.
pub(super) fn template(
    deployment: &Deployment,
    experiment: &str,
    description: &str,
    targets: Value,
    actions: Value,
    stop_on: &[Alarm],
) -> Value {
    let stop_conditions: Vec<Value> = stop_on
        .iter()
        .map(|alarm| json!({ "source": "aws:cloudwatch:alarm", "value": deployment.alarm_arn(*alarm) }))
        .collect();
    json!({
        "description": description,
        "targets": targets,
        "actions": actions,
        "stopConditions": stop_conditions,
        "roleArn": deployment.fis_role_arn,
        "tags": tags(deployment, experiment),
        "logConfiguration": {
            "logSchemaVersion": 2,
            "cloudWatchLogsConfiguration": {
                "logGroupArn": format!(
                    "arn:aws:logs:{}:{}:log-group:{}:*",
                    deployment.region, deployment.account, deployment.fis_log_group
                ),
            },
        },
        "experimentOptions": { "accountTargeting": "single-account", "emptyTargetResolutionMode": "fail" },
    })
}

/// The first action of every plan: the alarms must be OK before anything is injected (FIS's form
/// of a steady-state hypothesis). Only metric alarms: the composite one goes to stop conditions.
pub(super) fn assert_ok(deployment: &Deployment, alarms: &[Alarm]) -> Value {
    let arns: Vec<String> = alarms.iter().map(|alarm| deployment.alarm_arn(*alarm)).collect();
    json!({
        "actionId": "aws:cloudwatch:assert-alarm-state",
        "description": "Steady state: these alarms are OK before the fault is injected; the experiment fails here otherwise.",
        "parameters": { "alarmArns": arns.join(","), "alarmStates": "OK" },
    })
}

/// The last action: the experiment stays open while the system recovers, so that a stop condition
/// firing during recovery marks the experiment stopped.
pub(super) fn observe(duration: &str, after: &str) -> Value {
    json!({
        "actionId": "aws:fis:wait",
        "description": "Recovery window: the stop conditions keep watching while the system recovers.",
        "parameters": { "duration": duration },
        "startAfter": [after],
    })
}

/// The service's tasks, `selection_mode` of them.
pub(super) fn node_tasks(deployment: &Deployment, selection_mode: &str) -> Value {
    json!({
        "resourceType": "aws:ecs:task",
        "parameters": { "cluster": deployment.cluster, "service": deployment.service },
        "selectionMode": selection_mode,
    })
}

// ---- The check ----

/// Appends what is wrong with the template `body` to `problems`.
pub(super) fn check(body: &Value, alarm_names: &[String], problems: &mut Vec<String>) {
    let Some(template) = body.as_object() else {
        problems.push("the template is not a JSON object".to_owned());
        return;
    };
    const KNOWN: [&str; 10] = [
        "clientToken",
        "description",
        "targets",
        "actions",
        "stopConditions",
        "roleArn",
        "tags",
        "logConfiguration",
        "experimentOptions",
        "experimentReportConfiguration",
    ];
    for key in template.keys().filter(|key| !KNOWN.contains(&key.as_str())) {
        problems.push(format!("unknown top-level key {key:?} (CreateExperimentTemplate would refuse it)"));
    }
    for key in ["description", "targets", "actions", "stopConditions", "roleArn", "tags", "logConfiguration"] {
        if !template.contains_key(key) {
            problems.push(format!("missing required key {key:?}"));
        }
    }
    check_description("the template", template.get("description"), problems);

    let empty = Map::new();
    let targets = template.get("targets").and_then(Value::as_object).unwrap_or(&empty);
    for (name, target) in targets {
        check_target(name, target, problems);
    }

    let actions = template.get("actions").and_then(Value::as_object).unwrap_or(&empty);
    if actions.is_empty() {
        problems.push("no actions".to_owned());
    }
    let mut used_targets = BTreeSet::new();
    for (name, action) in actions {
        check_action(name, action, targets, actions, alarm_names, &mut used_targets, problems);
    }
    for name in targets.keys().filter(|name| !used_targets.contains(name.as_str())) {
        problems.push(format!("target {name:?} is declared but no action uses it"));
    }

    check_stop_conditions(template.get("stopConditions"), alarm_names, problems);

    match template.get("roleArn").and_then(Value::as_str) {
        Some(arn) if arn.starts_with("arn:aws:iam::") && arn.contains(":role/") => {}
        Some(arn) => problems.push(format!("roleArn {arn:?} is not an IAM role ARN")),
        None => {}
    }
    if let Some(tags) = template.get("tags") {
        match tags.as_object() {
            Some(map) if map.values().all(Value::is_string) => {}
            _ => problems.push("tags must be an object of strings".to_owned()),
        }
    }
    if let Some(logs) = template.get("logConfiguration") {
        if logs.get("logSchemaVersion").and_then(Value::as_u64).is_none() {
            problems.push("logConfiguration has no integer logSchemaVersion".to_owned());
        }
        let group = logs.pointer("/cloudWatchLogsConfiguration/logGroupArn").and_then(Value::as_str);
        if !group.is_some_and(|arn| arn.starts_with("arn:aws:logs:")) {
            problems.push("logConfiguration names no CloudWatch Logs group ARN".to_owned());
        }
    }
    if let Some(options) = template.get("experimentOptions") {
        let targeting = options.get("accountTargeting").and_then(Value::as_str);
        if !matches!(targeting, None | Some("single-account" | "multi-account")) {
            problems.push(format!("experimentOptions.accountTargeting {targeting:?} is not a documented value"));
        }
        let empty_mode = options.get("emptyTargetResolutionMode").and_then(Value::as_str);
        if !matches!(empty_mode, None | Some("fail" | "skip")) {
            problems
                .push(format!("experimentOptions.emptyTargetResolutionMode {empty_mode:?} is not a documented value"));
        }
    }
}

fn check_description(what: &str, description: Option<&Value>, problems: &mut Vec<String>) {
    match description.map(|value| value.as_str()) {
        None => {}
        Some(None) => problems.push(format!("{what}'s description is not a string")),
        Some(Some("")) => problems.push(format!("{what}'s description is empty")),
        Some(Some(text)) if text.chars().count() > MAX_DESCRIPTION => problems.push(format!(
            "{what}'s description has {} characters, more than the API's {MAX_DESCRIPTION}",
            text.chars().count()
        )),
        Some(Some(_)) => {}
    }
}

fn check_target(name: &str, target: &Value, problems: &mut Vec<String>) {
    let Some(resource_type) = target.get("resourceType").and_then(Value::as_str) else {
        problems.push(format!("target {name:?} has no resourceType"));
        return;
    };
    let has = |key: &str| match target.get(key) {
        Some(Value::Array(items)) => !items.is_empty(),
        Some(Value::Object(map)) => !map.is_empty(),
        _ => false,
    };
    if has("resourceArns") && (has("resourceTags") || has("filters")) {
        problems.push(format!("target {name:?} names resources by ARN and also by tags or filters"));
    }
    if !["resourceArns", "resourceTags", "parameters", "filters"].iter().any(|key| has(key)) {
        problems.push(format!("target {name:?} identifies no resources (no ARNs, tags, parameters or filters)"));
    }
    match target.get("selectionMode").and_then(Value::as_str) {
        Some(mode) if valid_selection_mode(mode) => {}
        mode => problems.push(format!("target {name:?} has selectionMode {mode:?}, not ALL, COUNT(n) or PERCENT(n)")),
    }
    let documented = FIS_TARGET_PARAMETERS.iter().find(|(kind, _)| *kind == resource_type).map_or(&[][..], |p| p.1);
    let given = target.get("parameters").and_then(Value::as_object);
    for (parameter, value) in given.into_iter().flatten() {
        if !documented.iter().any(|(known, _)| known == parameter) {
            problems.push(format!("target {name:?}: {resource_type} takes no parameter {parameter:?}"));
        } else if !value.is_string() {
            problems.push(format!("target {name:?}: parameter {parameter:?} is not a string"));
        }
    }
    for (parameter, _) in documented.iter().filter(|(_, required)| *required) {
        if !given.is_some_and(|map| map.contains_key(*parameter)) {
            problems.push(format!("target {name:?}: {resource_type} needs the parameter {parameter:?}"));
        }
    }
}

fn valid_selection_mode(mode: &str) -> bool {
    let number = |inner: &str| inner.parse::<u32>().ok();
    if mode == "ALL" {
        return true;
    }
    if let Some(n) = mode.strip_prefix("COUNT(").and_then(|rest| rest.strip_suffix(')')).and_then(number) {
        return n >= 1;
    }
    if let Some(n) = mode.strip_prefix("PERCENT(").and_then(|rest| rest.strip_suffix(')')).and_then(number) {
        return (1..=100).contains(&n);
    }
    false
}

fn check_action(
    name: &str,
    action: &Value,
    targets: &Map<String, Value>,
    actions: &Map<String, Value>,
    alarm_names: &[String],
    used_targets: &mut BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    check_description(&format!("action {name:?}"), action.get("description"), problems);
    let Some(id) = action.get("actionId").and_then(Value::as_str) else {
        problems.push(format!("action {name:?} has no actionId"));
        return;
    };
    let Some(documented) = FIS_ACTIONS.iter().find(|known| known.id == id) else {
        problems.push(format!("action {name:?}: actionId {id:?} is not in FIS's documented list (FIS_ACTIONS)"));
        return;
    };

    let given_targets = action.get("targets").and_then(Value::as_object);
    match (documented.target, given_targets) {
        (None, Some(map)) if !map.is_empty() => problems.push(format!("action {name:?}: {id} takes no targets")),
        (None, _) => {}
        (Some((key, _)), None) => problems.push(format!("action {name:?}: {id} needs targets.{key}")),
        (Some((key, resource_type)), Some(map)) => {
            for (given_key, target_name) in map {
                let Some(target_name) = target_name.as_str() else {
                    problems.push(format!("action {name:?}: targets.{given_key} is not a target name"));
                    continue;
                };
                used_targets.insert(target_name.to_owned());
                if given_key != key {
                    problems.push(format!("action {name:?}: {id} takes targets.{key}, not targets.{given_key}"));
                }
                match targets.get(target_name).and_then(|t| t.get("resourceType")).and_then(Value::as_str) {
                    None => problems.push(format!("action {name:?} names the undeclared target {target_name:?}")),
                    Some(kind) if kind != resource_type => problems.push(format!(
                        "action {name:?}: target {target_name:?} is {kind}, {id} acts on {resource_type}"
                    )),
                    Some(_) => {}
                }
            }
            if !map.contains_key(key) {
                problems.push(format!("action {name:?}: {id} needs targets.{key}"));
            }
        }
    }

    let given = action.get("parameters").and_then(Value::as_object);
    for (parameter, value) in given.into_iter().flatten() {
        let Some(known) = documented.parameters.iter().find(|p| p.name == parameter) else {
            problems.push(format!("action {name:?}: {id} takes no parameter {parameter:?}"));
            continue;
        };
        let Some(value) = value.as_str() else {
            problems.push(format!("action {name:?}: parameter {parameter:?} is not a string (FIS takes strings)"));
            continue;
        };
        if let Some(at_least) = known.duration_at_least {
            match iso8601_seconds(value) {
                None => problems.push(format!("action {name:?}: {parameter} {value:?} is not an ISO-8601 duration")),
                Some(seconds) if seconds < at_least => problems.push(format!(
                    "action {name:?}: {parameter} {value:?} is shorter than the {at_least} s {id} allows"
                )),
                Some(_) => {}
            }
        }
    }
    for required in documented.parameters.iter().filter(|p| p.required) {
        if !given.is_some_and(|map| map.contains_key(required.name)) {
            problems.push(format!("action {name:?}: {id} needs the parameter {:?}", required.name));
        }
    }
    if id == "aws:cloudwatch:assert-alarm-state" {
        let arns = given.and_then(|map| map.get("alarmArns")).and_then(Value::as_str).unwrap_or_default();
        let arns: Vec<&str> = arns.split(',').filter(|arn| !arn.is_empty()).collect();
        if arns.len() > MAX_ALARMS {
            problems.push(format!("action {name:?} asserts {} alarms, more than {MAX_ALARMS}", arns.len()));
        }
        for arn in arns {
            check_alarm_arn(&format!("action {name:?}"), arn, alarm_names, problems);
        }
    }

    match action.get("startAfter") {
        None => {}
        Some(Value::Array(before)) => {
            for earlier in before {
                match earlier.as_str() {
                    Some(earlier) if earlier == name => problems.push(format!("action {name:?} starts after itself")),
                    Some(earlier) if actions.contains_key(earlier) => {}
                    other => problems.push(format!("action {name:?} starts after the undeclared action {other:?}")),
                }
            }
        }
        Some(_) => problems.push(format!("action {name:?}: startAfter is not a list")),
    }
}

fn check_stop_conditions(stop_conditions: Option<&Value>, alarm_names: &[String], problems: &mut Vec<String>) {
    let Some(stop_conditions) = stop_conditions else { return };
    let Some(conditions) = stop_conditions.as_array() else {
        problems.push("stopConditions is not a list".to_owned());
        return;
    };
    if conditions.is_empty() {
        problems.push("no stop conditions: nothing would stop the experiment if CloudCafe degraded".to_owned());
    }
    if conditions.len() > MAX_ALARMS {
        problems.push(format!("{} stop conditions, more than FIS's {MAX_ALARMS}", conditions.len()));
    }
    for condition in conditions {
        match (condition.get("source").and_then(Value::as_str), condition.get("value").and_then(Value::as_str)) {
            (Some("aws:cloudwatch:alarm"), Some(arn)) => check_alarm_arn("stop condition", arn, alarm_names, problems),
            (source, _) => problems.push(format!("stop condition {source:?} is not a CloudWatch alarm with an ARN")),
        }
    }
}

fn check_alarm_arn(what: &str, arn: &str, alarm_names: &[String], problems: &mut Vec<String>) {
    let name =
        arn.strip_prefix("arn:aws:cloudwatch:").and_then(|rest| rest.split_once(":alarm:")).map(|(_, name)| name);
    match name {
        None => problems.push(format!("{what}: {arn:?} is not a CloudWatch alarm ARN")),
        Some(name) if !alarm_names.iter().any(|known| known == name) => {
            problems.push(format!("{what} names the alarm {name:?}, which the generated alarm set does not have"))
        }
        Some(_) => {}
    }
}

/// The length of an ISO-8601 duration of days, hours, minutes and seconds (`PT30S`, `PT5M`,
/// `P1DT2H`), in whole seconds; `None` when `text` is not one (or has fractions, which FIS's
/// durations never need).
pub fn iso8601_seconds(text: &str) -> Option<u64> {
    let rest = text.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((days, time)) => {
            if time.is_empty() {
                return None;
            }
            (days, Some(time))
        }
        None => (rest, None),
    };
    if days.is_empty() && time.is_none() {
        return None;
    }
    let mut total = 0u64;
    for (part, units) in
        [(days, &[('D', 86_400u64)][..]), (time.unwrap_or(""), &[('H', 3_600), ('M', 60), ('S', 1)][..])]
    {
        let mut rest = part;
        let mut allowed = units;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit())?;
            if digits == 0 {
                return None;
            }
            let number: u64 = rest[..digits].parse().ok()?;
            let unit = rest[digits..].chars().next()?;
            let position = allowed.iter().position(|(letter, _)| *letter == unit)?;
            total = total.checked_add(number.checked_mul(allowed[position].1)?)?;
            allowed = &allowed[position + 1..];
            rest = &rest[digits + unit.len_utf8()..];
        }
    }
    Some(total)
}
