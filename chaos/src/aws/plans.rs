//! The ten plans: for each local experiment, the closest fault AWS can inject, what it should do to
//! CloudCafe, and what is not the same as locally.

use serde_json::{json, Value};

use super::fis::{assert_ok, node_tasks, observe, template};
use super::toolkit::{alarm_ok, order_latency, process, Experiment};
use super::{Alarm, Deployment, Plan, PlanKind};

pub(super) fn all(d: &Deployment) -> Vec<Plan> {
    vec![
        ecs_task_kill(d),
        aurora_failover(d),
        elasticache_flush(d),
        memorydb_restart(d),
        dynamodb_throttle(d),
        broker_outage(d),
        network_latency(d),
        alb_routing_failure(d),
        security_group_lockdown(d),
        node_drain(d),
    ]
}

fn fis(experiment: &'static str, body: Value) -> Plan {
    Plan { experiment, kind: PlanKind::Fis, body }
}

fn toolkit(experiment: &'static str, d: &Deployment, body: Experiment<'_>) -> Plan {
    Plan { experiment, kind: PlanKind::ChaosToolkit, body: body.into_json(d) }
}

/// The ECS fault injection endpoints: needed on Fargate, and what the task definition enables with
/// `enableFaultInjection`.
const ECS_ENDPOINTS: &str = "true";

fn ecs_task_kill(d: &Deployment) -> Plan {
    let name = "ecs-task-kill";
    let checked = [Alarm::ErrorRate, Alarm::AlbTarget5xxRate, Alarm::RunningTasks];
    fis(
        name,
        template(
            d,
            name,
            "Half the nodes crash. FIS kills the cloudcafe process with SIGKILL in 50% of the service's tasks \
             (rounded down); ECS replaces them. Expected: requests in flight there fail, the ALB sends traffic \
             to the survivors, RunningTasks recovers in minutes, nothing acknowledged is lost (cloudcafe verify). \
             Local run: the same SIGKILL to half the nodes. Differs: ECS starts new tasks (new IPs, ALB health \
             checks) instead of restarting the processes in place.",
            json!({ "halfTheNodes": node_tasks(d, "PERCENT(50)") }),
            json!({
                "steadyState": assert_ok(d, &checked),
                "killHalfTheNodes": {
                    "actionId": "aws:ecs:task-kill-process",
                    "description": "SIGKILL to the node process, as locally. Not aws:ecs:stop-task: that one sends \
                                    SIGTERM first (the node-drain plan). Needs the SSM agent sidecar and pidMode \
                                    task in the task definition.",
                    "parameters": { "processName": "cloudcafe", "signal": "SIGKILL" },
                    "targets": { "Tasks": "halfTheNodes" },
                    "startAfter": ["steadyState"],
                },
                "observeRecovery": observe("PT5M", "killHalfTheNodes"),
            }),
            &[Alarm::Degraded, Alarm::ErrorRate, Alarm::AlbTarget5xxRate, Alarm::RunningTasks],
        ),
    )
}

fn aurora_failover(d: &Deployment) -> Plan {
    let name = "aurora-failover";
    let checked = [Alarm::ErrorRate, Alarm::ProjectionLag, Alarm::DatabaseConnections];
    fis(
        name,
        template(
            d,
            name,
            "The journal's database goes away under load. FIS fails the Aurora cluster over: a reader becomes \
             the writer and every connection to the old writer drops. Expected: appends fail for ~30 s, nodes \
             reconnect through the cluster endpoint, followers resume from their offsets, nothing acknowledged \
             is lost. Local run: PostgreSQL immediate shutdown and restart. Differs: another instance becomes \
             writer, the endpoint's DNS moves, and a connection still on the old address reaches a read-only \
             instance.",
            json!({
                "journalCluster": {
                    "resourceType": "aws:rds:cluster",
                    "resourceArns": [format!("arn:aws:rds:{}:{}:cluster:{}", d.region, d.account, d.aurora_cluster)],
                    "selectionMode": "ALL",
                },
            }),
            json!({
                "steadyState": assert_ok(d, &checked),
                "failover": {
                    "actionId": "aws:rds:failover-db-cluster",
                    "description": "RDS FailoverDBCluster on the journal's cluster: needs at least one reader \
                                    instance, which is promoted.",
                    "targets": { "Clusters": "journalCluster" },
                    "startAfter": ["steadyState"],
                },
                "observeRecovery": observe("PT5M", "failover"),
            }),
            &[
                Alarm::Degraded,
                Alarm::ErrorRate,
                Alarm::ProjectionLag,
                Alarm::DatabaseConnections,
                Alarm::OutboxLagGrowing,
            ],
        ),
    )
}

fn elasticache_flush(d: &Deployment) -> Plan {
    toolkit(
        "elasticache-flush",
        d,
        Experiment {
            title: "CloudCafe: the cache is flushed during a query storm",
            description: "Story: during a query storm, the whole cache is emptied at once (FLUSHALL). \
                Expected impact: the cache hit rate falls to about zero and climbs back as reads repopulate it; \
                meanwhile storefront reads go to the read models, latency rises, and no request fails because \
                of the cache (the cache is never the only copy of anything). \
                How it maps to the local experiment: the same command, FLUSHALL, sent with redis-cli to the \
                cache's primary endpoint while `cloudcafe flood query-storm` runs against the load balancer, as \
                the local run does against the nodes. FIS has no action that empties a cache, and neither has \
                chaostoolkit-aws: chaosaws.elasticache offers reboot_cache_clusters, delete_cache_clusters, \
                delete_replication_groups and test_failover, which restart, remove or fail over nodes instead \
                (the memorydb-restart plan covers a restart). So the flush is a process activity, and \
                `chaos run` has to run on a host inside the VPC that has redis-cli, such as a bastion (not \
                through ECS Exec, which FIS's ECS task actions need switched off). \
                What differs: real traffic adds to the storm; the storm places real orders, so point \
                CLOUDCAFE_URL at a test store's deployment or run it at a quiet hour with CLOUDCAFE_STORM_SCALE \
                below 1; with in-transit encryption on, set CLOUDCAFE_REDIS_TLS=--tls. \
                There is nothing to roll back: the cache refills by design.",
            tags: &["elasticache", "redis", "cache"],
            configuration: &[
                ("redis_host", "CLOUDCAFE_REDIS_HOST", None),
                ("redis_tls", "CLOUDCAFE_REDIS_TLS", Some("")),
                ("cloudcafe_url", "CLOUDCAFE_URL", None),
                ("storm_scale", "CLOUDCAFE_STORM_SCALE", Some("1")),
            ],
            probes: vec![alarm_ok(d, Alarm::ErrorRate), alarm_ok(d, Alarm::AlbTarget5xxRate), order_latency(d, 250)],
            method: vec![
                json!({
                    "type": "action",
                    "name": "query-storm",
                    "background": true,
                    "provider": {
                        "type": "process",
                        "path": "cloudcafe",
                        "arguments": [
                            "flood", "query-storm", "--target", "${cloudcafe_url}", "--duration", "4m",
                            "--scale", "${storm_scale}", "--no-verify", "--quiet",
                        ],
                        "timeout": 600,
                    },
                }),
                json!({
                    "type": "action",
                    "name": "flushall",
                    "provider": {
                        "type": "process",
                        "path": "redis-cli",
                        "arguments": ["-h", "${redis_host}", "-p", "6379", "${redis_tls}", "FLUSHALL"],
                        "timeout": 30,
                    },
                    "pauses": { "before": 60, "after": 120 },
                }),
                json!({
                    "type": "probe",
                    "name": "cache-misses-after-the-flush",
                    "provider": {
                        "type": "python",
                        "module": "chaosaws.cloudwatch.probes",
                        "func": "get_metric_statistics",
                        "arguments": {
                            "namespace": "CloudCafe/Cache",
                            "metric_name": "Misses",
                            "dimension_name": "Environment",
                            "dimension_value": d.environment,
                            "statistic": "Sum",
                            "duration": 120,
                        },
                    },
                }),
            ],
            rollbacks: vec![],
        },
    )
}

fn memorydb_restart(d: &Deployment) -> Plan {
    let name = "memorydb-restart";
    let checked = [Alarm::ErrorRate, Alarm::AlbTarget5xxRate, Alarm::CacheHitRate];
    fis(
        name,
        template(
            d,
            name,
            "The cache server dies and comes back. CloudCafe's Redis in AWS is ElastiCache, and FIS's only \
             MemoryDB action pauses multi-Region replication. FIS cuts power to the cache nodes in the primary's \
             AZ for 2 min; the replica with least lag is promoted. Expected: cache calls fail for seconds, reads \
             fall back to the read models, no request fails. Local run: the one Redis process killed and \
             restarted, empty. Differs: a replica takes over with the data; the primary endpoint follows it.",
            json!({
                "cache": {
                    "resourceType": "aws:elasticache:replicationgroup",
                    "resourceTags": { "Project": "cloudcafe", "Environment": d.environment, "Component": "cache" },
                    "parameters": { "availabilityZoneIdentifier": d.cache_primary_zone },
                    "selectionMode": "ALL",
                },
            }),
            json!({
                "steadyState": assert_ok(d, &checked),
                "interruptCachePower": {
                    "actionId": "aws:elasticache:replicationgroup-interrupt-az-power",
                    "description": "The replication group must be Multi-AZ with a replica; set the target's \
                                    availabilityZoneIdentifier to the primary's AZ before the run.",
                    "parameters": { "duration": "PT2M" },
                    "targets": { "ReplicationGroups": "cache" },
                    "startAfter": ["steadyState"],
                },
                "observeRecovery": observe("PT5M", "interruptCachePower"),
            }),
            &[Alarm::Degraded, Alarm::ErrorRate, Alarm::AlbTarget5xxRate, Alarm::CacheHitRate],
        ),
    )
}

fn dynamodb_throttle(d: &Deployment) -> Plan {
    let cap = |table: &str| {
        process(
            "action",
            &format!("cap-{table}"),
            "aws",
            &[
                "dynamodb",
                "update-table",
                "--region",
                "${aws_region}",
                "--table-name",
                table,
                "--on-demand-throughput",
                "MaxReadRequestUnits=${max_read_units},MaxWriteRequestUnits=${max_write_units}",
            ],
            60,
        )
    };
    let lift = |table: &str| {
        process(
            "action",
            &format!("lift-cap-{table}"),
            "aws",
            &[
                "dynamodb",
                "update-table",
                "--region",
                "${aws_region}",
                "--table-name",
                table,
                "--on-demand-throughput",
                "MaxReadRequestUnits=-1,MaxWriteRequestUnits=-1",
            ],
            60,
        )
    };
    let mut method: Vec<Value> = d.dynamodb_tables.iter().map(|table| cap(table)).collect();
    method.push(json!({
        "type": "probe",
        "name": "throttles-observed",
        "provider": {
            "type": "python",
            "module": "chaosaws.cloudwatch.probes",
            "func": "get_metric_statistics",
            "arguments": {
                "namespace": "AWS/DynamoDB",
                "metric_name": "WriteThrottleEvents",
                "dimension_name": "TableName",
                "dimension_value": d.dynamodb_tables.first().cloned().unwrap_or_default(),
                "statistic": "Sum",
                "duration": 120,
            },
        },
        "pauses": { "before": 120 },
    }));
    method.extend(d.dynamodb_tables.iter().map(|table| lift(table)));
    let rollbacks = d.dynamodb_tables.iter().map(|table| lift(table)).collect();
    toolkit(
        "dynamodb-throttle",
        d,
        Experiment {
            title: "CloudCafe: DynamoDB throttles part of the traffic",
            description: "Story: DynamoDB throttles a share of CloudCafe's requests for two minutes. \
                Expected impact: the SDK retries throttled calls with backoff, read-model writes and reads slow \
                down, projections fall behind and catch up, payments neither fail nor reach the DLQ, and the \
                DynamoDbThrottles alarm may fire (it is the expected effect, so it is not in the steady state). \
                How it maps to the local experiment: locally the fault proxy answers a share of DynamoDB \
                requests with ProvisionedThroughputExceededException. FIS cannot do that: \
                aws:fis:inject-api-throttle-error supports only the ec2 and kinesis API namespaces (FIS actions \
                reference), and chaostoolkit-aws has no DynamoDB module. The closest real fault is DynamoDB's own \
                throttling: CloudCafe's tables are on-demand (PAY_PER_REQUEST), so the plan sets an on-demand \
                maximum throughput (MaxReadRequestUnits, MaxWriteRequestUnits) below the normal rate on every \
                table the DynamoDbThrottles alarm watches, holds it two minutes, and removes it (-1) at the end \
                of the method and again in the rollbacks. \
                What differs: DynamoDB throttles whatever exceeds the cap (throttling reason \
                ...MaxOnDemandThroughputExceeded), so the share depends on the traffic, not on a fixed \
                percentage, and the error the SDK sees is DynamoDB's real throttling error; pick the caps \
                (CLOUDCAFE_MAX_READ_UNITS, CLOUDCAFE_MAX_WRITE_UNITS) from the tables' consumed capacity on \
                the dashboards.",
            tags: &["dynamodb", "throttling"],
            configuration: &[
                ("max_read_units", "CLOUDCAFE_MAX_READ_UNITS", Some("10")),
                ("max_write_units", "CLOUDCAFE_MAX_WRITE_UNITS", Some("5")),
            ],
            probes: vec![
                alarm_ok(d, Alarm::ErrorRate),
                alarm_ok(d, Alarm::PaymentDlqNotEmpty),
                alarm_ok(d, Alarm::ProjectionLag),
            ],
            method,
            rollbacks,
        },
    )
}

fn broker_outage(d: &Deployment) -> Plan {
    let name = "broker-outage";
    let checked = [Alarm::ErrorRate, Alarm::PaymentDlqNotEmpty, Alarm::OutboxLagGrowing];
    fis(
        name,
        template(
            d,
            name,
            "Kinesis and SQS are unreachable for 30 s. FIS swaps the security groups of the Kinesis and SQS \
             interface VPC endpoints (tagged Component=broker-endpoint) for an empty one. Expected: outbox \
             publishing and payment requests fail and retry, the outbox lag grows then drains, no payment \
             reaches the DLQ, nothing is lost or published twice. Local run: both emulators unreachable 30 s. \
             Differs: only traffic through those endpoints is cut, and connections already open may last.",
            json!({
                "brokerEndpoints": {
                    "resourceType": "aws:ec2:vpc-endpoint",
                    "resourceTags": { "Project": "cloudcafe", "Environment": d.environment, "Component": "broker-endpoint" },
                    "selectionMode": "ALL",
                },
            }),
            json!({
                "steadyState": assert_ok(d, &checked),
                "cutTheBrokers": {
                    "actionId": "aws:network:disrupt-vpc-endpoint",
                    "description": format!(
                        "Blocks the interface endpoints of com.amazonaws.{0}.kinesis-streams and \
                         com.amazonaws.{0}.sqs (private DNS on). Chosen over aws:network:disrupt-connectivity, \
                         whose scopes cannot name Kinesis or SQS (prefix lists hold at most 10 entries) and \
                         which lasts at least 1 minute.",
                        d.region
                    ),
                    "parameters": { "duration": "PT30S" },
                    "targets": { "VPCEndpoints": "brokerEndpoints" },
                    "startAfter": ["steadyState"],
                },
                "observeRecovery": observe("PT10M", "cutTheBrokers"),
            }),
            &[
                Alarm::Degraded,
                Alarm::ErrorRate,
                Alarm::PaymentDlqNotEmpty,
                Alarm::OutboxLagGrowing,
                Alarm::ProjectionLag,
            ],
        ),
    )
}

fn network_latency(d: &Deployment) -> Plan {
    let name = "network-latency";
    let checked = [Alarm::ErrorRate, Alarm::ProjectionLag, Alarm::DatabaseConnections];
    fis(
        name,
        template(
            d,
            name,
            "The link to the database slows down. FIS adds 200 ms +/- 50 ms to every node task's traffic to the \
             Aurora writer endpoint for 2 min, then drops 10% of its packets for 2 min. Expected: appends and \
             follows slow down, p99 rises, pools hold connections longer, no request is lost and the lag \
             drains after. Local run: 200 ms with jitter, then a bandwidth cap. Differs: FIS has no bandwidth \
             cap; packet loss stands in for it (TCP slows through retransmits, not to a fixed rate).",
            json!({ "allNodes": node_tasks(d, "ALL") }),
            json!({
                "steadyState": assert_ok(d, &checked),
                "latencyToJournal": {
                    "actionId": "aws:ecs:task-network-latency",
                    "description": "Egress latency to the cluster endpoint only (sources is its DNS name, \
                                    resolved when the action starts).",
                    "parameters": {
                        "duration": "PT2M",
                        "delayMilliseconds": "200",
                        "jitterMilliseconds": "50",
                        "flowsPercent": "100",
                        "sources": d.aurora_endpoint,
                        "useEcsFaultInjectionEndpoints": ECS_ENDPOINTS,
                    },
                    "targets": { "Tasks": "allNodes" },
                    "startAfter": ["steadyState"],
                },
                "lossToJournal": {
                    "actionId": "aws:ecs:task-network-packet-loss",
                    "description": "The bandwidth-cap phase's stand-in: FIS's ECS network actions are \
                                    latency, packet loss and blackhole, and they cannot run in parallel.",
                    "parameters": {
                        "duration": "PT2M",
                        "lossPercent": "10",
                        "flowsPercent": "100",
                        "sources": d.aurora_endpoint,
                        "useEcsFaultInjectionEndpoints": ECS_ENDPOINTS,
                    },
                    "targets": { "Tasks": "allNodes" },
                    "startAfter": ["latencyToJournal"],
                },
                "observeRecovery": observe("PT5M", "lossToJournal"),
            }),
            &[
                Alarm::Degraded,
                Alarm::ErrorRate,
                Alarm::ProjectionLag,
                Alarm::DatabaseConnections,
                Alarm::AlbTarget5xxRate,
            ],
        ),
    )
}

fn alb_routing_failure(d: &Deployment) -> Plan {
    let no_route = r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"404","ContentType":"application/json","MessageBody":"{\"error\":\"no route (chaos experiment alb-routing-failure)\"}"}}]"#;
    let forward = r#"[{"Type":"forward","TargetGroupArn":"${target_group_arn}"}]"#;
    let modify = |name: &str, actions: &str| {
        process(
            "action",
            name,
            "aws",
            &[
                "elbv2",
                "modify-rule",
                "--region",
                "${aws_region}",
                "--rule-arn",
                "${orders_rule_arn}",
                "--actions",
                actions,
            ],
            60,
        )
    };
    let mut remove = modify("remove-orders-route", no_route);
    if let Some(activity) = remove.as_object_mut() {
        activity.insert("pauses".to_owned(), json!({ "after": 60 }));
    }
    toolkit(
        "alb-routing-failure",
        d,
        Experiment {
            title: "CloudCafe: the load balancer loses the /api/orders route",
            description: "Story: a bad load balancer change removes the /api/orders route for a minute, then it \
                is put back. Expected impact: clients placing or reading orders get 404 from the load balancer \
                itself; those requests never reach a node, so nothing is acknowledged and nothing can be lost; \
                the other routes keep working and the nodes' error rate does not move; once the route is back, \
                ordering resumes and a retry with the same Idempotency-Key places nothing twice. \
                How it maps to the local experiment: locally the route is removed from the local load balancer \
                and restored. FIS has no load balancer action, and chaosaws.elbv2 has nothing for listener \
                rules (deregister_target, set_security_groups, set_subnets and delete_load_balancer act on \
                targets or the whole load balancer), so the plan uses the AWS CLI: `aws elbv2 modify-rule` \
                turns the orders rule's forward action into a fixed 404 response, and a second modify-rule \
                forwards it to the node target group again, at the end of the method and again in the \
                rollbacks. \
                What differs: the rule is rewritten, not deleted, because a deleted rule would send /api/orders \
                to the listener's default action, which may forward to the same nodes and hide the fault. \
                Needs the rule's ARN (CLOUDCAFE_ORDERS_RULE_ARN) and the target group's \
                (CLOUDCAFE_TARGET_GROUP_ARN); check the rule has no other action before the run.",
            tags: &["elbv2", "alb", "routing"],
            configuration: &[
                ("orders_rule_arn", "CLOUDCAFE_ORDERS_RULE_ARN", None),
                ("target_group_arn", "CLOUDCAFE_TARGET_GROUP_ARN", None),
                ("cloudcafe_url", "CLOUDCAFE_URL", None),
            ],
            probes: vec![
                json!({
                    "type": "probe",
                    "name": "all-node-targets-healthy",
                    "tolerance": true,
                    "provider": {
                        "type": "python",
                        "module": "chaosaws.elbv2.probes",
                        "func": "all_targets_healthy",
                        "arguments": { "tg_names": [d.target_group] },
                    },
                }),
                json!({
                    "type": "probe",
                    "name": "health-answers-200",
                    "tolerance": 200,
                    "provider": { "type": "http", "url": "${cloudcafe_url}/health", "timeout": 5 },
                }),
                alarm_ok(d, Alarm::ErrorRate),
                alarm_ok(d, Alarm::AlbTarget5xxRate),
            ],
            method: vec![
                remove,
                json!({
                    "type": "probe",
                    "name": "orders-route-answers-404",
                    "provider": {
                        "type": "http",
                        "url": "${cloudcafe_url}/api/orders/00000000-0000-0000-0000-000000000000",
                        "timeout": 5,
                    },
                }),
                modify("restore-orders-route", forward),
            ],
            rollbacks: vec![modify("restore-orders-route", forward)],
        },
    )
}

fn security_group_lockdown(d: &Deployment) -> Plan {
    let name = "security-group-lockdown";
    let checked = [Alarm::ErrorRate, Alarm::DatabaseConnections, Alarm::ProjectionLag];
    fis(
        name,
        template(
            d,
            name,
            "The database stops taking connections for 20 s. FIS blackholes egress TCP 5432 in every node task. \
             Expected: appends and follows stall, then fail on the pool's and driver's timeouts; the nodes \
             answer errors, not hangs, and recover within seconds after; nothing acknowledged is lost. Local \
             run: new connections to PostgreSQL refused 20 s, open ones untouched. Differs: packets are dropped, \
             not refused, so clients wait for timeouts, and open connections stall too.",
            json!({ "allNodes": node_tasks(d, "ALL") }),
            json!({
                "steadyState": assert_ok(d, &checked),
                "blackholeJournal": {
                    "actionId": "aws:ecs:task-network-blackhole-port",
                    "description": "Chosen over aws:network:disrupt-connectivity on the database subnets, which \
                                    would cut every client of those subnets (replicas, bastions) for at least 1 \
                                    minute; this touches only the nodes' traffic to 5432, for 20 s.",
                    "parameters": {
                        "duration": "PT20S",
                        "port": "5432",
                        "protocol": "tcp",
                        "trafficType": "egress",
                        "useEcsFaultInjectionEndpoints": ECS_ENDPOINTS,
                    },
                    "targets": { "Tasks": "allNodes" },
                    "startAfter": ["steadyState"],
                },
                "observeRecovery": observe("PT5M", "blackholeJournal"),
            }),
            &[
                Alarm::Degraded,
                Alarm::ErrorRate,
                Alarm::DatabaseConnections,
                Alarm::ProjectionLag,
                Alarm::AlbTarget5xxRate,
            ],
        ),
    )
}

fn node_drain(d: &Deployment) -> Plan {
    let name = "node-drain";
    let checked = [Alarm::ErrorRate, Alarm::AlbTarget5xxRate, Alarm::RunningTasks];
    fis(
        name,
        template(
            d,
            name,
            "One node is taken out gracefully. FIS stops one task of the service (ECS StopTask): ECS takes it \
             out of the target group, sends SIGTERM, and SIGKILL after stopTimeout; the service starts a \
             replacement. Expected: no request fails, the node finishes in-flight work and stops its actors and \
             followers, singletons move to the survivors. Local run: SIGTERM to one node. Differs: the load \
             balancer's deregistration and the SIGKILL deadline (stopTimeout, 30 s by default) around it.",
            json!({ "oneNode": node_tasks(d, "COUNT(1)") }),
            json!({
                "steadyState": assert_ok(d, &checked),
                "stopOneNode": {
                    "actionId": "aws:ecs:stop-task",
                    "description": "Graceful: SIGTERM first (the ecs-task-kill plan is the SIGKILL one).",
                    "targets": { "Tasks": "oneNode" },
                    "startAfter": ["steadyState"],
                },
                "observeRecovery": observe("PT7M", "stopOneNode"),
            }),
            &[Alarm::Degraded, Alarm::ErrorRate, Alarm::AlbTarget5xxRate, Alarm::RunningTasks],
        ),
    )
}
