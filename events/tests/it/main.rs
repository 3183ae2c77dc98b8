//! Integration tests against a real PostgreSQL (see `testkit::servers`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use events::conformance::{self, request};
use events::journal::Subscription;
use events::postgres::{PgJournal, PgOptions};
use events::{ExpectedVersion, Journal};
use testkit::servers;

mod tls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_journal_passes_the_conformance_suite() {
    let Some(url) = servers::postgres_url() else { return };
    conformance::run_all(|| {
        let options = PgOptions::new(url.clone()).with_schema(servers::fresh_schema("journal"));
        async move { Arc::new(PgJournal::connect(options).await.unwrap()) as Arc<dyn Journal> }
    })
    .await;
}

/// Many writers in separate pools (as separate processes would be) commit concurrently while one
/// reader follows the global order. Transactions that take positions early and commit late are the
/// classic way a follower skips events; the reader must see every committed event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_never_skips_an_event_that_commits_late() {
    let Some(url) = servers::postgres_url() else { return };
    let schema = servers::fresh_schema("late");
    let options = || {
        let mut o = PgOptions::new(url.clone()).with_schema(schema.clone());
        o.writers = 3;
        o.pool_size = 4;
        o.max_batch_events = 50;
        o
    };
    let mut writers = Vec::new();
    for _ in 0..4 {
        writers.push(Arc::new(PgJournal::connect(options()).await.unwrap()) as Arc<dyn Journal>);
    }
    let reader = Arc::new(PgJournal::connect(options()).await.unwrap()) as Arc<dyn Journal>;

    // The writers announce the final head when they are done; the follower stops once it has seen it.
    let (done_tx, done_rx) = tokio::sync::watch::channel(u64::MAX);
    let follower = tokio::spawn({
        let reader = reader.clone();
        async move {
            let mut sub = Subscription::new(reader, 0).with_page_size(37).with_poll_interval(Duration::from_millis(1));
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while (seen.len() as u64) < *done_rx.borrow() && tokio::time::Instant::now() < deadline {
                if let Ok(page) = tokio::time::timeout(Duration::from_millis(200), sub.next_page()).await {
                    seen.extend(page.unwrap().into_iter().map(|e| (e.global_position, e.event_id)));
                }
            }
            seen
        }
    });

    let mut tasks = Vec::new();
    for (w, journal) in writers.iter().enumerate() {
        for t in 0..12 {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let stream = format!("late-{w}-{t}");
                for v in 0..60u64 {
                    let n = 1 + (v % 3) as u32;
                    let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Any };
                    let done = journal.append(request(&stream, expected, n)).await.unwrap();
                    acknowledged.push((stream.clone(), done.last_version, n));
                }
                acknowledged
            }));
        }
    }
    let mut acknowledged_events = 0u64;
    for t in tasks {
        acknowledged_events += t.await.unwrap().iter().map(|(_, _, n)| u64::from(*n)).sum::<u64>();
    }
    let head = reader.head_position().await.unwrap();
    assert_eq!(head, acknowledged_events, "every acknowledged event has a position");
    done_tx.send_replace(head);
    let seen = follower.await.unwrap();

    let positions: Vec<u64> = seen.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (1..=head).collect::<Vec<_>>(), "the follower saw each position once, in order");
    let ids: HashSet<_> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len() as u64, head, "no event was seen twice");
    let stored: HashSet<_> = reader.read_all(0, 1_000_000).await.unwrap().into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids, stored, "the follower saw exactly what is stored");
}

/// Stream creation races between separate pools, i.e. separate transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_races_across_processes_have_one_winner_and_lose_no_any_append() {
    let Some(url) = servers::postgres_url() else { return };
    let options = PgOptions::new(url).with_schema(servers::fresh_schema("race"));
    let mut journals = Vec::new();
    for _ in 0..4 {
        journals.push(Arc::new(PgJournal::connect(options.clone()).await.unwrap()) as Arc<dyn Journal>);
    }
    conformance::racing_creators(&journals).await;
}

/// Two nodes of one cluster share a follower's advisory lock; a cluster on another schema of the
/// same server has locks of its own.
#[tokio::test]
async fn postgres_singletons_pass_the_conformance_suite() {
    use events::singleton::{conformance, PgSingletons, SingletonLocks};
    let Some(url) = servers::postgres_url() else { return };
    let cluster = PgOptions::new(url.clone()).with_schema(servers::fresh_schema("singleton"));
    let (node_a, node_b) = (PgSingletons::new(&cluster).unwrap(), PgSingletons::new(&cluster).unwrap());
    conformance::run_all(&node_a, &node_b).await;
    let other = PgSingletons::new(&PgOptions::new(url).with_schema(servers::fresh_schema("singleton"))).unwrap();
    let _held = node_a.try_acquire("outbox:publisher:kinesis").await.unwrap().expect("free");
    assert!(other.try_acquire("outbox:publisher:kinesis").await.unwrap().is_some(), "another cluster's lock");
}

/// A journal created before stream heads were read from the events (migration 1 alone, with its
/// `streams` table) keeps its streams after the upgrade: versions and hash chains continue, and
/// expectations are checked against the heads the old writer left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_from_before_migration_2_keeps_its_streams() {
    use events::envelope::{verify_stream, GENESIS_HASH};
    use events::journal::read_stream_to_end;
    use events::postgres::{connect_pool, migrate};
    use events::AppendError;

    let Some(url) = servers::postgres_url() else { return };
    let options = PgOptions::new(url).with_schema(servers::fresh_schema("upgrade"));
    // What migration 1 created, as the journal of the previous release wrote it.
    const MIGRATION_1: &str = "CREATE TABLE events (
        global_position bigint PRIMARY KEY, stream_id text NOT NULL, stream_version bigint NOT NULL,
        event_id uuid NOT NULL, event_type text NOT NULL, schema_version smallint NOT NULL,
        recorded_at bigint NOT NULL, correlation_id uuid NOT NULL, causation_id uuid, payload bytea NOT NULL,
        hash bytea NOT NULL, UNIQUE (stream_id, stream_version));
     CREATE TABLE streams (stream_id text PRIMARY KEY, version bigint NOT NULL, hash bytea NOT NULL);
     CREATE TABLE snapshots (stream_id text PRIMARY KEY, version bigint NOT NULL, state bytea NOT NULL);
     CREATE TABLE journal_head (id int PRIMARY KEY CHECK (id = 1), position bigint NOT NULL);
     INSERT INTO journal_head VALUES (1, 0);
     CREATE TABLE checkpoints (name text PRIMARY KEY, position bigint NOT NULL);";
    let pool = connect_pool(&options).await.unwrap();
    migrate(&pool, "journal", &[(1, MIGRATION_1)]).await.unwrap();
    let client = pool.get().await.unwrap();
    let mut previous = GENESIS_HASH;
    for version in 1..=3u64 {
        let e = conformance::event(version as u32).record("order-old", version, &previous);
        previous = e.hash;
        client
            .execute(
                "INSERT INTO events VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &(version as i64),
                    &e.stream_id,
                    &(version as i64),
                    &e.event_id,
                    &e.event_type,
                    &(e.schema_version as i16),
                    &e.recorded_at_us,
                    &e.correlation_id,
                    &e.causation_id,
                    &e.payload,
                    &e.hash.as_slice(),
                ],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute(&format!(
            "INSERT INTO streams VALUES ('order-old', 3, '\\x{}'); UPDATE journal_head SET position = 3",
            hex_of(&previous)
        ))
        .await
        .unwrap();

    let journal = PgJournal::connect(options).await.unwrap();
    let gone: Option<String> = client.query_one("SELECT to_regclass('streams')::text", &[]).await.unwrap().get(0);
    assert_eq!(gone, None, "migration 2 dropped the streams table");
    let err = journal.append(request("order-old", ExpectedVersion::NoStream, 1)).await.unwrap_err();
    assert!(matches!(err, AppendError::Conflict { actual: 3, .. }), "{err:?}");
    let err = journal.append(request("order-old", ExpectedVersion::Exact(2), 1)).await.unwrap_err();
    assert!(matches!(err, AppendError::Conflict { actual: 3, .. }), "{err:?}");
    let appended = journal.append(request("order-old", ExpectedVersion::Exact(3), 2)).await.unwrap();
    assert_eq!((appended.first_version, appended.last_version, appended.last_position), (4, 5, 5));
    let any = journal.append(request("order-old", ExpectedVersion::Any, 1)).await.unwrap();
    assert_eq!(any.last_version, 6);
    let events = read_stream_to_end(&journal, "order-old", 1).await.unwrap();
    assert_eq!(events.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
    verify_stream(&events).expect("the hash chain runs across the upgrade");
    assert_eq!(journal.head_position().await.unwrap(), 6);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writers in separate pools (processes) race for the same next version of one stream, several
/// rounds: exactly one wins each version, the others get a typed conflict naming the new head, and
/// the stream's versions and hash chain stay contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_races_across_processes_have_one_winner_each() {
    use events::envelope::verify_stream;
    use events::journal::read_stream_to_end;
    use events::AppendError;

    let Some(url) = servers::postgres_url() else { return };
    let options = PgOptions::new(url).with_schema(servers::fresh_schema("version_race"));
    let mut journals = Vec::new();
    for _ in 0..3 {
        journals.push(Arc::new(PgJournal::connect(options.clone()).await.unwrap()) as Arc<dyn Journal>);
    }
    journals[0].append(request("hot", ExpectedVersion::NoStream, 1)).await.unwrap();
    for version in 1..=5u64 {
        let tasks = (0..12).map(|i| {
            let j = journals[i % journals.len()].clone();
            tokio::spawn(async move { j.append(request("hot", ExpectedVersion::Exact(version), 1)).await })
        });
        let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "one winner of version {}", version + 1);
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(matches!(r, AppendError::Conflict { actual, .. } if *actual == version + 1), "{r:?}");
        }
    }
    let events = read_stream_to_end(journals[1].as_ref(), "hot", 1).await.unwrap();
    assert_eq!(events.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
    verify_stream(&events).unwrap();
    assert_eq!(journals[2].head_position().await.unwrap(), 6);
}
