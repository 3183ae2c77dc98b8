//! Samples sent to CloudWatch with `PutMetricData`, batched on an interval.
//!
//! Two tasks: one takes the ticker's samples, merges them over the export interval and turns them
//! into batches of datums (one namespace per call, at most [`MAX_DATUMS_PER_CALL`] datums, a
//! histogram as `Values`/`Counts` with at most [`MAX_VALUES`] values); the other sends the batches in
//! order, retrying a failed call with exponential backoff. The queue between them holds at most
//! `max_pending_datums`: when CloudWatch stays unreachable the oldest batches are dropped and counted
//! (`cloudwatch_datums_total{outcome="dropped"}`), so memory does not grow and nothing waits on the
//! command path (recording a metric is an atomic add whatever happens here).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_sdk_cloudwatch::Client;
use events::metric::{self, ENVIRONMENT_DIMENSION};
use tokio::sync::{broadcast, watch, Notify};

use super::sample::{Sample, Value};

/// Datums per `PutMetricData` call (the API takes up to 1,000 per call and 1 MB; 150 datums with
/// 100 values each stay well within both).
pub const MAX_DATUMS_PER_CALL: usize = 150;
/// Values per datum (the API takes up to 150).
pub const MAX_VALUES: usize = 100;

/// How the export runs.
#[derive(Clone, Debug)]
pub struct PutSettings {
    /// The `Environment` dimension of every datum.
    pub environment: String,
    /// How often a batch is made from the samples since the last.
    pub interval: Duration,
    /// Datums waiting to be sent before the oldest are dropped.
    pub max_pending_datums: usize,
    /// Calls made for one batch before it is dropped.
    pub max_attempts: u32,
    /// The first retry's wait; doubled per attempt, at most 30 s.
    pub first_backoff: Duration,
}

impl Default for PutSettings {
    fn default() -> Self {
        PutSettings {
            environment: "prod".into(),
            interval: Duration::from_secs(60),
            max_pending_datums: 20_000,
            max_attempts: 6,
            first_backoff: Duration::from_secs(1),
        }
    }
}

/// One `PutMetricData` call's worth.
#[derive(Clone, Debug)]
pub struct Batch {
    pub namespace: String,
    pub datums: Vec<MetricDatum>,
}

/// A sample's datums, by namespace, in batches of at most [`MAX_DATUMS_PER_CALL`]. Values
/// CloudWatch refuses (NaN, ±∞) and empty histograms are left out.
pub fn batches(sample: &Sample, environment: &str) -> Vec<Batch> {
    let timestamp = DateTime::from_millis(sample.at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64);
    let mut by_namespace: BTreeMap<&str, Vec<MetricDatum>> = BTreeMap::new();
    for series in &sample.series {
        let mut dimensions = vec![Dimension::builder().name(ENVIRONMENT_DIMENSION).value(environment).build()];
        dimensions.extend(series.dimensions.iter().map(|(name, value)| {
            let value = if value.is_empty() { "none" } else { value.as_str() };
            Dimension::builder().name(*name).value(value).build()
        }));
        let datum = MetricDatum::builder()
            .metric_name(series.metric.cloudwatch_name)
            .set_dimensions(Some(dimensions))
            .timestamp(timestamp)
            .unit(StandardUnit::from(series.metric.unit.cloudwatch()));
        let datum = match &series.value {
            Value::Count(v) | Value::Gauge(v) if v.is_finite() => datum.value(*v),
            Value::Distribution(d) => {
                let d = d.coarsened(MAX_VALUES);
                if d.count() == 0 || d.values.iter().any(|v| !v.is_finite()) {
                    continue;
                }
                datum.set_values(Some(d.values)).set_counts(Some(d.counts.iter().map(|c| *c as f64).collect()))
            }
            _ => continue,
        };
        by_namespace.entry(series.metric.namespace).or_default().push(datum.build());
    }
    let mut out = Vec::new();
    for (namespace, datums) in by_namespace {
        for chunk in datums.chunks(MAX_DATUMS_PER_CALL) {
            out.push(Batch { namespace: namespace.to_owned(), datums: chunk.to_vec() });
        }
    }
    out
}

/// The queue between the batcher and the sender.
#[derive(Default)]
struct Pending {
    batches: Mutex<VecDeque<Batch>>,
    ready: Notify,
}

impl Pending {
    /// Queues `batch`, dropping the oldest while more than `max` datums would wait.
    fn push(&self, batch: Batch, max: usize) {
        let mut queue = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        queue.push_back(batch);
        let mut waiting: usize = queue.iter().map(|b| b.datums.len()).sum();
        while waiting > max && queue.len() > 1 {
            let dropped = queue.pop_front().expect("more than one batch");
            waiting -= dropped.datums.len();
            tracing::warn!(datums = dropped.datums.len(), "CloudWatch export queue full; oldest batch dropped");
            metric::EXPORT_DATUMS.counter(&[("outcome", "dropped")]).increment(dropped.datums.len() as u64);
        }
        drop(queue);
        self.ready.notify_one();
    }

    fn front(&self) -> Option<Batch> {
        self.batches.lock().unwrap_or_else(|p| p.into_inner()).front().cloned()
    }

    fn pop(&self) {
        self.batches.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
    }
}

/// Runs the export until `stop` turns true: the batcher on `samples`, the sender on `client`.
pub async fn run(
    client: Client,
    settings: PutSettings,
    samples: broadcast::Receiver<Arc<Sample>>,
    stop: watch::Receiver<bool>,
) {
    metric::EXPORT_DATUMS.register(&[("outcome", "sent")]);
    metric::EXPORT_DATUMS.register(&[("outcome", "dropped")]);
    metric::EXPORT_FAILURES.register(metric::NO_LABELS);
    let pending = Arc::new(Pending::default());
    let sender = tokio::spawn(send(client, settings.clone(), pending.clone(), stop.clone()));
    super::sample::each_interval(samples, settings.interval, stop, |merged| {
        for batch in batches(&merged, &settings.environment) {
            pending.push(batch, settings.max_pending_datums);
        }
    })
    .await;
    // What the last interval gathered goes out before stopping, if CloudWatch answers soon.
    let _ = tokio::time::timeout(Duration::from_secs(5), sender).await;
}

async fn send(client: Client, settings: PutSettings, pending: Arc<Pending>, mut stop: watch::Receiver<bool>) {
    let mut attempts = 0u32;
    loop {
        let Some(batch) = pending.front() else {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = pending.ready.notified() => {}
                _ = stop.changed() => {}
                // A notification that came before this wait began is not lost for long.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        };
        let count = batch.datums.len() as u64;
        let sent =
            client.put_metric_data().namespace(&batch.namespace).set_metric_data(Some(batch.datums)).send().await;
        match sent {
            Ok(_) => {
                attempts = 0;
                pending.pop();
                metric::EXPORT_DATUMS.counter(&[("outcome", "sent")]).increment(count);
            }
            Err(e) => {
                attempts += 1;
                metric::EXPORT_FAILURES.counter(metric::NO_LABELS).increment(1);
                let error = aws_sdk_cloudwatch::error::DisplayErrorContext(&e);
                if attempts >= settings.max_attempts {
                    tracing::warn!(namespace = %batch.namespace, datums = count, attempts, %error, "PutMetricData failed; batch dropped");
                    metric::EXPORT_DATUMS.counter(&[("outcome", "dropped")]).increment(count);
                    pending.pop();
                    attempts = 0;
                    continue;
                }
                tracing::debug!(namespace = %batch.namespace, attempts, %error, "PutMetricData failed; retrying");
                let backoff = (settings.first_backoff * 2u32.saturating_pow(attempts - 1)).min(Duration::from_secs(30));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => if *stop.borrow() { return },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudwatch::sample::{Distribution, Series};

    #[test]
    fn a_sample_becomes_datums_per_namespace_with_the_environment() {
        let sample = Sample {
            at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            interval: Duration::from_secs(60),
            series: vec![
                Series {
                    metric: &metric::COMMANDS,
                    dimensions: vec![("Aggregate", "order".into()), ("Outcome", "ok".into())],
                    value: Value::Count(5.0),
                },
                Series {
                    metric: &metric::ORDER_CREATION_DURATION,
                    dimensions: vec![("Outcome", "placed".into())],
                    value: Value::Distribution(Distribution {
                        values: (0..300).map(f64::from).collect(),
                        counts: vec![2; 300],
                    }),
                },
                Series {
                    metric: &metric::FOLLOWER_LAG_SECONDS,
                    dimensions: vec![("Follower", "f".into())],
                    value: Value::Gauge(f64::NAN),
                },
            ],
        };
        let batches = batches(&sample, "test");
        let namespaces: Vec<&str> = batches.iter().map(|b| b.namespace.as_str()).collect();
        assert_eq!(namespaces, ["CloudCafe/Actors", "CloudCafe/OrderService"], "NaN left out");
        let commands = &batches[0].datums[0];
        assert_eq!(commands.metric_name(), Some("Commands"));
        assert_eq!(commands.value(), Some(5.0));
        let dims: Vec<(&str, &str)> =
            commands.dimensions().iter().map(|d| (d.name().unwrap(), d.value().unwrap())).collect();
        assert_eq!(dims, [("Environment", "test"), ("Aggregate", "order"), ("Outcome", "ok")]);
        let latency = &batches[1].datums[0];
        assert!(latency.values().len() <= MAX_VALUES);
        assert_eq!(latency.counts().iter().sum::<f64>(), 600.0);
        assert_eq!(latency.unit(), Some(&StandardUnit::Milliseconds));
    }

    #[test]
    fn a_full_queue_drops_the_oldest_batches() {
        let pending = Pending::default();
        let batch = |n: &str| Batch {
            namespace: n.into(),
            datums: (0..10).map(|_| MetricDatum::builder().metric_name("M").value(1.0).build()).collect(),
        };
        for n in ["a", "b", "c", "d"] {
            pending.push(batch(n), 25);
        }
        let left: Vec<String> = pending.batches.lock().unwrap().iter().map(|b| b.namespace.clone()).collect();
        assert_eq!(left, ["c", "d"]);
    }
}
