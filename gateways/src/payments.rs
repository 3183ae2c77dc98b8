//! The payment processor: the gateway through which payment requests come in from SQS (feature
//! `cloud`).
//!
//! ```text
//! payment-requests.fifo ─► PaymentProcessor ─► Payment actor (fraud score) ─► PaymentAuthorized | PaymentDeclined
//!   (long poll; group = customer)     │                                           │ (journal)
//!                                     └─► DynamoDB `payments` (one item per request)   └─► order saga captures, or cancels
//!
//! a void request (kind = void) ─► PaymentProcessor ─► Payment actor ─► PaymentVoided
//!                                     └─► DynamoDB `payments` (status `voided`, keyed on the PaymentVoidRequested id)
//! a refund request (kind = refund) ─► PaymentProcessor ─► Payment actor ─► PaymentRefunded
//!                                     └─► DynamoDB `payments` (status `refunded`, keyed on the PaymentRefundRequested id)
//! ```
//!
//! A void is asked for by the saga (`PaymentVoidRequested`) when an order is cancelled while its
//! payment holds an authorization, and a refund (`PaymentRefundRequested`) when it is cancelled after
//! the capture; the outbox sends each here like an order's authorization, in the customer's message
//! group, so it is handled after that authorization.
//!
//! - **Receiving**: long polling (`WaitTimeSeconds`), up to 10 messages a call. FIFO groups are
//!   customers; a call's messages of one customer are handled one after another, different
//!   customers concurrently.
//! - **Visibility**: while a message is being handled, its visibility timeout is extended every third
//!   of it, so a slow scoring never lets another consumer take the message meanwhile.
//! - **Idempotency**: the Payment actor decides once per order (a repeated request decides nothing
//!   new), and the `payments` item is written conditionally on the request's event id
//!   (`attribute_not_exists`), so a redelivered message writes nothing new. The message is deleted
//!   only after both.
//! - **The result goes back to the saga through the journal**: the saga follows it, captures an
//!   authorized payment (unless the order was cancelled meanwhile) and cancels a declined order.
//! - **Failures**: a message that cannot be handled (malformed body, journal or table unavailable)
//!   is not deleted; it comes back when its visibility timeout ends, and after three receives the
//!   queue's redrive policy moves it to the dead-letter queue. [`dead_letters`] lists that queue and
//!   [`redrive`] sends its messages back (`cloudcafe dlq list|redrive`).

use events::metric;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::cafe::{AuthorizePayment, Cafe, CafeError};
use actors::domain::payment::{Payment, PaymentStatus};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use events::journal::sleep_or_stop;
use events::Causation;
use projections::aws::dynamodb::{ensure_keyed_table, scan_all};
use projections::aws::{classify, AwsFailure, FailureKind};
use projections::bus::sqs::{PaymentRequest, PaymentRequestKind};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::queue::{queue_failure, receive_count, Receiving};

/// The table of processed payment requests, one item per request (key `event_id`, S).
#[derive(Clone)]
pub struct PaymentLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// One processed payment request, as the ledger keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct PaymentRecord {
    pub event_id: Uuid,
    pub order_id: Uuid,
    pub customer_id: String,
    pub amount_cents: i64,
    /// What the request came to: `authorized` or `declined` for an authorization, `voided` for a
    /// void, `refunded` for a refund.
    pub status: String,
    pub fraud_score: f64,
    pub processed_at_us: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("payments table unavailable: {0}")]
    Ledger(String),
    /// A call to the payments table failed.
    #[error("payments table unavailable: {0}")]
    LedgerCall(#[source] AwsFailure),
    #[error("queue unavailable: {0}")]
    Queue(String),
    /// A call to the payment queue failed.
    #[error("queue unavailable: {0}")]
    QueueCall(#[source] AwsFailure),
    #[error("payment request is malformed: {0}")]
    Malformed(String),
    #[error("payment not decided: {0}")]
    Cafe(#[from] CafeError),
}

/// A failed call to the payment queue, read by [`classify`](projections::aws::classify).
fn queue_error<E, R>(e: aws_sdk_sqs::error::SdkError<E, R>) -> PaymentError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    PaymentError::QueueCall(queue_failure("payment queue", e))
}

impl PaymentLedger {
    /// Opens the table, creating it (on-demand capacity) if absent.
    pub async fn open(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Result<Self, PaymentError> {
        let ledger = PaymentLedger { client, table: table.into() };
        ensure_keyed_table(&ledger.client, &ledger.table, "event_id").await.map_err(PaymentError::LedgerCall)?;
        Ok(ledger)
    }

    /// A ledger on a table that is assumed to exist (a write to a missing table fails).
    pub fn existing(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        PaymentLedger { client, table: table.into() }
    }

    /// Records a processed request; `false` if its event id was recorded before (nothing written).
    pub async fn record(&self, record: &PaymentRecord) -> Result<bool, PaymentError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("event_id", AttributeValue::S(record.event_id.to_string()))
            .item("order_id", AttributeValue::S(record.order_id.to_string()))
            .item("customer_id", AttributeValue::S(record.customer_id.clone()))
            .item("amount_cents", AttributeValue::N(record.amount_cents.to_string()))
            .item("status", AttributeValue::S(record.status.clone()))
            .item("fraud_score", AttributeValue::N(record.fraud_score.to_string()))
            .item("processed_at_us", AttributeValue::N(record.processed_at_us.to_string()))
            .condition_expression("attribute_not_exists(event_id)")
            .send()
            .await;
        match put.map_err(|e| classify(&self.table, e)) {
            Ok(_) => Ok(true),
            Err(failure) if failure.is(FailureKind::ConditionFailed) => Ok(false),
            Err(failure) => Err(PaymentError::LedgerCall(failure)),
        }
    }

    /// Every recorded payment (a strongly consistent scan), by event id.
    pub async fn all(&self) -> Result<BTreeMap<Uuid, PaymentRecord>, PaymentError> {
        let items = scan_all(&self.client, &self.table).await.map_err(PaymentError::LedgerCall)?;
        let mut out = BTreeMap::new();
        for item in &items {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let num = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).cloned().unwrap_or_default();
            let record = PaymentRecord {
                event_id: text("event_id").parse().map_err(|_| PaymentError::Ledger("bad event_id".into()))?,
                order_id: text("order_id").parse().map_err(|_| PaymentError::Ledger("bad order_id".into()))?,
                customer_id: text("customer_id"),
                amount_cents: num("amount_cents").parse().unwrap_or_default(),
                status: text("status"),
                fraud_score: num("fraud_score").parse().unwrap_or_default(),
                processed_at_us: num("processed_at_us").parse().unwrap_or_default(),
            };
            out.insert(record.event_id, record);
        }
        Ok(out)
    }
}

#[derive(Clone, Debug)]
pub struct ProcessorSettings {
    pub queue_url: String,
    /// Long-poll wait per receive (at most 20 s).
    pub wait: Duration,
    /// Visibility timeout of a received message, extended while it is handled.
    pub visibility: Duration,
}

impl ProcessorSettings {
    pub fn new(queue_url: impl Into<String>) -> Self {
        ProcessorSettings {
            queue_url: queue_url.into(),
            wait: Duration::from_secs(20),
            visibility: Duration::from_secs(30),
        }
    }
}

/// Consumes payment requests and authorizes them through the Payment actor.
pub struct PaymentProcessor {
    sqs: aws_sdk_sqs::Client,
    cafe: Arc<Cafe>,
    ledger: PaymentLedger,
    settings: ProcessorSettings,
}

impl PaymentProcessor {
    pub fn new(sqs: aws_sdk_sqs::Client, cafe: Arc<Cafe>, ledger: PaymentLedger, settings: ProcessorSettings) -> Self {
        PaymentProcessor { sqs, cafe, ledger, settings }
    }

    pub fn spawn(self, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(stop))
    }

    /// Receives and handles messages until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        metric::PAYMENT_VISIBILITY_EXTENSIONS.register(metric::NO_LABELS);
        metric::PAYMENT_REQUESTS.register(&[("outcome", "failed")]);
        let this = Arc::new(self);
        loop {
            let received = tokio::select! {
                r = this.receive() => r,
                _ = stop.changed() => return,
            };
            let messages = match received {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %events::ErrorChain(&e), "cannot receive payment requests; retrying");
                    if sleep_or_stop(&mut stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            // One customer's messages in order; customers concurrently.
            let mut groups: HashMap<String, Vec<Message>> = HashMap::new();
            for m in messages {
                tracing::debug!(message_id = ?m.message_id(), "payment request received");
                let group = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .unwrap_or_default();
                groups.entry(group).or_default().push(m);
            }
            futures::future::join_all(groups.into_values().map(|messages| {
                let this = this.clone();
                async move {
                    for m in messages {
                        this.handle(&m).await;
                    }
                }
            }))
            .await;
        }
    }

    async fn receive(&self) -> Result<Vec<Message>, PaymentError> {
        self.receiving().receive(&self.sqs).await.map_err(PaymentError::QueueCall)
    }

    fn receiving(&self) -> Receiving {
        Receiving {
            queue_url: self.settings.queue_url.clone(),
            wait: self.settings.wait,
            visibility: self.settings.visibility,
        }
    }

    /// Handles one message, extending its visibility meanwhile; deletes it only when done.
    async fn handle(&self, message: &Message) {
        let Some(receipt) = message.receipt_handle() else { return };
        let started = Instant::now();
        let receiving = self.receiving();
        let extender = receiving.keep_invisible(&self.sqs, receipt.to_owned(), &metric::PAYMENT_VISIBILITY_EXTENSIONS);
        let outcome = self.process(message.body().unwrap_or_default()).await;
        drop(extender);
        let receives = receive_count(message);
        match outcome {
            Ok(status) => {
                // If the delete fails, it comes back and is handled again, which changes nothing.
                receiving.delete(&self.sqs, receipt).await;
                metric::PAYMENT_REQUESTS.counter(&[("outcome", status)]).increment(1);
                metric::PAYMENT_PROCESSING_DURATION
                    .histogram(metric::NO_LABELS)
                    .record(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                tracing::warn!(error = %events::ErrorChain(&e), message_id = ?message.message_id(), %receives, "payment request failed; it will be received again");
                metric::PAYMENT_REQUESTS.counter(&[("outcome", "failed")]).increment(1);
            }
        }
    }

    /// Decides the payment and records it; answers the payment's status.
    async fn process(&self, body: &str) -> Result<&'static str, PaymentError> {
        let request: PaymentRequest = serde_json::from_str(body).map_err(|e| PaymentError::Malformed(e.to_string()))?;
        // The order's correlation id as the trace id: a Logs Insights query by the X-Correlation-Id
        // of `POST /api/orders` finds the payment's lines too (see `crate::logging`).
        let span = tracing::info_span!(
            "payment_request",
            service = "payments",
            trace_id = %request.correlation_id,
            customer_id = %request.customer_id,
        );
        let event_id = request.event_id;
        let status = self.decide_and_record(request).instrument(span.clone()).await?;
        span.in_scope(|| tracing::debug!(status, %event_id, "payment request handled"));
        Ok(status)
    }

    /// [`Self::process`] once the request is read.
    async fn decide_and_record(&self, request: PaymentRequest) -> Result<&'static str, PaymentError> {
        let causation = Causation { correlation_id: request.correlation_id, causation_id: Some(request.event_id) };
        let payment = match request.kind {
            PaymentRequestKind::Authorize => {
                let authorize = AuthorizePayment {
                    order_id: request.order_id,
                    customer_id: request.customer_id.clone(),
                    amount_cents: request.amount_cents,
                };
                self.cafe.authorize_payment(&authorize, causation).await?
            }
            PaymentRequestKind::Void => self.cafe.void_payment(request.order_id, causation).await?,
            PaymentRequestKind::Refund => self.cafe.refund_payment(request.order_id, causation).await?,
        };
        let status = status_name(&payment);
        let record = PaymentRecord {
            event_id: request.event_id,
            order_id: request.order_id,
            customer_id: request.customer_id,
            amount_cents: request.amount_cents,
            status: status.to_owned(),
            fraud_score: payment.fraud_score,
            processed_at_us: events::envelope::now_us(),
        };
        if !self.ledger.record(&record).await? {
            tracing::debug!(event_id = %record.event_id, "payment request seen before; nothing recorded");
        }
        Ok(status)
    }
}

fn status_name(payment: &Payment) -> &'static str {
    match payment.status {
        PaymentStatus::None => "none",
        PaymentStatus::Authorized => "authorized",
        PaymentStatus::Declined => "declined",
        PaymentStatus::Captured => "captured",
        PaymentStatus::VoidRequested => "void_requested",
        PaymentStatus::Voided => "voided",
        PaymentStatus::RefundRequested => "refund_requested",
        PaymentStatus::Refunded => "refunded",
    }
}

/// A message in the dead-letter queue.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub message_id: String,
    pub body: String,
    /// Receives counted by SQS (in the payment queue and here).
    pub receives: u32,
    /// The payment request, when the body is one.
    pub request: Option<PaymentRequest>,
}

fn dead_letter(m: &Message) -> DeadLetter {
    let body = m.body().unwrap_or_default().to_owned();
    DeadLetter {
        message_id: m.message_id().unwrap_or_default().to_owned(),
        request: serde_json::from_str(&body).ok(),
        receives: receive_count(m),
        body,
    }
}

/// Up to `max` messages of the dead-letter queue, left in it: each is received with a short
/// visibility timeout (`hide_for`) and so reappears for the next reader after it. The queue is FIFO:
/// while one message of a group is being looked at, SQS holds back the group's later ones, so a
/// listing shows the oldest message of each customer (the rest show once those are redriven).
pub async fn dead_letters(
    sqs: &aws_sdk_sqs::Client,
    dead_letter_url: &str,
    max: usize,
    hide_for: Duration,
) -> Result<Vec<DeadLetter>, PaymentError> {
    let mut seen: BTreeMap<String, DeadLetter> = BTreeMap::new();
    while seen.len() < max {
        let out = sqs
            .receive_message()
            .queue_url(dead_letter_url)
            .max_number_of_messages(10.min(max - seen.len()) as i32)
            .visibility_timeout(hide_for.as_secs().max(1) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(queue_error)?;
        let messages = out.messages.unwrap_or_default();
        let before = seen.len();
        for m in &messages {
            let letter = dead_letter(m);
            seen.entry(letter.message_id.clone()).or_insert(letter);
        }
        if messages.is_empty() || seen.len() == before {
            break;
        }
    }
    Ok(seen.into_values().collect())
}

/// Moves up to `max` messages from the dead-letter queue back to the payment queue; answers how
/// many. Each is sent with its customer as group and a fresh deduplication id (the event id would
/// be dropped as a duplicate within five minutes of the first send); the processor deduplicates on
/// the event id in the body. A message is deleted from the dead-letter queue only once sent.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    dead_letter_url: &str,
    queue_url: &str,
    max: usize,
) -> Result<usize, PaymentError> {
    let mut moved = 0;
    while moved < max {
        let out = sqs
            .receive_message()
            .queue_url(dead_letter_url)
            .max_number_of_messages(10.min(max - moved) as i32)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(queue_error)?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in &messages {
            let letter = dead_letter(m);
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .or_else(|| letter.request.as_ref().map(|r| r.customer_id.clone()))
                .unwrap_or_else(|| "dead-letters".into());
            sqs.send_message()
                .queue_url(queue_url)
                .message_body(&letter.body)
                .message_group_id(group)
                .message_deduplication_id(format!("redrive-{}", letter.message_id))
                .send()
                .await
                .map_err(queue_error)?;
            if let Some(receipt) = m.receipt_handle() {
                sqs.delete_message()
                    .queue_url(dead_letter_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .map_err(queue_error)?;
            }
            moved += 1;
        }
    }
    Ok(moved)
}

/// The URL of an existing queue.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, PaymentError> {
    let out = sqs.get_queue_url().queue_name(name).send().await.map_err(queue_error)?;
    out.queue_url().map(str::to_owned).ok_or_else(|| PaymentError::Queue(format!("no URL for {name}")))
}
