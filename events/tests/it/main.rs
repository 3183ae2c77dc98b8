//! Integration tests against a real PostgreSQL (see `testkit::servers`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use events::conformance::{self, request};
use events::journal::Subscription;
use events::postgres::{PgJournal, PgOptions};
use events::{ExpectedVersion, Journal};
use testkit::servers;

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
