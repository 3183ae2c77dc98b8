//! The notification worker: tells customers about their orders by email (Amazon SES) or text
//! message (Amazon SNS), taking the notifications the notifier puts on `notification-queue`
//! (feature `cloud`).
//!
//! ```text
//! journal ─► notifier (outbox publisher, one node) ─► notification-queue (SQS standard)
//!                                                            │ long poll
//!                                                            ▼
//!     NotificationWorker (every node) ─► the customer's preference (journal: CustomerPreferencesSet)
//!        │                            ─► SES SendEmail | SNS Publish (SMS)
//!        └─► DynamoDB `notifications` (one item per event id: claimed, then sent)
//! ```
//!
//! - **One delivery per event.** Before sending, the worker *claims* the event in the
//!   `notifications` table (a put conditional on the event id being absent, or on an earlier claim
//!   having gone stale); after sending, it marks the item `sent` with the provider's message id. A
//!   message delivered twice by the standard queue, or redelivered after its deletion failed, finds
//!   the item `sent` (or claimed by a worker still at it) and sends nothing.
//! - **A worker killed mid-batch.** Its messages come back when their visibility timeout ends. A
//!   message whose claim is older than the visibility timeout was left by a worker that stopped, and
//!   is sent by the one that finds it. So nothing acknowledged is lost; the one thing that can be
//!   sent twice is a message whose worker died after SES or SNS accepted it and before the `sent`
//!   mark (the window of one DynamoDB write): neither service takes an idempotency key.
//! - **Where it goes**: the customer's `CustomerPreferencesSet` (`PUT /api/customers/me/preferences`),
//!   or by default an email to `<customer id>@<default domain>` (`--notification-email-domain`), the
//!   stand-in until customer profiles carry an address.
//! - **Failures**: a message that cannot be delivered (malformed body, an order that does not exist,
//!   SES or SNS refusing) is not deleted and its claim is released; after three receives the
//!   queue's redrive policy moves it to `notification-queue-dlq`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::cafe::{Cafe, CafeError};
use actors::domain::customer::Preferences;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::Message;
use events::domain::NotificationChannel;
use events::journal::sleep_or_stop;
use events::metric;
use projections::aws::dynamodb::{ensure_keyed_table, scan_all};
use projections::aws::{classify, AwsFailure, FailureKind};
use projections::bus::notifications::{Notification, NotificationKind};
use tokio::sync::watch;
use uuid::Uuid;

use crate::queue::{receive_count, Receiving};

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("notification is malformed: {0}")]
    Malformed(String),
    #[error("order {0} does not exist")]
    UnknownOrder(Uuid),
    #[error("cannot read the order or the customer: {0}")]
    Cafe(#[from] CafeError),
    /// A call to the `notifications` table failed.
    #[error("notifications table unavailable: {0}")]
    Log(#[source] AwsFailure),
    #[error("notifications table holds a malformed item: {0}")]
    BadItem(String),
    /// SES or SNS did not take the message.
    #[error("not delivered: {0}")]
    Delivery(#[source] AwsFailure),
    /// A call to the notification queue failed.
    #[error("queue unavailable: {0}")]
    Queue(#[source] AwsFailure),
}

/// What a customer reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
}

/// The words of a notification. The event id ends the text as a reference, so that support (and
/// the tests) can tell which event a message was about.
pub fn render(n: &Notification) -> Rendered {
    let order = n.order_id.simple().to_string();
    let short = &order[..8];
    let amount = format!("{}.{:02}", n.amount_cents / 100, (n.amount_cents % 100).abs());
    let (subject, line) = match n.kind {
        NotificationKind::OrderConfirmed => (
            "Your CloudCafe order is confirmed".to_owned(),
            format!("Order {short} is paid ({amount}) and will be prepared."),
        ),
        NotificationKind::PaymentDeclined => (
            "Your CloudCafe payment was declined".to_owned(),
            format!("The payment of {amount} for order {short} was declined; the order is cancelled."),
        ),
        NotificationKind::ReadyForPickup => {
            ("Your CloudCafe order is ready".to_owned(), format!("Order {short} is ready for pickup at the counter."))
        }
        NotificationKind::Refunded => (
            "Your CloudCafe refund".to_owned(),
            format!("{amount} for cancelled order {short} has been refunded to your card."),
        ),
    };
    Rendered { subject, text: format!("{line}\nRef: {}", n.event_id) }
}

/// One delivery as the `notifications` table keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub event_id: Uuid,
    pub kind: String,
    pub order_id: Uuid,
    pub customer_id: String,
    pub channel: String,
    pub address: String,
    /// `sending` (claimed) or `sent`.
    pub status: String,
    /// The SES or SNS message id, once sent.
    pub provider_message_id: String,
    pub worker: String,
    pub claimed_at_us: i64,
}

/// What a claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This worker may send (nobody had, or an earlier claim went stale).
    Won,
    /// Sent before: nothing to do but delete the message.
    AlreadySent,
    /// Another worker is at it: leave the message, it comes back.
    Held,
}

/// The DynamoDB table of deliveries, one item per event id.
#[derive(Clone)]
pub struct DeliveryLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DeliveryLog {
    /// Opens the table, creating it (on-demand capacity) if absent.
    pub async fn open(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Result<Self, NotificationError> {
        let log = DeliveryLog { client, table: table.into() };
        ensure_keyed_table(&log.client, &log.table, "event_id").await.map_err(NotificationError::Log)?;
        Ok(log)
    }

    /// Claims `delivery.event_id` for `delivery.worker`: succeeds if nobody claimed it, or if the
    /// claim is still `sending` and older than `stale_before_us`.
    pub async fn claim(&self, delivery: &Delivery, stale_before_us: i64) -> Result<Claim, NotificationError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("event_id", s(delivery.event_id))
            .item("kind", s(&delivery.kind))
            .item("order_id", s(delivery.order_id))
            .item("customer_id", s(&delivery.customer_id))
            .item("channel", s(&delivery.channel))
            .item("address", s(&delivery.address))
            .item("status", s("sending"))
            .item("worker", s(&delivery.worker))
            .item("claimed_at_us", AttributeValue::N(delivery.claimed_at_us.to_string()))
            .condition_expression("attribute_not_exists(event_id) OR (#status = :sending AND claimed_at_us < :stale)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":stale", AttributeValue::N(stale_before_us.to_string()))
            .send()
            .await;
        match put.map_err(|e| classify(&self.table, e)) {
            Ok(_) => Ok(Claim::Won),
            Err(f) if f.is(FailureKind::ConditionFailed) => match self.get(delivery.event_id).await? {
                Some(d) if d.status == "sent" => Ok(Claim::AlreadySent),
                _ => Ok(Claim::Held),
            },
            Err(f) => Err(NotificationError::Log(f)),
        }
    }

    /// Marks a claimed delivery sent.
    pub async fn mark_sent(&self, event_id: Uuid, provider_message_id: &str) -> Result<(), NotificationError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("event_id", s(event_id))
            .update_expression("SET #status = :sent, provider_message_id = :id")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sent", s("sent"))
            .expression_attribute_values(":id", s(provider_message_id))
            .send()
            .await
            .map_err(|e| NotificationError::Log(classify(&self.table, e)))?;
        Ok(())
    }

    /// Gives up this worker's claim (the delivery failed), so that the next receive may claim at once.
    pub async fn release(&self, event_id: Uuid, worker: &str) -> Result<(), NotificationError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("event_id", s(event_id))
            .condition_expression("#status = :sending AND worker = :me")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":me", s(worker))
            .send()
            .await;
        match deleted.map_err(|e| classify(&self.table, e)) {
            Ok(_) => Ok(()),
            Err(f) if f.is(FailureKind::ConditionFailed) => Ok(()),
            Err(f) => Err(NotificationError::Log(f)),
        }
    }

    /// One delivery (strongly consistent).
    pub async fn get(&self, event_id: Uuid) -> Result<Option<Delivery>, NotificationError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("event_id", s(event_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| NotificationError::Log(classify(&self.table, e)))?;
        out.item().map(delivery).transpose()
    }

    /// Every delivery (a strongly consistent scan), by event id.
    pub async fn all(&self) -> Result<BTreeMap<Uuid, Delivery>, NotificationError> {
        let items = scan_all(&self.client, &self.table).await.map_err(NotificationError::Log)?;
        items.iter().map(|item| delivery(item).map(|d| (d.event_id, d))).collect()
    }
}

fn s(value: impl ToString) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn delivery(item: &std::collections::HashMap<String, AttributeValue>) -> Result<Delivery, NotificationError> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let id = |k: &str| text(k).parse::<Uuid>().map_err(|_| NotificationError::BadItem(format!("bad {k}")));
    Ok(Delivery {
        event_id: id("event_id")?,
        kind: text("kind"),
        order_id: id("order_id")?,
        customer_id: text("customer_id"),
        channel: text("channel"),
        address: text("address"),
        status: text("status"),
        provider_message_id: text("provider_message_id"),
        worker: text("worker"),
        claimed_at_us: item
            .get("claimed_at_us")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or_default(),
    })
}

/// The services that carry notifications, and the addresses they use.
#[derive(Clone)]
pub struct Couriers {
    pub ses: aws_sdk_sesv2::Client,
    pub sns: aws_sdk_sns::Client,
    /// The verified SES identity emails come from.
    pub sender: String,
    /// Customers without a preference are emailed at `<customer id>@<this domain>`.
    pub default_email_domain: String,
}

impl Couriers {
    /// Where a customer's notifications go.
    pub fn destination(&self, customer_id: &str, preferences: Option<Preferences>) -> Preferences {
        preferences.unwrap_or_else(|| Preferences {
            channel: NotificationChannel::Email,
            address: format!("{customer_id}@{}", self.default_email_domain),
        })
    }

    /// Sends; answers the provider's message id.
    pub async fn send(&self, to: &Preferences, message: &Rendered) -> Result<String, NotificationError> {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message as Email};
        match to.channel {
            NotificationChannel::Email => {
                let content = |data: &str| Content::builder().data(data).charset("UTF-8").build();
                let (subject, text) = (
                    content(&message.subject).map_err(|e| self.refused("email subject", e))?,
                    content(&message.text).map_err(|e| self.refused("email body", e))?,
                );
                let email = Email::builder().subject(subject).body(Body::builder().text(text).build()).build();
                let out = self
                    .ses
                    .send_email()
                    .from_email_address(&self.sender)
                    .destination(Destination::builder().to_addresses(&to.address).build())
                    .content(EmailContent::builder().simple(email).build())
                    .send()
                    .await
                    .map_err(|e| NotificationError::Delivery(classify("SES", e)))?;
                Ok(out.message_id().unwrap_or_default().to_owned())
            }
            NotificationChannel::Sms => {
                let out = self
                    .sns
                    .publish()
                    .phone_number(&to.address)
                    .message(format!("{}: {}", message.subject, message.text))
                    .send()
                    .await
                    .map_err(|e| NotificationError::Delivery(classify("SNS", e)))?;
                Ok(out.message_id().unwrap_or_default().to_owned())
            }
        }
    }

    fn refused(&self, what: &str, e: impl std::error::Error) -> NotificationError {
        NotificationError::Malformed(format!("{what}: {e}"))
    }
}

/// Consumes notifications and delivers each once.
pub struct NotificationWorker {
    sqs: aws_sdk_sqs::Client,
    cafe: Arc<Cafe>,
    log: DeliveryLog,
    couriers: Couriers,
    receiving: Receiving,
    /// This worker's name in the claims.
    worker: String,
}

impl NotificationWorker {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        cafe: Arc<Cafe>,
        log: DeliveryLog,
        couriers: Couriers,
        receiving: Receiving,
        worker: impl Into<String>,
    ) -> Self {
        NotificationWorker { sqs, cafe, log, couriers, receiving, worker: worker.into() }
    }

    pub fn spawn(self, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(stop))
    }

    /// Receives and delivers until `stop` turns true. A call's messages are handled concurrently:
    /// a standard queue keeps no order.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        metric::NOTIFICATION_VISIBILITY_EXTENSIONS.register(metric::NO_LABELS);
        metric::NOTIFICATIONS.register(&[("outcome", "failed")]);
        metric::NOTIFICATIONS.register(&[("outcome", "duplicate")]);
        let this = Arc::new(self);
        loop {
            let received = tokio::select! {
                r = this.receiving.receive(&this.sqs) => r,
                _ = stop.changed() => return,
            };
            match received {
                Ok(messages) => {
                    futures::future::join_all(messages.iter().map(|m| this.handle(m))).await;
                }
                Err(e) => {
                    tracing::warn!(error = %events::ErrorChain(&NotificationError::Queue(e)), "cannot receive notifications; retrying");
                    if sleep_or_stop(&mut stop, Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        }
    }

    /// Handles one message, extending its visibility meanwhile; deletes it only when done.
    async fn handle(&self, message: &Message) {
        let Some(receipt) = message.receipt_handle() else { return };
        let started = Instant::now();
        let extender =
            self.receiving.keep_invisible(&self.sqs, receipt.to_owned(), &metric::NOTIFICATION_VISIBILITY_EXTENSIONS);
        let outcome = self.deliver(message.body().unwrap_or_default()).await;
        drop(extender);
        match outcome {
            Ok(Some(outcome)) => {
                self.receiving.delete(&self.sqs, receipt).await;
                metric::NOTIFICATIONS.counter(&[("outcome", outcome)]).increment(1);
                metric::NOTIFICATION_DELIVERY_DURATION
                    .histogram(metric::NO_LABELS)
                    .record(started.elapsed().as_secs_f64());
            }
            // Held by another worker: it comes back, and by then it is sent (or the claim stale).
            Ok(None) => {}
            Err(e) => {
                let receives = receive_count(message);
                tracing::warn!(error = %events::ErrorChain(&e), message_id = ?message.message_id(), receives, "notification not delivered; it will be received again");
                metric::NOTIFICATIONS.counter(&[("outcome", "failed")]).increment(1);
            }
        }
    }

    /// Delivers one notification unless it was delivered before; answers the outcome for the
    /// metric, or `None` when another worker holds it.
    async fn deliver(&self, body: &str) -> Result<Option<&'static str>, NotificationError> {
        let notification: Notification =
            serde_json::from_str(body).map_err(|e| NotificationError::Malformed(e.to_string()))?;
        let customer_id = if notification.customer_id.is_empty() {
            let order = self.cafe.order(notification.order_id).await?;
            order.map(|o| o.customer_id).ok_or(NotificationError::UnknownOrder(notification.order_id))?
        } else {
            notification.customer_id.clone()
        };
        let to = self.couriers.destination(&customer_id, self.cafe.customer_preferences(&customer_id).await?);
        let now = events::envelope::now_us();
        let delivery = Delivery {
            event_id: notification.event_id,
            kind: notification.kind.as_str().to_owned(),
            order_id: notification.order_id,
            customer_id,
            channel: to.channel.as_str().to_owned(),
            address: to.address.clone(),
            status: "sending".to_owned(),
            provider_message_id: String::new(),
            worker: self.worker.clone(),
            claimed_at_us: now,
        };
        let stale_before_us = now - self.receiving.visibility.as_micros() as i64;
        match self.log.claim(&delivery, stale_before_us).await? {
            Claim::AlreadySent => return Ok(Some("duplicate")),
            Claim::Held => return Ok(None),
            Claim::Won => {}
        }
        match self.couriers.send(&to, &render(&notification)).await {
            Ok(provider_message_id) => {
                self.log.mark_sent(notification.event_id, &provider_message_id).await?;
                tracing::debug!(event_id = %notification.event_id, channel = to.channel.as_str(), "notification sent");
                Ok(Some(to.channel.as_str()))
            }
            Err(e) => {
                if let Err(release) = self.log.release(notification.event_id, &self.worker).await {
                    tracing::warn!(error = %events::ErrorChain(&release), "claim not released; it goes stale instead");
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(kind: NotificationKind, amount_cents: i64) -> Notification {
        Notification {
            event_id: Uuid::from_u128(0xabc),
            kind,
            order_id: Uuid::from_u128(0x1234_5678_0000_0000_0000_0000_0000_0000),
            customer_id: "c1".into(),
            amount_cents,
            stream_id: "order-x".into(),
            global_position: 1,
            correlation_id: Uuid::nil(),
            occurred_at_us: 0,
        }
    }

    #[test]
    fn each_kind_reads_as_a_customer_expects_and_names_its_event() {
        let r = render(&notification(NotificationKind::OrderConfirmed, 1275));
        assert_eq!(r.subject, "Your CloudCafe order is confirmed");
        assert!(r.text.starts_with("Order 12345678 is paid (12.75)"), "{}", r.text);
        assert!(r.text.ends_with(&format!("Ref: {}", Uuid::from_u128(0xabc))), "{}", r.text);
        assert!(render(&notification(NotificationKind::PaymentDeclined, 905))
            .text
            .contains("9.05 for order 12345678 was declined"));
        assert!(render(&notification(NotificationKind::ReadyForPickup, 0)).text.contains("ready for pickup"));
        assert!(render(&notification(NotificationKind::Refunded, 450)).text.starts_with("4.50 for cancelled order"));
    }
}
