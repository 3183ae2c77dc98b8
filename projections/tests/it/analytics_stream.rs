//! The analytics model fed from the `analytics-events` Kinesis stream (kinesalite), its shards
//! shared by two workers through a lease table (moto's DynamoDB), its facts in PostgreSQL standing
//! in for Redshift: equal to the model built from the journal, with a worker killed mid-flood and
//! half the flood published twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use events::postgres::{connect_pool, PgOptions};
use events::Journal;
use projections::bus::analytics::{self, AnalyticsBus};
use projections::bus::consumer::{CheckpointedProjection, ConsumerSettings, KinesisConsumer};
use projections::bus::kinesis::KinesisSettings;
use projections::bus::leases::LeaseTable;
use projections::bus::publisher::{Publisher, PublisherSettings};
use projections::read_models::analytics::AnalyticsSink;
use projections::read_models::runner::ProjectionRunner;
use projections::workload::{flood_of_orders, write_history};
use projections::{ShardCheckpointedSink, Sink};
use testkit::aws::{dynamodb_client, kinesis_client, TemporaryStream};
use testkit::names::unique;
use testkit::servers;
use testkit::workload::sqlite_journal;
use tokio::sync::watch;

/// The flood's size: about 100K events with the default, `CLOUDCAFE_TEST_ANALYTICS_ORDERS` orders else.
fn orders() -> u32 {
    std::env::var("CLOUDCAFE_TEST_ANALYTICS_ORDERS").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}

fn publisher(
    journal: &Arc<dyn Journal>,
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    checkpoint: &str,
) -> Publisher {
    let settings = KinesisSettings { stream_name: stream.to_owned(), ..KinesisSettings::default() };
    let bus = AnalyticsBus::new(client.clone(), &settings, journal.clone());
    Publisher::new(
        journal.clone(),
        Arc::new(bus),
        PublisherSettings { page_size: 2_000, ..PublisherSettings::new(checkpoint) },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_through_the_analytics_stream_gives_the_journals_windows_with_a_worker_killed() {
    let (Some(kinesis), Some(dynamodb), Some(url)) =
        (servers::kinesis_endpoint(), servers::dynamodb_endpoint(), servers::redshift_url().await)
    else {
        return;
    };
    let client = kinesis_client(&kinesis).await;
    let dynamodb = dynamodb_client(&dynamodb).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = sqlite_journal(dir.path());
    let history = flood_of_orders(orders(), 60, 5_000);
    write_history(journal.as_ref(), &history).await;
    eprintln!("{} events in the journal", history.len());

    // The model built from the journal, to compare with.
    let schema = |name: &str| PgOptions::new(url.clone()).with_schema(servers::fresh_schema(name));
    let from_journal = Arc::new(AnalyticsSink::new(connect_pool(&schema("an_journal")).await.unwrap()).await.unwrap());
    ProjectionRunner::new(journal.clone(), from_journal.clone() as Arc<dyn Sink>).catch_up().await.unwrap();

    // Two nodes' workers on one model (each with its own pool), sharing the stream's two shards.
    let stream = TemporaryStream::create(&client, &kinesis, "analytics", analytics::DEFAULT_SHARDS).await;
    let model = schema("an_kinesis");
    let leases = LeaseTable::open(dynamodb.clone(), unique("leases-analytics")).await.unwrap();
    let mut workers = Vec::new();
    let mut nodes = Vec::new();
    for id in ["w1", "w2"] {
        let sink = Arc::new(AnalyticsSink::new(connect_pool(&model).await.unwrap()).await.unwrap());
        let settings = ConsumerSettings::new(stream.name(), id).with_lease_timeout(Duration::from_millis(1500));
        let processor = Arc::new(CheckpointedProjection::new(sink.clone() as Arc<dyn ShardCheckpointedSink>));
        let (stop, stopped) = watch::channel(false);
        workers.push((stop, KinesisConsumer::new(client.clone(), leases.clone(), processor, settings).spawn(stopped)));
        nodes.push(sink);
    }

    testkit::wait_until("each worker holds one shard", Duration::from_secs(30), || async {
        let owners: Vec<Option<String>> = leases.list().await.unwrap().into_iter().map(|l| l.owner).collect();
        owners.len() == 2 && owners.contains(&Some("w1".into())) && owners.contains(&Some("w2".into()))
    })
    .await;

    // The flood is published while the workers read; w1 is killed once both shards moved.
    let started = Instant::now();
    let flood = publisher(&journal, &client, stream.name(), analytics::CHECKPOINT);
    let publishing = tokio::spawn(async move { flood.catch_up().await.unwrap() });
    let shards = projections::bus::kinesis::list_shards(&client, stream.name()).await.unwrap();
    testkit::wait_until("both shards have a checkpoint in the model", Duration::from_secs(120), || async {
        let mut all = true;
        for shard in &shards {
            all &= nodes[0].shard_checkpoint(shard).await.unwrap().is_some();
        }
        all
    })
    .await;
    let (_, killed) = workers.remove(0);
    killed.abort();
    eprintln!("w1 killed {:?} into the flood", started.elapsed());
    let head = publishing.await.unwrap();
    eprintln!("flood published up to {head} after {:?}", started.elapsed());
    // The publisher of a node that died before its checkpoint: the first half goes out again.
    let again = publisher(&journal, &client, stream.name(), "publisher:analytics-again");
    journal.save_checkpoint("publisher:analytics-again", 0).await.unwrap();
    let half = history[history.len() / 2].global_position;
    let mut page_from = 0;
    while page_from < half {
        let page = journal.read_all(page_from, 2_000).await.unwrap();
        again.publish(&page).await.unwrap();
        page_from = page.last().unwrap().global_position;
    }

    let expected = from_journal.fingerprint().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = nodes[1].fingerprint().await.unwrap();
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Kinesis-fed model did not reach the journal's: {} rows of {}",
            got.rows,
            expected.rows
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("equal ({} rows) after {:?}", expected.rows, started.elapsed());
    assert!(nodes[1].windows_disagreeing_with_facts().await.unwrap().is_empty());
    assert!(
        leases.list().await.unwrap().iter().all(|l| l.owner.as_deref() == Some("w2")),
        "the killed worker's shard was taken over"
    );
    for (stop, handle) in workers {
        let _ = stop.send(true);
        handle.await.unwrap();
    }
}
