//! The notifier and the notification worker against moto (SQS, SES, SNS, DynamoDB): every
//! notifiable event of the journal reaches its customer once, by the channel they chose, also when
//! a message comes twice or a worker is killed mid-batch; a poison message ends in the dead-letter
//! queue after three receives.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use actors::cafe::PlaceOrder;
use actors::domain::order::{OrderStatus, Progress};
use events::domain::NotificationChannel;
use events::{Causation, Journal};
use gateways::messaging::{self, MessagingSettings, NotificationQueue};
use gateways::node::{Node, NodeSettings};
use gateways::notifications::{Couriers, DeliveryLog, NotificationWorker};
use gateways::queue::Receiving;
use projections::aws::AwsSettings;
use projections::bus::notifications::{self, notification_for, Notification, NotificationBus};
use projections::bus::publisher::{Bus, Message};
use testkit::aws::{dynamodb_client, sqs_client};
use testkit::names::unique;
use testkit::servers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const SENDER: &str = "orders@cloudcafe.example";
const DOMAIN: &str = "customers.cloudcafe.example";

struct Emulators {
    /// SES and SNS (and the moto endpoints that read back what they sent).
    ses_sns: String,
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    couriers: Couriers,
}

async fn emulators() -> Option<Emulators> {
    let ses_sns = servers::ses_sns_endpoint()?;
    let sqs = sqs_client(&servers::sqs_endpoint()?).await;
    let dynamodb = dynamodb_client(&servers::dynamodb_endpoint()?).await;
    let config = AwsSettings::emulator(&ses_sns).sdk_config().await;
    let ses = aws_sdk_sesv2::Client::new(&config);
    // SES sends only from a verified identity (a deployment step; here the emulator's).
    ses.create_email_identity().email_identity(SENDER).send().await.unwrap();
    let couriers = Couriers {
        ses,
        sns: aws_sdk_sns::Client::new(&config),
        sender: SENDER.into(),
        default_email_domain: DOMAIN.into(),
    };
    Some(Emulators { ses_sns, sqs, dynamodb, couriers })
}

/// One sent message as moto kept it: where it went and its text.
#[derive(Debug, Clone)]
struct Sent {
    to: String,
    text: String,
}

/// What moto's SES and SNS accepted so far (every test's, so callers filter by event id).
async fn sent(endpoint: &str) -> Vec<Sent> {
    let mut out = Vec::new();
    for email in get_json(endpoint, "/cloudcafe/sent-email").await.as_array().unwrap() {
        let to = email["destinations"]["ToAddresses"][0].as_str().unwrap_or_default().to_owned();
        out.push(Sent { to, text: email["body"].as_str().unwrap_or_default().to_owned() });
    }
    for sms in get_json(endpoint, "/cloudcafe/sent-sms").await.as_array().unwrap() {
        let to = sms["phone_number"].as_str().unwrap_or_default().to_owned();
        out.push(Sent { to, text: sms["message"].as_str().unwrap_or_default().to_owned() });
    }
    out
}

/// The messages that name `event_id` (each ends with `Ref: <event id>`).
fn about(all: &[Sent], event_id: Uuid) -> Vec<Sent> {
    let reference = format!("Ref: {event_id}");
    all.iter().filter(|s| s.text.contains(&reference)).cloned().collect()
}

async fn get_json(endpoint: &str, path: &str) -> serde_json::Value {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

async fn node(dir: &std::path::Path) -> Node {
    let mut settings = NodeSettings::embedded(dir);
    settings.seed_demo = true;
    settings.payment.fraud_rounds = 10;
    // Some payments declined, for the `payment_declined` notifications.
    settings.payment.decline_threshold = 0.8;
    Node::start(settings).await.unwrap()
}

async fn place(node: &Node, customer: &str) -> Uuid {
    let order_id = Uuid::new_v4();
    let request = PlaceOrder {
        order_id,
        customer_id: customer.to_owned(),
        store_id: "store-1".into(),
        items: vec![("latte".into(), 1)],
        placed_at_us: events::envelope::now_us(),
        fresh_order_id: true,
    };
    node.cafe.place_order(request, Causation::new_root()).await.unwrap();
    order_id
}

async fn wait_until_settled(node: &Node, orders: &[Uuid]) -> Vec<(Uuid, OrderStatus)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut out = Vec::new();
        for id in orders {
            out.push((*id, node.cafe.order(*id).await.unwrap().unwrap().status));
        }
        if out.iter().all(|(_, s)| *s != OrderStatus::Placed) {
            return out;
        }
        assert!(Instant::now() < deadline, "orders still unpaid: {out:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every notification the journal gives rise to, by event id.
async fn notifiable(journal: &dyn Journal) -> BTreeMap<Uuid, Notification> {
    let mut out = BTreeMap::new();
    for e in journal.read_all(0, usize::MAX).await.unwrap() {
        if let Some(n) = notification_for(&e).unwrap() {
            out.insert(n.event_id, n);
        }
    }
    out
}

/// Waits until the `notifications` table holds every one of `expected` as sent.
async fn wait_until_delivered(log: &DeliveryLog, expected: &BTreeSet<Uuid>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let all = log.all().await.unwrap();
        let sent = expected.iter().filter(|id| all.get(id).is_some_and(|d| d.status == "sent")).count();
        if sent == expected.len() {
            return;
        }
        assert!(Instant::now() < deadline, "{sent} of {} notifications delivered", expected.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn every_notifiable_event_reaches_its_customer_once_by_the_channel_they_chose() {
    let Some(e) = emulators().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    // Two customers choose; the others keep the default (email at the deployment's domain).
    let c = Causation::new_root;
    node.cafe.set_customer_preferences("sms-fan", NotificationChannel::Sms, "+15550100001", c()).await.unwrap();
    node.cafe.set_customer_preferences("mail-fan", NotificationChannel::Email, "fan@example.com", c()).await.unwrap();

    let (queue, dlq, table) = (unique("notify"), unique("notify-dlq"), unique("notifications"));
    let settings = MessagingSettings {
        notifications: Some(NotificationQueue {
            sqs: e.sqs.clone(),
            queue: queue.clone(),
            dead_letter_queue: dlq.clone(),
            dynamodb: e.dynamodb.clone(),
            deliveries_table: table.clone(),
            couriers: e.couriers.clone(),
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(2),
            worker_id: "worker-1".into(),
        }),
        ..Default::default()
    };
    messaging::start(&node, settings).await.unwrap();

    let customers = ["sms-fan", "mail-fan", "walk-in"];
    let mut orders = Vec::new();
    for i in 0..15 {
        orders.push(place(&node, customers[i % 3]).await);
    }
    let settled = wait_until_settled(&node, &orders).await;
    let paid: Vec<Uuid> = settled.iter().filter(|(_, s)| *s == OrderStatus::Paid).map(|(id, _)| *id).collect();
    assert!(paid.len() >= 4, "too few paid orders to go on: {settled:?}");
    // Two orders go to the counter; one paid order is cancelled, so refunded.
    for id in &paid[..2] {
        for step in [Progress::Preparing, Progress::Ready] {
            node.cafe.advance_order(*id, step, events::envelope::now_us(), c()).await.unwrap();
        }
    }
    node.cafe.cancel_order(paid[2], "changed my mind".into(), c()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.cafe.payment(paid[2]).await.unwrap().unwrap().status != actors::domain::payment::PaymentStatus::Refunded
    {
        assert!(Instant::now() < deadline, "the cancelled order was not refunded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    crate::quiet_head(node.journal.as_ref()).await;
    let expected = notifiable(node.journal.as_ref()).await;
    let kinds: BTreeSet<&str> = expected.values().map(|n| n.kind.as_str()).collect();
    assert!(
        kinds.contains("order_confirmed") && kinds.contains("ready_for_pickup") && kinds.contains("refunded"),
        "{kinds:?}"
    );
    let log = DeliveryLog::open(e.dynamodb.clone(), &table).await.unwrap();
    let ids: BTreeSet<Uuid> = expected.keys().copied().collect();
    wait_until_delivered(&log, &ids, Duration::from_secs(60)).await;

    // The same notification again, as a standard queue may deliver it: nothing is sent twice.
    let again = expected.values().next().unwrap();
    let queue_url = gateways::payments::queue_url(&e.sqs, &queue).await.unwrap();
    e.sqs
        .send_message()
        .queue_url(&queue_url)
        .message_body(serde_json::to_string(again).unwrap())
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_value("notifications_total{outcome=\"duplicate\"}") < 1.0 {
        assert!(Instant::now() < deadline, "the repeated notification was not handled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let deliveries = log.all().await.unwrap();
    let all_sent = sent(&e.ses_sns).await;
    for (event_id, n) in &expected {
        let messages = about(&all_sent, *event_id);
        assert_eq!(messages.len(), 1, "{:?} {event_id}: {messages:?}", n.kind);
        let delivery = &deliveries[event_id];
        let customer = &delivery.customer_id;
        let (channel, to) = match customer.as_str() {
            "sms-fan" => ("sms", "+15550100001".to_owned()),
            "mail-fan" => ("email", "fan@example.com".to_owned()),
            other => ("email", format!("{other}@{DOMAIN}")),
        };
        assert_eq!(
            (delivery.channel.as_str(), delivery.address.as_str(), delivery.status.as_str()),
            (channel, to.as_str(), "sent")
        );
        assert_eq!(messages[0].to, to, "{event_id}");
        assert_eq!(node.cafe.order(n.order_id).await.unwrap().unwrap().customer_id, *customer);
    }
    assert_eq!(deliveries.len(), expected.len(), "a delivery recorded for something not notifiable");

    // A poison message is received three times, then moved to the dead-letter queue.
    e.sqs.send_message().queue_url(&queue_url).message_body("{not json").send().await.unwrap();
    let dlq_url = gateways::payments::queue_url(&e.sqs, &dlq).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = e.sqs.receive_message().queue_url(&dlq_url).wait_time_seconds(1).send().await.unwrap();
        if got.messages().iter().any(|m| m.body() == Some("{not json")) {
            break;
        }
        assert!(Instant::now() < deadline, "the poison message never reached the dead-letter queue");
    }
    let text = gateways::telemetry::metrics_handle().render();
    crate::metrics_export::check_catalog(&text, &[events::metric::Emitter::Notifier]);
}

fn metric_value(series: &str) -> f64 {
    let text = gateways::telemetry::metrics_handle().render();
    text.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

#[actix_web::test]
async fn a_worker_killed_mid_batch_loses_nothing_and_its_successor_finishes_the_queue() {
    let Some(e) = emulators().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let mut orders = Vec::new();
    for i in 0..40 {
        orders.push(place(&node, &format!("guest-{}", i % 7)).await);
    }
    wait_until_settled(&node, &orders).await;
    crate::quiet_head(node.journal.as_ref()).await;
    let expected = notifiable(node.journal.as_ref()).await;
    assert!(expected.len() >= 40, "{}", expected.len());

    // The notifier's adapter puts every notification on the queue.
    let (queue, dlq, table) = (unique("notify"), unique("notify-dlq"), unique("notifications"));
    let queues = notifications::ensure_notification_queues(&e.sqs, &queue, &dlq, 3).await.unwrap();
    let bus = NotificationBus::new(e.sqs.clone(), queues.queue_url.clone());
    let events = node.journal.read_all(0, usize::MAX).await.unwrap();
    let messages: Vec<Message> = events.iter().filter_map(|ev| bus.message_for(ev).unwrap()).collect();
    for batch in messages.chunks(10) {
        let outcomes = bus.send_batch(batch).await.unwrap();
        assert!(
            outcomes.iter().all(|o| matches!(o, projections::bus::publisher::EntryOutcome::Accepted)),
            "{outcomes:?}"
        );
    }

    let log = DeliveryLog::open(e.dynamodb.clone(), &table).await.unwrap();
    let receiving = Receiving {
        queue_url: queues.queue_url.clone(),
        wait: Duration::from_secs(1),
        visibility: Duration::from_secs(2),
    };
    let worker = |name: &str| {
        NotificationWorker::new(
            e.sqs.clone(),
            node.cafe.clone(),
            log.clone(),
            e.couriers.clone(),
            receiving.clone(),
            name,
        )
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let first = worker("first").spawn(stopped.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = log.all().await.unwrap().values().filter(|d| d.status == "sent").count();
        if done >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the first worker delivered {done}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed mid-batch: whatever it was handling stops where it is.
    first.abort();
    let at_kill = log.all().await.unwrap();
    let killed_after = at_kill.values().filter(|d| d.status == "sent").count();
    let left_claimed = at_kill.values().filter(|d| d.status == "sending").count();
    let second = worker("second").spawn(stopped);
    let ids: BTreeSet<Uuid> = expected.keys().copied().collect();
    wait_until_delivered(&log, &ids, Duration::from_secs(90)).await;
    second.abort();

    let deliveries = log.all().await.unwrap();
    assert_eq!(deliveries.len(), expected.len());
    let all_sent = sent(&e.ses_sns).await;
    let mut twice = 0;
    for event_id in expected.keys() {
        let n = about(&all_sent, *event_id).len();
        assert!(n >= 1, "{event_id} never sent");
        twice += n - 1;
    }
    // Only a message whose worker died between the provider's answer and the `sent` mark can go
    // out twice: at most one per message in flight when it was killed (a receive takes up to 10).
    assert!(twice <= 10, "{twice} notifications sent twice");
    eprintln!(
        "{} notifications: {killed_after} delivered before the kill, {left_claimed} claimed and cut short, \
         {twice} sent twice (killed between send and mark)",
        expected.len()
    );
}
