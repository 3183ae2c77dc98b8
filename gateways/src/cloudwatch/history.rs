//! The node's recent samples, kept in memory for its own dashboard page (`GET /admin/dashboard`),
//! and the lines of a [`dashboard`](super::dashboard) evaluated over them as CloudWatch would
//! evaluate them over a period of one sample.
//!
//! [`History`] is a ring of the samples the ticker ([`super::sample::spawn_ticker`]) shares: the
//! newest [`History::capacity`] of them, the oldest dropped first, so the page costs a bounded amount
//! of memory however long the node runs (each sample is bounded by the catalog: one entry per
//! metric and dimension values, a histogram at most one value per bucket).
//!
//! [`evaluate`] turns a [`LineSeries`] into points `(unix milliseconds, value)`, one per sample that
//! has data for it:
//! - `Metric`: the series of the metric whose dimensions match the query's values are added up
//!   (counters' increases and gauges' values summed, distributions merged: the dimensions the query
//!   does not name are summed over), then the statistic is taken. A counter or gauge is one datum
//!   per sample (as one EMF line or `PutMetricData` datum per interval is in CloudWatch), so its
//!   Sum, Average, Minimum, Maximum and percentiles are that value and its SampleCount 1; a
//!   distribution with no observations in a sample has no point, as CloudWatch has no datum.
//! - `PerSecond`: the query's statistic (a counter's Sum) divided by the sample's interval.
//! - `Percent`: `100 × Σ part / Σ whole`; no point when the whole is 0.
//! - `External`: nothing; only CloudWatch has AWS's metrics ([`Evaluated::CloudWatchOnly`]).
//!
//! The `Environment` dimension a query may name is the node's own: every series of the node is in
//! its environment, so it filters nothing here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use events::metric::ENVIRONMENT_DIMENSION;
use tokio::sync::broadcast;

use super::dashboard::{LineSeries, MetricQuery, Stat};
use super::sample::{Distribution, Sample, Series, Value};

/// Samples a history keeps unless told otherwise: an hour at the page's 5 s sampling.
pub const DEFAULT_CAPACITY: usize = 720;

/// The newest samples of the node's metrics, oldest first.
pub struct History {
    capacity: usize,
    samples: Mutex<VecDeque<Arc<Sample>>>,
    /// Samples the ticker shared that this history never saw, having fallen behind.
    missed: AtomicU64,
}

impl Default for History {
    fn default() -> Self {
        History::new(DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("capacity", &self.capacity).field("len", &self.len()).finish()
    }
}

impl History {
    /// An empty history keeping at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        History { capacity, samples: Mutex::new(VecDeque::with_capacity(capacity)), missed: AtomicU64::new(0) }
    }

    /// The most samples it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Samples kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples the ticker shared that this history lost by falling behind (gaps in the page's lines).
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    /// Keeps `sample` as the newest, dropping the oldest when full.
    pub fn push(&self, sample: Arc<Sample>) {
        let mut samples = self.lock();
        if samples.len() == self.capacity {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The samples kept, oldest first (shared, not copied).
    pub fn samples(&self) -> Vec<Arc<Sample>> {
        self.lock().iter().cloned().collect()
    }

    /// Keeps every sample `ticker` shares from now on, on a task that ends when the ticker does.
    /// Falling behind the ticker (`Lagged`) loses the samples it missed, which the page shows as a
    /// gap; the history goes on with the next one.
    pub fn follow(self: &Arc<Self>, ticker: &broadcast::Sender<Arc<Sample>>) -> tokio::task::JoinHandle<()> {
        let mut receiver = ticker.subscribe();
        let history = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match receiver.recv().await {
                    Ok(sample) => history.push(sample),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        history.missed.fetch_add(missed, Ordering::Relaxed);
                        tracing::debug!(missed, "the dashboard history fell behind the sampler");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Sample>>> {
        // A push cannot leave the ring half-changed: a poisoned lock still holds a whole ring.
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A point of a line: the end of its sample in milliseconds since the Unix epoch, and the value.
pub type Point = (i64, f64);

/// What the node can draw of a line.
#[derive(Clone, Debug, PartialEq)]
pub enum Evaluated {
    /// One point per sample that had data for the line, oldest first.
    Points(Vec<Point>),
    /// An AWS service metric: only CloudWatch has it.
    CloudWatchOnly,
}

/// A line over `samples` (oldest first), one point per sample that has data for it.
pub fn evaluate(series: &LineSeries, samples: &[Arc<Sample>]) -> Evaluated {
    if let LineSeries::External(_) = series {
        return Evaluated::CloudWatchOnly;
    }
    Evaluated::Points(
        samples
            .iter()
            .filter_map(|sample| {
                let value = value_at(series, sample)?;
                value.is_finite().then(|| (unix_ms(sample), value))
            })
            .collect(),
    )
}

/// A line's value over one sample: `None` when the sample has no data for it.
pub fn value_at(series: &LineSeries, sample: &Sample) -> Option<f64> {
    match series {
        LineSeries::External(_) => None,
        LineSeries::Metric(query) => statistic(query, sample),
        LineSeries::PerSecond(query) => {
            let seconds = sample.interval.as_secs_f64();
            if seconds <= 0.0 {
                return None;
            }
            Some(statistic(query, sample)? / seconds)
        }
        LineSeries::Percent { part, whole } => {
            let sum = |queries: &[MetricQuery]| {
                queries
                    .iter()
                    .filter_map(|q| statistic(q, sample))
                    .fold(None, |acc: Option<f64>, v| Some(acc.unwrap_or(0.0) + v))
            };
            let whole = sum(whole)?;
            if whole == 0.0 {
                return None;
            }
            Some(100.0 * sum(part).unwrap_or(0.0) / whole)
        }
    }
}

/// The statistic of a query over one sample: the matching series added up, then the statistic.
pub fn statistic(query: &MetricQuery, sample: &Sample) -> Option<f64> {
    let mut total: Option<Value> = None;
    for series in sample.series.iter().filter(|s| matches(query, s)) {
        total = Some(match (total, &series.value) {
            (None, v) => v.clone(),
            (Some(Value::Count(a)), Value::Count(b)) => Value::Count(a + b),
            (Some(Value::Gauge(a)), Value::Gauge(b)) => Value::Gauge(a + b),
            (Some(Value::Distribution(a)), Value::Distribution(b)) => Value::Distribution(a.merge(b)),
            // One metric has one kind: a mix cannot come from the sampler.
            (Some(kept), _) => kept,
        });
    }
    match total? {
        Value::Count(v) | Value::Gauge(v) => Some(match query.stat {
            Stat::SampleCount => 1.0,
            _ => v,
        }),
        Value::Distribution(d) => distribution_statistic(&d, query.stat),
    }
}

fn distribution_statistic(d: &Distribution, stat: Stat) -> Option<f64> {
    let count = d.count();
    if count == 0 {
        return None;
    }
    match stat {
        Stat::Sum => Some(d.sum()),
        Stat::Average => Some(d.sum() / count as f64),
        Stat::Maximum => d.max(),
        Stat::Minimum => d.min(),
        Stat::SampleCount => Some(count as f64),
        Stat::P50 => d.quantile(0.5),
        Stat::P99 => d.quantile(0.99),
    }
}

/// Whether `series` is of the query's metric and has every dimension value the query names (the
/// environment aside: the node's series are all of its own).
fn matches(query: &MetricQuery, series: &Series) -> bool {
    series.metric.name == query.metric.name
        && query.dimensions.iter().all(|(name, value)| {
            *name == ENVIRONMENT_DIMENSION || series.dimensions.iter().any(|(n, v)| n == name && v == value)
        })
}

fn unix_ms(sample: &Sample) -> i64 {
    let since = sample.at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use events::metric::{self, Metric};

    use super::*;
    use crate::cloudwatch::dashboard::{ExternalQuery, MetricQuery};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn series(metric: &'static Metric, dimensions: &[(&'static str, &str)], value: Value) -> Series {
        Series { metric, dimensions: dimensions.iter().map(|(n, v)| (*n, (*v).to_owned())).collect(), value }
    }

    fn sample(secs: u64, interval_secs: u64, series: Vec<Series>) -> Arc<Sample> {
        Arc::new(Sample { at: at(secs), interval: Duration::from_secs(interval_secs), series })
    }

    fn query(metric: &'static Metric, stat: Stat, dimensions: &[(&'static str, &str)]) -> MetricQuery {
        MetricQuery { metric, stat, dimensions: dimensions.iter().map(|(n, v)| (*n, (*v).to_owned())).collect() }
    }

    fn distribution(values: &[(f64, u64)]) -> Value {
        Value::Distribution(Distribution {
            values: values.iter().map(|(v, _)| *v).collect(),
            counts: values.iter().map(|(_, c)| *c).collect(),
        })
    }

    fn points(series: &LineSeries, samples: &[Arc<Sample>]) -> Vec<Point> {
        match evaluate(series, samples) {
            Evaluated::Points(points) => points,
            Evaluated::CloudWatchOnly => panic!("a node metric evaluated as CloudWatch-only"),
        }
    }

    /// Commands: order ok 3 + order rejected 1 + payment ok 5 in the first sample, order ok 2 in the
    /// second.
    fn commands() -> Vec<Arc<Sample>> {
        let c = &metric::COMMANDS;
        vec![
            sample(
                100,
                5,
                vec![
                    series(c, &[("Aggregate", "order"), ("Outcome", "ok")], Value::Count(3.0)),
                    series(c, &[("Aggregate", "order"), ("Outcome", "rejected")], Value::Count(1.0)),
                    series(c, &[("Aggregate", "payment"), ("Outcome", "ok")], Value::Count(5.0)),
                ],
            ),
            sample(105, 5, vec![series(c, &[("Aggregate", "order"), ("Outcome", "ok")], Value::Count(2.0))]),
        ]
    }

    #[test]
    fn the_ring_keeps_the_newest_samples() {
        let history = History::new(3);
        assert!(history.is_empty());
        for s in 1..=5 {
            history.push(sample(s, 1, Vec::new()));
        }
        assert_eq!(history.len(), 3);
        let kept: Vec<SystemTime> = history.samples().iter().map(|s| s.at).collect();
        assert_eq!(kept, vec![at(3), at(4), at(5)]);
        assert_eq!(History::new(0).capacity(), 1);
    }

    #[tokio::test]
    async fn it_follows_the_ticker_and_counts_what_it_missed() {
        let (ticker, _) = broadcast::channel(2);
        let history = Arc::new(History::new(10));
        let task = history.follow(&ticker);
        // Sent before the task ran: five into a channel of two, so three are lost to `Lagged`.
        for s in 1..=5 {
            ticker.send(sample(s, 1, Vec::new())).unwrap();
        }
        drop(ticker);
        task.await.unwrap();
        let kept: Vec<SystemTime> = history.samples().iter().map(|s| s.at).collect();
        assert_eq!(kept, vec![at(4), at(5)]);
        assert_eq!(history.missed(), 3);
    }

    #[test]
    fn a_counter_sums_over_the_dimensions_not_named() {
        let samples = commands();
        let all = LineSeries::Metric(query(&metric::COMMANDS, Stat::Sum, &[]));
        assert_eq!(points(&all, &samples), vec![(100_000, 9.0), (105_000, 2.0)]);
        let orders = LineSeries::Metric(query(&metric::COMMANDS, Stat::Sum, &[("Aggregate", "order")]));
        assert_eq!(points(&orders, &samples), vec![(100_000, 4.0), (105_000, 2.0)]);
        let rejected =
            LineSeries::Metric(query(&metric::COMMANDS, Stat::Sum, &[("Aggregate", "order"), ("Outcome", "rejected")]));
        assert_eq!(points(&rejected, &samples), vec![(100_000, 1.0)], "no series, no point");
        // The environment is the node's own; a dimension the metric does not have matches nothing.
        let here = LineSeries::Metric(query(&metric::COMMANDS, Stat::Sum, &[(ENVIRONMENT_DIMENSION, "local")]));
        assert_eq!(points(&here, &samples), vec![(100_000, 9.0), (105_000, 2.0)]);
        let unknown = LineSeries::Metric(query(&metric::COMMANDS, Stat::Sum, &[("Route", "/health")]));
        assert_eq!(points(&unknown, &samples), vec![]);
    }

    #[test]
    fn a_counter_or_gauge_is_one_datum_per_sample() {
        let samples = commands();
        for stat in [Stat::Average, Stat::Maximum, Stat::Minimum, Stat::P50, Stat::P99] {
            let line = LineSeries::Metric(query(&metric::COMMANDS, stat, &[]));
            assert_eq!(points(&line, &samples), vec![(100_000, 9.0), (105_000, 2.0)], "{stat:?}");
        }
        let count = LineSeries::Metric(query(&metric::COMMANDS, Stat::SampleCount, &[]));
        assert_eq!(points(&count, &samples), vec![(100_000, 1.0), (105_000, 1.0)]);

        let a = &metric::ACTORS_ACTIVE;
        let gauges = vec![sample(
            10,
            5,
            vec![
                series(a, &[("Aggregate", "order")], Value::Gauge(7.0)),
                series(a, &[("Aggregate", "menu")], Value::Gauge(2.0)),
            ],
        )];
        let total = LineSeries::Metric(query(a, Stat::Maximum, &[]));
        assert_eq!(points(&total, &gauges), vec![(10_000, 9.0)]);
        let menu = LineSeries::Metric(query(a, Stat::Average, &[("Aggregate", "menu")]));
        assert_eq!(points(&menu, &gauges), vec![(10_000, 2.0)]);
    }

    #[test]
    fn a_distribution_merges_its_series_then_takes_the_statistic() {
        let d = &metric::COMMAND_DURATION;
        let samples = vec![
            sample(
                20,
                5,
                vec![
                    series(d, &[("Aggregate", "order")], distribution(&[(1.0, 50), (2.0, 40)])),
                    series(d, &[("Aggregate", "payment")], distribution(&[(2.0, 9), (10.0, 1)])),
                ],
            ),
            // Nothing observed: CloudWatch has no datum, whatever the statistic.
            sample(25, 5, vec![series(d, &[("Aggregate", "order")], distribution(&[]))]),
        ];
        let stat = |stat, dims: &[(&'static str, &str)]| points(&LineSeries::Metric(query(d, stat, dims)), &samples);
        assert_eq!(stat(Stat::SampleCount, &[]), vec![(20_000, 100.0)]);
        assert_eq!(stat(Stat::Sum, &[]), vec![(20_000, 50.0 + 80.0 + 18.0 + 10.0)]);
        assert_eq!(stat(Stat::Average, &[]), vec![(20_000, 1.58)]);
        assert_eq!(stat(Stat::Minimum, &[]), vec![(20_000, 1.0)]);
        assert_eq!(stat(Stat::Maximum, &[]), vec![(20_000, 10.0)]);
        assert_eq!(stat(Stat::P50, &[]), vec![(20_000, 1.0)]);
        assert_eq!(stat(Stat::P99, &[]), vec![(20_000, 2.0)]);
        assert_eq!(stat(Stat::Maximum, &[("Aggregate", "order")]), vec![(20_000, 2.0)]);
        assert_eq!(stat(Stat::P99, &[("Aggregate", "payment")]), vec![(20_000, 10.0)]);
    }

    #[test]
    fn per_second_divides_by_the_sample_interval() {
        let samples = commands();
        let rate = LineSeries::PerSecond(query(&metric::COMMANDS, Stat::Sum, &[("Aggregate", "order")]));
        assert_eq!(points(&rate, &samples), vec![(100_000, 0.8), (105_000, 0.4)]);
        let instant = vec![Arc::new(Sample { interval: Duration::ZERO, ..(*commands()[0]).clone() })];
        assert_eq!(points(&rate, &instant), vec![], "an interval of zero has no rate");
    }

    #[test]
    fn percent_is_part_over_whole_and_absent_when_the_whole_is_zero() {
        let (h, m) = (&metric::CACHE_HITS, &metric::CACHE_MISSES);
        let samples = vec![
            sample(30, 5, vec![series(h, &[], Value::Count(3.0)), series(m, &[], Value::Count(1.0))]),
            sample(35, 5, vec![series(h, &[], Value::Count(0.0)), series(m, &[], Value::Count(0.0))]),
            sample(40, 5, vec![series(m, &[], Value::Count(2.0))]),
        ];
        let rate = LineSeries::Percent {
            part: vec![query(h, Stat::Sum, &[])],
            whole: vec![query(h, Stat::Sum, &[]), query(m, Stat::Sum, &[])],
        };
        assert_eq!(points(&rate, &samples), vec![(30_000, 75.0), (40_000, 0.0)]);

        let errors = LineSeries::Percent {
            part: vec![query(&metric::COMMANDS, Stat::Sum, &[("Outcome", "rejected")])],
            whole: vec![query(&metric::COMMANDS, Stat::Sum, &[])],
        };
        let values: Vec<f64> = points(&errors, &commands()).iter().map(|p| p.1).collect();
        assert_eq!(values, vec![100.0 / 9.0, 0.0]);
    }

    #[test]
    fn an_aws_metric_has_no_local_data() {
        let line = LineSeries::External(ExternalQuery {
            metric: &metric::ALB_REQUESTS,
            stat: Stat::Sum,
            dimensions: vec![("LoadBalancer", "app/cloudcafe/1".into())],
        });
        assert_eq!(evaluate(&line, &commands()), Evaluated::CloudWatchOnly);
        assert_eq!(value_at(&line, &commands()[0]), None);
    }
}
