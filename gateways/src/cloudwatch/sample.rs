//! A recorder that keeps, for every series of a catalog metric, what happened since the last sample,
//! and the samples it produces: the common input of the CloudWatch exporters and of the node's own
//! dashboard page.
//!
//! It sits beside the Prometheus recorder (a fan-out, [`crate::telemetry::install`]). A counter is an
//! atomic drained at each sample (its increase), a gauge an atomic read at each sample, a histogram a
//! fixed array of atomic log-scale buckets (4 % wide, 1 µs to 10⁷) drained at each sample: recording
//! never locks or allocates once a series exists, and memory does not grow with the rate.
//!
//! Architecture Invariant: only metrics of the catalog are sampled; a series is grouped by the
//! catalog's dimensions and nothing else, so what leaves for CloudWatch is bounded by the catalog.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use events::metric::{self, Kind, Metric};
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{Registry, Storage};

/// Everything the catalog's metrics did in one interval.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The end of the interval.
    pub at: SystemTime,
    /// The interval's length.
    pub interval: Duration,
    /// One entry per catalog metric and combination of its dimensions' values, in catalog order.
    pub series: Vec<Series>,
}

/// One catalog metric for one combination of its dimensions' values.
#[derive(Clone, Debug)]
pub struct Series {
    pub metric: &'static Metric,
    /// Dimension name and value, in the order the catalog declares the dimensions.
    pub dimensions: Vec<(&'static str, String)>,
    pub value: Value,
}

/// A series' value over an interval, in the catalog's CloudWatch unit (scaled).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A counter's increase.
    Count(f64),
    /// A gauge's value at the end.
    Gauge(f64),
    /// A histogram's observations.
    Distribution(Distribution),
}

/// Observations as distinct values (ascending) with how often each was seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distribution {
    pub values: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Distribution {
    /// How many observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the observations.
    pub fn sum(&self) -> f64 {
        self.values.iter().zip(&self.counts).map(|(v, c)| v * *c as f64).sum()
    }

    pub fn min(&self) -> Option<f64> {
        self.values.first().copied()
    }

    pub fn max(&self) -> Option<f64> {
        self.values.last().copied()
    }

    /// The value at quantile `q` (0..=1), `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (v, c) in self.values.iter().zip(&self.counts) {
            seen += c;
            if seen >= rank {
                return Some(*v);
            }
        }
        self.max()
    }

    /// Both distributions' observations.
    pub fn merge(&self, other: &Distribution) -> Distribution {
        let mut all: Vec<(f64, u64)> = self.pairs().chain(other.pairs()).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged = Distribution::default();
        for (v, c) in all {
            if merged.values.last() == Some(&v) {
                *merged.counts.last_mut().expect("a count per value") += c;
            } else {
                merged.values.push(v);
                merged.counts.push(c);
            }
        }
        merged
    }

    /// The same observations in at most `max` distinct values: neighbours are merged pairwise (at
    /// their weighted mean) until it fits. CloudWatch takes 100 values per EMF metric and 150 per
    /// `PutMetricData` datum.
    pub fn coarsened(&self, max: usize) -> Distribution {
        let mut d = self.clone();
        while d.values.len() > max.max(1) {
            let mut next = Distribution::default();
            for (vs, cs) in d.values.chunks(2).zip(d.counts.chunks(2)) {
                let count: u64 = cs.iter().sum();
                let value = vs.iter().zip(cs).map(|(v, c)| v * *c as f64).sum::<f64>() / count.max(1) as f64;
                next.values.push(value);
                next.counts.push(count);
            }
            d = next;
        }
        d
    }

    fn pairs(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.values.iter().copied().zip(self.counts.iter().copied())
    }
}

impl Sample {
    /// The samples of consecutive intervals as one: counters and distributions added, gauges at
    /// their last value. `None` for no samples.
    pub fn merge(samples: &[Sample]) -> Option<Sample> {
        let last = samples.last()?;
        let mut merged: BTreeMap<SeriesKey, Series> = BTreeMap::new();
        for sample in samples {
            for series in &sample.series {
                let key = (catalog_index(series.metric), series.dimensions.clone());
                match merged.get_mut(&key) {
                    None => {
                        merged.insert(key, series.clone());
                    }
                    Some(kept) => kept.value = combine(&kept.value, &series.value),
                }
            }
        }
        Some(Sample {
            at: last.at,
            interval: samples.iter().map(|s| s.interval).sum(),
            series: merged.into_values().collect(),
        })
    }
}

/// A series by its catalog index and dimension values.
type SeriesKey = (usize, Vec<(&'static str, String)>);

fn combine(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Count(x), Value::Count(y)) => Value::Count(x + y),
        (Value::Distribution(x), Value::Distribution(y)) => Value::Distribution(x.merge(y)),
        (_, later) => later.clone(),
    }
}

fn catalog_index(m: &'static Metric) -> usize {
    metric::CATALOG.iter().position(|c| std::ptr::eq(*c, m)).unwrap_or(usize::MAX)
}

// ---- the recorder ----

/// Log-scale buckets: bucket `i` holds values in `[LOWEST·GROWTH^i, LOWEST·GROWTH^(i+1))`; bucket 0
/// also holds everything below, the last everything above.
const LOWEST: f64 = 1e-6;
const GROWTH: f64 = 1.04;
const BUCKETS: usize = 764; // LOWEST · 1.04^764 ≈ 1e7

/// A histogram series: observation counts per log-scale bucket.
pub struct Buckets {
    counts: Box<[AtomicU64]>,
}

impl Buckets {
    fn new() -> Self {
        Buckets { counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect() }
    }

    fn index(value: f64) -> usize {
        if value.is_nan() || value <= LOWEST {
            return 0;
        }
        (((value / LOWEST).ln() / GROWTH.ln()) as usize).min(BUCKETS - 1)
    }

    /// The value a bucket stands for: its geometric middle.
    fn representative(index: usize) -> f64 {
        LOWEST * GROWTH.powf(index as f64 + 0.5)
    }

    /// The observations since the last drain, scaled.
    fn drain(&self, scale: f64) -> Distribution {
        let mut d = Distribution::default();
        for (i, count) in self.counts.iter().enumerate() {
            if count.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let c = count.swap(0, Ordering::Relaxed);
            if c > 0 {
                d.values.push(Self::representative(i) * scale);
                d.counts.push(c);
            }
        }
        d
    }
}

impl HistogramFn for Buckets {
    fn record(&self, value: f64) {
        self.counts[Self::index(value)].fetch_add(1, Ordering::Relaxed);
    }
}

/// The storage of the sampling registry: atomics for counters and gauges, buckets for histograms.
pub struct SampledStorage;

impl Storage<Key> for SampledStorage {
    type Counter = Arc<AtomicU64>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<Buckets>;

    fn counter(&self, _: &Key) -> Self::Counter {
        Arc::new(AtomicU64::new(0))
    }

    fn gauge(&self, _: &Key) -> Self::Gauge {
        Arc::new(AtomicU64::new(0f64.to_bits()))
    }

    fn histogram(&self, _: &Key) -> Self::Histogram {
        Arc::new(Buckets::new())
    }
}

/// The recorder that samples; install it (with the Prometheus one) and keep its [`Sampler`].
pub struct SamplingRecorder {
    registry: Arc<Registry<Key, SampledStorage>>,
}

/// Takes samples from a [`SamplingRecorder`]. Each sample drains what the one before left: keep one
/// sampler taking samples (the node's [`crate::cloudwatch::history`] ticker) and share its samples.
#[derive(Clone)]
pub struct Sampler {
    registry: Arc<Registry<Key, SampledStorage>>,
    last: Arc<std::sync::Mutex<SystemTime>>,
}

impl SamplingRecorder {
    pub fn new() -> (Self, Sampler) {
        let registry = Arc::new(Registry::new(SampledStorage));
        let sampler = Sampler { registry: registry.clone(), last: Arc::new(std::sync::Mutex::new(SystemTime::now())) };
        (SamplingRecorder { registry }, sampler)
    }
}

impl Recorder for SamplingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry.get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry.get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry.get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

impl Sampler {
    /// What happened since the last sample (or since the recorder was made).
    pub fn sample(&self) -> Sample {
        let now = SystemTime::now();
        let interval = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let interval = now.duration_since(*last).unwrap_or_default();
            *last = now;
            interval
        };
        let mut grouped: BTreeMap<SeriesKey, Series> = BTreeMap::new();
        let mut add = |key: &Key, value: Value| {
            let Some(m) = metric::find(key.name()) else { return };
            let dimensions: Vec<(&'static str, String)> = m
                .dimensions
                .iter()
                .map(|(label, dimension)| {
                    let value =
                        key.labels().find(|l| l.key() == *label).map(|l| l.value().to_owned()).unwrap_or_default();
                    (*dimension, value)
                })
                .collect();
            let index = catalog_index(m);
            match grouped.get_mut(&(index, dimensions.clone())) {
                Some(kept) => {
                    kept.value = match (&kept.value, &value) {
                        // Gauges keep every label as a dimension: two keys never meet here.
                        (Value::Gauge(a), Value::Gauge(b)) => Value::Gauge(a + b),
                        (a, b) => combine(a, b),
                    }
                }
                None => {
                    grouped.insert((index, dimensions.clone()), Series { metric: m, dimensions, value });
                }
            }
        };
        self.registry.visit_counters(|key, counter| {
            let Some(m) = metric::find(key.name()) else { return };
            let delta = counter.swap(0, Ordering::Relaxed);
            add(key, Value::Count(delta as f64 * m.scale));
        });
        self.registry.visit_gauges(|key, gauge| {
            let Some(m) = metric::find(key.name()) else { return };
            add(key, Value::Gauge(f64::from_bits(gauge.load(Ordering::Relaxed)) * m.scale));
        });
        self.registry.visit_histograms(|key, buckets| {
            let Some(m) = metric::find(key.name()) else { return };
            debug_assert_eq!(m.kind, Kind::Histogram);
            add(key, Value::Distribution(buckets.drain(m.scale)));
        });
        Sample { at: now, interval, series: grouped.into_values().collect() }
    }
}

/// Takes a sample every `every` and hands it to every subscriber (the node's dashboard history, the
/// CloudWatch export). A subscriber that falls more than `capacity` samples behind loses the oldest
/// (`RecvError::Lagged`): memory stays bounded. The ticker lives as long as the runtime.
pub fn spawn_ticker(sampler: Sampler, every: Duration) -> tokio::sync::broadcast::Sender<Arc<Sample>> {
    let (sender, _) = tokio::sync::broadcast::channel(64);
    let out = sender.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            let sample = Arc::new(sampler.sample());
            // No subscriber yet is not an error: the sample is simply not kept.
            let _ = out.send(sample);
        }
    });
    sender
}

/// Hands `each` the ticker's samples merged over `interval` (CloudWatch's period, longer than the
/// ticker's) until `stop` turns true or the ticker is gone; what the last interval gathered is handed
/// over on the way out. A receiver that fell behind loses the oldest samples and says so.
pub async fn each_interval(
    mut samples: tokio::sync::broadcast::Receiver<Arc<Sample>>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut each: impl FnMut(Sample),
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut window: Vec<Sample> = Vec::new();
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            received = samples.recv() => match received {
                Ok(sample) => window.push((*sample).clone()),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(samples = n, "a metrics export fell behind the sampler; samples lost");
                    continue;
                }
                Err(RecvError::Closed) => break,
            },
            _ = stop.changed() => break,
        }
        if window.iter().map(|s| s.interval).sum::<Duration>() >= interval {
            if let Some(merged) = Sample::merge(&window) {
                each(merged);
            }
            window.clear();
        }
    }
    if let Some(merged) = Sample::merge(&window) {
        each(merged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_within_four_percent_of_what_it_holds() {
        for v in [2e-6, 0.000_731, 0.0123, 0.5, 1.0, 7.0, 950.0, 12_345.0] {
            let r = Buckets::representative(Buckets::index(v));
            assert!((r / v - 1.0).abs() < 0.04, "{v} → {r}");
        }
        assert_eq!(Buckets::index(0.0), 0);
        assert_eq!(Buckets::index(-3.0), 0);
        assert_eq!(Buckets::index(f64::NAN), 0);
        assert_eq!(Buckets::index(1e12), BUCKETS - 1);
    }

    #[test]
    fn coarsening_keeps_the_count_and_the_sum() {
        let d = Distribution { values: (1..=333).map(f64::from).collect(), counts: (1..=333).collect() };
        let c = d.coarsened(100);
        assert!(c.values.len() <= 100);
        assert_eq!(c.count(), d.count());
        assert!((c.sum() - d.sum()).abs() / d.sum() < 1e-9);
        assert!(c.values.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn quantiles_of_a_distribution() {
        let d = Distribution { values: vec![1.0, 2.0, 10.0], counts: vec![50, 49, 1] };
        assert_eq!(d.quantile(0.5), Some(1.0));
        assert_eq!(d.quantile(0.99), Some(2.0));
        assert_eq!(d.quantile(1.0), Some(10.0));
        assert_eq!(Distribution::default().quantile(0.5), None);
    }

    #[test]
    fn a_sample_groups_by_the_catalogs_dimensions_and_drains() {
        let (recorder, sampler) = SamplingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            metric::COMMANDS.counter(&[("category", "order"), ("outcome", "ok")]).increment(3);
            metric::HTTP_REQUESTS
                .counter(&[("method", "GET"), ("route", "/health"), ("status", "200"), ("class", "2xx")])
                .increment(2);
            metric::HTTP_REQUESTS
                .counter(&[("method", "HEAD"), ("route", "/health"), ("status", "204"), ("class", "2xx")])
                .increment(5);
            metric::COMMAND_DURATION.histogram(&[("category", "order")]).record(0.002);
            metric::COMMAND_DURATION.histogram(&[("category", "order")]).record(0.004);
            metric::ACTORS_ACTIVE.gauge(&[("category", "order")]).set(7.0);
            metrics::counter!("not_in_the_catalog_total").increment(1);
        });
        let s = sampler.sample();
        let find = |name: &str| s.series.iter().filter(|x| x.metric.name == name).collect::<Vec<_>>();
        assert_eq!(find("commands_total")[0].value, Value::Count(3.0));
        let http = find("http_requests_total");
        assert_eq!(http.len(), 1, "method and status are not dimensions: {http:?}");
        assert_eq!(http[0].dimensions, vec![("Route", "/health".to_owned()), ("StatusClass", "2xx".to_owned())]);
        assert_eq!(http[0].value, Value::Count(7.0));
        let Value::Distribution(d) = &find("command_seconds")[0].value else { panic!() };
        assert_eq!(d.count(), 2);
        assert!((d.sum() - 6.0).abs() < 0.25, "milliseconds: {}", d.sum());
        assert_eq!(find("actors_active")[0].value, Value::Gauge(7.0));
        assert!(find("not_in_the_catalog_total").is_empty());
        let again = sampler.sample();
        let find = |name: &str| again.series.iter().find(|x| x.metric.name == name).unwrap().value.clone();
        assert_eq!(find("commands_total"), Value::Count(0.0));
        assert_eq!(find("command_seconds"), Value::Distribution(Distribution::default()));
        assert_eq!(find("actors_active"), Value::Gauge(7.0));
    }
}
