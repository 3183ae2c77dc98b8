//! The payment processor against real emulators (moto for SQS and DynamoDB): requests published by
//! the outbox become payments once, the saga pays the orders, and what fails three times waits in
//! the dead-letter queue until `cloudcafe dlq redrive` sends it back.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use actors::cafe::{Authorizer, PlaceOrder};
use actors::domain::order::OrderStatus;
use actors::domain::payment::PaymentStatus;
use events::domain::streams;
use events::Causation;
use gateways::messaging::{self, MessagingSettings, PaymentQueue};
use gateways::node::{Node, NodeSettings};
use gateways::payments::{dead_letters, PaymentLedger, PaymentProcessor, ProcessorSettings};
use projections::bus::sqs::{self, PaymentRequest};
use testkit::aws::{dynamodb_client, sqs_client};
use testkit::names::unique;
use testkit::servers;
use uuid::Uuid;

struct Emulators {
    endpoint: String,
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

async fn emulators() -> Option<Emulators> {
    let endpoint = servers::sqs_endpoint()?;
    let sqs = sqs_client(&endpoint).await;
    let dynamodb = dynamodb_client(&servers::dynamodb_endpoint()?).await;
    Some(Emulators { endpoint, sqs, dynamodb })
}

async fn node(dir: &std::path::Path) -> Node {
    let mut settings = NodeSettings::embedded(dir);
    settings.seed_demo = true;
    settings.payment.authorizer = Authorizer::PaymentProcessor;
    settings.payment.fraud_rounds = 10;
    settings.payment.decline_threshold = 0.8;
    Node::start(settings).await.unwrap()
}

fn queue_settings(e: &Emulators, queue: &str, dlq: &str, ledger_table: &str) -> PaymentQueue {
    PaymentQueue {
        sqs: e.sqs.clone(),
        queue: queue.to_owned(),
        dead_letter_queue: dlq.to_owned(),
        dynamodb: e.dynamodb.clone(),
        ledger_table: ledger_table.to_owned(),
        wait: Duration::from_secs(1),
        visibility: Duration::from_secs(1),
    }
}

/// A [`node`] in a fresh directory, with fresh names for its payment queue, dead-letter queue and
/// ledger table (nothing created on the emulators yet).
struct ProcessorNode {
    node: Node,
    queue: String,
    dlq: String,
    table: String,
    /// The node's data, deleted once the node is dropped (fields drop in order).
    _dir: tempfile::TempDir,
}

impl ProcessorNode {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = node(dir.path()).await;
        let (queue, dlq, table) = (unique("pay") + ".fifo", unique("pay-dlq") + ".fifo", unique("payments"));
        ProcessorNode { node, queue, dlq, table, _dir: dir }
    }
}

/// A [`ProcessorNode`] whose messaging runs the payment processor on its queues.
async fn processor_node(e: &Emulators) -> ProcessorNode {
    let p = ProcessorNode::start().await;
    let settings =
        MessagingSettings { payments: Some(queue_settings(e, &p.queue, &p.dlq, &p.table)), ..Default::default() };
    messaging::start(&p.node, settings).await.unwrap();
    p
}

async fn place(node: &Node, customer: &str, quantity: i64) -> Uuid {
    let order_id = Uuid::new_v4();
    let request = PlaceOrder {
        order_id,
        customer_id: customer.to_owned(),
        store_id: "store-1".into(),
        items: vec![("latte".into(), quantity)],
        placed_at_us: events::envelope::now_us(),
        fresh_order_id: true,
    };
    node.cafe.place_order(request, Causation::new_root()).await.unwrap();
    order_id
}

async fn wait_until_settled(node: &Node, orders: &[Uuid], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut open = 0;
        for id in orders {
            if node.cafe.order(*id).await.unwrap().unwrap().status == OrderStatus::Placed {
                open += 1;
            }
        }
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} orders still unpaid");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `request` to `queue` again, as SQS would deliver it again after its deduplication window;
/// answers the queue's URL.
async fn send_again(e: &Emulators, queue: &str, request: &PaymentRequest) -> String {
    let queue_url = gateways::payments::queue_url(&e.sqs, queue).await.unwrap();
    e.sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body(serde_json::to_string(request).unwrap())
        .message_group_id(&request.customer_id)
        .message_deduplication_id(format!("again-{}", request.event_id))
        .send()
        .await
        .unwrap();
    queue_url
}

fn cloudcafe(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cloudcafe")).args(args).output().expect("run cloudcafe");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[actix_web::test]
async fn every_placed_order_is_scored_once_by_the_processor_and_the_saga_settles_it() {
    let Some(e) = emulators().await else { return };
    let p = processor_node(&e).await;
    let node = &p.node;

    let mut orders = Vec::new();
    for i in 0..12 {
        orders.push(place(node, &format!("cust-{}", i % 4), 1).await);
    }
    // Two big orders for the 1,000 lattes in stock: one cannot be covered and is cancelled by the
    // saga, never charged.
    let big = place(node, "cust-big", 600).await;
    let too_big = place(node, "cust-big", 600).await;
    orders.extend([big, too_big]);
    wait_until_settled(node, &orders, Duration::from_secs(60)).await;

    // Every order's payment is out of the processor's hands: authorized ones captured or voided.
    wait_until_no_hold(node, &orders, Duration::from_secs(60)).await;
    let ledger = PaymentLedger::existing(e.dynamodb.clone(), &p.table);
    let mut voided = 0;
    for id in &orders {
        voided += usize::from(node.cafe.payment(*id).await.unwrap().unwrap().status == PaymentStatus::Voided);
    }
    let wait_for_ledger = Instant::now() + Duration::from_secs(30);
    let mut payments = ledger.all().await.unwrap();
    while payments.len() < orders.len() + voided && Instant::now() < wait_for_ledger {
        tokio::time::sleep(Duration::from_millis(200)).await;
        payments = ledger.all().await.unwrap();
    }
    assert_eq!(payments.len(), orders.len() + voided, "one ledger item per payment request, one per void");
    let paid_orders: BTreeSet<Uuid> = payments.values().map(|p| p.order_id).collect();
    assert_eq!(paid_orders, orders.iter().copied().collect::<BTreeSet<_>>());
    let mut short = Vec::new();
    for id in &orders {
        let order = node.cafe.order(*id).await.unwrap().unwrap();
        let payment = node.cafe.payment(*id).await.unwrap().expect("every order got a payment decision");
        let records: Vec<_> = payments.values().filter(|p| p.order_id == *id).collect();
        let record = records.iter().find(|r| r.status != "voided").unwrap();
        assert_eq!(record.fraud_score, payment.fraud_score);
        match (order.status, order.cancel_reason.as_deref()) {
            (OrderStatus::Paid, _) => assert_eq!(payment.status, PaymentStatus::Captured),
            (OrderStatus::Cancelled, Some("payment_declined")) => assert_eq!(record.status, "declined"),
            (OrderStatus::Cancelled, Some(reason)) if reason.starts_with("out_of_stock") => {
                short.push(*id);
                // The processor may have authorized or declined it (the fraud score decides); it
                // never captured it, and an authorization was released.
                match payment.status {
                    PaymentStatus::Declined => assert_eq!(records.len(), 1),
                    PaymentStatus::Voided => {
                        assert_eq!(record.status, "authorized");
                        assert_eq!(records.iter().filter(|r| r.status == "voided").count(), 1, "voided once");
                    }
                    other => panic!("a cancelled order's payment ended {other:?}"),
                }
            }
            other => panic!("order {id} ended {other:?}"),
        }
    }
    // The saga reserves for concurrent orders concurrently: either big order may be the one short.
    assert_eq!(short.len(), 1, "exactly one of the two big orders is short of stock");
    assert!(short[0] == big || short[0] == too_big);

    // A request delivered again (after SQS's deduplication window) changes nothing.
    let placed = node.journal.read_stream(&streams::order(orders[0]), 0, usize::MAX).await.unwrap();
    let request = sqs::payment_request(&placed[0]).unwrap().unwrap();
    let queue_url = send_again(&e, &p.queue, &request).await;
    let payment_stream = streams::payment(orders[0]);
    let before = node.journal.read_stream(&payment_stream, 0, usize::MAX).await.unwrap().len();
    let head = node.journal.head_position().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attributes = e
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name| {
        attributes.attributes().and_then(|a| a.get(&name)).map(|v| v.parse::<u32>().unwrap()).unwrap_or_default()
    };
    use aws_sdk_sqs::types::QueueAttributeName::{ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible};
    assert_eq!(
        count(ApproximateNumberOfMessages) + count(ApproximateNumberOfMessagesNotVisible),
        0,
        "handled and deleted"
    );
    assert_eq!(
        node.journal.read_stream(&payment_stream, 0, usize::MAX).await.unwrap().len(),
        before,
        "no new payment event"
    );
    assert_eq!(node.journal.head_position().await.unwrap(), head, "nothing new in the journal");
    assert_eq!(ledger.all().await.unwrap().len(), orders.len() + voided, "no new ledger item");
}

/// Waits until no order's payment holds money it should not: every cancelled order's payment
/// declined, voided, refunded or never made, and nothing waiting for a void or a refund.
async fn wait_until_no_hold(node: &Node, orders: &[Uuid], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut held = Vec::new();
        for id in orders {
            let cancelled = node.cafe.order(*id).await.unwrap().unwrap().status == OrderStatus::Cancelled;
            let status = node.cafe.payment(*id).await.unwrap().map(|p| p.status);
            let holding = matches!(
                status,
                Some(
                    PaymentStatus::Authorized
                        | PaymentStatus::VoidRequested
                        | PaymentStatus::Captured
                        | PaymentStatus::RefundRequested
                )
            );
            if cancelled && holding {
                held.push((*id, status));
            }
        }
        if held.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{} cancelled orders still hold money: {held:?}", held.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn no_hold_is_left_behind_when_orders_are_cancelled_for_want_of_stock() {
    let Some(e) = emulators().await else { return };
    let p = processor_node(&e).await;
    let node = &p.node;

    // 30 orders of 100 lattes for the 1,000 in stock, placed at once: two thirds are cancelled while
    // the processor scores them, most of those after it authorized them.
    let customers: Vec<String> = (0..30).map(|i| format!("rush-{i}")).collect();
    let placing = customers.iter().map(|c| place(node, c, 100));
    let orders: Vec<Uuid> = futures::future::join_all(placing).await;
    wait_until_settled(node, &orders, Duration::from_secs(90)).await;
    wait_until_no_hold(node, &orders, Duration::from_secs(90)).await;

    let ledger = PaymentLedger::existing(e.dynamodb.clone(), &p.table);
    let (mut paid, mut voided, mut declined) = (0, Vec::new(), 0);
    for id in &orders {
        let order = node.cafe.order(*id).await.unwrap().unwrap();
        let payment = node.cafe.payment(*id).await.unwrap().expect("every order was scored");
        match (order.status, payment.status) {
            (OrderStatus::Paid, PaymentStatus::Captured) => paid += 1,
            (OrderStatus::Cancelled, PaymentStatus::Voided) => voided.push(*id),
            (OrderStatus::Cancelled, PaymentStatus::Declined) => declined += 1,
            other => panic!("order {id} ended {other:?}"),
        }
    }
    // 1,000 lattes cover ten orders of 100; a declined one held its lattes while others were refused.
    assert!((5..=10).contains(&paid), "{paid} paid");
    assert!(
        voided.len() >= 8,
        "most cancelled orders had been authorized: {} voided, {declined} declined",
        voided.len()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let voids = loop {
        let all = ledger.all().await.unwrap();
        let voids: Vec<_> = all.into_values().filter(|r| r.status == "voided").collect();
        if voids.len() >= voided.len() || Instant::now() > deadline {
            break voids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut recorded: Vec<Uuid> = voids.iter().map(|r| r.order_id).collect();
    recorded.sort();
    voided.sort();
    assert_eq!(recorded, voided, "each void recorded in the ledger once");

    // A void request delivered again (after SQS's deduplication window) changes nothing.
    let payment_stream = streams::payment(voided[0]);
    let history = node.journal.read_stream(&payment_stream, 0, usize::MAX).await.unwrap();
    let asked = history.iter().find(|r| r.event_type == "PaymentVoidRequested").expect("the void was asked");
    let request = sqs::payment_request(asked).unwrap().unwrap();
    assert_eq!(request.kind, sqs::PaymentRequestKind::Void);
    send_again(&e, &p.queue, &request).await;
    let head = node.journal.head_position().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(node.journal.read_stream(&payment_stream, 0, usize::MAX).await.unwrap().len(), history.len());
    assert_eq!(node.journal.head_position().await.unwrap(), head, "nothing new in the journal");
    let voids_after = ledger.all().await.unwrap().into_values().filter(|r| r.status == "voided").count();
    assert_eq!(voids_after, voided.len(), "no second ledger item for the void");
}

#[actix_web::test]
async fn a_paid_order_cancelled_by_its_customer_is_refunded_by_the_processor_once() {
    let Some(e) = emulators().await else { return };
    let p = processor_node(&e).await;
    let node = &p.node;

    let customers: Vec<String> = (0..8).map(|i| format!("refund-{i}")).collect();
    let placing = customers.iter().map(|c| place(node, c, 1));
    let orders: Vec<Uuid> = futures::future::join_all(placing).await;
    wait_until_settled(node, &orders, Duration::from_secs(60)).await;
    let mut paid = Vec::new();
    for id in &orders {
        if node.cafe.order(*id).await.unwrap().unwrap().status == OrderStatus::Paid {
            paid.push(*id);
        }
    }
    assert!(paid.len() >= 2, "a decline threshold of 0.8 pays most orders: {} paid", paid.len());
    for id in &paid {
        let cancelled = node.cafe.cancel_order(*id, "changed my mind".into(), Causation::new_root()).await.unwrap();
        assert_eq!(cancelled.state.status, OrderStatus::Cancelled);
    }
    wait_until_no_hold(node, &paid, Duration::from_secs(60)).await;
    for id in &paid {
        let payment = node.cafe.payment(*id).await.unwrap().unwrap();
        assert_eq!((payment.status, payment.amount_cents), (PaymentStatus::Refunded, 450), "order {id}");
    }

    // The ledger records each refund once, keyed on the request that asked for it.
    let ledger = PaymentLedger::existing(e.dynamodb.clone(), &p.table);
    let deadline = Instant::now() + Duration::from_secs(30);
    let refunds = loop {
        let refunds: Vec<_> = ledger.all().await.unwrap().into_values().filter(|r| r.status == "refunded").collect();
        if refunds.len() >= paid.len() || Instant::now() > deadline {
            break refunds;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut recorded: Vec<Uuid> = refunds.iter().map(|r| r.order_id).collect();
    recorded.sort();
    paid.sort();
    assert_eq!(recorded, paid, "each refund recorded in the ledger once");
    assert!(refunds.iter().all(|r| r.amount_cents == 450));

    // A refund request delivered again (after SQS's deduplication window) gives nothing back twice.
    let payment_stream = streams::payment(paid[0]);
    let history = node.journal.read_stream(&payment_stream, 0, usize::MAX).await.unwrap();
    let types: Vec<&str> = history.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(types, ["PaymentAuthorized", "PaymentCaptured", "PaymentRefundRequested", "PaymentRefunded"]);
    let request = sqs::payment_request(&history[2]).unwrap().unwrap();
    assert_eq!(request.kind, sqs::PaymentRequestKind::Refund);
    send_again(&e, &p.queue, &request).await;
    let head = node.journal.head_position().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(node.journal.head_position().await.unwrap(), head, "nothing new in the journal");
    let again = ledger.all().await.unwrap().into_values().filter(|r| r.status == "refunded").count();
    assert_eq!(again, paid.len(), "no second ledger item for the refund");
}

#[actix_web::test]
async fn a_request_that_fails_three_times_waits_in_the_dead_letter_queue_until_redriven() {
    let Some(e) = emulators().await else { return };
    let p = ProcessorNode::start().await;
    let (node, queue, dlq) = (&p.node, &p.queue, &p.dlq);
    let queues = sqs::ensure_payment_queues(&e.sqs, queue, dlq, sqs::DEFAULT_MAX_RECEIVE_COUNT).await.unwrap();

    // A processor whose payments table does not exist yet: every request fails to be recorded.
    let broken = PaymentLedger::existing(e.dynamodb.clone(), &p.table);
    let settings = ProcessorSettings {
        queue_url: queues.queue_url.clone(),
        wait: Duration::from_secs(1),
        visibility: Duration::from_secs(1),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let processor = PaymentProcessor::new(e.sqs.clone(), node.cafe.clone(), broken, settings.clone()).spawn(stopped);
    let order_id = place(node, "dlq-customer", 1).await;
    let placed = node.journal.read_stream(&streams::order(order_id), 0, usize::MAX).await.unwrap();
    let request: PaymentRequest = sqs::payment_request(&placed[0]).unwrap().unwrap();
    let sends = [
        (serde_json::to_string(&request).unwrap(), request.event_id.to_string(), request.customer_id.clone()),
        ("{not json".to_owned(), "junk-1".to_owned(), "junk".to_owned()),
    ];
    for (body, dedup, group) in sends {
        e.sqs
            .send_message()
            .queue_url(&queues.queue_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut letters = dead_letters(&e.sqs, &queues.dead_letter_url, 10, Duration::from_secs(1)).await.unwrap();
    while letters.len() < 2 {
        assert!(Instant::now() < deadline, "the failing requests never reached the dead-letter queue");
        tokio::time::sleep(Duration::from_secs(1)).await;
        letters = dead_letters(&e.sqs, &queues.dead_letter_url, 10, Duration::from_secs(1)).await.unwrap();
    }
    let _ = stop.send(true);
    processor.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the listing's visibility lapse

    // The operator's view.
    let endpoint =
        ["--sqs-endpoint", e.endpoint.as_str(), "--payment-queue", queue.as_str(), "--payment-dlq", dlq.as_str()];
    let (ok, out) = cloudcafe(&[&["dlq", "list"][..], &endpoint[..]].concat());
    assert!(ok, "{out}");
    assert!(out.contains("2 message(s)"), "{out}");
    assert!(out.contains(&format!("order={order_id}")), "{out}");
    assert!(out.contains("not a payment request"), "{out}");
    let (ok, out) = cloudcafe(&["dlq", "list", "--sqs-endpoint", &e.endpoint, "--payment-dlq", "no-such-queue.fifo"]);
    assert!(!ok && out.contains("cannot find the dead-letter queue"), "{out}");

    // The table is back; redrive, and the request is processed (the junk fails again, as it should).
    let ledger = PaymentLedger::open(e.dynamodb.clone(), &p.table).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await; // `dlq list` hides what it shows for 2 s
    let (ok, out) = cloudcafe(&[&["dlq", "redrive"][..], &endpoint[..]].concat());
    assert!(ok, "{out}");
    assert!(out.contains("moved 2 message(s)"), "{out}");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let processor = PaymentProcessor::new(e.sqs.clone(), node.cafe.clone(), ledger.clone(), settings).spawn(stopped);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ledger.all().await.unwrap().contains_key(&request.event_id) {
        assert!(Instant::now() < deadline, "the redriven request was not processed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ledger.all().await.unwrap().len(), 1);
    let _ = stop.send(true);
    processor.await.unwrap();
}
