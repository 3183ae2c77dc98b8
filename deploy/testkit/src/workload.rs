//! The setup the Kinesis consumer tests start from: a day of orders in an embedded journal,
//! published to a stream of the test's own by the publisher a node runs for Kinesis-fed read models.

use std::path::Path;
use std::sync::Arc;

use events::sqlite::{SqliteJournal, SqliteOptions};
use events::{Journal, RecordedEvent};
use projections::bus::kinesis::{self, KinesisBus, KinesisSettings};
use projections::bus::publisher::{Publisher, PublisherSettings};
use projections::workload::{a_day_of_orders, write_history};

use crate::aws::TemporaryStream;

/// An embedded (SQLite) journal in `dir`.
pub fn sqlite_journal(dir: &Path) -> Arc<dyn Journal> {
    Arc::new(SqliteJournal::open(dir, SqliteOptions::default()).unwrap())
}

/// Every event of the journal, in global order.
pub async fn whole_journal(journal: &dyn Journal) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    loop {
        let page = journal.read_all(out.last().map_or(0, |e: &RecordedEvent| e.global_position), 5000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// A publisher with one record per stream per request, as a node runs it for Kinesis-fed models.
pub fn strict_publisher(journal: &Arc<dyn Journal>, client: aws_sdk_kinesis::Client, stream: &str) -> Publisher {
    let bus = KinesisBus::new(
        client,
        &KinesisSettings {
            stream_name: stream.to_owned(),
            one_record_per_stream: true,
            max_batch_records: 100,
            ..KinesisSettings::default()
        },
    );
    let settings = PublisherSettings { page_size: 500, ..PublisherSettings::new(kinesis::CHECKPOINT) };
    Publisher::new(journal.clone(), Arc::new(bus), settings)
}

/// A day of orders committed to an embedded journal and published, up to the journal's head, to a
/// Kinesis stream of its own (deleted when this is dropped) by a [`strict_publisher`], which the
/// test may keep using for events it appends later.
pub struct PublishedDay {
    /// The journal, holding `a_day_of_orders(orders)`.
    pub journal: Arc<dyn Journal>,
    /// The stream every event was published to.
    pub stream: TemporaryStream,
    /// The publisher that did it, checkpointed at the head.
    pub publisher: Publisher,
    _dir: tempfile::TempDir,
}

impl PublishedDay {
    /// Writes a day of `orders` orders, creates a `prefix-…` stream with `shards` shards on the
    /// emulator at `endpoint` (reached by `client`) and publishes everything to it.
    pub async fn publish(
        client: &aws_sdk_kinesis::Client,
        endpoint: &str,
        orders: u32,
        prefix: &str,
        shards: i32,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal = sqlite_journal(dir.path());
        write_history(journal.as_ref(), &a_day_of_orders(orders)).await;
        let stream = TemporaryStream::create(client, endpoint, prefix, shards).await;
        let publisher = strict_publisher(&journal, client.clone(), &stream);
        publisher.catch_up().await.unwrap();
        PublishedDay { journal, stream, publisher, _dir: dir }
    }
}
