//! The deployment as code (`deploy/terraform/`, the `Dockerfile`) read against the binary: what the
//! ECS task passes `cloudcafe serve`, the names of the tables, streams and queues, the health check
//! and the ports, the stop timings, the load balancer's rules and the task role's statements. No
//! Terraform provider can be downloaded here, so the files are parsed (hcl-rs) and the expressions
//! that depend only on variables and locals are evaluated; what AWS assigns (endpoints, ids) is
//! checked by reference: the module output or resource it names must exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use hcl::eval::{Context, Evaluate};
use hcl::expr::{Expression, ObjectKey, TraversalOperator};
use hcl::{Block, Body, Value};

const ENV: &str = "prod";

fn terraform_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/terraform")
}

fn tf_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(tf_files(&path));
        } else if path.extension().is_some_and(|e| e == "tf") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every `.tf` file of one module directory, parsed and joined.
fn module(relative: &str) -> Body {
    let dir = terraform_dir().join(relative);
    let mut blocks = Vec::new();
    for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = file.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "tf") {
            blocks.extend(parse(&path).into_inner());
        }
    }
    Body::from_iter(blocks)
}

fn parse(path: &Path) -> Body {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    hcl::parse(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

fn blocks<'a>(body: &'a Body, kind: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
    body.blocks().filter(move |b| b.identifier() == kind)
}

fn labelled<'a>(body: &'a Body, kind: &str, labels: &[&str]) -> &'a Block {
    body.blocks()
        .find(|b| b.identifier() == kind && b.labels().iter().map(|l| l.as_str()).eq(labels.iter().copied()))
        .unwrap_or_else(|| panic!("no {kind} {labels:?}"))
}

fn attr<'a>(body: &'a Body, key: &str) -> &'a Expression {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr()).unwrap_or_else(|| panic!("no attribute {key}"))
}

/// The expression of `locals { key = … }` in `body`.
fn local<'a>(body: &'a Body, key: &str) -> &'a Expression {
    blocks(body, "locals")
        .flat_map(|b| b.body().attributes())
        .find(|a| a.key() == key)
        .map(|a| a.expr())
        .unwrap_or_else(|| panic!("no local {key}"))
}

fn eval(expr: &Expression, ctx: &Context<'_>) -> Value {
    expr.evaluate(ctx).unwrap_or_else(|e| panic!("cannot evaluate {expr:?}: {e}"))
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_else(|| panic!("{k} is not a string")).to_owned()))
        .collect()
}

/// The root's `local.names` for [`ENV`].
fn names() -> BTreeMap<String, String> {
    string_map(&eval(local(&module("."), "names"), &root_context()))
}

fn root_context() -> Context<'static> {
    let mut ctx = Context::new();
    ctx.declare_var(
        "var",
        hcl::value!({ environment = "prod", aws_region = "us-east-1", notification_sender = "orders@cloudcafe.example" }),
    );
    declare_functions(&mut ctx);
    ctx
}

/// The Terraform functions the evaluated expressions use.
fn declare_functions(ctx: &mut Context<'_>) {
    use hcl::eval::{FuncArgs, FuncDef, ParamType};
    fn concat(args: FuncArgs) -> Result<Value, String> {
        let mut out = Vec::new();
        for list in args.into_values() {
            out.extend(list.as_array().ok_or("concat takes lists")?.iter().cloned());
        }
        Ok(Value::Array(out))
    }
    fn values(args: FuncArgs) -> Result<Value, String> {
        let map = args.into_values().into_iter().next().ok_or("values takes a map")?;
        Ok(Value::Array(map.as_object().ok_or("values takes a map")?.values().cloned().collect()))
    }
    fn split(args: FuncArgs) -> Result<Value, String> {
        let [separator, text] = &args.into_values()[..] else { return Err("split takes two strings".into()) };
        let (Some(separator), Some(text)) = (separator.as_str(), text.as_str()) else {
            return Err("split takes two strings".into());
        };
        Ok(Value::Array(text.split(separator).map(Value::from).collect()))
    }
    ctx.declare_func("concat", FuncDef::builder().variadic_param(ParamType::Any).build(concat));
    ctx.declare_func("split", FuncDef::builder().param(ParamType::String).param(ParamType::String).build(split));
    ctx.declare_func("values", FuncDef::builder().param(ParamType::Any).build(values));
}

/// The root's locals that depend on variables and other locals only, evaluated in order.
fn root_locals() -> Value {
    let root = module(".");
    let mut ctx = root_context();
    let mut locals = hcl::Map::new();
    // Data sources stand in with fixed values: the account and the partition.
    locals.insert("account_id".into(), Value::from("123456789012"));
    locals.insert("partition".into(), Value::from("aws"));
    for key in
        ["names", "kinesis_fed_models", "lease_tables", "container_port", "health_check_path", "notification_domain"]
    {
        ctx.declare_var("local", Value::Object(locals.clone()));
        locals.insert(key.into(), eval(local(&root, key), &ctx));
    }
    for key in ["deregistration_delay", "stop_timeout"] {
        locals.insert(key.into(), eval(local(&root, key), &ctx));
    }
    ctx.declare_var("local", Value::Object(locals.clone()));
    locals.insert("arn_prefix".into(), eval(local(&root, "arn_prefix"), &ctx));
    locals.insert("queue_actions".into(), eval(local(&root, "queue_actions"), &ctx));
    locals.insert("stream_actions".into(), eval(local(&root, "stream_actions"), &ctx));
    Value::Object(locals)
}

fn get<'a>(value: &'a Value, key: &str) -> &'a Value {
    value.as_object().and_then(|o| o.get(key)).unwrap_or_else(|| panic!("no {key} in {value}"))
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{value} is not a whole number"))
}

#[test]
fn every_terraform_file_parses() {
    let files = tf_files(&terraform_dir());
    assert!(files.len() >= 20, "only {} .tf files under deploy/terraform", files.len());
    for file in files {
        parse(&file);
    }
}

#[test]
fn the_names_are_the_ones_the_code_uses() {
    let n = names();
    let dashboards = gateways::cloudwatch::dashboard::Deployment::for_environment(ENV);
    let plans = chaos::aws::Deployment::for_environment(ENV);
    let tables = projections::read_models::dynamo::TableNames::new("cloudcafe", ENV);
    let pairs = [
        ("ecs_cluster", dashboards.ecs_cluster.as_str()),
        ("ecs_cluster", plans.cluster.as_str()),
        ("ecs_service", dashboards.ecs_service.as_str()),
        ("ecs_service", plans.service.as_str()),
        ("aurora_cluster", dashboards.aurora_cluster.as_str()),
        ("aurora_cluster", plans.aurora_cluster.as_str()),
        ("cache_cluster", dashboards.cache_cluster.as_str()),
        ("cache_cluster", plans.cache_replication_group.as_str()),
        ("kinesis_stream", dashboards.kinesis_stream.as_str()),
        ("kinesis_stream", plans.kinesis_stream.as_str()),
        ("payment_queue", dashboards.payment_queue.as_str()),
        ("payment_queue", plans.payment_queue.as_str()),
        ("payment_dlq", dashboards.payment_dlq.as_str()),
        ("payment_dlq", plans.payment_dlq.as_str()),
        ("load_balancer", plans.load_balancer_name.as_str()),
        ("target_group", plans.target_group.as_str()),
    ];
    for (key, code) in pairs {
        assert_eq!(n[key], code, "local.names.{key}");
    }
    // The analytics stream, named as the order-events one is (cloudcafe-<base>-<env>).
    assert_eq!(n["analytics_stream"], format!("cloudcafe-{}-{ENV}", projections::bus::analytics::DEFAULT_STREAM));
    assert!(dashboards.load_balancer.starts_with(&format!("app/{}/", n["load_balancer"])));
    // What the chaos plans' FIS templates run as and log to, and the tags they find targets by.
    assert!(plans.fis_role_arn.ends_with(&format!(":role/{}", n["fis_role"])), "{}", plans.fis_role_arn);
    assert_eq!(n["fis_log_group"], plans.fis_log_group);
    let cache = attr(labelled(&module("modules/data"), "module", &["cache"]).body(), "tags").to_string();
    assert!(
        cache.contains("Component") && cache.contains("\"cache\""),
        "the cache is not tagged for the chaos plans: {cache}"
    );
    let network = module("modules/network");
    let brokers = labelled(&network, "resource", &["aws_vpc_endpoint", "brokers"]).body();
    let services = attr(brokers, "for_each").to_string();
    assert!(services.contains("kinesis-streams") && services.contains("\"sqs\""), "{services}");
    assert!(attr(brokers, "tags").to_string().contains("\"broker-endpoint\""), "the broker endpoints are not tagged");
    assert_eq!(n["offsets_table"], tables.offsets());
    assert_eq!(format!("{}1", n["active_orders_tables"]), tables.active_orders(1));
    assert_eq!(format!("{}1", n["store_inventory_tables"]), tables.store_inventory(1));
    for table in [&n["payments_table"], &n["offsets_table"], &tables.active_orders(1), &tables.store_inventory(1)] {
        assert!(dashboards.dynamodb_tables.contains(table), "the dashboards do not watch {table}");
        assert!(plans.dynamodb_tables.contains(table), "the chaos plans do not name {table}");
    }
    // One lease table per Kinesis-fed read model, named as the node names it.
    let locals = root_locals();
    let models: Vec<String> = get(&locals, "kinesis_fed_models")
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(
        models,
        [
            projections::read_models::dynamo::NAME,
            projections::read_models::documents::NAME,
            projections::read_models::analytics::NAME,
        ]
    );
    let leases = string_map(get(&locals, "lease_tables"));
    for model in &models {
        assert_eq!(leases[model], gateways::messaging::lease_table(&n["lease_table_prefix"], model));
    }
}

/// The keys of every object in `expr` (the maps the container's environment is built from).
fn object_keys(expr: &Expression, out: &mut BTreeSet<String>) {
    match expr {
        Expression::Object(object) => {
            for (key, value) in object {
                out.insert(match key {
                    ObjectKey::Identifier(id) => id.to_string(),
                    ObjectKey::Expression(Expression::String(s)) => s.clone(),
                    other => panic!("an environment name that is not a literal: {other:?}"),
                });
                object_keys(value, out);
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|a| object_keys(a, out)),
        Expression::Conditional(c) => {
            object_keys(&c.true_expr, out);
            object_keys(&c.false_expr, out);
        }
        Expression::Parenthesis(inner) => object_keys(inner, out),
        _ => {}
    }
}

/// Every environment variable `cloudcafe serve` reads, with the long flag it sets (None: a secret
/// read from the environment only).
fn serve_environment() -> BTreeMap<String, Option<(String, bool)>> {
    let cli = crate::Cli::command();
    let serve = cli.find_subcommand("serve").expect("a serve subcommand");
    let mut out = BTreeMap::new();
    for arg in serve.get_arguments() {
        if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
            let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
            out.insert(env.to_string_lossy().into_owned(), Some((long.to_owned(), is_switch)));
        }
    }
    for secret in super::storage::SECRET_ENV {
        out.insert((*secret).to_owned(), None);
    }
    out
}

#[test]
fn the_task_passes_serve_only_settings_it_reads_and_every_one_a_deployment_needs() {
    let compute = module("modules/compute");
    let mut given = BTreeSet::new();
    object_keys(local(&compute, "node_environment"), &mut given);
    let mut secrets = BTreeSet::new();
    object_keys(local(&compute, "node_secrets"), &mut secrets);
    let reads = serve_environment();
    for name in given.iter().chain(&secrets) {
        assert!(
            reads.contains_key(name) || name == "RUST_LOG",
            "the task sets {name}, which `cloudcafe serve` does not read"
        );
    }
    for name in &secrets {
        assert_eq!(reads.get(name), Some(&None), "{name} is a secret's value: serve must read it from the environment");
    }
    // What a node on AWS cannot go without: where to listen, the journal and how to log in to it,
    // each read model's store, the outbox and the payment queue, how to export metrics, whom to
    // trust for client addresses, and a key or identity provider for tokens.
    let needed = [
        "CLOUDCAFE_LISTEN",
        "CLOUDCAFE_ENVIRONMENT",
        "CLOUDCAFE_LOG_FORMAT",
        "CLOUDCAFE_CLOUDWATCH",
        "CLOUDCAFE_JOURNAL",
        "CLOUDCAFE_PG_SSLMODE",
        "CLOUDCAFE_PG_SSL_ROOT_CERT",
        "CLOUDCAFE_PG_IAM_AUTH",
        "CLOUDCAFE_ANALYTICS_URL",
        "CLOUDCAFE_REDIS_URL",
        "CLOUDCAFE_DYNAMODB_ENV",
        "CLOUDCAFE_DOCUMENTDB_URL",
        "CLOUDCAFE_DOCUMENTDB_CA_FILE",
        "CLOUDCAFE_KINESIS_STREAM",
        "CLOUDCAFE_PROJECTIONS_FROM",
        "CLOUDCAFE_LEASE_TABLE_PREFIX",
        "CLOUDCAFE_ANALYTICS_STREAM",
        "CLOUDCAFE_ANALYTICS_FROM",
        "CLOUDCAFE_PAYMENT_QUEUE",
        "CLOUDCAFE_PAYMENT_DLQ",
        "CLOUDCAFE_PAYMENTS_TABLE",
        "CLOUDCAFE_NOTIFICATION_QUEUE",
        "CLOUDCAFE_NOTIFICATION_DLQ",
        "CLOUDCAFE_NOTIFICATIONS_TABLE",
        "CLOUDCAFE_NOTIFICATION_SENDER",
        "CLOUDCAFE_TRUST_FORWARDED_FOR",
        "CLOUDCAFE_JWKS_URL",
        "CLOUDCAFE_JWT_ISSUER",
    ];
    for name in needed {
        assert!(given.contains(name), "the task does not set {name}");
    }
    for name in [
        "CLOUDCAFE_REDIS_PASSWORD",
        "CLOUDCAFE_DOCUMENTDB_PASSWORD",
        "CLOUDCAFE_ANALYTICS_PASSWORD",
        "CLOUDCAFE_AUTH_KEY",
    ] {
        assert!(secrets.contains(name), "the task is not given the secret {name}");
    }

    // The values that depend on the deployment's variables only, given to the binary's own parser
    // as the flags they stand for: a value serve would refuse fails here, not at a task's start.
    let n = names();
    let mut ctx = Context::new();
    ctx.declare_var(
        "var",
        hcl::value!({
            environment = "prod",
            names = (Value::from_iter(n.clone())),
            container_port = 8080,
            health_check_path = "/health",
            // A stand-in for the Redshift cluster's URL (prod keeps analytics in Redshift).
            analytics_url = "postgres://cloudcafe@cloudcafe-analytics-prod.example:5439/analytics",
        }),
    );
    ctx.declare_var("local", hcl::value!({ rds_ca_bundle = "/etc/cloudcafe/rds-global-bundle.pem" }));
    let Expression::FuncCall(merge) = local(&compute, "node_environment") else {
        panic!("node_environment is a merge")
    };
    let Some(Expression::Object(always)) = merge.args.first() else {
        panic!("merge's first map is the fixed environment")
    };
    let mut argv = vec!["cloudcafe".to_owned(), "serve".to_owned()];
    let mut evaluated = BTreeMap::new();
    for (key, value) in always {
        let ObjectKey::Identifier(key) = key else { continue };
        let Ok(value) = value.evaluate(&ctx) else { continue }; // an endpoint AWS assigns
        let value = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        evaluated.insert(key.to_string(), value.clone());
        match reads.get(key.as_str()) {
            Some(Some((long, true))) if value == "true" => argv.push(format!("--{long}")),
            Some(Some((long, false))) => argv.push(format!("--{long}={value}")),
            _ => {}
        }
    }
    if let Err(e) = <crate::Cli as clap::Parser>::try_parse_from(&argv) {
        panic!("serve refuses what the task gives it ({argv:?}): {e}");
    }
    assert_eq!(evaluated["CLOUDCAFE_KINESIS_STREAM"], n["kinesis_stream"]);
    assert_eq!(evaluated["CLOUDCAFE_PAYMENT_QUEUE"], n["payment_queue"]);
    assert_eq!(evaluated["CLOUDCAFE_PAYMENT_DLQ"], n["payment_dlq"]);
    assert_eq!(evaluated["CLOUDCAFE_PAYMENTS_TABLE"], n["payments_table"]);
    assert_eq!(evaluated["CLOUDCAFE_NOTIFICATION_QUEUE"], n["notification_queue"]);
    assert_eq!(evaluated["CLOUDCAFE_NOTIFICATION_DLQ"], n["notification_dlq"]);
    assert_eq!(evaluated["CLOUDCAFE_NOTIFICATIONS_TABLE"], n["notifications_table"]);
    assert_eq!(evaluated["CLOUDCAFE_LEASE_TABLE_PREFIX"], n["lease_table_prefix"]);
    assert_eq!(evaluated["CLOUDCAFE_DYNAMODB_ENV"], ENV);
    assert_eq!(evaluated["CLOUDCAFE_ENVIRONMENT"], ENV);
    assert_eq!(evaluated["CLOUDCAFE_PROJECTIONS_FROM"], "kinesis");
    assert_eq!(evaluated["CLOUDCAFE_ANALYTICS_STREAM"], n["analytics_stream"]);
    assert_eq!(evaluated["CLOUDCAFE_ANALYTICS_FROM"], "kinesis");
    // Without Redshift the analytics model lives in the journal's database and follows the journal.
    let analytics_from = always
        .iter()
        .find(|(key, _)| matches!(key, ObjectKey::Identifier(id) if id.as_str() == "CLOUDCAFE_ANALYTICS_FROM"))
        .map(|(_, value)| value)
        .expect("CLOUDCAFE_ANALYTICS_FROM in the fixed environment");
    let mut without_redshift = Context::new();
    without_redshift.declare_var("var", hcl::value!({ analytics_url = (Value::Null) }));
    assert_eq!(eval(analytics_from, &without_redshift), Value::from("journal"));
    assert_eq!(evaluated["CLOUDCAFE_LISTEN"], "0.0.0.0:8080");
}

/// The Dockerfile's instructions, by keyword (continuation lines joined).
fn dockerfile() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    let text = std::fs::read_to_string(&path).expect("the Dockerfile");
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        pending.push_str(trimmed.trim_end_matches('\\'));
        pending.push(' ');
        if !trimmed.ends_with('\\') {
            let (keyword, rest) = pending.trim().split_once(' ').unwrap_or((pending.trim(), ""));
            out.push((keyword.to_uppercase(), rest.trim().to_owned()));
            pending.clear();
        }
    }
    out
}

#[test]
fn the_health_check_ports_and_stop_timings_agree() {
    let locals = root_locals();
    let port = number(get(&locals, "container_port"));
    let health = get(&locals, "health_check_path").as_str().expect("a path").to_owned();
    // The route is the node's, and open.
    assert!(
        gateways::http::route_guards().iter().any(|(path, method, guard)| *path == health
            && *method == actix_web::http::Method::GET
            && *guard == gateways::http::Guard::Public),
        "{health} is not an open GET route of the node"
    );
    // The image listens on that port and checks that path.
    let docker = dockerfile();
    let all = |keyword: &'static str| docker.iter().filter(move |(k, _)| k == keyword).map(|(_, v)| v.as_str());
    assert!(all("EXPOSE").any(|v| v == port.to_string()), "the Dockerfile does not EXPOSE {port}");
    assert!(all("ENV").any(|v| v.contains(&format!("CLOUDCAFE_LISTEN=0.0.0.0:{port}"))), "the image listens elsewhere");
    let url = format!("http://127.0.0.1:{port}{health}");
    assert!(all("HEALTHCHECK").any(|v| v.contains(&url)), "the image's HEALTHCHECK does not ask {url}");
    assert_eq!(all("STOPSIGNAL").collect::<Vec<_>>(), ["SIGTERM"], "the node stops gracefully on SIGTERM");
    assert!(all("USER").any(|v| v == "10001:10001"), "the image runs as its own user");
    // The target group checks the same path on the traffic port, and the task asks the same URL.
    let edge = module("modules/edge");
    let alb = labelled(&edge, "module", &["alb"]);
    let groups = attr(alb.body(), "target_groups").to_string();
    assert!(groups.contains("path = var.health_check_path") && groups.contains("\"traffic-port\""), "{groups}");
    let compute = module("modules/compute");
    let service = labelled(&compute, "module", &["service"]).body();
    let containers = attr(service, "container_definitions").to_string();
    assert!(
        containers.contains("${var.container_port}${var.health_check_path}"),
        "the task's health check asks elsewhere"
    );
    assert!(containers.contains("user = \"10001:10001\""), "the task does not run as the image's user");
    // A stopping node: the load balancer drains it longer than the node lets requests finish, and
    // ECS waits longer than that before SIGKILL.
    let shutdown = super::serve::SHUTDOWN_TIMEOUT_SECS;
    let drain = number(get(&locals, "deregistration_delay"));
    let stop = number(get(&locals, "stop_timeout"));
    assert!(drain > shutdown, "deregistration_delay {drain} s is not longer than the node's {shutdown} s");
    assert!(stop > shutdown, "stop_timeout {stop} s is not longer than the node's {shutdown} s");
}

/// Whether an ALB path pattern (`*` any run of characters, `?` one) matches `path`.
fn alb_matches(pattern: &str, path: &str) -> bool {
    match (pattern.chars().next(), path.chars().next()) {
        (None, None) => true,
        (Some('*'), _) => alb_matches(&pattern[1..], path) || (!path.is_empty() && alb_matches(pattern, &path[1..])),
        (Some('?'), Some(c)) => alb_matches(&pattern[1..], &path[c.len_utf8()..]),
        (Some(p), Some(c)) if p == c => alb_matches(&pattern[p.len_utf8()..], &path[c.len_utf8()..]),
        _ => false,
    }
}

#[test]
fn the_load_balancer_routes_every_route_but_metrics() {
    let edge = module("modules/edge");
    let mut ctx = Context::new();
    ctx.declare_var("var", hcl::value!({}));
    let paths = eval(local(&edge, "service_paths"), &ctx);
    let mut patterns: Vec<String> =
        paths.as_object().expect("a map").values().map(|v| v.as_str().expect("a pattern").to_owned()).collect();
    let listeners = attr(labelled(&edge, "module", &["alb"]).body(), "listeners").to_string();
    for fixed in ["/health", "/ready", "/openapi.json"] {
        assert!(listeners.contains(&format!("\"{fixed}\"")), "no rule forwards {fixed}");
        patterns.push(fixed.to_owned());
    }
    for (path, _, _) in gateways::http::route_guards() {
        let concrete = path.replace(['{', '}'], "x");
        let routed = patterns.iter().any(|p| alb_matches(p, &concrete));
        if path == "/metrics" {
            assert!(!routed, "/metrics is for the VPC only, yet a rule forwards it");
        } else {
            assert!(routed, "no load balancer rule forwards {path}");
        }
    }
    // The plans' six services are routed by their own rules.
    for service in ["/api/orders", "/api/menu", "/api/inventory", "/api/loyalty", "/api/payments", "/api/analytics"] {
        assert!(patterns.iter().any(|p| p == &format!("{service}*")), "no rule of its own for {service}");
    }
}

/// The names the configuration creates things under: the `name`-like attributes of every module
/// and resource block, evaluated with `var.names` (and `var.lease_tables` for blocks over it).
fn created_names() -> BTreeSet<String> {
    let n = names();
    let locals = root_locals();
    let leases = string_map(get(&locals, "lease_tables"));
    let mut ctx = Context::new();
    ctx.declare_var(
        "var",
        hcl::value!({ names = (Value::from_iter(n.clone())), lease_tables = (Value::from_iter(leases.clone())) }),
    );
    let mut out = BTreeSet::new();
    for dir in ["modules/data", "modules/messaging", "modules/compute", "modules/edge"] {
        let body = module(dir);
        for block in body.blocks().filter(|b| b.identifier() == "module" || b.identifier() == "resource") {
            let over_leases = block
                .body()
                .attributes()
                .any(|a| a.key() == "for_each" && a.expr().to_string().trim() == "var.lease_tables");
            if over_leases {
                out.extend(leases.values().cloned());
                continue;
            }
            for a in block.body().attributes() {
                if ["name", "dlq_name", "cluster_identifier", "replication_group_id"].contains(&a.key()) {
                    if let Ok(Value::String(name)) = a.expr().evaluate(&ctx) {
                        out.insert(name);
                    }
                }
            }
        }
    }
    out
}

/// The `module.X.Y` references in `expr`, as (X, Y).
fn module_references(expr: &Expression, out: &mut BTreeSet<(String, String)>) {
    match expr {
        Expression::Traversal(t) => {
            if let (Expression::Variable(v), [TraversalOperator::GetAttr(m), TraversalOperator::GetAttr(o), ..]) =
                (&t.expr, t.operators.as_slice())
            {
                if v.as_str() == "module" {
                    out.insert((m.to_string(), o.to_string()));
                }
            }
        }
        Expression::TemplateExpr(t) => {
            let template = hcl::template::Template::from_expr(t).expect("a template");
            for element in template.elements() {
                if let hcl::template::Element::Interpolation(i) = element {
                    module_references(&i.expr, out);
                }
            }
        }
        Expression::Array(items) => items.iter().for_each(|e| module_references(e, out)),
        Expression::Object(object) => object.values().for_each(|e| module_references(e, out)),
        Expression::FuncCall(call) => call.args.iter().for_each(|e| module_references(e, out)),
        Expression::ForExpr(f) => {
            module_references(&f.collection_expr, out);
            module_references(&f.value_expr, out);
        }
        Expression::Parenthesis(inner) => module_references(inner, out),
        _ => {}
    }
}

#[test]
fn every_task_role_statement_names_what_the_configuration_or_the_node_creates() {
    let root = module(".");
    let statements_expr = local(&root, "task_role_statements");
    // The module outputs the statements use must exist.
    let mut references = BTreeSet::new();
    module_references(statements_expr, &mut references);
    assert!(!references.is_empty());
    for (module_name, output) in &references {
        let outputs = module(&format!("modules/{module_name}"));
        assert!(
            blocks(&outputs, "output").any(|b| b.labels().first().is_some_and(|l| l.as_str() == output)),
            "iam.tf names module.{module_name}.{output}, which that module does not output"
        );
    }
    let locals = root_locals();
    let mut ctx = root_context();
    ctx.declare_var("local", locals);
    ctx.declare_var(
        "module",
        hcl::value!({ data = {
            aurora_resource_id = "cluster-ABCDEFGHIJKLMNOPQRSTUVWXY",
            journal_user = "cloudcafe_app",
            kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        } }),
    );
    let statements = eval(statements_expr, &ctx);
    let statements = statements.as_array().expect("a list of statements");
    let created = created_names();
    let n = names();
    let tables = projections::read_models::dynamo::TableNames::new("cloudcafe", ENV);
    // What the node creates itself: its read models' generations.
    let node_creates = [n["active_orders_tables"].clone(), n["store_inventory_tables"].clone()];
    let mut granted = Vec::new();
    // A direct SMS publish has no resource ARN: IAM knows it only as "*". That one grant is allowed
    // when a Deny takes every topic out of it, so that it cannot publish to any topic.
    let denies_topics = statements.iter().any(|st| {
        st.as_object().and_then(|o| o.get("effect")).and_then(Value::as_str) == Some("Deny")
            && get(st, "actions").as_array().expect("actions").iter().any(|a| a.as_str() == Some("sns:Publish"))
            && get(st, "resources")
                .as_array()
                .expect("resources")
                .iter()
                .any(|r| r.as_str() == Some("arn:aws:sns:*:*:*"))
    });
    for statement in statements {
        let sid = get(statement, "sid").as_str().expect("a sid");
        let actions = get(statement, "actions").as_array().expect("actions");
        let effect = statement.as_object().and_then(|o| o.get("effect")).and_then(Value::as_str).unwrap_or("Allow");
        if effect == "Deny" {
            continue; // takes away; what it names need not exist
        }
        assert_eq!(effect, "Allow", "{sid}");
        assert!(
            actions.iter().all(|a| !a.as_str().expect("an action").contains('*')),
            "{sid} grants a wildcard action"
        );
        let action_names: Vec<&str> = actions.iter().filter_map(Value::as_str).collect();
        for resource in get(statement, "resources").as_array().expect("resources") {
            let arn = resource.as_str().expect("an ARN");
            if arn == "*" && action_names == ["sns:Publish"] && denies_topics {
                granted.push(("sms".to_owned(), vec!["sns:Publish".to_owned()]));
                continue;
            }
            assert_ne!(arn, "*", "{sid} grants every resource");
            let name = arn
                .strip_prefix("arn:aws:dynamodb:us-east-1:123456789012:table/")
                .or_else(|| arn.strip_prefix("arn:aws:kinesis:us-east-1:123456789012:stream/"))
                .or_else(|| arn.strip_prefix("arn:aws:sqs:us-east-1:123456789012:"));
            match name {
                Some(name) => match name.strip_suffix('*') {
                    Some(prefix) => assert!(
                        node_creates.iter().any(|p| p == prefix),
                        "{sid}: {arn} is no prefix the node creates under"
                    ),
                    None => assert!(
                        created.contains(name),
                        "{sid}: {arn} names {name}, which the configuration does not create"
                    ),
                },
                None if arn.starts_with("arn:aws:rds-db:us-east-1:123456789012:dbuser:") => {
                    assert!(arn.ends_with("/cloudcafe_app"), "{sid}: {arn} is not the journal's user");
                }
                None if arn.starts_with("arn:aws:ses:us-east-1:123456789012:identity/") => {
                    assert!(
                        blocks(&module("."), "resource")
                            .any(|b| b.labels().first().is_some_and(|l| l.as_str() == "aws_sesv2_email_identity")),
                        "{sid}: {arn}: no SES identity is created"
                    );
                    assert!(arn.ends_with("/cloudcafe.example"), "{sid}: {arn} is not the sender's domain");
                }
                None if arn.starts_with("arn:aws:kms:") => {
                    assert!(blocks(&module("modules/data"), "resource")
                        .any(|b| b.labels().first().is_some_and(|l| l.as_str() == "aws_kms_key")));
                }
                None => panic!("{sid}: {arn} is not a resource this test knows"),
            }
            granted.push((
                arn.to_owned(),
                actions.iter().map(|a| a.as_str().expect("an action").to_owned()).collect::<Vec<_>>(),
            ));
        }
    }
    // And the other way round: everything the node touches is granted.
    let grants = |resource: &str, action: &str| {
        granted.iter().any(|(arn, actions)| {
            actions.iter().any(|a| a == action)
                && (arn == resource || arn.strip_suffix('*').is_some_and(|p| resource.starts_with(p)))
        })
    };
    let dynamodb = |t: &str| format!("arn:aws:dynamodb:us-east-1:123456789012:table/{t}");
    let leases = string_map(get(&root_locals(), "lease_tables"));
    let touched = [
        (dynamodb(&tables.active_orders(2)), "dynamodb:CreateTable"),
        (dynamodb(&tables.active_orders(1)), "dynamodb:DeleteTable"),
        (dynamodb(&tables.store_inventory(1)), "dynamodb:UpdateItem"),
        (dynamodb(&tables.active_orders(1)), "dynamodb:Query"),
        (dynamodb(&tables.offsets()), "dynamodb:UpdateItem"),
        (dynamodb(&n["payments_table"]), "dynamodb:PutItem"),
        (dynamodb(&leases[projections::read_models::dynamo::NAME]), "dynamodb:UpdateItem"),
        (dynamodb(&leases[projections::read_models::documents::NAME]), "dynamodb:Scan"),
        (format!("arn:aws:kinesis:us-east-1:123456789012:stream/{}", n["kinesis_stream"]), "kinesis:PutRecords"),
        (format!("arn:aws:kinesis:us-east-1:123456789012:stream/{}", n["kinesis_stream"]), "kinesis:GetRecords"),
        (dynamodb(&leases[projections::read_models::analytics::NAME]), "dynamodb:UpdateItem"),
        (format!("arn:aws:kinesis:us-east-1:123456789012:stream/{}", n["analytics_stream"]), "kinesis:PutRecords"),
        (format!("arn:aws:kinesis:us-east-1:123456789012:stream/{}", n["analytics_stream"]), "kinesis:GetRecords"),
        (
            format!("arn:aws:kinesis:us-east-1:123456789012:stream/{}", n["analytics_stream"]),
            "kinesis:GetShardIterator",
        ),
        (format!("arn:aws:sqs:us-east-1:123456789012:{}", n["payment_queue"]), "sqs:ReceiveMessage"),
        (format!("arn:aws:sqs:us-east-1:123456789012:{}", n["payment_dlq"]), "sqs:GetQueueAttributes"),
        (dynamodb(&n["notifications_table"]), "dynamodb:PutItem"),
        (dynamodb(&n["notifications_table"]), "dynamodb:DeleteItem"),
        (format!("arn:aws:sqs:us-east-1:123456789012:{}", n["notification_queue"]), "sqs:ReceiveMessage"),
        (format!("arn:aws:sqs:us-east-1:123456789012:{}", n["notification_queue"]), "sqs:SendMessage"),
        (format!("arn:aws:sqs:us-east-1:123456789012:{}", n["notification_dlq"]), "sqs:GetQueueAttributes"),
        ("arn:aws:ses:us-east-1:123456789012:identity/cloudcafe.example".to_owned(), "ses:SendEmail"),
        ("sms".to_owned(), "sns:Publish"),
    ];
    for (resource, action) in touched {
        assert!(grants(&resource, action), "the task role does not grant {action} on {resource}");
    }
}

#[test]
fn alb_patterns_match_as_the_alb_does() {
    assert!(alb_matches("/api/orders*", "/api/orders"));
    assert!(alb_matches("/api/orders*", "/api/orders/x"));
    assert!(!alb_matches("/api/orders*", "/api/order"));
    assert!(alb_matches("/admin/*", "/admin/stores"));
    assert!(!alb_matches("/admin/*", "/metrics"));
    assert!(alb_matches("/a?c", "/abc"));
}
