//! `cloudcafe bench kinesis` (feature `cloud`): how fast committed events leave the process into
//! Kinesis, and how fast consumers read them back out.
//!
//! Writes a day of orders into an embedded journal in a temporary directory, then, each into a
//! fresh stream on the given endpoint (an emulator):
//! - **ceiling**: the same envelopes sent straight with `PutRecords` (no journal, no checkpoint), as
//!   many requests in flight as the publisher has lanes;
//! - **publisher, batched**: the outbox publisher from checkpoint 0 to the head, requests of up to 500
//!   records;
//! - **publisher, one record per stream per request**: the mode Kinesis-fed read models rely on
//!   (`serve --projections-from kinesis`);
//! - **analytics publisher**: the events the analytics model folds to a 2-shard stream, keyed by
//!   store, one record per store per request (`serve --analytics-stream`); this history has 2
//!   stores, its worst case;
//!
//! and out of the batched stream:
//! - **GetRecords ceiling**: every shard read concurrently, no leases, no checkpoints;
//! - **KCL-style consumer**, 1 and 2 workers: leases and checkpoints in DynamoDB, 5 GetRecords a
//!   second per shard at most, a processor that decodes every envelope; timed until every event was
//!   seen.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use events::{Journal, RecordedEvent};
use futures::StreamExt;
use projections::bus::analytics::{self, AnalyticsBus};
use projections::bus::consumer::{ConsumerSettings, KinesisConsumer, RecordProcessor};
use projections::bus::kinesis::{self, KinesisBus, KinesisRecord, KinesisSettings};
use projections::bus::leases::LeaseTable;
use projections::bus::publisher::{Bus, EntryOutcome, Message, Publisher, PublisherSettings};
use projections::SinkError;

pub struct KinesisFigures {
    pub events: u64,
    pub streams: usize,
    pub shards: i32,
    /// `(what, events, seconds)`.
    pub rows: Vec<(String, u64, f64)>,
}

/// Counts distinct events of decoded envelopes.
#[derive(Default)]
struct Counter {
    seen: Mutex<HashSet<uuid::Uuid>>,
}

#[async_trait]
impl RecordProcessor for Counter {
    async fn process(&self, _shard: &str, _lease_counter: u64, records: &[KinesisRecord]) -> Result<(), SinkError> {
        let mut ids = Vec::with_capacity(records.len());
        for r in records {
            ids.push(
                RecordedEvent::from_wire(&r.data)
                    .map_err(|e| SinkError::poison_because("a record does not decode", e))?
                    .event_id,
            );
        }
        self.seen.lock().expect("counter").extend(ids);
        Ok(())
    }
}

fn unique(tag: &str) -> String {
    format!("bench-{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn publish(
    journal: &Arc<dyn Journal>,
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: i32,
    one_record_per_stream: bool,
) -> anyhow::Result<(u64, f64)> {
    kinesis::ensure_stream(client, stream, shards, Duration::from_secs(60)).await?;
    let bus = KinesisBus::new(
        client.clone(),
        &KinesisSettings { stream_name: stream.to_owned(), one_record_per_stream, ..KinesisSettings::default() },
    );
    let publisher = Publisher::new(journal.clone(), Arc::new(bus), PublisherSettings::new(format!("bench:{stream}")));
    let started = Instant::now();
    let reached = publisher.catch_up().await?;
    Ok((reached, started.elapsed().as_secs_f64()))
}

async fn consume(
    client: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    stream: &str,
    workers: usize,
    events: u64,
) -> anyhow::Result<f64> {
    let leases = LeaseTable::open(dynamodb.clone(), unique("leases")).await?;
    let counter = Arc::new(Counter::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let settings =
                ConsumerSettings::new(stream, format!("bench-worker-{w}")).with_lease_timeout(Duration::from_secs(3));
            KinesisConsumer::new(client.clone(), leases.clone(), counter.clone(), settings).spawn(stopped.clone())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while (counter.seen.lock().expect("counter").len() as u64) < events {
        anyhow::ensure!(Instant::now() < deadline, "the consumer did not see every event within 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    for h in handles {
        let _ = h.await;
    }
    Ok(took)
}

pub async fn run(
    kinesis_client: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    events: usize,
    shards: i32,
) -> anyhow::Result<KinesisFigures> {
    let dir = tempfile_dir();
    let journal: Arc<dyn Journal> = Arc::new(events::sqlite::SqliteJournal::open(&dir, Default::default())?);
    let mut history = projections::workload::a_day_of_orders((events / 7 + 1) as u32);
    history.truncate(events);
    projections::workload::write_history(journal.as_ref(), &history).await;
    let head = journal.head_position().await?;
    let streams = history.iter().map(|e| e.stream_id.as_str()).collect::<HashSet<_>>().len();
    let mut rows = Vec::new();

    // The ceiling: envelopes straight into PutRecords, 4 requests in flight.
    let raw = unique("raw");
    kinesis::ensure_stream(kinesis_client, &raw, shards, Duration::from_secs(60)).await?;
    let bus = KinesisBus::new(
        kinesis_client.clone(),
        &KinesisSettings { stream_name: raw.clone(), ..KinesisSettings::default() },
    );
    let messages: Vec<Message> =
        journal.read_all(0, usize::MAX).await?.iter().filter_map(|e| bus.message_for(e).ok().flatten()).collect();
    let started = Instant::now();
    let sent: Vec<anyhow::Result<u64>> = futures::stream::iter(messages.chunks(kinesis::MAX_RECORDS_PER_REQUEST))
        .map(|batch| {
            let bus = &bus;
            async move {
                let outcomes = bus.send_batch(batch).await?;
                Ok(outcomes.iter().filter(|o| **o == EntryOutcome::Accepted).count() as u64)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let accepted: u64 = sent.into_iter().sum::<anyhow::Result<u64>>()?;
    rows.push((
        "PutRecords straight, 500 a request, 4 in flight (ceiling)".into(),
        accepted,
        started.elapsed().as_secs_f64(),
    ));

    let batched = unique("batched");
    let (reached, took) = publish(&journal, kinesis_client, &batched, shards, false).await?;
    rows.push(("outbox publisher, requests of ≤500 records, 4 lanes".into(), reached, took));
    let strict = unique("strict");
    let (reached, took) = publish(&journal, kinesis_client, &strict, shards, true).await?;
    rows.push((
        "outbox publisher, one record per stream per request (`serve --projections-from kinesis`)".into(),
        reached,
        took,
    ));

    let for_analytics = unique("analytics");
    kinesis::ensure_stream(kinesis_client, &for_analytics, analytics::DEFAULT_SHARDS, Duration::from_secs(60)).await?;
    let bus = AnalyticsBus::new(
        kinesis_client.clone(),
        &KinesisSettings { stream_name: for_analytics.clone(), ..KinesisSettings::default() },
        journal.clone(),
    );
    let carried = history.iter().filter(|e| analytics::carries(e)).count();
    let publisher = Publisher::new(journal.clone(), Arc::new(bus), PublisherSettings::new("bench:analytics"));
    let started = Instant::now();
    publisher.catch_up().await?;
    rows.push((
        format!(
            "analytics publisher, {} shards, one record per store per request (`serve --analytics-stream`; 2 stores)",
            analytics::DEFAULT_SHARDS
        ),
        carried as u64,
        started.elapsed().as_secs_f64(),
    ));

    let started = Instant::now();
    let records = kinesis::read_stream(kinesis_client, &batched).await?;
    rows.push((
        format!("GetRecords straight, {shards} shards concurrently (ceiling)"),
        records.len() as u64,
        started.elapsed().as_secs_f64(),
    ));
    for workers in [1, 2] {
        let took = consume(kinesis_client, dynamodb, &batched, workers, head).await?;
        rows.push((format!("KCL-style consumer, {workers} worker(s), leases in DynamoDB"), head, took));
    }
    for stream in [&raw, &batched, &strict, &for_analytics] {
        let _ = kinesis_client.delete_stream().stream_name(stream.as_str()).send().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(KinesisFigures { events: head, streams, shards, rows })
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cloudcafe-bench-kinesis-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn table(f: &KinesisFigures) -> String {
    let mut out = format!(
        "{} events of a day of orders ({} streams), {} shards; kinesalite and moto on this machine.\n\n\
         | path | events | seconds | events/s | of its ceiling |\n|---|---|---|---|---|\n",
        f.events, f.streams, f.shards
    );
    let rate = |(_, n, s): &(String, u64, f64)| *n as f64 / s.max(1e-9);
    let put_ceiling = f.rows.first().map(rate).unwrap_or(1.0);
    let get_ceiling = f.rows.iter().find(|r| r.0.starts_with("GetRecords")).map(rate).unwrap_or(1.0);
    for row in &f.rows {
        let ceiling =
            if row.0.starts_with("outbox") || row.0.starts_with("PutRecords") || row.0.starts_with("analytics") {
                put_ceiling
            } else {
                get_ceiling
            };
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.0} | {:.2}× |\n",
            row.0,
            row.1,
            row.2,
            rate(row),
            rate(row) / ceiling
        ));
    }
    out
}
