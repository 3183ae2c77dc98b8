//! The SQS FIFO adapter of the bus port: the payment processor's work to `payment-requests.fifo`:
//! one request to authorize per `OrderPlaced`, one to void per `PaymentVoidRequested` (an
//! authorization whose order was cancelled), and one to refund per `PaymentRefundRequested` (a
//! capture whose order was cancelled).
//!
//! ## The message
//!
//! - **Body**: a JSON object, [`PaymentRequest`]:
//!   `{"event_id":"<uuid>","order_id":"<uuid>","customer_id":"c1","store_id":"s1","amount_cents":1275,`
//!   `"stream_id":"order-<uuid>","global_position":42,"correlation_id":"<uuid>","placed_at_us":1700000000000000}`
//!   (UUIDs hyphenated, amounts in cents, times in microseconds since the Unix epoch). JSON rather
//!   than the MessagePack envelope because a payment processor needs these few fields, not the
//!   order's lines or the hash chain, and SQS bodies are text.
//!   A void carries `"kind":"void"` (a request without `kind` is an authorization, as every request
//!   was before voids), the `PaymentVoidRequested` event's id, and in `placed_at_us` the time the
//!   void was asked for (its `store_id` is empty: the payment does not know the store). A refund
//!   is the same with `"kind":"refund"` and the `PaymentRefundRequested` event.
//! - **`MessageGroupId`** = customer id: one customer's payments are processed one at a time, in
//!   order (an order's void or refund after its authorization); different customers in parallel.
//! - **`MessageDeduplicationId`** = event id: a request sent twice within SQS's five-minute window
//!   is stored once; outside it the event id in the body lets the processor deduplicate.
//! - `SendMessageBatch` carries at most 10 messages and at most one per customer (see
//!   [`crate::bus::publisher`]: SQS drops a re-sent accepted message as a duplicate, so a later message of
//!   a customer must never be accepted before an earlier one that failed).
//!
//! [`ensure_payment_queues`] creates the FIFO queue and its dead-letter queue
//! `payment-requests-dlq.fifo`, with a redrive policy after 3 receives.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use events::{DomainEvent, RecordedEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aws::classify;
use crate::bus::publisher::{BatchLimits, Bus, BusError, EntryOutcome, Message, SetupError};

/// The checkpoint name of the SQS publisher.
pub const CHECKPOINT: &str = "publisher:sqs";
/// The plans' `payment-processing-queue.fifo`, named for what it carries.
pub const DEFAULT_QUEUE: &str = "payment-requests.fifo";
pub const DEFAULT_DEAD_LETTER_QUEUE: &str = "payment-requests-dlq.fifo";
/// Receives of a message before SQS moves it to the dead-letter queue.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 3;
/// The most entries one `SendMessageBatch` request carries.
pub const MAX_MESSAGES_PER_REQUEST: usize = 10;
/// The most bytes one `SendMessageBatch` request carries (and one message).
pub const MAX_BYTES_PER_REQUEST: usize = 256 * 1024;
/// The longest message group id.
pub const MAX_GROUP_ID_CHARS: usize = 128;

/// What the processor is asked to do with an order's payment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentRequestKind {
    /// Score the order's payment and authorize or decline it.
    #[default]
    Authorize,
    /// Release the order's authorization: the order was cancelled before the capture.
    Void,
    /// Give the captured amount back: the order was cancelled after the capture.
    Refund,
}

/// What the payment processor receives for each placed order, and for each void and refund.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequest {
    #[serde(default)]
    pub kind: PaymentRequestKind,
    /// The id of the event that asked (`OrderPlaced`, `PaymentVoidRequested`, `PaymentRefundRequested`): the processor
    /// deduplicates on it.
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: String,
    pub store_id: String,
    pub amount_cents: i64,
    pub stream_id: String,
    pub global_position: u64,
    pub correlation_id: Uuid,
    /// When the order was placed (a void or a refund: when it was asked for).
    pub placed_at_us: i64,
}

/// Typed settings of the SQS destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsSettings {
    /// The queue's URL, as [`ensure_payment_queues`] returns it.
    pub queue_url: String,
    /// Messages per request, at most [`MAX_MESSAGES_PER_REQUEST`].
    pub max_batch_messages: usize,
}

impl SqsSettings {
    pub fn new(queue_url: impl Into<String>) -> Self {
        SqsSettings { queue_url: queue_url.into(), max_batch_messages: MAX_MESSAGES_PER_REQUEST }
    }
}

/// Publishes a [`PaymentRequest`] per `OrderPlaced`, `PaymentVoidRequested` and `PaymentRefundRequested`
/// to an SQS FIFO queue.
pub struct SqsBus {
    client: Client,
    queue_url: String,
    limits: BatchLimits,
}

impl SqsBus {
    pub fn new(client: Client, settings: &SqsSettings) -> Self {
        SqsBus {
            client,
            queue_url: settings.queue_url.clone(),
            limits: BatchLimits {
                max_messages: settings.max_batch_messages.clamp(1, MAX_MESSAGES_PER_REQUEST),
                max_bytes: MAX_BYTES_PER_REQUEST,
                max_message_bytes: MAX_BYTES_PER_REQUEST,
                one_per_key: true,
            },
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

/// The payment request an event gives rise to: one per `OrderPlaced` (authorize), per
/// `PaymentVoidRequested` (void) and per `PaymentRefundRequested` (refund), none for other events.
pub fn payment_request(event: &RecordedEvent) -> Result<Option<PaymentRequest>, BusError> {
    let kind = match event.event_type.as_str() {
        "OrderPlaced" => PaymentRequestKind::Authorize,
        "PaymentVoidRequested" => PaymentRequestKind::Void,
        "PaymentRefundRequested" => PaymentRequestKind::Refund,
        _ => return Ok(None),
    };
    let decoded =
        event.decode().map_err(|e| BusError::refused_because(format!("{} does not decode", event.event_type), e))?;
    let (order_id, customer_id, store_id, amount_cents, at_us) = match decoded {
        DomainEvent::OrderPlaced(p) => (p.order_id, p.customer_id, p.store_id, p.total_cents, p.placed_at_us),
        DomainEvent::PaymentVoidRequested(v) => {
            (v.order_id, v.customer_id, String::new(), v.amount_cents, event.recorded_at_us)
        }
        DomainEvent::PaymentRefundRequested(r) => {
            (r.order_id, r.customer_id, String::new(), r.amount_cents, event.recorded_at_us)
        }
        other => {
            return Err(BusError::refused(format!("{} decoded as {}", event.event_type, other.event_type())));
        }
    };
    Ok(Some(PaymentRequest {
        kind,
        event_id: event.event_id,
        order_id,
        customer_id,
        store_id,
        amount_cents,
        stream_id: event.stream_id.clone(),
        global_position: event.global_position,
        correlation_id: event.correlation_id,
        placed_at_us: at_us,
    }))
}

#[async_trait]
impl Bus for SqsBus {
    fn destination(&self) -> &str {
        "sqs"
    }

    fn limits(&self) -> BatchLimits {
        self.limits
    }

    fn message_for(&self, event: &RecordedEvent) -> Result<Option<Message>, BusError> {
        let Some(request) = payment_request(event)? else { return Ok(None) };
        let group = &request.customer_id;
        if group.is_empty() || group.chars().count() > MAX_GROUP_ID_CHARS {
            return Err(BusError::refused(format!("customer id {group:?} cannot be a message group id")));
        }
        let body = serde_json::to_vec(&request)
            .map_err(|e| BusError::refused_because("cannot encode the payment request", e))?;
        Ok(Some(Message { event_id: event.event_id, global_position: event.global_position, key: group.clone(), body }))
    }

    async fn send_batch(&self, batch: &[Message]) -> Result<Vec<EntryOutcome>, BusError> {
        send_batch_to(&self.client, &self.queue_url, batch, Ordering::Fifo).await
    }
}

/// Whether a queue keeps order and deduplicates (FIFO: group = the message's key, deduplication id
/// = its event id) or not (standard: no group, no deduplication id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ordering {
    Fifo,
    Standard,
}

/// Sends `batch` in one `SendMessageBatch` and reads each entry's outcome from the answer.
pub(crate) async fn send_batch_to(
    client: &Client,
    queue_url: &str,
    batch: &[Message],
    ordering: Ordering,
) -> Result<Vec<EntryOutcome>, BusError> {
    let mut entries = Vec::with_capacity(batch.len());
    for (i, m) in batch.iter().enumerate() {
        let body = String::from_utf8(m.body.clone())
            .map_err(|e| BusError::refused_because("a message body is not UTF-8", e))?;
        let mut entry = SendMessageBatchRequestEntry::builder().id(format!("m{i}")).message_body(body);
        if ordering == Ordering::Fifo {
            entry = entry.message_group_id(m.key.clone()).message_deduplication_id(m.event_id.to_string());
        }
        entries.push(entry.build().map_err(|e| BusError::refused_because("cannot build an SQS batch entry", e))?);
    }
    let answer = client
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| bus_error(queue_url, e))?;
    let mut outcomes: Vec<Option<EntryOutcome>> = vec![None; batch.len()];
    let index = |id: &str| id.strip_prefix('m').and_then(|n| n.parse::<usize>().ok()).filter(|&n| n < batch.len());
    for ok in answer.successful() {
        if let Some(i) = index(ok.id()) {
            tracing::debug!(event_id = %batch[i].event_id, message_id = ok.message_id(), queue = queue_url, "message enqueued");
            outcomes[i] = Some(EntryOutcome::Accepted);
        }
    }
    for failed in answer.failed() {
        if let Some(i) = index(failed.id()) {
            let code = failed.code().to_owned();
            // The sender's fault (malformed entry) will not go away by sending it again.
            outcomes[i] =
                Some(if failed.sender_fault() { EntryOutcome::Refused { code } } else { EntryOutcome::Retry { code } });
        }
    }
    // An entry the answer does not mention is in an unknown state: send it again.
    Ok(outcomes.into_iter().map(|o| o.unwrap_or_else(|| EntryOutcome::Retry { code: "NotInAnswer".into() })).collect())
}

/// A failed request as the bus port's error, read by [`crate::aws::classify`] (`what` names the
/// queue).
fn bus_error<E, R>(what: &str, e: SdkError<E, R>) -> BusError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    classify(what, e).into()
}

pub(crate) fn setup_error<E, R>(what: &str, e: SdkError<E, R>) -> SetupError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    bus_error(what, e).into()
}

/// The URLs of the payment queue and its dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentQueues {
    pub queue_url: String,
    pub dead_letter_url: String,
    pub dead_letter_arn: String,
}

/// Creates (or keeps) the FIFO dead-letter queue and the FIFO payment queue, and sets the payment
/// queue's redrive policy: after `max_receive_count` receives a message moves to the dead-letter
/// queue. Deduplication is by the id the publisher gives (the event id), not by content.
pub async fn ensure_payment_queues(
    client: &Client,
    queue_name: &str,
    dead_letter_name: &str,
    max_receive_count: u32,
) -> Result<PaymentQueues, SetupError> {
    for name in [queue_name, dead_letter_name] {
        if !name.ends_with(".fifo") {
            return Err(SetupError::Refused { reason: format!("FIFO queue names end in .fifo: {name}"), cause: None });
        }
    }
    let (queue_url, dead_letter_url, dead_letter_arn) =
        create_queue_pair(client, queue_name, dead_letter_name, max_receive_count, Ordering::Fifo).await?;
    Ok(PaymentQueues { queue_url, dead_letter_url, dead_letter_arn })
}

/// Creates (or keeps) a dead-letter queue and a queue whose redrive policy moves a message there
/// after `max_receive_count` receives; answers the queue's URL, the dead-letter queue's URL and ARN.
pub(crate) async fn create_queue_pair(
    client: &Client,
    queue_name: &str,
    dead_letter_name: &str,
    max_receive_count: u32,
    ordering: Ordering,
) -> Result<(String, String, String), SetupError> {
    let dead_letter_url = create_queue(client, dead_letter_name, ordering).await?;
    let attributes = client
        .get_queue_attributes()
        .queue_url(&dead_letter_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| setup_error(dead_letter_name, e))?;
    let dead_letter_arn = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| SetupError::Unavailable { reason: format!("no ARN for {dead_letter_name}"), cause: None })?;
    let queue_url = create_queue(client, queue_name, ordering).await?;
    let policy = serde_json::json!({
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    client
        .set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .send()
        .await
        .map_err(|e| setup_error(queue_name, e))?;
    Ok((queue_url, dead_letter_url, dead_letter_arn))
}

async fn create_queue(client: &Client, name: &str, ordering: Ordering) -> Result<String, SetupError> {
    let attributes = match ordering {
        Ordering::Fifo => HashMap::from([
            (QueueAttributeName::FifoQueue, "true".to_owned()),
            (QueueAttributeName::ContentBasedDeduplication, "false".to_owned()),
        ]),
        Ordering::Standard => HashMap::new(),
    };
    let answer = client
        .create_queue()
        .queue_name(name)
        .set_attributes((!attributes.is_empty()).then_some(attributes))
        .send()
        .await
        .map_err(|e| setup_error(name, e))?;
    answer
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| SetupError::Unavailable { reason: format!("no URL for queue {name}"), cause: None })
}
