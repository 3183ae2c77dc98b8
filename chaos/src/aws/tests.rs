use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;

fn committed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("aws")
}

fn cloudwatch_file(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cloudwatch").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The alarm names of the generated alarm set (`deploy/cloudwatch/`, rendered for `prod`).
fn generated_alarm_names() -> Vec<String> {
    let mut names = Vec::new();
    for file in ["alarms.json", "composite-alarms.json"] {
        let alarms = cloudwatch_file(file);
        for alarm in alarms.as_array().expect("a list of alarms") {
            names.push(alarm["AlarmName"].as_str().expect("AlarmName").to_owned());
        }
    }
    names
}

fn prod() -> Deployment {
    Deployment::for_environment("prod")
}

fn plan_named<'a>(plans: &'a [Plan], name: &str) -> &'a Plan {
    plans.iter().find(|plan| plan.experiment == name).expect("the plan")
}

#[test]
fn every_experiment_has_exactly_one_plan_in_order() {
    let plans = plans(&prod());
    let names: Vec<&str> = plans.iter().map(|plan| plan.experiment).collect();
    assert_eq!(names, EXPERIMENTS);
    let files: BTreeSet<String> = plans.iter().map(file_name).collect();
    assert_eq!(files.len(), EXPERIMENTS.len(), "one file per experiment");
}

#[test]
fn the_rendered_plans_are_the_committed_files() {
    let dir = committed_dir();
    let rendered = render(&prod());
    if std::env::var("CLOUDCAFE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).expect("chaos/aws");
        for (name, text) in &rendered {
            std::fs::write(dir.join(name), text).expect("write a plan");
        }
    }
    let mut differing = Vec::new();
    for (name, text) in &rendered {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(committed) if committed == *text => {}
            Ok(_) => differing.push(format!("{name} differs")),
            Err(e) => differing.push(format!("{name}: {e}")),
        }
    }
    let expected: BTreeSet<&str> = rendered.iter().map(|(name, _)| name.as_str()).collect();
    for entry in std::fs::read_dir(&dir).expect("chaos/aws") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if name != "README.md" && !expected.contains(name.as_str()) {
            differing.push(format!("{name} is not rendered any more"));
        }
    }
    assert!(
        differing.is_empty(),
        "chaos/aws/ is not what the code renders (CLOUDCAFE_BLESS=1 cargo test -p chaos rewrites it): {differing:?}"
    );
}

#[test]
fn rendering_is_stable_sorted_and_ends_with_a_newline() {
    assert_eq!(render(&prod()), render(&prod()));
    for (name, text) in render(&prod()) {
        assert!(text.ends_with("}\n"), "{name}");
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        let plan = plans(&prod()).into_iter().find(|p| file_name(p) == name).expect("plan");
        assert_eq!(parsed, plan.body, "{name} reads back as the plan");
    }
    let mut text = String::new();
    write_sorted(&mut text, &json!({ "b": [1, {"z": null, "a": "x\"y"}], "a": {}, "c": [] }), 0);
    assert_eq!(text, "{\n  \"a\": {},\n  \"b\": [\n    1,\n    {\n      \"a\": \"x\\\"y\",\n      \"z\": null\n    }\n  ],\n  \"c\": []\n}");
}

#[test]
fn every_plan_passes_the_check_against_the_generated_alarms() {
    let alarms = generated_alarm_names();
    assert!(alarms.contains(&"CloudCafe-prod-Degraded".to_owned()), "{alarms:?}");
    for plan in plans(&prod()) {
        assert_eq!(check(&plan, &alarms), Vec::<String>::new());
    }
}

#[test]
fn every_alarm_the_plans_can_name_exists_in_the_generated_set() {
    let alarms = generated_alarm_names();
    for alarm in Alarm::ALL {
        assert!(alarms.contains(&prod().alarm_name(alarm)), "{alarm:?}");
    }
}

#[test]
fn the_alarms_of_another_environment_do_not_satisfy_the_check() {
    // The alarm names carry the environment: staging's plans name staging's alarms.
    let alarms = generated_alarm_names();
    let staging = plans(&Deployment::for_environment("staging"));
    for plan in &staging {
        let problems = check(plan, &alarms);
        assert!(problems.iter().any(|p| p.contains("CloudCafe-staging-")), "{}: {problems:?}", plan.experiment);
    }
}

#[test]
fn the_deployment_names_what_the_generated_alarms_watch() {
    let d = prod();
    let alarms = cloudwatch_file("alarms.json");
    let alarm = |suffix: &str| -> Value {
        let name = format!("CloudCafe-prod-{suffix}");
        alarms.as_array().into_iter().flatten().find(|a| a["AlarmName"] == name.as_str()).cloned().expect("alarm")
    };
    let dimensions = |alarm: &Value| -> Vec<(String, String)> {
        let mut found = Vec::new();
        let stats = alarm["Metrics"].as_array().into_iter().flatten().map(|m| &m["MetricStat"]["Metric"]);
        for metric in std::iter::once(alarm).chain(stats) {
            for dimension in metric["Dimensions"].as_array().into_iter().flatten() {
                found.push((dimension["Name"].as_str().unwrap().into(), dimension["Value"].as_str().unwrap().into()));
            }
        }
        found
    };
    let running = dimensions(&alarm("RunningTasks"));
    assert!(running.contains(&("ClusterName".into(), d.cluster.clone())), "{running:?}");
    assert!(running.contains(&("ServiceName".into(), d.service.clone())), "{running:?}");
    let connections = dimensions(&alarm("DatabaseConnections"));
    assert!(connections.contains(&("DBClusterIdentifier".into(), d.aurora_cluster.clone())), "{connections:?}");
    let dlq = dimensions(&alarm("PaymentDlqNotEmpty"));
    assert!(dlq.contains(&("QueueName".into(), d.payment_dlq.clone())), "{dlq:?}");
    let alb = dimensions(&alarm("AlbTarget5xxRate"));
    assert!(alb.contains(&("LoadBalancer".into(), d.load_balancer.clone())), "{alb:?}");
    let throttles = alarm("DynamoDbThrottles").to_string();
    for table in &d.dynamodb_tables {
        assert!(throttles.contains(table.as_str()), "{table} is not watched by the throttles alarm");
    }
}

#[test]
fn fis_plans_use_documented_actions_on_declared_targets_with_iso8601_durations() {
    let mut fis_plans = 0;
    for plan in plans(&prod()).iter().filter(|plan| plan.kind == PlanKind::Fis) {
        fis_plans += 1;
        let body = &plan.body;
        for key in ["description", "targets", "actions", "stopConditions", "roleArn", "tags", "logConfiguration"] {
            assert!(body.get(key).is_some(), "{}: {key}", plan.experiment);
        }
        let targets = body["targets"].as_object().expect("targets");
        for (name, action) in body["actions"].as_object().expect("actions") {
            let id = action["actionId"].as_str().expect("actionId");
            let documented = FIS_ACTIONS.iter().find(|a| a.id == id);
            assert!(documented.is_some(), "{}: {name} uses {id}", plan.experiment);
            for target in action["targets"].as_object().into_iter().flatten().map(|(_, t)| t.as_str().unwrap()) {
                assert!(targets.contains_key(target), "{}: {name} names {target}", plan.experiment);
            }
            for (parameter, value) in action["parameters"].as_object().into_iter().flatten() {
                if parameter == "duration" {
                    assert!(iso8601_seconds(value.as_str().unwrap()).is_some(), "{}: {value}", plan.experiment);
                }
            }
        }
        // Every fault is preceded by the steady-state assertion and followed by a recovery window.
        let actions = body["actions"].as_object().expect("actions");
        assert_eq!(actions["steadyState"]["actionId"], "aws:cloudwatch:assert-alarm-state", "{}", plan.experiment);
        assert_eq!(actions["observeRecovery"]["actionId"], "aws:fis:wait", "{}", plan.experiment);
    }
    assert_eq!(fis_plans, 7);
}

#[test]
fn the_fis_faults_are_the_ones_the_local_experiments_mean() {
    let plans = plans(&prod());
    let fault = |name: &str, action: &str| plan_named(&plans, name).body["actions"][action].clone();
    let targets = |name: &str| plan_named(&plans, name).body["targets"].clone();

    assert_eq!(fault("ecs-task-kill", "killHalfTheNodes")["parameters"]["signal"], "SIGKILL");
    assert_eq!(targets("ecs-task-kill")["halfTheNodes"]["selectionMode"], "PERCENT(50)");
    assert_eq!(targets("ecs-task-kill")["halfTheNodes"]["parameters"]["service"], "cloudcafe-node-prod");
    assert_eq!(fault("aurora-failover", "failover")["actionId"], "aws:rds:failover-db-cluster");
    assert_eq!(
        targets("aurora-failover")["journalCluster"]["resourceArns"][0],
        "arn:aws:rds:us-east-1:123456789012:cluster:cloudcafe-journal-prod"
    );
    assert_eq!(
        fault("memorydb-restart", "interruptCachePower")["actionId"],
        "aws:elasticache:replicationgroup-interrupt-az-power"
    );
    assert_eq!(fault("broker-outage", "cutTheBrokers")["parameters"]["duration"], "PT30S");
    let latency = fault("network-latency", "latencyToJournal");
    assert_eq!(latency["parameters"]["delayMilliseconds"], "200");
    assert_eq!(latency["parameters"]["sources"], prod().aurora_endpoint.as_str());
    assert_eq!(fault("network-latency", "lossToJournal")["startAfter"], json!(["latencyToJournal"]));
    let blackhole = fault("security-group-lockdown", "blackholeJournal");
    assert_eq!(
        (blackhole["parameters"]["port"].clone(), blackhole["parameters"]["duration"].clone()),
        (json!("5432"), json!("PT20S"))
    );
    assert_eq!(fault("node-drain", "stopOneNode")["actionId"], "aws:ecs:stop-task");
    assert_eq!(targets("node-drain")["oneNode"]["selectionMode"], "COUNT(1)");
}

#[test]
fn stop_conditions_are_the_composite_alarm_and_the_specific_ones() {
    let d = prod();
    for plan in plans(&d).iter().filter(|plan| plan.kind == PlanKind::Fis) {
        let arns: Vec<&str> =
            plan.body["stopConditions"].as_array().unwrap().iter().map(|c| c["value"].as_str().unwrap()).collect();
        assert!(arns.contains(&d.alarm_arn(Alarm::Degraded).as_str()), "{}: {arns:?}", plan.experiment);
        assert!(arns.len() >= 2, "{}: a specific alarm too", plan.experiment);
    }
}

#[test]
fn toolkit_plans_have_the_local_format_and_only_chaosaws_process_or_http_providers() {
    let mut toolkit_plans = 0;
    for plan in plans(&prod()).iter().filter(|plan| plan.kind == PlanKind::ChaosToolkit) {
        toolkit_plans += 1;
        let body = &plan.body;
        for key in [
            "version",
            "title",
            "description",
            "tags",
            "configuration",
            "steady-state-hypothesis",
            "method",
            "rollbacks",
        ] {
            assert!(body.get(key).is_some(), "{}: {key}", plan.experiment);
        }
        assert_eq!(body["configuration"]["aws_region"]["key"], "AWS_REGION");
        let activities = body["steady-state-hypothesis"]["probes"]
            .as_array()
            .into_iter()
            .chain(body["method"].as_array())
            .chain(body["rollbacks"].as_array())
            .flatten();
        for activity in activities {
            let provider = &activity["provider"];
            match provider["type"].as_str() {
                Some("python") => assert!(provider["module"].as_str().unwrap().starts_with("chaosaws."), "{activity}"),
                Some("process" | "http") => {}
                other => panic!("{}: provider {other:?}", plan.experiment),
            }
        }
    }
    assert_eq!(toolkit_plans, 3);
}

#[test]
fn the_toolkit_plans_undo_what_they_change() {
    let plans = plans(&prod());
    let throttle = plan_named(&plans, "dynamodb-throttle");
    let lifted = |activities: &Value| -> usize {
        activities.as_array().unwrap().iter().filter(|a| a["name"].as_str().unwrap().starts_with("lift-cap-")).count()
    };
    assert_eq!(lifted(&throttle.body["method"]), prod().dynamodb_tables.len(), "the method lifts every cap");
    assert_eq!(lifted(&throttle.body["rollbacks"]), prod().dynamodb_tables.len(), "and so do the rollbacks");
    let alb = plan_named(&plans, "alb-routing-failure");
    let last = alb.body["method"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["name"], "restore-orders-route");
    assert_eq!(alb.body["rollbacks"][0]["name"], "restore-orders-route");
}

#[test]
fn a_broken_fis_plan_is_reported() {
    let alarms = generated_alarm_names();
    let mut plan = plans(&prod()).into_iter().find(|p| p.experiment == "ecs-task-kill").expect("plan");
    let actions = plan.body["actions"].as_object_mut().unwrap();
    actions["killHalfTheNodes"]["actionId"] = json!("aws:ecs:kill-everything");
    actions["observeRecovery"]["parameters"]["duration"] = json!("5 minutes");
    actions.insert("stray".into(), json!({ "actionId": "aws:ecs:stop-task", "targets": { "Tasks": "nowhere" } }));
    actions.insert("tooShort".into(), json!({ "actionId": "aws:fis:wait", "parameters": { "duration": "PT30S" } }));
    plan.body["stopConditions"][0]["value"] =
        json!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:CloudCafe-prod-Imaginary");
    plan.body.as_object_mut().unwrap().remove("roleArn");

    let problems = check(&plan, &alarms).join("\n");
    for expected in [
        "\"aws:ecs:kill-everything\" is not in FIS's documented list",
        "\"5 minutes\" is not an ISO-8601 duration",
        "names the undeclared target \"nowhere\"",
        "\"PT30S\" is shorter than the 60 s aws:fis:wait allows",
        "names the alarm \"CloudCafe-prod-Imaginary\", which the generated alarm set does not have",
        "missing required key \"roleArn\"",
        "target \"halfTheNodes\" is declared but no action uses it",
    ] {
        assert!(problems.contains(expected), "expected {expected:?} in:\n{problems}");
    }
    assert!(problems.lines().all(|line| line.starts_with("ecs-task-kill: ")), "{problems}");
}

#[test]
fn a_broken_toolkit_plan_is_reported() {
    let alarms = generated_alarm_names();
    let mut plan = plans(&prod()).into_iter().find(|p| p.experiment == "alb-routing-failure").expect("plan");
    plan.body["steady-state-hypothesis"]["probes"][2]["provider"]["arguments"]["alarm_name"] =
        json!("CloudCafe-prod-Nope");
    plan.body["method"][1]["provider"] =
        json!({ "type": "python", "module": "chaosk8s.pod.actions", "func": "terminate_pods" });
    plan.body["rollbacks"][0]["provider"]["arguments"][5] = json!("${undefined_rule}");
    plan.body["description"] = json!("Removes a route.");
    plan.body.as_object_mut().unwrap().remove("version");

    let problems = check(&plan, &alarms).join("\n");
    for expected in [
        "reads the alarm \"CloudCafe-prod-Nope\"",
        "module \"chaosk8s.pod.actions\" is not part of chaostoolkit-aws",
        "uses ${undefined_rule}, which the configuration does not define",
        "does not say how the plan maps to the local experiment",
        "missing required key \"version\"",
    ] {
        assert!(problems.contains(expected), "expected {expected:?} in:\n{problems}");
    }
}

#[test]
fn a_wrong_target_shape_is_reported() {
    let alarms = generated_alarm_names();
    let mut plan = plans(&prod()).into_iter().find(|p| p.experiment == "memorydb-restart").expect("plan");
    plan.body["targets"]["cache"]["parameters"] = json!({});
    plan.body["targets"]["cache"]["selectionMode"] = json!("PERCENT(0)");
    plan.body["actions"]["interruptCachePower"]["targets"] = json!({ "Clusters": "cache" });
    let problems = check(&plan, &alarms).join("\n");
    for expected in [
        "needs the parameter \"availabilityZoneIdentifier\"",
        "selectionMode Some(\"PERCENT(0)\")",
        "takes targets.ReplicationGroups, not targets.Clusters",
    ] {
        assert!(problems.contains(expected), "expected {expected:?} in:\n{problems}");
    }
}

#[test]
fn iso8601_durations() {
    assert_eq!(iso8601_seconds("PT30S"), Some(30));
    assert_eq!(iso8601_seconds("PT5M"), Some(300));
    assert_eq!(iso8601_seconds("PT1H2M3S"), Some(3723));
    assert_eq!(iso8601_seconds("P1DT1S"), Some(86_401));
    assert_eq!(iso8601_seconds("P2D"), Some(172_800));
    for bad in ["", "P", "PT", "30S", "PT5", "PTM", "PT5S5M", "PT1.5S", "pt5m", "P1H", "PT5M "] {
        assert_eq!(iso8601_seconds(bad), None, "{bad:?}");
    }
}

#[test]
fn the_readme_covers_every_plan() {
    let readme = std::fs::read_to_string(committed_dir().join("README.md")).expect("chaos/aws/README.md");
    for plan in plans(&prod()) {
        assert!(readme.contains(&format!("`{}`", file_name(&plan))), "README lacks {}", file_name(&plan));
        if plan.kind == PlanKind::Fis {
            for action in plan.body["actions"].as_object().unwrap().values() {
                let id = action["actionId"].as_str().unwrap();
                assert!(readme.contains(id), "README lacks {id} ({})", plan.experiment);
            }
        }
    }
}
