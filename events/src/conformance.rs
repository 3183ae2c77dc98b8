//! One conformance suite for every journal adapter (enable the `conformance` feature).
//!
//! Each case gets a fresh, empty journal from the factory, so cases that read the global order see
//! only their own events.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::domain::{DomainEvent, StockRestocked};
use crate::envelope::{verify_stream, Causation, NewEvent};
use crate::journal::{
    read_stream_to_end, AppendError, AppendRequest, ExpectedVersion, Journal, Snapshot, StoreError, Subscription,
};

/// The `n`th event of a test stream (a restock of `n` lattes).
pub fn event(n: u32) -> NewEvent {
    let e: DomainEvent = StockRestocked { store_id: "s".into(), sku: "latte".into(), quantity: n }.into();
    NewEvent::from_domain(&e, Causation::new_root()).expect("encodes")
}

/// An append of `n` test events to `stream`.
pub fn request(stream: &str, expected: ExpectedVersion, n: u32) -> AppendRequest {
    AppendRequest { stream_id: stream.to_owned(), expected, events: (0..n).map(event).collect() }
}

/// Runs every case against journals made by `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Journal>>,
{
    macro_rules! case {
        ($name:ident) => {
            eprintln!("journal conformance: {}", stringify!($name));
            $name(make().await).await;
        };
    }
    case!(appends_and_reads_a_stream_in_order);
    case!(reads_without_a_limit);
    case!(no_stream_expectation_conflicts_on_an_existing_stream);
    case!(exact_expectation_is_checked);
    case!(any_expectation_always_appends);
    case!(read_all_is_gap_free_and_pages);
    case!(concurrent_appends_to_many_streams_all_commit);
    case!(a_conflict_does_not_fail_other_requests_in_the_batch);
    case!(racing_writers_on_one_stream_get_one_winner_per_version);
    case!(racing_creators_of_one_new_stream);
    case!(snapshots_keep_the_newest);
    case!(an_empty_append_is_refused);
    case!(checkpoints_only_move_forward);
    case!(a_subscription_catches_up_then_follows);
}

/// `usize::MAX` means "everything" (PostgreSQL's LIMIT is a signed 64-bit integer).
pub async fn reads_without_a_limit(j: Arc<dyn Journal>) {
    j.append(request("order-1", ExpectedVersion::NoStream, 3)).await.unwrap();
    assert_eq!(j.read_stream("order-1", 0, usize::MAX).await.unwrap().len(), 3);
    assert_eq!(j.read_all(0, usize::MAX).await.unwrap().len(), 3);
}

pub async fn appends_and_reads_a_stream_in_order(j: Arc<dyn Journal>) {
    let a = j.append(request("order-1", ExpectedVersion::NoStream, 3)).await.unwrap();
    assert_eq!((a.first_version, a.last_version), (1, 3));
    let b = j.append(request("order-1", ExpectedVersion::Exact(3), 2)).await.unwrap();
    assert_eq!((b.first_version, b.last_version), (4, 5));
    assert!(b.last_position > a.last_position);
    let events = read_stream_to_end(j.as_ref(), "order-1", 1).await.unwrap();
    assert_eq!(events.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    verify_stream(&events).expect("the hash chain spans appends");
    let tail = j.read_stream("order-1", 4, 10).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert!(j.read_stream("order-missing", 1, 10).await.unwrap().is_empty());
    let decoded = events[0].decode().unwrap();
    assert_eq!(decoded.event_type(), "StockRestocked");
}

pub async fn no_stream_expectation_conflicts_on_an_existing_stream(j: Arc<dyn Journal>) {
    j.append(request("s", ExpectedVersion::NoStream, 1)).await.unwrap();
    let err = j.append(request("s", ExpectedVersion::NoStream, 1)).await.unwrap_err();
    assert!(matches!(err, AppendError::Conflict { actual: 1, .. }), "{err:?}");
    assert_eq!(j.read_stream("s", 1, 10).await.unwrap().len(), 1, "a conflict writes nothing");
}

pub async fn exact_expectation_is_checked(j: Arc<dyn Journal>) {
    let err = j.append(request("s", ExpectedVersion::Exact(1), 1)).await.unwrap_err();
    assert!(matches!(err, AppendError::Conflict { actual: 0, .. }), "{err:?}");
    j.append(request("s", ExpectedVersion::NoStream, 2)).await.unwrap();
    let err = j.append(request("s", ExpectedVersion::Exact(1), 1)).await.unwrap_err();
    assert!(matches!(err, AppendError::Conflict { actual: 2, .. }), "{err:?}");
    j.append(request("s", ExpectedVersion::Exact(2), 1)).await.unwrap();
    assert_eq!(j.read_stream("s", 1, 10).await.unwrap().len(), 3);
}

pub async fn any_expectation_always_appends(j: Arc<dyn Journal>) {
    j.append(request("s", ExpectedVersion::Any, 1)).await.unwrap();
    let a = j.append(request("s", ExpectedVersion::Any, 1)).await.unwrap();
    assert_eq!(a.last_version, 2);
}

pub async fn read_all_is_gap_free_and_pages(j: Arc<dyn Journal>) {
    for i in 0..10 {
        j.append(request(&format!("s{i}"), ExpectedVersion::NoStream, 3)).await.unwrap();
    }
    assert_eq!(j.head_position().await.unwrap(), 30);
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = j.read_all(after, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().unwrap().global_position;
        seen.extend(page.into_iter().map(|e| e.global_position));
    }
    assert_eq!(seen, (1..=30).collect::<Vec<_>>());
    assert!(j.read_all(30, 10).await.unwrap().is_empty());
    let from_middle = j.read_all(12, 100).await.unwrap();
    assert_eq!(from_middle.first().unwrap().global_position, 13);
}

pub async fn concurrent_appends_to_many_streams_all_commit(j: Arc<dyn Journal>) {
    let tasks = (0..32).map(|t| {
        let j = j.clone();
        tokio::spawn(async move {
            for v in 0..20u64 {
                let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v) };
                j.append(request(&format!("stream-{t}"), expected, 1)).await.unwrap();
            }
        })
    });
    for t in futures::future::join_all(tasks).await {
        t.unwrap();
    }
    assert_eq!(j.head_position().await.unwrap(), 640);
    let all = j.read_all(0, 10_000).await.unwrap();
    assert_eq!(all.len(), 640);
    assert!(all.windows(2).all(|w| w[1].global_position == w[0].global_position + 1));
}

pub async fn a_conflict_does_not_fail_other_requests_in_the_batch(j: Arc<dyn Journal>) {
    // Fired together so they share group commits: the odd ones expect a version that does not exist.
    let tasks = (0..64).map(|i| {
        let j = j.clone();
        tokio::spawn(async move {
            let expected = if i % 2 == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(7) };
            (i, j.append(request(&format!("b{i}"), expected, 2)).await)
        })
    });
    for t in futures::future::join_all(tasks).await {
        let (i, result) = t.unwrap();
        if i % 2 == 0 {
            assert!(result.is_ok(), "request {i}: {result:?}");
        } else {
            assert!(matches!(result, Err(AppendError::Conflict { .. })), "request {i}: {result:?}");
        }
    }
    assert_eq!(j.head_position().await.unwrap(), 64);
}

pub async fn racing_writers_on_one_stream_get_one_winner_per_version(j: Arc<dyn Journal>) {
    j.append(request("hot", ExpectedVersion::NoStream, 1)).await.unwrap();
    let tasks = (0..16).map(|_| {
        let j = j.clone();
        tokio::spawn(async move { j.append(request("hot", ExpectedVersion::Exact(1), 1)).await })
    });
    let results = futures::future::join_all(tasks).await;
    let winners = results.iter().filter(|r| r.as_ref().unwrap().is_ok()).count();
    assert_eq!(winners, 1);
    let events = read_stream_to_end(j.as_ref(), "hot", 1).await.unwrap();
    assert_eq!(events.len(), 2);
    verify_stream(&events).unwrap();
}

/// Many writers create the same new streams at once: with `NoStream` exactly one wins each, with
/// `Any` every append lands and the stream's versions run 1..n without gaps.
pub async fn racing_creators_of_one_new_stream(j: Arc<dyn Journal>) {
    racing_creators(&[j.clone(), j]).await;
}

/// The same race across several journal instances (processes) sharing one store.
pub async fn racing_creators(journals: &[Arc<dyn Journal>]) {
    for round in 0..5 {
        let tasks = (0..24).map(|i| {
            let j = journals[i % journals.len()].clone();
            tokio::spawn(async move {
                let exclusive = j.append(request(&format!("new-{round}"), ExpectedVersion::NoStream, 1)).await;
                let shared = j.append(request(&format!("shared-{round}"), ExpectedVersion::Any, 2)).await;
                (exclusive.is_ok(), shared.expect("an Any append always lands"))
            })
        });
        let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(results.iter().filter(|(won, _)| *won).count(), 1, "one creator wins");
        let shared = read_stream_to_end(journals[0].as_ref(), &format!("shared-{round}"), 1).await.unwrap();
        assert_eq!(shared.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=48).collect::<Vec<_>>());
        verify_stream(&shared).unwrap();
    }
}

pub async fn snapshots_keep_the_newest(j: Arc<dyn Journal>) {
    assert_eq!(j.load_snapshot("s").await.unwrap(), None);
    let snap = |v: u64| Snapshot { stream_id: "s".into(), version: v, state: vec![v as u8; 4] };
    j.save_snapshot(snap(10)).await.unwrap();
    j.save_snapshot(snap(5)).await.unwrap();
    assert_eq!(j.load_snapshot("s").await.unwrap(), Some(snap(10)));
    j.save_snapshot(snap(20)).await.unwrap();
    assert_eq!(j.load_snapshot("s").await.unwrap(), Some(snap(20)));
}

pub async fn checkpoints_only_move_forward(j: Arc<dyn Journal>) {
    assert_eq!(j.load_checkpoint("saga").await.unwrap(), 0);
    j.save_checkpoint("saga", 10).await.unwrap();
    j.save_checkpoint("saga", 4).await.unwrap();
    assert_eq!(j.load_checkpoint("saga").await.unwrap(), 10);
    j.save_checkpoint("publisher", 3).await.unwrap();
    assert_eq!(j.load_checkpoint("saga").await.unwrap(), 10);
    assert_eq!(j.load_checkpoint("publisher").await.unwrap(), 3);
}

pub async fn an_empty_append_is_refused(j: Arc<dyn Journal>) {
    let err = j.append(request("s", ExpectedVersion::Any, 0)).await.unwrap_err();
    assert!(matches!(err, AppendError::Store(StoreError::Invalid(_))), "{err:?}");
    assert_eq!(j.head_position().await.unwrap(), 0);
}

pub async fn a_subscription_catches_up_then_follows(j: Arc<dyn Journal>) {
    j.append(request("s", ExpectedVersion::NoStream, 5)).await.unwrap();
    let mut sub = Subscription::new(j.clone(), 0).with_page_size(2).with_poll_interval(Duration::from_millis(20));
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.extend(sub.next_page().await.unwrap().into_iter().map(|e| e.event_id));
    }
    let writer = j.clone();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.append(request("t", ExpectedVersion::NoStream, 1)).await.unwrap()
    });
    let page = tokio::time::timeout(Duration::from_secs(10), sub.next_page()).await.expect("follows").unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].stream_id, "t");
    late.await.unwrap();
    let unique: std::collections::HashSet<Uuid> = seen.into_iter().collect();
    assert_eq!(unique.len(), 5);
}
