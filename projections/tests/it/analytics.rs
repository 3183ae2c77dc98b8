//! The analytics sink against a PostgreSQL database standing in for Redshift.

use std::sync::Arc;

use events::postgres::{connect_pool, PgOptions};
use projections::read_models::analytics::AnalyticsSink;
use projections::read_models::conformance::{a_day_of_orders, run_rebuild_suite, run_sink_suite};
use projections::{ShardApplied, ShardBatch, ShardCheckpointedSink, Sink};
use testkit::servers;

async fn sink(url: &str) -> Arc<AnalyticsSink> {
    let options = PgOptions::new(url).with_schema(servers::fresh_schema("redshift"));
    Arc::new(AnalyticsSink::new(connect_pool(&options).await.unwrap()).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_passes_the_sink_and_rebuild_suites() {
    let Some(url) = servers::redshift_url().await else { return };
    run_sink_suite(|| {
        let url = url.clone();
        async move { sink(&url).await as Arc<dyn Sink> }
    })
    .await;
    run_rebuild_suite(sink(&url).await).await;
}

/// One-minute tumbling windows per store, computed as the seeds' analytics job does: orders placed
/// in the minute (cancelled ones leave), revenue, distinct customers, average order value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_minutes_are_tumbling_windows_of_the_facts() {
    let Some(url) = servers::redshift_url().await else { return };
    let s = sink(&url).await;
    let day = a_day_of_orders(40);
    for page in day.chunks(23) {
        s.apply(page).await.unwrap();
    }
    // Order i is placed at base + 7 s * i in store s2 when i % 3 == 0 (else s1), by customer c(i % 13),
    // and cancelled when i % 5 == 4 (declined) or i % 8 == 4 (by its customer, after it was paid);
    // total = (1 + i % 3) * 475 + 325 cents.
    let base: i64 = 1_700_000_000_000_000;
    let mut expected = std::collections::BTreeMap::<i64, (i64, i64, std::collections::BTreeSet<u32>)>::new();
    for i in (0..40u32).filter(|i| i % 3 == 0 && i % 5 != 4 && i % 8 != 4) {
        let at = base + i64::from(i) * 7_000_000;
        let minute = at - at.rem_euclid(60_000_000);
        let w = expected.entry(minute).or_default();
        w.0 += 1;
        w.1 += i64::from(1 + i % 3) * 475 + 325;
        w.2.insert(i % 13);
    }
    let windows = s.store_minutes("s2", 0, i64::MAX).await.unwrap();
    assert_eq!(windows.len(), expected.len());
    for (w, (minute, (count, revenue, customers))) in windows.iter().zip(expected) {
        assert_eq!(
            (w.minute_us, w.order_count, w.revenue_cents, w.unique_customers, w.avg_order_value_cents),
            (minute, count, revenue, customers.len() as i64, revenue / count)
        );
    }
    let first = windows[0].minute_us;
    assert_eq!(
        s.store_minutes("s2", first + 1, first + 60_000_000).await.unwrap().len(),
        0,
        "ranges are by minute start"
    );
}

/// Fed from a Kinesis shard, the model keeps the shard's checkpoint with its facts: a redelivered
/// batch changes nothing, an event the publisher sent twice (a new record) counts once, and a
/// worker whose lease counter is older than the stored one writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_a_shard_each_record_counts_once_and_a_stale_lease_writes_nothing() {
    let Some(url) = servers::redshift_url().await else { return };
    let from_shard = sink(&url).await;
    let from_journal = sink(&url).await;
    let day = a_day_of_orders(40);
    from_journal.apply(&day).await.unwrap();
    let records: Vec<(String, events::RecordedEvent)> =
        day.iter().enumerate().map(|(i, e)| (format!("{}", 1000 + i), e.clone())).collect();
    let (first, rest) = records.split_at(records.len() / 2);
    let batch = |records, lease_counter| ShardBatch { shard_id: "shard-0", lease_counter, records };

    assert_eq!(from_shard.shard_checkpoint("shard-0").await.unwrap(), None);
    assert_eq!(
        from_shard.apply_from_shard(batch(first, 4)).await.unwrap(),
        ShardApplied::Applied { records: first.len() }
    );
    assert_eq!(
        from_shard.shard_checkpoint("shard-0").await.unwrap().as_deref(),
        Some(first.last().unwrap().0.as_str())
    );
    let halfway = from_shard.fingerprint().await.unwrap();
    // A new holder reads again from an older checkpoint: nothing it already applied counts twice.
    assert_eq!(from_shard.apply_from_shard(batch(first, 5)).await.unwrap(), ShardApplied::Applied { records: 0 });
    // The old holder, its lease taken, comes back with the rest: fenced.
    assert_eq!(from_shard.apply_from_shard(batch(rest, 4)).await.unwrap(), ShardApplied::Fenced { stored: 5 });
    assert_eq!(from_shard.fingerprint().await.unwrap(), halfway, "a fenced batch wrote nothing");
    // The publisher sent the first half again after a failure: new records, the same events.
    let resent: Vec<(String, events::RecordedEvent)> = rest
        .iter()
        .cloned()
        .chain(first.iter().enumerate().map(|(i, (_, e))| (format!("{}", 5000 + i), e.clone())))
        .collect();
    assert_eq!(
        from_shard.apply_from_shard(batch(&resent, 6)).await.unwrap(),
        ShardApplied::Applied { records: resent.len() }
    );
    assert_eq!(from_shard.fingerprint().await.unwrap(), from_journal.fingerprint().await.unwrap());
    assert!(from_shard.windows_disagreeing_with_facts().await.unwrap().is_empty());
    // Another shard's checkpoint is its own.
    assert_eq!(from_shard.shard_checkpoint("shard-1").await.unwrap(), None);
}
