//! The analytics stream (feature `kinesis`): the events the analytics model needs, to the
//! `analytics-events` Kinesis stream (2 shards in the original plans), partition key = store id.
//!
//! - **Which events**: an order placed, paid or cancelled, and a payment authorized, declined,
//!   captured, voided or refunded ([`EVENT_TYPES`]); the analytics model reads nothing else.
//! - **Record data** is the event's wire envelope, as on `order-events`, so one decoder serves both.
//! - **Partition key** is the order's store, so a store's events (and its windows) stay on one
//!   shard, in journal order. Only `OrderPlaced` names the store: the bus remembers each order's
//!   store as its placement goes by ([`AnalyticsBus::prepare`]) and reads the order's first event
//!   from the journal for one it has not seen (a publisher that starts mid-history, or an order
//!   placed before its memory's horizon). The memory is two generations of at most
//!   [`STORES_REMEMBERED`] orders each.
//! - At most one record per store in a request (`one_per_key`), so that a store's records never
//!   reach the shard out of journal order; the consumer (`read_models::analytics`) also takes a
//!   record sent again late without harm.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use events::{DomainEvent, Journal, RecordedEvent};
use uuid::Uuid;

use crate::bus::kinesis::{KinesisBus, KinesisSettings, MAX_PARTITION_KEY_CHARS};
use crate::bus::publisher::{BatchLimits, Bus, BusError, EntryOutcome, Message};

/// The checkpoint name of the analytics publisher.
pub const CHECKPOINT: &str = "publisher:analytics";
/// The stream's name in the original plans is `cloudcafe-analytics-events-{env}`; this is its base.
pub const DEFAULT_STREAM: &str = "analytics-events";
/// The plans' shard count.
pub const DEFAULT_SHARDS: i32 = 2;
/// The event types the analytics model folds.
pub const EVENT_TYPES: &[&str] = &[
    "OrderPlaced",
    "OrderPaid",
    "OrderCancelled",
    "PaymentAuthorized",
    "PaymentDeclined",
    "PaymentCaptured",
    "PaymentVoided",
    "PaymentRefunded",
];
/// Orders per generation of the store memory (two generations are kept).
pub const STORES_REMEMBERED: usize = 100_000;

/// The order an analytics event is about: its stream is `order-<id>` or `payment-<id>`.
fn order_of(event: &RecordedEvent) -> Option<Uuid> {
    let id = event.stream_id.strip_prefix("order-").or_else(|| event.stream_id.strip_prefix("payment-"))?;
    Uuid::parse_str(id).ok()
}

/// Whether the analytics stream carries `event` (its type is one of [`EVENT_TYPES`]).
pub fn carries(event: &RecordedEvent) -> bool {
    EVENT_TYPES.contains(&event.event_type.as_str())
}

/// Each order's store, as far as remembered: two generations, the older dropped when the newer fills.
#[derive(Default)]
struct StoreMemory {
    newer: HashMap<Uuid, String>,
    older: HashMap<Uuid, String>,
}

impl StoreMemory {
    fn get(&self, order: &Uuid) -> Option<&String> {
        self.newer.get(order).or_else(|| self.older.get(order))
    }

    fn remember(&mut self, order: Uuid, store: String) {
        if self.newer.len() >= STORES_REMEMBERED {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(order, store);
    }
}

/// Publishes the analytics events to their Kinesis stream, keyed by store.
pub struct AnalyticsBus {
    kinesis: KinesisBus,
    journal: Arc<dyn Journal>,
    stores: Mutex<StoreMemory>,
}

impl AnalyticsBus {
    /// `settings.stream_name` is the analytics stream; one record per store per request is forced.
    pub fn new(client: aws_sdk_kinesis::Client, settings: &KinesisSettings, journal: Arc<dyn Journal>) -> Self {
        let settings = KinesisSettings { one_record_per_stream: true, ..settings.clone() };
        AnalyticsBus { kinesis: KinesisBus::new(client, &settings), journal, stores: Mutex::default() }
    }

    fn store_of(&self, order: &Uuid) -> Option<String> {
        self.stores.lock().expect("store memory").get(order).cloned()
    }
}

#[async_trait]
impl Bus for AnalyticsBus {
    fn destination(&self) -> &str {
        "analytics"
    }

    fn limits(&self) -> BatchLimits {
        self.kinesis.limits()
    }

    async fn prepare(&self, page: &[RecordedEvent]) -> Result<(), BusError> {
        let mut unknown = std::collections::BTreeSet::new();
        for event in page.iter().filter(|e| carries(e)) {
            let Some(order) = order_of(event) else { continue };
            if event.event_type == "OrderPlaced" {
                // A placement that does not decode is refused by `message_for`, naming it.
                if let Ok(DomainEvent::OrderPlaced(placed)) = event.decode() {
                    self.stores.lock().expect("store memory").remember(order, placed.store_id);
                }
            } else if self.store_of(&order).is_none() {
                unknown.insert(order);
            }
        }
        for order in unknown {
            if self.store_of(&order).is_some() {
                continue;
            }
            let stream = events::domain::streams::order(order);
            let first = self.journal.read_stream(&stream, 1, 1).await.map_err(|e| BusError::Unavailable {
                reason: format!("reading {stream} for its store"),
                cause: Some(Arc::new(e)),
            })?;
            if let Some(Ok(DomainEvent::OrderPlaced(placed))) = first.first().map(RecordedEvent::decode) {
                self.stores.lock().expect("store memory").remember(order, placed.store_id);
            }
        }
        Ok(())
    }

    fn message_for(&self, event: &RecordedEvent) -> Result<Option<Message>, BusError> {
        if !carries(event) {
            return Ok(None);
        }
        let order = order_of(event).ok_or_else(|| {
            BusError::refused(format!("{} on stream {} names no order", event.event_type, event.stream_id))
        })?;
        let store = match self.store_of(&order) {
            Some(store) => store,
            None => match event.decode() {
                Ok(DomainEvent::OrderPlaced(placed)) => placed.store_id,
                Ok(_) => {
                    return Err(BusError::refused(format!("order {order} has no OrderPlaced: its store is unknown")))
                }
                Err(e) => return Err(BusError::refused_because(format!("{} does not decode", event.event_type), e)),
            },
        };
        if store.is_empty() || store.chars().count() > MAX_PARTITION_KEY_CHARS {
            return Err(BusError::refused(format!(
                "store id of {} characters cannot be a partition key (1 to {MAX_PARTITION_KEY_CHARS})",
                store.chars().count()
            )));
        }
        Ok(Some(Message {
            event_id: event.event_id,
            global_position: event.global_position,
            key: store,
            body: event.to_wire(),
        }))
    }

    async fn send_batch(&self, batch: &[Message]) -> Result<Vec<EntryOutcome>, BusError> {
        self.kinesis.send_batch(batch).await
    }
}
