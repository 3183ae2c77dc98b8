//! The publisher's unit tests: batching, retry sets, and publishing against a scripted broker.

use super::*;
use std::collections::HashMap;
use std::sync::Mutex;

use events::sqlite::{SqliteJournal, SqliteOptions};
use events::{AppendRequest, Causation, ExpectedVersion, NewEvent};

/// A broker whose answers are scripted: each request takes the next script entry, if any
/// (`Err` fails the request whole, `Ok(set)` refuses the entries at those indexes with a retryable
/// code); once the script is spent it accepts everything. It records what it accepted, in order.
#[derive(Default)]
struct ScriptedBus {
    limits: Option<BatchLimits>,
    script: Mutex<Vec<Result<Vec<usize>, BusError>>>,
    accepted: Mutex<Vec<Message>>,
    requests: Mutex<Vec<Vec<Uuid>>>,
}

impl ScriptedBus {
    fn with(script: Vec<Result<Vec<usize>, BusError>>) -> Self {
        let mut script = script;
        script.reverse();
        ScriptedBus { script: Mutex::new(script), ..Default::default() }
    }
    fn accepted(&self) -> Vec<Message> {
        self.accepted.lock().unwrap().clone()
    }
}

#[async_trait]
impl Bus for ScriptedBus {
    fn destination(&self) -> &str {
        "scripted"
    }
    fn limits(&self) -> BatchLimits {
        self.limits.unwrap_or(BatchLimits {
            max_messages: 4,
            max_bytes: 1 << 20,
            max_message_bytes: 1 << 16,
            one_per_key: false,
        })
    }
    fn message_for(&self, event: &RecordedEvent) -> Result<Option<Message>, BusError> {
        Ok(Some(Message {
            event_id: event.event_id,
            global_position: event.global_position,
            key: event.stream_id.clone(),
            body: event.to_wire(),
        }))
    }
    async fn send_batch(&self, batch: &[Message]) -> Result<Vec<EntryOutcome>, BusError> {
        self.requests.lock().unwrap().push(batch.iter().map(|m| m.event_id).collect());
        let step = self.script.lock().unwrap().pop();
        let refuse = match step {
            Some(Err(e)) => return Err(e),
            Some(Ok(set)) => set,
            None => Vec::new(),
        };
        let mut accepted = self.accepted.lock().unwrap();
        Ok(batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if refuse.contains(&i) {
                    EntryOutcome::Retry { code: "ProvisionedThroughputExceededException".into() }
                } else {
                    accepted.push(m.clone());
                    EntryOutcome::Accepted
                }
            })
            .collect())
    }
}

fn fast_settings(name: &str) -> PublisherSettings {
    PublisherSettings {
        lanes: 1,
        retry: RetryPolicy {
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_attempts: 4,
        },
        ..PublisherSettings::new(name)
    }
}

fn restock(n: u32) -> NewEvent {
    let e = events::domain::StockRestocked { store_id: "s1".into(), sku: "latte".into(), quantity: n };
    NewEvent::from_domain(&e.into(), Causation::new_root()).unwrap()
}

async fn journal_with(streams: &[(&str, u32)]) -> (tempfile::TempDir, Arc<dyn Journal>) {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    // Interleave the streams one event at a time so that a batch mixes keys.
    let most = streams.iter().map(|(_, n)| *n).max().unwrap_or(0);
    for i in 0..most {
        for (stream, n) in streams {
            if i < *n {
                let request = AppendRequest {
                    stream_id: (*stream).to_owned(),
                    expected: ExpectedVersion::Any,
                    events: vec![restock(i)],
                };
                journal.append(request).await.unwrap();
            }
        }
    }
    (dir, journal)
}

/// Per key, the last accepted copy of each event, in acceptance order: must be the journal order.
fn last_copies_in_order(accepted: &[Message], journal: &[RecordedEvent]) {
    let mut last: HashMap<Uuid, usize> = HashMap::new();
    for (i, m) in accepted.iter().enumerate() {
        last.insert(m.event_id, i);
    }
    let mut by_key: HashMap<&str, Vec<(usize, u64)>> = HashMap::new();
    for e in journal {
        let at = *last.get(&e.event_id).unwrap_or_else(|| panic!("event {} never accepted", e.global_position));
        by_key.entry(&e.stream_id).or_default().push((at, e.stream_version));
    }
    for (key, mut seen) in by_key {
        seen.sort();
        let versions: Vec<u64> = seen.iter().map(|(_, v)| *v).collect();
        let expected: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, expected, "stream {key}: last copies out of order");
    }
}

#[test]
fn metrics_count_events_and_retries_and_report_lag_by_destination() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The local recorder sees what runs on this thread: the publisher, on a current-thread runtime.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let (_dir, journal) = journal_with(&[("order-a", 3), ("order-b", 3)]).await;
            // The first request refuses b1 (entry 1): b1 and b2 go again.
            let bus = Arc::new(ScriptedBus::with(vec![Ok(vec![1])]));
            Publisher::new(journal, bus, fast_settings("publisher:metrics")).catch_up().await.unwrap();
        })
    });
    let text = handle.render();
    for line in [
        "publisher_events_total{destination=\"scripted\"} 6",
        "publisher_retries_total{destination=\"scripted\"} 2",
        "follower_lag_events{follower=\"publisher:metrics\"} 0",
        "publisher_checkpoint{destination=\"scripted\"} 6",
        "publisher_publish_seconds_count{destination=\"scripted\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn backoff_grows_exponentially_within_jitter_and_caps() {
    let p =
        RetryPolicy { first_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1), max_attempts: 5 };
    for _ in 0..100 {
        let one = p.backoff(1);
        assert!(one >= Duration::from_millis(50) && one <= Duration::from_millis(100), "{one:?}");
        let three = p.backoff(3);
        assert!(three >= Duration::from_millis(200) && three <= Duration::from_millis(400), "{three:?}");
        let ten = p.backoff(10);
        assert!(ten >= Duration::from_millis(500) && ten <= Duration::from_secs(1), "{ten:?}");
    }
}

fn msg(key: &str, n: u8, size: usize) -> Message {
    Message {
        event_id: Uuid::from_u128(u128::from(n)),
        global_position: u64::from(n),
        key: key.into(),
        body: vec![0; size],
    }
}

#[test]
fn a_batch_respects_count_and_bytes_and_one_per_key() {
    let limits = BatchLimits { max_messages: 3, max_bytes: 100, max_message_bytes: 100, one_per_key: false };
    let mut pending = vec![msg("a", 1, 10), msg("a", 2, 10), msg("b", 3, 10), msg("c", 4, 10)];
    let batch = next_batch(&mut pending, limits);
    assert_eq!(batch.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(pending.len(), 1);

    let mut pending = vec![msg("a", 1, 60), msg("b", 2, 60)];
    assert_eq!(next_batch(&mut pending, limits).len(), 1, "the byte limit splits the batch");

    let limits = BatchLimits { one_per_key: true, ..limits };
    let mut pending = vec![msg("a", 1, 1), msg("a", 2, 1), msg("b", 3, 1), msg("a", 4, 1), msg("c", 5, 1)];
    let batch = next_batch(&mut pending, limits);
    assert_eq!(batch.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![1, 3, 5]);
    let batch = next_batch(&mut pending, limits);
    assert_eq!(batch.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![2]);
    let batch = next_batch(&mut pending, limits);
    assert_eq!(batch.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![4]);
}

#[test]
fn a_partial_failure_resends_the_failed_suffix_of_each_key_and_nothing_else() {
    let batch = vec![msg("a", 1, 1), msg("b", 2, 1), msg("a", 3, 1), msg("c", 4, 1), msg("b", 5, 1)];
    let ok = EntryOutcome::Accepted;
    let fail = EntryOutcome::Retry { code: "InternalFailure".into() };
    // a1 fails, a3 was accepted but must go again after a1; b and c were accepted.
    let outcomes = [fail.clone(), ok.clone(), ok.clone(), ok.clone(), ok.clone()];
    match retry_set(batch, &outcomes) {
        Retry::Again { messages, code } => {
            assert_eq!(messages.iter().map(|m| m.global_position).collect::<Vec<_>>(), vec![1, 3]);
            assert_eq!(code, "InternalFailure");
        }
        _ => panic!("expected a retry"),
    }
}

#[tokio::test]
async fn partial_failures_are_retried_and_every_key_stays_in_order() {
    let (_dir, journal) = journal_with(&[("order-a", 6), ("order-b", 6), ("order-c", 3)]).await;
    // Request 1 refuses entries 0 and 2; request 2 fails whole; request 3 refuses entry 1.
    let bus = Arc::new(ScriptedBus::with(vec![
        Ok(vec![0, 2]),
        Err(BusError::unavailable("connection refused")),
        Ok(vec![1]),
    ]));
    let publisher = Publisher::new(journal.clone(), bus.clone(), fast_settings("publisher:test"));
    assert_eq!(publisher.catch_up().await.unwrap(), 15);
    assert_eq!(publisher.checkpoint().await.unwrap(), 15);
    let all = journal.read_all(0, 100).await.unwrap();
    last_copies_in_order(&bus.accepted(), &all);
    let stats = publisher.stats();
    assert_eq!(stats.published, 15);
    assert_eq!(stats.failed_requests, 1);
    assert!(stats.resent >= 3, "{stats:?}");
}

#[tokio::test]
async fn the_checkpoint_does_not_move_when_the_broker_keeps_failing() {
    let (_dir, journal) = journal_with(&[("order-a", 3), ("order-b", 3)]).await;
    // The first page (4 events, one batch) goes through; then every request fails.
    let mut script = vec![Ok(vec![])];
    script.extend((0..50).map(|_| Err(BusError::unavailable("connection refused"))));
    let bus = Arc::new(ScriptedBus::with(script));
    let settings = PublisherSettings { page_size: 4, ..fast_settings("publisher:test") };
    let publisher = Publisher::new(journal.clone(), bus.clone(), settings);
    let err = publisher.catch_up().await.unwrap_err();
    assert!(matches!(err, PublishError::Unavailable { attempts: 4, .. }), "{err:?}");
    assert_eq!(publisher.checkpoint().await.unwrap(), 4, "only the acknowledged page counts");
    assert_eq!(bus.accepted().len(), 4);
    // Partial failures that never end do not move it either.
    let script = (0..50).map(|_| Ok(vec![0])).collect();
    let bus = Arc::new(ScriptedBus::with(script));
    let publisher = Publisher::new(
        journal.clone(),
        bus.clone(),
        PublisherSettings { page_size: 4, ..fast_settings("publisher:test") },
    );
    assert!(publisher.catch_up().await.is_err());
    assert_eq!(publisher.checkpoint().await.unwrap(), 4);
}

#[tokio::test]
async fn a_refused_entry_stops_the_publisher_at_that_event() {
    struct Refusing;
    #[async_trait]
    impl Bus for Refusing {
        fn destination(&self) -> &str {
            "refusing"
        }
        fn limits(&self) -> BatchLimits {
            BatchLimits { max_messages: 10, max_bytes: 1 << 20, max_message_bytes: 1 << 20, one_per_key: false }
        }
        fn message_for(&self, e: &RecordedEvent) -> Result<Option<Message>, BusError> {
            if e.stream_version == 2 {
                return Err(BusError::refused("payload does not decode"));
            }
            Ok(None)
        }
        async fn send_batch(&self, _: &[Message]) -> Result<Vec<EntryOutcome>, BusError> {
            unreachable!("nothing to send")
        }
    }
    let (_dir, journal) = journal_with(&[("order-a", 3)]).await;
    let publisher = Publisher::new(journal.clone(), Arc::new(Refusing), fast_settings("publisher:refusing"));
    let err = publisher.catch_up().await.unwrap_err();
    assert!(matches!(err, PublishError::Refused { global_position: 2, .. }), "{err:?}");
    assert_eq!(publisher.checkpoint().await.unwrap(), 0, "a page is acknowledged whole or not at all");
}

#[tokio::test]
async fn a_running_publisher_keeps_trying_the_same_page_and_then_moves_on() {
    let (_dir, journal) = journal_with(&[("order-a", 5), ("order-b", 5)]).await;
    let script = (0..6).map(|_| Err(BusError::unavailable("connection refused"))).collect();
    let bus = Arc::new(ScriptedBus::with(script));
    let publisher = Publisher::new(journal.clone(), bus.clone(), fast_settings("publisher:run"));
    let (stop, stopped) = watch::channel(false);
    let task = publisher.spawn(stopped);
    let deadline = Instant::now() + Duration::from_secs(10);
    while journal.load_checkpoint("publisher:run").await.unwrap() < 10 {
        assert!(Instant::now() < deadline, "the publisher did not recover");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let more = AppendRequest {
        stream_id: "order-c".into(),
        expected: ExpectedVersion::NoStream,
        events: vec![NewEvent::from_domain(
            &events::domain::OrderPaid { order_id: Uuid::nil(), amount_cents: 1 }.into(),
            Causation::new_root(),
        )
        .unwrap()],
    };
    journal.append(more).await.unwrap();
    while journal.load_checkpoint("publisher:run").await.unwrap() < 11 {
        assert!(Instant::now() < deadline, "the publisher did not follow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    let all = journal.read_all(0, 100).await.unwrap();
    last_copies_in_order(&bus.accepted(), &all);
}
