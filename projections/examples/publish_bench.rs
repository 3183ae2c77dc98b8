//! How fast committed events leave the process into Kinesis, and how fast a consumer reads them back.
//!
//! ```sh
//! cargo run --release --example publish_bench --features kinesis,sqs -- \
//!     --endpoint http://127.0.0.1:4567 --events 20000 [--shards 4] [--lanes 4] [--batch 500] [--page 2000]
//! ```
//!
//! Writes `--events` events of a day of orders into an embedded journal in a temporary directory,
//! creates a fresh stream on the endpoint (an emulator: static test credentials, us-east-1), runs the
//! outbox publisher from checkpoint 0 to the head, then reads every shard back with GetRecords
//! (shards concurrently), checks that every event arrived and every hash chain holds, and deletes
//! the stream. Prints the publisher's and the consumer's events per second, and, as the ceiling to
//! compare with, the same envelopes sent straight with `PutRecords` (no journal, no checkpoint, as
//! many requests in flight as the publisher has lanes) into a second stream.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use events::sqlite::{SqliteJournal, SqliteOptions};
use events::{Journal, RecordedEvent};
use futures::StreamExt;
use projections::conformance::{a_day_of_orders, write_history};
use projections::kinesis::{self, KinesisBus, KinesisSettings};
use projections::publisher::{Bus, BusError, EntryOutcome, Message, Publisher, PublisherSettings};

struct Args {
    endpoint: String,
    events: usize,
    shards: i32,
    lanes: usize,
    batch: usize,
    page: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        endpoint: "http://127.0.0.1:4567".into(),
        events: 20_000,
        shards: 4,
        lanes: 4,
        batch: kinesis::MAX_RECORDS_PER_REQUEST,
        page: 2000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--endpoint" => args.endpoint = value()?,
            "--events" => args.events = number(value()?)?,
            "--shards" => args.shards = i32::try_from(number(value()?)?).map_err(|e| e.to_string())?,
            "--lanes" => args.lanes = number(value()?)?,
            "--batch" => args.batch = number(value()?)?,
            "--page" => args.page = number(value()?)?,
            "-h" | "--help" => return Err(
                "usage: publish_bench --endpoint URL --events N [--shards 4] [--lanes 4] [--batch 500] [--page 2000]"
                    .into(),
            ),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn client(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "publish-bench"))
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = parse_args().map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default())?);
    // A day of orders has about 9 events per order; keep the first `events` of a long enough day.
    let mut history = a_day_of_orders((args.events / 7 + 1) as u32);
    history.truncate(args.events);
    let started = Instant::now();
    write_history(journal.as_ref(), &history).await;
    let head = journal.head_position().await?;
    let streams: HashSet<&str> = history.iter().map(|e| e.stream_id.as_str()).collect();
    println!(
        "journal: {head} events in {} streams written in {:.2} s (SQLite, temp dir)",
        streams.len(),
        started.elapsed().as_secs_f64()
    );

    let client = client(&args.endpoint);
    let stream = format!("publish-bench-{}", uuid::Uuid::new_v4().simple());
    kinesis::ensure_stream(&client, &stream, args.shards, Duration::from_secs(30)).await?;
    let bus = KinesisBus::new(
        client.clone(),
        &KinesisSettings { stream_name: stream.clone(), max_batch_records: args.batch, ..KinesisSettings::default() },
    );
    let settings =
        PublisherSettings { page_size: args.page, lanes: args.lanes, ..PublisherSettings::new("publisher:bench") };
    let publisher = Publisher::new(journal.clone(), Arc::new(bus), settings);
    let started = Instant::now();
    let reached = publisher.catch_up().await?;
    let publish_took = started.elapsed().as_secs_f64();
    let took = publish_took;
    let stats = publisher.stats();
    println!(
        "publisher: {reached} events into Kinesis at {} ({} shards, {} lanes, requests of ≤{} records, pages of {}) in {took:.2} s \
         = {:.0} events/s ({} requests, {} entries resent, {} requests failed)",
        args.endpoint,
        args.shards,
        args.lanes,
        args.batch,
        args.page,
        reached as f64 / took,
        stats.requests,
        stats.resent,
        stats.failed_requests,
    );

    let started = Instant::now();
    let records = kinesis::read_stream(&client, &stream).await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "consumer: {} records read back with GetRecords over {} shards (concurrently) in {took:.2} s = {:.0} events/s",
        records.len(),
        args.shards,
        records.len() as f64 / took
    );

    let mut by_stream: HashMap<String, Vec<RecordedEvent>> = HashMap::new();
    let mut ids = HashSet::new();
    for r in &records {
        let e = RecordedEvent::from_wire(&r.data)?;
        if ids.insert(e.event_id) {
            by_stream.entry(e.stream_id.clone()).or_default().push(e);
        }
    }
    let mut broken = 0;
    for events in by_stream.values_mut() {
        events.sort_by_key(|e| e.stream_version);
        if let Err(link) = events::envelope::verify_stream(events) {
            eprintln!("{link}");
            broken += 1;
        }
    }
    println!("check: {} distinct events of {head}, {} streams, {broken} broken chains", ids.len(), by_stream.len());
    client.delete_stream().stream_name(&stream).send().await?;

    // The ceiling: the same envelopes, batched the same way, sent straight.
    let raw = format!("publish-bench-raw-{}", uuid::Uuid::new_v4().simple());
    kinesis::ensure_stream(&client, &raw, args.shards, Duration::from_secs(30)).await?;
    let bus = KinesisBus::new(
        client.clone(),
        &KinesisSettings { stream_name: raw.clone(), max_batch_records: args.batch, ..KinesisSettings::default() },
    );
    let messages: Vec<Message> =
        journal.read_all(0, args.events).await?.iter().filter_map(|e| bus.message_for(e).ok().flatten()).collect();
    let batches: Vec<&[Message]> = messages.chunks(args.batch.clamp(1, kinesis::MAX_RECORDS_PER_REQUEST)).collect();
    let started = Instant::now();
    let sent: Vec<Result<usize, BusError>> = futures::stream::iter(batches)
        .map(|b| {
            let bus = &bus;
            async move { Ok(bus.send_batch(b).await?.iter().filter(|o| **o == EntryOutcome::Accepted).count()) }
        })
        .buffer_unordered(args.lanes.max(1))
        .collect()
        .await;
    let raw_took = started.elapsed().as_secs_f64();
    let accepted: usize = sent.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter().sum();
    println!(
        "ceiling: {accepted} envelopes sent straight with PutRecords ({} in flight) in {raw_took:.2} s = {:.0} events/s; \
         the publisher reached {:.2}x of it",
        args.lanes,
        accepted as f64 / raw_took,
        (reached as f64 / publish_took) / (accepted as f64 / raw_took)
    );
    client.delete_stream().stream_name(&raw).send().await?;
    if ids.len() as u64 != head || broken > 0 {
        anyhow::bail!("events lost or chains broken");
    }
    Ok(())
}
