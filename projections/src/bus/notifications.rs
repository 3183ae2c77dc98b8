//! The notifier: the SQS adapter of the bus port that tells customers about their orders, through
//! the standard queue `notification-queue`. One message per notifiable event:
//!
//! | event                 | notification        |
//! |-----------------------|---------------------|
//! | `OrderPaid`           | `order_confirmed`   |
//! | `PaymentDeclined`     | `payment_declined`  |
//! | `OrderReadyForPickup` | `ready_for_pickup`  |
//! | `PaymentRefunded`     | `refunded`          |
//!
//! ## The message
//!
//! - **Body**: a JSON object, [`Notification`]:
//!   `{"event_id":"<uuid>","kind":"ready_for_pickup","order_id":"<uuid>","customer_id":"c1",`
//!   `"amount_cents":0,"stream_id":"order-<uuid>","global_position":42,"correlation_id":"<uuid>",`
//!   `"occurred_at_us":1700000000000000}`. `customer_id` is empty when the event does not name the
//!   customer (`OrderPaid`): the worker reads it from the order.
//! - A standard queue has no deduplication (`MessageDeduplicationId` is for FIFO queues only) and
//!   may deliver a message twice: the event id in the body is what the worker deduplicates on.
//! - No order between messages: each notification stands alone.
//!
//! [`ensure_notification_queues`] creates the queue and its dead-letter queue
//! `notification-queue-dlq`, with a redrive policy after 3 receives.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use events::{DomainEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bus::publisher::{BatchLimits, Bus, BusError, EntryOutcome, Message, SetupError};
use crate::bus::sqs::{create_queue_pair, send_batch_to, Ordering, MAX_BYTES_PER_REQUEST, MAX_MESSAGES_PER_REQUEST};

/// The checkpoint name of the notifier.
pub const CHECKPOINT: &str = "publisher:notifications";
/// The plans' `notification-queue`.
pub const DEFAULT_QUEUE: &str = "notification-queue";
pub const DEFAULT_DEAD_LETTER_QUEUE: &str = "notification-queue-dlq";
/// Receives of a message before SQS moves it to the dead-letter queue.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 3;

/// What a customer is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The order is paid: it will be prepared.
    OrderConfirmed,
    /// The payment was declined: the order is cancelled.
    PaymentDeclined,
    /// The order waits at the counter.
    ReadyForPickup,
    /// The captured amount was given back.
    Refunded,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::OrderConfirmed => "order_confirmed",
            NotificationKind::PaymentDeclined => "payment_declined",
            NotificationKind::ReadyForPickup => "ready_for_pickup",
            NotificationKind::Refunded => "refunded",
        }
    }

    /// The event that gives rise to this notification.
    pub fn event_type(self) -> &'static str {
        match self {
            NotificationKind::OrderConfirmed => "OrderPaid",
            NotificationKind::PaymentDeclined => "PaymentDeclined",
            NotificationKind::ReadyForPickup => "OrderReadyForPickup",
            NotificationKind::Refunded => "PaymentRefunded",
        }
    }

    pub const ALL: [NotificationKind; 4] = [
        NotificationKind::OrderConfirmed,
        NotificationKind::PaymentDeclined,
        NotificationKind::ReadyForPickup,
        NotificationKind::Refunded,
    ];
}

/// One notification to deliver, as the notification worker receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The id of the event it tells about: the worker records each delivery under it.
    pub event_id: Uuid,
    pub kind: NotificationKind,
    pub order_id: Uuid,
    /// Empty when the event does not name the customer (`OrderPaid`).
    pub customer_id: String,
    /// The amount paid, declined or refunded (0 for a ready order).
    pub amount_cents: i64,
    pub stream_id: String,
    pub global_position: u64,
    pub correlation_id: Uuid,
    /// When the event was recorded, microseconds since the Unix epoch.
    pub occurred_at_us: i64,
}

/// The notification an event gives rise to, if any.
pub fn notification_for(event: &RecordedEvent) -> Result<Option<Notification>, BusError> {
    let Some(kind) = NotificationKind::ALL.into_iter().find(|k| k.event_type() == event.event_type) else {
        return Ok(None);
    };
    let decoded =
        event.decode().map_err(|e| BusError::refused_because(format!("{} does not decode", event.event_type), e))?;
    let (order_id, customer_id, amount_cents) = match decoded {
        DomainEvent::OrderPaid(e) => (e.order_id, String::new(), e.amount_cents),
        DomainEvent::PaymentDeclined(e) => (e.order_id, e.customer_id, e.amount_cents),
        DomainEvent::OrderReadyForPickup(e) => (e.order_id, e.customer_id, 0),
        DomainEvent::PaymentRefunded(e) => (e.order_id, e.customer_id, e.amount_cents),
        other => return Err(BusError::refused(format!("{} decoded as {}", event.event_type, other.event_type()))),
    };
    Ok(Some(Notification {
        event_id: event.event_id,
        kind,
        order_id,
        customer_id,
        amount_cents,
        stream_id: event.stream_id.clone(),
        global_position: event.global_position,
        correlation_id: event.correlation_id,
        occurred_at_us: event.recorded_at_us,
    }))
}

/// Publishes a [`Notification`] per notifiable event to a standard SQS queue.
pub struct NotificationBus {
    client: Client,
    queue_url: String,
}

impl NotificationBus {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        NotificationBus { client, queue_url: queue_url.into() }
    }
}

#[async_trait]
impl Bus for NotificationBus {
    fn destination(&self) -> &str {
        "notifications"
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_messages: MAX_MESSAGES_PER_REQUEST,
            max_bytes: MAX_BYTES_PER_REQUEST,
            max_message_bytes: MAX_BYTES_PER_REQUEST,
            // A standard queue keeps no order: nothing to hold back behind a failed message.
            one_per_key: false,
        }
    }

    fn message_for(&self, event: &RecordedEvent) -> Result<Option<Message>, BusError> {
        let Some(notification) = notification_for(event)? else { return Ok(None) };
        let body = serde_json::to_vec(&notification)
            .map_err(|e| BusError::refused_because("cannot encode the notification", e))?;
        Ok(Some(Message {
            event_id: event.event_id,
            global_position: event.global_position,
            key: notification.order_id.to_string(),
            body,
        }))
    }

    async fn send_batch(&self, batch: &[Message]) -> Result<Vec<EntryOutcome>, BusError> {
        send_batch_to(&self.client, &self.queue_url, batch, Ordering::Standard).await
    }
}

/// The URLs of the notification queue and its dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationQueues {
    pub queue_url: String,
    pub dead_letter_url: String,
}

/// Creates (or keeps) the standard dead-letter queue and the standard notification queue, whose
/// redrive policy moves a message to the dead-letter queue after `max_receive_count` receives.
pub async fn ensure_notification_queues(
    client: &Client,
    queue_name: &str,
    dead_letter_name: &str,
    max_receive_count: u32,
) -> Result<NotificationQueues, SetupError> {
    for name in [queue_name, dead_letter_name] {
        if name.ends_with(".fifo") {
            return Err(SetupError::Refused {
                reason: format!("the notification queues are standard queues, not FIFO: {name}"),
                cause: None,
            });
        }
    }
    let (queue_url, dead_letter_url, _) =
        create_queue_pair(client, queue_name, dead_letter_name, max_receive_count, Ordering::Standard).await?;
    Ok(NotificationQueues { queue_url, dead_letter_url })
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::domain::{OrderPaid, OrderPlaced, OrderReadyForPickup};

    fn recorded(event: DomainEvent, stream: &str) -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::now_v7(),
            stream_id: stream.into(),
            stream_version: 3,
            global_position: 17,
            event_type: event.event_type().into(),
            schema_version: event.schema_version(),
            recorded_at_us: 5,
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            payload: event.encode().unwrap(),
            hash: [0; 32],
        }
    }

    #[test]
    fn each_notifiable_event_gives_one_notification_and_the_rest_none() {
        let order_id = Uuid::from_u128(7);
        let paid = recorded(OrderPaid { order_id, amount_cents: 900 }.into(), "order-x");
        let n = notification_for(&paid).unwrap().unwrap();
        assert_eq!(
            (n.kind, n.order_id, n.customer_id.as_str(), n.amount_cents),
            (NotificationKind::OrderConfirmed, order_id, "", 900)
        );
        assert_eq!((n.event_id, n.global_position), (paid.event_id, 17));
        let ready = OrderReadyForPickup {
            order_id,
            customer_id: "c1".into(),
            store_id: "s1".into(),
            ready_at_us: 1,
            pickup_by_us: 2,
        };
        let n = notification_for(&recorded(ready.into(), "order-x")).unwrap().unwrap();
        assert_eq!((n.kind, n.customer_id.as_str()), (NotificationKind::ReadyForPickup, "c1"));
        let placed = OrderPlaced {
            order_id,
            customer_id: "c1".into(),
            store_id: "s1".into(),
            lines: vec![],
            total_cents: 0,
            placed_at_us: 0,
        };
        assert_eq!(notification_for(&recorded(placed.into(), "order-x")).unwrap(), None);
    }

    #[test]
    fn the_body_is_json_with_the_kind_in_snake_case() {
        let paid = recorded(OrderPaid { order_id: Uuid::nil(), amount_cents: 900 }.into(), "order-x");
        let n = notification_for(&paid).unwrap().unwrap();
        let json: serde_json::Value = serde_json::to_value(&n).unwrap();
        assert_eq!(json["kind"], "order_confirmed");
        assert_eq!(serde_json::from_value::<Notification>(json).unwrap(), n);
    }
}
