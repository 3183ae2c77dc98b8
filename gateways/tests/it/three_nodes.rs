//! Three `cloudcafe serve` processes on one PostgreSQL journal, as they would run behind an ALB:
//! they publish to kinesalite and SQS (moto), process payments, and keep the DynamoDB read models
//! from Kinesis with shard leases. One of them runs the journal's followers (saga, publishers) for
//! the cluster. All three take orders for the same SKU at once; the followers' node is killed with
//! SIGKILL midway, and a survivor takes them over.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos::ledger::AckLedger;
use chaos::process::{free_loopback_addr, Node};
use events::domain::streams;
use events::postgres::{PgJournal, PgOptions};
use events::{DomainEvent, Journal};
use gateways::payments::PaymentLedger;
use projections::bus::leases::LeaseTable;
use projections::read_models::analytics::AnalyticsSink;
use projections::read_models::dynamo::{DynamoSink, TableNames};
use projections::read_models::runner::ProjectionRunner;
use projections::Sink;
use testkit::aws::{dynamodb_client, TemporaryStream};
use testkit::names::short_id;
use testkit::python::{python_with_boto3, verify_kinesis_with_python};
use testkit::{servers, wait_until};

use crate::security::{admin_bearer, admin_client, key_file};

const STOCK: i64 = 60;

struct Cluster {
    nodes: Vec<Node>,
    pg_url: String,
    schema: String,
    dynamodb: aws_sdk_dynamodb::Client,
    env: String,
    lease_table: String,
    payments_table: String,
    kinesis_endpoint: String,
    /// Made by the nodes; deleted when the test is done.
    stream: TemporaryStream,
    _analytics_stream: TemporaryStream,
}

async fn cluster() -> Option<Cluster> {
    let pg_url = servers::postgres_url()?;
    let kinesis = servers::kinesis_endpoint()?;
    let moto = servers::dynamodb_endpoint()?;
    let sqs = servers::sqs_endpoint()?;
    let id = &short_id();
    let schema = servers::fresh_schema("three");
    let env = format!("three{id}");
    let prefix = format!("leases-{id}");
    let payments_table = format!("payments-{id}");
    let nodes = (1..=3)
        .map(|i| {
            let addr = free_loopback_addr();
            let args: Vec<String> = [
                "serve",
                "--listen",
                &addr.to_string(),
                "--workers",
                "1",
                "--no-seed",
                "--journal",
                &pg_url,
                "--pg-schema",
                &schema,
                "--decline-threshold",
                "1.0",
                "--fraud-rounds",
                "10",
                "--dynamodb-env",
                &env,
                "--dynamodb-endpoint",
                &moto,
                "--kinesis-stream",
                &format!("order-events-{id}"),
                "--kinesis-endpoint",
                &kinesis,
                "--sqs-endpoint",
                &sqs,
                "--payment-queue",
                &format!("payment-requests-{id}.fifo"),
                "--payment-dlq",
                &format!("payment-requests-dlq-{id}.fifo"),
                "--payments-table",
                &payments_table,
                "--payment-wait-secs",
                "1",
                "--projections-from",
                "kinesis",
                "--analytics-stream",
                &format!("analytics-events-{id}"),
                "--analytics-from",
                "kinesis",
                "--lease-table-prefix",
                &prefix,
                "--lease-timeout-ms",
                "3000",
                "--worker-id",
                &format!("node-{i}"),
                "--auth-key-file",
                key_file(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Node::new(env!("CARGO_BIN_EXE_cloudcafe"), args, addr)
        })
        .collect();
    Some(Cluster {
        nodes,
        pg_url,
        schema,
        dynamodb: dynamodb_client(&moto).await,
        env,
        lease_table: format!("{prefix}-{}", projections::read_models::dynamo::NAME),
        payments_table,
        stream: TemporaryStream::adopt(&kinesis, format!("order-events-{id}")),
        _analytics_stream: TemporaryStream::adopt(&kinesis, format!("analytics-events-{id}")),
        kinesis_endpoint: kinesis,
    })
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, serde_json::Value)> {
    let mut conn = admin_client(addr);
    let r = conn.request(method, path, headers, body.as_bytes()).await.ok()?;
    Some((r.status, if r.body.is_empty() { serde_json::Value::Null } else { r.json() }))
}

/// Places an order for one latte with `key`, trying the nodes from `first` on until one answers.
async fn place(nodes: &[SocketAddr], first: usize, key: &str, ledger: &AckLedger) {
    let body = format!(
        r#"{{"customer_id":"c-{}","store_id":"store-1","items":[{{"item_id":"latte","quantity":1}}]}}"#,
        key.len() % 7
    );
    for attempt in 0..30 {
        let addr = nodes[(first + attempt) % nodes.len()];
        match call(addr, "POST", "/api/orders", &[("Idempotency-Key", key)], &body).await {
            Some((201, order)) => {
                ledger.acknowledged(order["order_id"].as_str().unwrap().to_owned());
                return;
            }
            Some((503, _)) | None => tokio::time::sleep(Duration::from_millis(50)).await,
            Some((status, body)) => panic!("order {key}: {status} {body}"),
        }
    }
    panic!("order {key} was never acknowledged");
}

/// The followers this node runs for the cluster (`singleton_held` on its `/metrics`).
async fn singletons_held(addr: SocketAddr) -> BTreeSet<String> {
    let mut conn = admin_client(addr);
    let Ok(r) = conn.request("GET", "/metrics", &[], b"").await else { return BTreeSet::new() };
    String::from_utf8_lossy(&r.body)
        .lines()
        .filter_map(|line| {
            let (follower, value) = line.strip_prefix("singleton_held{follower=\"")?.split_once("\"} ")?;
            (value.trim().parse::<f64>().ok()? == 1.0).then(|| follower.to_owned())
        })
        .collect()
}

/// The indexes of the nodes in `addrs` that run `follower`.
async fn holders(addrs: &[SocketAddr], follower: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        if singletons_held(*addr).await.contains(follower) {
            out.push(i);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_log_without_overselling_or_losing_an_event_when_one_is_killed() {
    let Some(mut cluster) = cluster().await else { return };
    cluster.nodes[0].start(Duration::from_secs(60)).expect("node 1 starts");
    let first = cluster.nodes[0].addr;
    let menu = r#"{"item_id":"latte","name":"Caffè Latte","category":"coffee","price_cents":450}"#;
    assert_eq!(call(first, "POST", "/api/menu/items", &[], menu).await.unwrap().0, 201);
    let store = r#"{"store_id":"store-1","name":"CloudCafe #1"}"#;
    let bearer = admin_bearer();
    let admin_auth = [("Authorization", bearer.as_str())];
    assert_eq!(call(first, "POST", "/admin/stores", &admin_auth, store).await.unwrap().0, 201);
    let restock = format!(r#"{{"store_id":"store-1","sku":"latte","quantity":{STOCK}}}"#);
    assert_eq!(call(first, "POST", "/api/inventory/restock", &[], &restock).await.unwrap().0, 200);
    for node in &mut cluster.nodes[1..] {
        node.start(Duration::from_secs(60)).expect("node starts");
    }
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let leases = LeaseTable::open(cluster.dynamodb.clone(), cluster.lease_table.clone()).await.unwrap();
    wait_until("the three nodes share the four shards", Duration::from_secs(60), || async {
        let owners: BTreeSet<String> = leases.list().await.unwrap().into_iter().filter_map(|l| l.owner).collect();
        owners.len() == 3
    })
    .await;

    // One node runs the journal's followers (saga, publishers) for the cluster: that one is killed.
    wait_until("one node runs the order saga", Duration::from_secs(30), || async {
        holders(&addrs, "order-saga").await.len() == 1
    })
    .await;
    let victim = holders(&addrs, "order-saga").await[0];
    let held = singletons_held(addrs[victim]).await;
    for follower in ["order-saga", "outbox:publisher:kinesis", "outbox:publisher:sqs"] {
        assert!(held.contains(follower), "node {} runs {follower}: {held:?}", victim + 1);
    }
    let victim_worker = format!("node-{}", victim + 1);

    // 100 orders for 60 lattes, sent to all three nodes at once; the singletons' node is killed midway.
    let ledger = Arc::new(AckLedger::default());
    let writers: Vec<_> = (0..10)
        .map(|w| {
            let (addrs, ledger) = (addrs.clone(), ledger.clone());
            tokio::spawn(async move {
                for n in 0..10 {
                    place(&addrs, w + n, &format!("order-{w}-{n}"), &ledger).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.nodes[victim].kill().expect("SIGKILL");
    let killed = Instant::now();
    let survivors: Vec<SocketAddr> = addrs.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, a)| *a).collect();
    wait_until("a survivor runs the order saga", Duration::from_secs(15), || async {
        holders(&survivors, "order-saga").await.len() == 1
    })
    .await;
    eprintln!("{victim_worker}'s followers moved within {:?} of the SIGKILL", killed.elapsed());
    for w in writers {
        w.await.unwrap();
    }
    let orders = ledger.acknowledged_ids();
    assert_eq!(orders.len(), 100);
    eprintln!("all 100 orders acknowledged {:?} after the SIGKILL", killed.elapsed());

    wait_until("the dead node's leases moved to the others", Duration::from_secs(30), || async {
        let all = leases.list().await.unwrap();
        all.iter().all(|l| l.owner.as_deref() != Some(victim_worker.as_str()))
            && all.iter().filter(|l| l.owner.is_some()).count() == all.len()
    })
    .await;
    eprintln!("{victim_worker}'s leases moved within {:?} of the SIGKILL (lease timeout 3 s)", killed.elapsed());

    // Every order ends paid or cancelled for want of stock; exactly the stock is sold.
    let survivor = survivors[0];
    let outcome: BTreeMap<String, String> = {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let mut outcome = BTreeMap::new();
            for id in &orders {
                let Some((200, order)) = call(survivor, "GET", &format!("/api/orders/{id}"), &[], "").await else {
                    break;
                };
                let status = order["status"].as_str().unwrap().to_owned();
                if status == "placed" {
                    break;
                }
                outcome.insert(id.clone(), format!("{status} {}", order["cancel_reason"].as_str().unwrap_or_default()));
            }
            if outcome.len() == orders.len() {
                break outcome;
            }
            assert!(Instant::now() < deadline, "orders still open: {} of {} settled", outcome.len(), orders.len());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let paid = outcome.values().filter(|s| s.starts_with("paid")).count();
    let short = outcome.values().filter(|s| s.contains("out_of_stock")).count();
    assert_eq!((paid, short), (STOCK as usize, 100 - STOCK as usize), "{outcome:?}");

    // Each survivor shows every catalog metric of the parts every node runs, and nothing the catalog
    // does not declare. The followers' own metrics (stalls, the outbox's) are on whichever survivor
    // took over the singleton followers, and a payment's duration only on the processor SQS handed
    // its request to (one long poll can take every message of a short run), so those are checked
    // over the survivors together.
    use events::metric::Emitter;
    let mut all = String::new();
    for node in &survivors {
        let mut conn = admin_client(*node);
        let text = String::from_utf8(conn.request("GET", "/metrics", &[], b"").await.unwrap().body).unwrap();
        crate::metrics_export::check_catalog(&text, &[Emitter::Postgres, Emitter::KinesisConsumer]);
        all.push_str(&text);
    }
    crate::metrics_export::check_catalog(&all, &[Emitter::Node, Emitter::Outbox, Emitter::PaymentProcessor]);

    // The journal holds each acknowledged order once.
    let options = PgOptions::new(cluster.pg_url.clone()).with_schema(cluster.schema.clone());
    let journal: Arc<dyn Journal> = Arc::new(PgJournal::connect(options).await.unwrap());
    for id in &orders {
        let events = journal.read_stream(&streams::order(id.parse().unwrap()), 0, usize::MAX).await.unwrap();
        let placed = events.iter().filter(|e| e.event_type == "OrderPlaced").count();
        assert_eq!(placed, 1, "order {id}");
    }

    // The DynamoDB model kept from Kinesis equals the same model built from the journal: no event
    // lost, none applied twice (stock levels add deltas, so a double would show).
    let live =
        DynamoSink::open(cluster.dynamodb.clone(), TableNames::new("cloudcafe", cluster.env.clone())).await.unwrap();
    let rebuilt = Arc::new(
        DynamoSink::open(cluster.dynamodb.clone(), TableNames::new("cloudcafe", format!("{}x", cluster.env)))
            .await
            .unwrap(),
    );
    ProjectionRunner::new(journal.clone(), rebuilt.clone() as Arc<dyn Sink>).catch_up().await.unwrap();
    let expected = rebuilt.fingerprint().await.unwrap();
    wait_until("the Kinesis-fed model caught up", Duration::from_secs(120), || async {
        live.fingerprint().await.unwrap() == expected
    })
    .await;
    let stock = live.stock_level("store-1", "latte").await.unwrap().unwrap();
    assert_eq!(stock.available, 0, "{stock:?}");

    // The survivors report the Kinesis-fed model, the shards they read and how far behind they are.
    let (status, admin) = call(survivor, "GET", "/admin/projections", &admin_auth, "").await.unwrap();
    assert_eq!(status, 200);
    for name in [projections::read_models::dynamo::NAME, projections::read_models::analytics::NAME] {
        let fed = admin["projections"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned();
        let fed = fed.unwrap_or_else(|| panic!("no projection {name} in {admin}"));
        assert_eq!(fed["source"], "kinesis", "{fed}");
        assert!(fed["seconds_behind"].as_f64().unwrap() < 60.0, "{fed}");
        assert!(fed["shards"].as_array().is_some(), "{fed}");
    }

    // The analytics model, fed from the analytics stream by the nodes (one of them killed), equals
    // the same model built from the journal.
    let pg_url = &cluster.pg_url;
    let analytics = |schema: String| async move {
        let options = PgOptions::new(pg_url.clone()).with_schema(schema);
        AnalyticsSink::new(events::postgres::connect_pool(&options).await.unwrap()).await.unwrap()
    };
    let live = analytics(format!("{}_analytics", cluster.schema)).await;
    let rebuilt = Arc::new(analytics(servers::fresh_schema("three_analytics")).await);
    // The journal still grows (the payment processor voids cancelled orders' authorizations): the
    // model built from it catches up each time before the comparison.
    let from_journal = ProjectionRunner::new(journal.clone(), rebuilt.clone() as Arc<dyn Sink>);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        from_journal.catch_up().await.unwrap();
        if live.fingerprint().await.unwrap() == rebuilt.fingerprint().await.unwrap() {
            break;
        }
        if Instant::now() > deadline {
            let mut want = rebuilt.canonical_rows().await.unwrap();
            let mut got = live.canonical_rows().await.unwrap();
            want.sort_by(|a, b| a.key.cmp(&b.key));
            got.sort_by(|a, b| a.key.cmp(&b.key));
            let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(8).collect();
            let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(8).collect();
            panic!(
                "the Kinesis-fed analytics model has {} rows, the journal's {}; missing {missing:?}; extra {extra:?}",
                got.len(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // One payment per order, recorded once, however many nodes published the request.
    let payments = PaymentLedger::existing(cluster.dynamodb.clone(), cluster.payments_table.clone());
    let placed_events: usize = {
        let mut n = 0;
        for id in &orders {
            let events = journal.read_stream(&streams::order(id.parse().unwrap()), 0, usize::MAX).await.unwrap();
            n += events.iter().filter(|e| matches!(e.decode(), Ok(DomainEvent::OrderPlaced(_)))).count();
        }
        n
    };
    wait_until("every payment request was recorded", Duration::from_secs(60), || async {
        payments.all().await.unwrap().len() >= placed_events
    })
    .await;
    // Orders placed over HTTP are Kinesis records that a consumer none of us wrote (Python, boto3,
    // msgpack) reads, decodes and checks chain by chain.
    let head = journal.head_position().await.unwrap();
    wait_until("the Kinesis publisher caught up", Duration::from_secs(60), || async {
        journal.load_checkpoint(projections::bus::kinesis::CHECKPOINT).await.unwrap() >= head
    })
    .await;
    if let Some(python) = python_with_boto3() {
        let (code, out, err) = verify_kinesis_with_python(&python, &cluster.kinesis_endpoint, &cluster.stream);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("chain OK"), "{out}");
        eprintln!("verify_kinesis.py: {}", out.trim());
    }

    // One authorization per order; besides them, one void per order cancelled after its authorization.
    let recorded = payments.all().await.unwrap();
    let (voids, authorizations): (Vec<_>, Vec<_>) = recorded.values().partition(|p| p.status == "voided");
    let recorded_orders: BTreeSet<String> = authorizations.iter().map(|p| p.order_id.to_string()).collect();
    assert_eq!(authorizations.len(), 100);
    assert_eq!(recorded_orders, orders.iter().cloned().collect::<BTreeSet<_>>());
    let voided: BTreeSet<String> = voids.iter().map(|p| p.order_id.to_string()).collect();
    assert_eq!(voided.len(), voids.len(), "each void recorded once");
    assert!(voided.is_subset(&recorded_orders));
}
