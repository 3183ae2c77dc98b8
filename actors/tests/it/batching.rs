//! An actor decides the commands queued for it together and appends them in one append: every
//! caller still gets its own answer, a rejection rejects only itself, versions stay contiguous, and
//! a version conflict mid-batch (another node wrote first) never applies a command twice.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::domain::inventory::{InventoryCommand, InventoryDecider, InventoryError};
use actors::domain::store::StoreStatus;
use actors::host::{start_arbiters, CommandError, HostOptions, Registry};
use async_trait::async_trait;
use events::domain::streams;
use events::sqlite::{SqliteJournal, SqliteOptions};
use events::{
    AppendError, AppendRequest, Appended, Causation, DomainEvent, Journal, RecordedEvent, Snapshot, StoreError,
};
use futures::future::join_all;
use tokio::sync::watch;
use uuid::Uuid;

/// A journal that counts appends and their conflicts and holds each append back a little, so that
/// commands pile up behind it (and two nodes race for the same version).
struct CountingJournal {
    inner: Arc<dyn Journal>,
    appends: AtomicUsize,
    conflicts: AtomicUsize,
    delay: Duration,
}

#[async_trait]
impl Journal for CountingJournal {
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        tokio::time::sleep(self.delay).await;
        let result = self.inner.append(request).await;
        match &result {
            Ok(_) => self.appends.fetch_add(1, Ordering::SeqCst),
            Err(AppendError::Conflict { .. }) => self.conflicts.fetch_add(1, Ordering::SeqCst),
            Err(_) => 0,
        };
        result
    }
    async fn read_stream(&self, stream_id: &str, from: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream_id, from, max).await
    }
    async fn read_all(&self, after: u64, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max).await
    }
    async fn head_position(&self) -> Result<u64, StoreError> {
        self.inner.head_position().await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        self.inner.load_snapshot(stream_id).await
    }
    async fn load_checkpoint(&self, name: &str) -> Result<u64, StoreError> {
        self.inner.load_checkpoint(name).await
    }
    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        self.inner.save_checkpoint(name, position).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits()
    }
}

fn counting(inner: Arc<dyn Journal>, delay: Duration) -> Arc<CountingJournal> {
    Arc::new(CountingJournal { inner, appends: AtomicUsize::new(0), conflicts: AtomicUsize::new(0), delay })
}

fn restock(quantity: i64) -> InventoryCommand {
    InventoryCommand::Restock { store_id: "s1".into(), sku: "beans".into(), store: StoreStatus::Open, quantity }
}

fn reserve(order_id: Uuid, quantity: u32) -> InventoryCommand {
    InventoryCommand::Reserve { store_id: "s1".into(), sku: "beans".into(), order_id, quantity }
}

/// The stream's events, checked to be numbered 1, 2, 3, … without a gap.
async fn contiguous_events(journal: &dyn Journal, stream: &str) -> Vec<DomainEvent> {
    let recorded = events::journal::read_stream_to_end(journal, stream, 1).await.unwrap();
    for (i, e) in recorded.iter().enumerate() {
        assert_eq!(e.stream_version, i as u64 + 1, "versions are contiguous");
    }
    recorded.iter().map(|e| e.decode().unwrap()).collect()
}

fn reserved_orders(events: &[DomainEvent]) -> Vec<Uuid> {
    events
        .iter()
        .filter_map(|e| match e {
            DomainEvent::StockReserved(r) => Some(r.order_id),
            _ => None,
        })
        .collect()
}

#[actix_rt::test]
async fn concurrent_commands_to_one_stream_are_decided_in_batches_and_each_answered() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    let journal = counting(sqlite, Duration::from_millis(20));
    let registry =
        Arc::new(Registry::<InventoryDecider>::new(journal.clone(), HostOptions::default(), start_arbiters(1)));
    let stream = streams::inventory("s1", "beans");
    registry.execute(&stream, restock(10), Causation::new_root()).await.unwrap();

    // Given 10 units, when 40 orders of one unit each (and 5 of zero units) arrive at once,
    let orders: Vec<(Uuid, u32)> = (0..45).map(|i| (Uuid::now_v7(), if i % 9 == 4 { 0 } else { 1 })).collect();
    let answers = join_all(orders.iter().map(|(order_id, quantity)| {
        let registry = registry.clone();
        let stream = stream.clone();
        async move { registry.execute(&stream, reserve(*order_id, *quantity), Causation::new_root()).await }
    }))
    .await;

    // then exactly 10 are reserved, the zero-unit ones are refused for that reason alone, the rest
    // are out of stock, and each accepted caller sees the version its own event got.
    let mut accepted = HashSet::new();
    let mut versions = HashSet::new();
    for ((order_id, quantity), answer) in orders.iter().zip(&answers) {
        match answer {
            Ok(executed) => {
                assert_eq!(*quantity, 1);
                assert_eq!(executed.events.len(), 1);
                assert!(executed.state.reservations.contains_key(order_id), "the caller sees its own reservation");
                assert!(versions.insert(executed.version), "two callers got the same version");
                accepted.insert(*order_id);
            }
            Err(CommandError::Rejected(InventoryError::NonPositiveQuantity)) => assert_eq!(*quantity, 0),
            Err(CommandError::Rejected(InventoryError::OutOfStock { available: 0, .. })) => assert_eq!(*quantity, 1),
            Err(other) => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(accepted.len(), 10);
    assert_eq!(versions, (2..=11).collect::<HashSet<u64>>());
    let events = contiguous_events(journal.as_ref(), &stream).await;
    assert_eq!(events.len(), 11);
    assert_eq!(reserved_orders(&events).into_iter().collect::<HashSet<_>>(), accepted);

    // and the commands that piled up behind the first append shared appends.
    let appends = journal.appends.load(Ordering::SeqCst);
    assert!(appends < 10, "10 reservations took {appends} appends besides the restock: not batched");
}

#[actix_rt::test]
async fn a_conflict_mid_batch_across_two_nodes_never_applies_a_command_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    let journal = counting(sqlite, Duration::from_millis(5));
    // Two nodes, each with its own actor for the same stream and no follower: both decide on what
    // they loaded and race for the same expected version.
    let nodes: Vec<Arc<Registry<InventoryDecider>>> =
        (0..2).map(|_| Arc::new(Registry::new(journal.clone(), HostOptions::default(), start_arbiters(1)))).collect();
    let stream = streams::inventory("s1", "beans");
    nodes[0].execute(&stream, restock(1_000), Causation::new_root()).await.unwrap();
    nodes[1].inspect(&stream).await.unwrap();

    // Each order is sent to both nodes at once, as a retried request might be; some orders twice
    // to the same node.
    let orders: Vec<Uuid> = (0..60).map(|_| Uuid::now_v7()).collect();
    let calls = orders.iter().enumerate().flat_map(|(i, order_id)| {
        let targets = if i % 5 == 0 { vec![0, 0, 1] } else { vec![0, 1] };
        targets.into_iter().map(move |n| (n, *order_id))
    });
    let answers = join_all(calls.map(|(n, order_id)| {
        let registry = nodes[n].clone();
        let stream = stream.clone();
        async move { registry.execute(&stream, reserve(order_id, 3), Causation::new_root()).await }
    }))
    .await;
    for answer in &answers {
        assert!(answer.is_ok(), "every reservation fits and is answered: {answer:?}");
    }
    assert!(journal.conflicts.load(Ordering::SeqCst) > 0, "the two nodes never raced: the test proves nothing");

    let events = contiguous_events(journal.as_ref(), &stream).await;
    let reserved = reserved_orders(&events);
    assert_eq!(reserved.len(), orders.len(), "each order reserved exactly once");
    assert_eq!(reserved.iter().collect::<HashSet<_>>().len(), orders.len());
    let (stock, _) = nodes[1].inspect(&stream).await.unwrap();
    assert_eq!(stock.available, 1_000 - 3 * orders.len() as u64);
}
