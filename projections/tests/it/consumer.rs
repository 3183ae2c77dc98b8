//! The KCL-style Kinesis consumer against real emulators: kinesalite for the stream, moto for the
//! DynamoDB lease table and read models.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use events::RecordedEvent;
use projections::bus::consumer::{ConsumerSettings, KinesisConsumer, KinesisProjection, RecordProcessor};
use projections::bus::kinesis::{self, KinesisRecord};
use projections::bus::leases::{Checkpoint, Lease, LeaseError, LeaseTable};
use projections::read_models::dynamo::DynamoSink;
use projections::read_models::runner::ProjectionRunner;
use projections::{Fingerprint, Sink, SinkError, StreamOrderedSink};
use testkit::aws::{dynamodb_client, fresh_table_names, kinesis_client};
use testkit::names::unique;
use testkit::workload::{whole_journal, PublishedDay};
use testkit::{servers, wait_until};
use tokio::sync::watch;

use crate::publisher::{append_all, more_events};

/// Records every batch it is handed, then passes it on (if it wraps a projection).
struct Recorder {
    batches: Mutex<Vec<(String, Vec<RecordedEvent>)>>,
    inner: Option<KinesisProjection>,
}

impl Recorder {
    fn new(inner: Option<KinesisProjection>) -> Arc<Self> {
        Arc::new(Recorder { batches: Mutex::new(Vec::new()), inner })
    }

    fn event_ids(&self) -> BTreeSet<uuid::Uuid> {
        self.batches.lock().unwrap().iter().flat_map(|(_, b)| b.iter().map(|e| e.event_id)).collect()
    }

    /// Every stream's events, first copies only, in the order they were processed, must come in
    /// increasing version order with no version missing.
    fn assert_streams_in_order(&self) {
        let mut next: HashMap<String, u64> = HashMap::new();
        for (_, batch) in self.batches.lock().unwrap().iter() {
            for e in batch {
                let expected = next.entry(e.stream_id.clone()).or_insert(1);
                if e.stream_version >= *expected {
                    assert_eq!(e.stream_version, *expected, "{} skipped a version", e.stream_id);
                    *expected += 1;
                }
            }
        }
    }
}

#[async_trait]
impl RecordProcessor for Recorder {
    async fn process(&self, shard_id: &str, lease_counter: u64, records: &[KinesisRecord]) -> Result<(), SinkError> {
        if let Some(inner) = &self.inner {
            inner.process(shard_id, lease_counter, records).await?;
        }
        let events = records.iter().map(|r| RecordedEvent::from_wire(&r.data).unwrap()).collect();
        self.batches.lock().unwrap().push((shard_id.to_owned(), events));
        Ok(())
    }
}

struct Emulators {
    kinesis_endpoint: String,
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

async fn emulators() -> Option<Emulators> {
    let kinesis_endpoint = servers::kinesis_endpoint()?;
    let dynamodb = servers::dynamodb_endpoint()?;
    Some(Emulators {
        kinesis: kinesis_client(&kinesis_endpoint).await,
        kinesis_endpoint,
        dynamodb: dynamodb_client(&dynamodb).await,
    })
}

fn worker(
    e: &Emulators,
    leases: &LeaseTable,
    processor: Arc<dyn RecordProcessor>,
    stream: &str,
    id: &str,
) -> KinesisConsumer {
    let settings = ConsumerSettings::new(stream, id).with_lease_timeout(Duration::from_millis(1500));
    KinesisConsumer::new(e.kinesis.clone(), leases.clone(), processor, settings)
}

fn owners(leases: &[Lease]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for l in leases.iter().filter(|l| l.checkpoint != Checkpoint::ShardEnd) {
        if let Some(o) = &l.owner {
            *out.entry(o.clone()).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_over_fences_its_old_holder() {
    let Some(e) = emulators().await else { return };
    let table = LeaseTable::open(e.dynamodb.clone(), unique("leases")).await.unwrap();
    assert!(table.create_if_absent("shardId-000000000000", &[]).await.unwrap());
    assert!(!table.create_if_absent("shardId-000000000000", &[]).await.unwrap(), "a lease is created once");
    let seen = table.list().await.unwrap().remove(0);
    assert_eq!((seen.owner.as_deref(), seen.counter, &seen.checkpoint), (None, 0, &Checkpoint::TrimHorizon));

    let a = table.take(&seen, "a").await.unwrap();
    assert_eq!((a.owner.as_deref(), a.counter), (Some("a"), 1));
    assert!(matches!(table.take(&seen, "b").await, Err(LeaseError::Lost(_))), "a stale counter takes nothing");
    let a = table.renew(&a).await.unwrap();
    let a = table.checkpoint(&a, Checkpoint::After("100".into())).await.unwrap();
    assert!(matches!(table.checkpoint(&a, Checkpoint::After("99".into())).await, Err(LeaseError::Backwards { .. })));
    assert!(Checkpoint::After("99".into()) < Checkpoint::After("100".into()), "by length, then text");

    // `a` stops renewing; `b` watched the counter stand still and takes the lease.
    let seen = table.list().await.unwrap().remove(0);
    let b = table.take(&seen, "b").await.unwrap();
    assert!(matches!(table.renew(&a).await, Err(LeaseError::Lost(_))), "the old holder cannot renew");
    assert!(
        matches!(table.checkpoint(&a, Checkpoint::After("200".into())).await, Err(LeaseError::Lost(_))),
        "the old holder cannot checkpoint"
    );
    let b = table.checkpoint(&b, Checkpoint::After("200".into())).await.unwrap();

    // `c` steals from `b` (which holds more than its share); `b` is fenced off in turn.
    let c = table.steal(&table.list().await.unwrap()[0], "c").await.unwrap();
    assert!(matches!(table.renew(&b).await, Err(LeaseError::Lost(_))));
    assert_eq!(c.checkpoint, Checkpoint::After("200".into()), "the checkpoint travels with the lease");
    table.release(&c).await.unwrap();
    assert_eq!(table.list().await.unwrap()[0].owner, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_the_shards_and_survive_one_dying_without_losing_or_doubling_an_event() {
    let Some(e) = emulators().await else { return };
    let day = PublishedDay::publish(&e.kinesis, &e.kinesis_endpoint, 40, "kcl", 4).await;
    let (journal, stream, publisher) = (&day.journal, &day.stream, &day.publisher);

    // The read model fed from Kinesis, and the same model fed from the journal to compare with.
    let from_kinesis = Arc::new(DynamoSink::open(e.dynamodb.clone(), fresh_table_names()).await.unwrap());
    let recorder = Recorder::new(Some(KinesisProjection::new(from_kinesis.clone() as Arc<dyn StreamOrderedSink>)));
    let leases = LeaseTable::open(e.dynamodb.clone(), unique("leases")).await.unwrap();
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    for id in ["w1", "w2", "w3"] {
        let (stop, stopped) = watch::channel(false);
        handles.push(worker(&e, &leases, recorder.clone(), stream, id).spawn(stopped));
        stops.push(stop);
    }
    wait_until("every worker holds a lease", Duration::from_secs(30), || async {
        let held = owners(&leases.list().await.unwrap());
        held.len() == 3 && held.values().sum::<usize>() == 4
    })
    .await;
    let first = whole_journal(journal.as_ref()).await;
    wait_until("every event was processed", Duration::from_secs(60), || async {
        first.iter().all(|ev| recorder.event_ids().contains(&ev.event_id))
    })
    .await;

    // w1 dies: its task and shard readers are gone, its leases are not released.
    let dead: Vec<String> = leases
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.owner.as_deref() == Some("w1"))
        .map(|l| l.shard_id)
        .collect();
    assert!(!dead.is_empty());
    handles[0].abort();
    append_all(journal.as_ref(), more_events(60)).await;
    publisher.catch_up().await.unwrap();
    let died = Instant::now();
    wait_until("the dead worker's leases moved", Duration::from_secs(30), || async {
        let all = leases.list().await.unwrap();
        dead.iter().all(|s| all.iter().any(|l| &l.shard_id == s && l.owner.as_deref().is_some_and(|o| o != "w1")))
    })
    .await;
    eprintln!("leases of the dead worker moved after {:?} (lease timeout 1.5 s)", died.elapsed());
    let everything = whole_journal(journal.as_ref()).await;
    wait_until("every later event was processed", Duration::from_secs(60), || async {
        everything.iter().all(|ev| recorder.event_ids().contains(&ev.event_id))
    })
    .await;
    let held = owners(&leases.list().await.unwrap());
    assert_eq!(held.values().sum::<usize>(), 4);
    assert!(!held.contains_key("w1"));
    recorder.assert_streams_in_order();

    // Nothing lost, nothing applied twice (store-inventory adds deltas: a double would show).
    let from_journal = Arc::new(DynamoSink::open(e.dynamodb.clone(), fresh_table_names()).await.unwrap());
    ProjectionRunner::new(journal.clone(), from_journal.clone() as Arc<dyn Sink>).catch_up().await.unwrap();
    let expected: Fingerprint = from_journal.fingerprint().await.unwrap();
    let got = from_kinesis.fingerprint().await.unwrap();
    assert_eq!(got, expected, "the Kinesis-fed model equals the journal-fed one");
    for stop in stops {
        let _ = stop.send(true);
    }
    for h in handles.into_iter().skip(1) {
        h.await.unwrap();
    }
    // A clean stop releases the leases for whoever comes next.
    assert!(leases.list().await.unwrap().iter().all(|l| l.owner.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_split_the_children_wait_until_the_parent_is_read_to_its_end() {
    let Some(e) = emulators().await else { return };
    let day = PublishedDay::publish(&e.kinesis, &e.kinesis_endpoint, 20, "split", 1).await;
    let (journal, stream, publisher) = (&day.journal, &day.stream, &day.publisher);
    let parent = kinesis::describe_shards(&e.kinesis, stream).await.unwrap().remove(0).shard_id;
    e.kinesis
        .split_shard()
        .stream_name(stream.name())
        .shard_to_split(&parent)
        .new_starting_hash_key((1u128 << 127).to_string())
        .send()
        .await
        .unwrap();
    kinesis::ensure_stream(&e.kinesis, stream, 1, Duration::from_secs(30)).await.unwrap();
    // Later events of the same streams land in the children.
    append_all(journal.as_ref(), more_events(40)).await;
    publisher.catch_up().await.unwrap();
    let shards = kinesis::describe_shards(&e.kinesis, stream).await.unwrap();
    assert_eq!(shards.len(), 3);
    assert!(shards.iter().filter(|s| s.shard_id != parent).all(|s| s.parents == vec![parent.clone()]));

    let recorder = Recorder::new(None);
    let leases = LeaseTable::open(e.dynamodb.clone(), unique("leases")).await.unwrap();
    let (stop, stopped) = watch::channel(false);
    let handle = worker(&e, &leases, recorder.clone(), stream, "solo").spawn(stopped);
    let everything = whole_journal(journal.as_ref()).await;
    wait_until("every event was processed", Duration::from_secs(60), || async {
        everything.iter().all(|ev| recorder.event_ids().contains(&ev.event_id))
    })
    .await;
    let batches = recorder.batches.lock().unwrap().clone();
    let last_parent = batches.iter().rposition(|(s, _)| s == &parent).expect("the parent was read");
    let first_child = batches.iter().position(|(s, _)| s != &parent).expect("a child was read");
    assert!(last_parent < first_child, "a child's records came before its parent's end");
    recorder.assert_streams_in_order();
    let parent_lease = leases.list().await.unwrap().into_iter().find(|l| l.shard_id == parent).unwrap();
    assert_eq!(parent_lease.checkpoint, Checkpoint::ShardEnd);
    let _ = stop.send(true);
    handle.await.unwrap();
}
