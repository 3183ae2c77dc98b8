//! What a flood measures, as it runs: every request's latency from its *intended* send time (so a
//! stalled system cannot hide its queueing by slowing the sender down: coordinated omission), per
//! operation and per second, the errors by kind, and the scenario's own series, distributions and
//! figures. `finish` summarises it all into `Measurements`, the data of the report.
//!
//! The hot path (`requested`, `record`) runs 100K+ times a second from many tasks: it takes one
//! uncontended-in-practice mutex around plain counters and histograms and allocates nothing
//! (operation names are `&'static str`; an error kind's label is only copied the first time it is seen).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The highest latency tracked, in microseconds (an hour); longer ones count as an hour.
const HIGHEST_US: u64 = 3_600_000_000;

/// Per-second buckets stop at a day; anything later counts in the last one.
const MAX_SECONDS: usize = 86_400;

/// How one request ended. Error kinds are short stable labels: "503 unavailable", "429 busy",
/// "409 conflict", "400 bad request", "404 not found", "500 internal", "timeout", "connection: <what
/// broke>" (e.g. "connection: connection closed" for an end of stream before the answer),
/// "rejected" ...
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error(String),
}

/// A latency distribution, summarised in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// One operation's share of the flood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationSummary {
    pub requests: u64,
    pub errors: u64,
    pub latency: LatencySummary,
}

/// One second of the flood: arrivals due in it, requests that finished in it and their latencies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecondBucket {
    /// The second's start, from the flood's start.
    pub t_s: f64,
    pub requested: u64,
    pub completed: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A scenario's own single figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub value: f64,
    pub unit: String,
}

/// Everything a flood measured, summarised.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Measurements {
    pub duration_s: f64,
    /// Requests that finished (answered or not).
    pub requests: u64,
    pub errors: u64,
    /// The schedule's mean requested rate (None for a closed model).
    pub requested_rate: Option<f64>,
    /// Finished requests per second over `duration_s`.
    pub achieved_rate: f64,
    pub latency: LatencySummary,
    pub operations: BTreeMap<String, OperationSummary>,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub seconds: Vec<SecondBucket>,
    /// (percentile, ms) for the percentile spectrum plot.
    pub spectrum: Vec<(f64, f64)>,
    /// The scenario's own distributions.
    pub latencies: BTreeMap<String, LatencySummary>,
    /// The scenario's own time series: (t_s, value).
    pub series: BTreeMap<String, Vec<(f64, f64)>>,
    pub figures: BTreeMap<String, Figure>,
}

/// What the progress bar shows while a flood runs.
#[derive(Clone, Debug)]
pub struct Live {
    pub elapsed: Duration,
    pub requested: u64,
    pub completed: u64,
    pub errors: u64,
    pub p99_ms: f64,
}

/// A histogram of microseconds, 1 µs to an hour at 3 significant figures (1 part in 1000).
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("constant histogram bounds are valid")
}

/// A second's histogram: 2 significant figures (1%) is plenty for a per-second line, and growing
/// only as far as the values recorded keeps an hour of seconds to a few tens of megabytes.
fn second_histogram() -> Histogram<u32> {
    Histogram::new(2).expect("constant histogram precision is valid")
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).min(HIGHEST_US)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn summary<T: hdrhistogram::Counter>(h: &Histogram<T>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: h.len(),
        mean_ms: h.mean() / 1000.0,
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

/// The percentiles of the spectrum plot: dense where tails live.
const SPECTRUM: [f64; 26] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 96.0, 97.0, 98.0, 99.0, 99.5,
    99.75, 99.9, 99.95, 99.99, 99.995, 99.999, 99.9999,
];

struct Operation {
    name: &'static str,
    requests: u64,
    errors: u64,
    latency: Histogram<u64>,
}

#[derive(Default)]
struct Second {
    requested: u64,
    completed: u64,
    errors: u64,
    latency: Option<Histogram<u32>>,
}

struct State {
    requested: u64,
    completed: u64,
    errors: u64,
    /// The latest instant seen, from the start: a flood summarised later still spans only its load.
    last_seen: Duration,
    latency: Histogram<u64>,
    operations: Vec<Operation>,
    errors_by_kind: Vec<(String, u64)>,
    seconds: Vec<Second>,
    latencies: BTreeMap<String, Histogram<u64>>,
    series: BTreeMap<String, Vec<(f64, f64)>>,
    figures: BTreeMap<String, Figure>,
}

impl State {
    fn second(&mut self, offset: Duration) -> &mut Second {
        let index = usize::try_from(offset.as_secs()).unwrap_or(usize::MAX).min(MAX_SECONDS);
        if self.seconds.len() <= index {
            self.seconds.resize_with(index + 1, Second::default);
        }
        &mut self.seconds[index]
    }
}

struct Shared {
    started: Instant,
    state: Mutex<State>,
}

/// Shared by every in-flight request (a cheap `Clone`: one `Arc`).
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Shared>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose time zero is now.
    pub fn new() -> Self {
        let state = State {
            requested: 0,
            completed: 0,
            errors: 0,
            last_seen: Duration::ZERO,
            latency: latency_histogram(),
            operations: Vec::new(),
            errors_by_kind: Vec::new(),
            seconds: Vec::with_capacity(3600),
            latencies: BTreeMap::new(),
            series: BTreeMap::new(),
            figures: BTreeMap::new(),
        };
        Self { shared: Arc::new(Shared { started: Instant::now(), state: Mutex::new(state) }) }
    }

    /// Time zero.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    /// A panic elsewhere while holding the lock leaves plain counters behind: still worth reporting.
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.shared.started)
    }

    /// An arrival became due (open model) or a request was sent (closed): counts the requested rate
    /// per second of `intended`.
    pub fn requested(&self, intended: Instant) {
        let offset = self.offset(intended);
        let mut state = self.state();
        state.requested += 1;
        state.last_seen = state.last_seen.max(offset);
        state.second(offset).requested += 1;
    }

    /// Latency = finished − intended (coordinated-omission corrected): into the overall HDR
    /// histogram, the operation's own histogram and the per-second bucket of `finished`.
    pub fn record(&self, operation: &'static str, intended: Instant, finished: Instant, outcome: Outcome) {
        let us = micros(finished.saturating_duration_since(intended));
        let offset = self.offset(finished);
        let failed = matches!(outcome, Outcome::Error(_));
        let mut guard = self.state();
        let state = &mut *guard;
        state.completed += 1;
        state.last_seen = state.last_seen.max(offset);
        state.latency.saturating_record(us);
        let index = match state.operations.iter().position(|o| o.name == operation) {
            Some(index) => index,
            None => {
                state.operations.push(Operation {
                    name: operation,
                    requests: 0,
                    errors: 0,
                    latency: latency_histogram(),
                });
                state.operations.len() - 1
            }
        };
        let op = &mut state.operations[index];
        op.requests += 1;
        op.latency.saturating_record(us);
        if let Outcome::Error(kind) = outcome {
            op.errors += 1;
            state.errors += 1;
            match state.errors_by_kind.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, count)) => *count += 1,
                None => state.errors_by_kind.push((kind, 1)),
            }
        }
        let second = state.second(offset);
        second.completed += 1;
        if failed {
            second.errors += 1;
        }
        // A growing histogram must `record` (saturating would clamp to its current top instead of
        // growing); `us` is already at most an hour, so this cannot fail.
        let _ = second.latency.get_or_insert_with(second_histogram).record(us);
    }

    /// A point of a scenario's own time series at now (e.g. "projection_lag_events").
    pub fn observe(&self, series: &str, value: f64) {
        let t = self.offset(Instant::now());
        let mut state = self.state();
        state.last_seen = state.last_seen.max(t);
        let point = (t.as_secs_f64(), value);
        match state.series.get_mut(series) {
            Some(points) => points.push(point),
            None => {
                state.series.insert(series.to_owned(), vec![point]);
            }
        }
    }

    /// A sample of a scenario's own latency distribution (e.g. "activation").
    pub fn observe_latency(&self, name: &str, latency: Duration) {
        let us = micros(latency);
        let mut state = self.state();
        match state.latencies.get_mut(name) {
            Some(h) => h.saturating_record(us),
            None => {
                let mut h = latency_histogram();
                h.saturating_record(us);
                state.latencies.insert(name.to_owned(), h);
            }
        }
    }

    /// A scenario's own single figure (e.g. "lag_drain_seconds", unit "s"); the last one given wins.
    pub fn figure(&self, name: &str, value: f64, unit: &str) {
        self.state().figures.insert(name.to_owned(), Figure { value, unit: unit.to_owned() });
    }

    /// The counts so far, for the progress bar.
    pub fn live(&self) -> Live {
        let elapsed = self.shared.started.elapsed();
        let state = self.state();
        Live {
            elapsed,
            requested: state.requested,
            completed: state.completed,
            errors: state.errors,
            p99_ms: if state.latency.is_empty() { 0.0 } else { ms(state.latency.value_at_quantile(0.99)) },
        }
    }

    /// Everything measured so far, summarised. `requested_rate` = the schedule's mean requested rate
    /// (None for a closed model). The duration runs from the start to the latest instant recorded (a
    /// request's intended or finish time, or a series point), so summarising after the verify step
    /// does not dilute the rates; with nothing recorded, to now.
    pub fn finish(&self, requested_rate: Option<f64>) -> Measurements {
        let now = self.shared.started.elapsed();
        let state = self.state();
        let recorded_any = state.requested + state.completed > 0 || !state.series.is_empty();
        let duration = if recorded_any { state.last_seen } else { now };
        let duration_s = duration.as_secs_f64();
        let achieved_rate = if duration_s > 0.0 { state.completed as f64 / duration_s } else { 0.0 };
        let operations = state
            .operations
            .iter()
            .map(|o| {
                let summary = OperationSummary { requests: o.requests, errors: o.errors, latency: summary(&o.latency) };
                (o.name.to_owned(), summary)
            })
            .collect();
        let seconds = state
            .seconds
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let latency = s.latency.as_ref().map(summary).unwrap_or_default();
                SecondBucket {
                    t_s: index as f64,
                    requested: s.requested,
                    completed: s.completed,
                    errors: s.errors,
                    p50_ms: latency.p50_ms,
                    p90_ms: latency.p90_ms,
                    p99_ms: latency.p99_ms,
                    max_ms: latency.max_ms,
                }
            })
            .collect();
        // Only the percentiles the sample can tell apart: 99.99 needs 10 000 requests.
        let count = state.latency.len() as f64;
        let spectrum = SPECTRUM
            .iter()
            .filter(|&&p| count > 0.0 && (p == 0.0 || (1.0 - p / 100.0) * count >= 1.0))
            .map(|&p| (p, ms(state.latency.value_at_quantile(p / 100.0))))
            .collect();
        Measurements {
            duration_s,
            requests: state.completed,
            errors: state.errors,
            requested_rate,
            achieved_rate,
            latency: summary(&state.latency),
            operations,
            errors_by_kind: state.errors_by_kind.iter().cloned().collect(),
            seconds,
            spectrum,
            latencies: state.latencies.iter().map(|(k, h)| (k.clone(), summary(h))).collect(),
            series: state.series.clone(),
            figures: state.figures.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(recorder: &Recorder, ms: u64) -> Instant {
        recorder.started() + Duration::from_millis(ms)
    }

    #[test]
    fn latency_counts_from_the_intended_time() {
        let recorder = Recorder::new();
        // Due at 0, sent late (the sender stalled) and answered at 50 ms: 50 ms, not the 1 ms round trip.
        recorder.requested(at(&recorder, 0));
        recorder.record("place_order", at(&recorder, 0), at(&recorder, 50), Outcome::Ok);
        let m = recorder.finish(Some(1.0));
        assert_eq!(m.requests, 1);
        assert!((m.latency.max_ms - 50.0).abs() < 0.1, "{:?}", m.latency);
        assert!((m.operations["place_order"].latency.p50_ms - 50.0).abs() < 0.1);
    }

    #[test]
    fn seconds_operations_and_errors_are_counted_where_they_belong() {
        let recorder = Recorder::new();
        for i in 0..100u64 {
            let intended = at(&recorder, i * 20); // 50/s over 2 s
            recorder.requested(intended);
            let outcome = if i % 10 == 0 { Outcome::Error("503 unavailable".into()) } else { Outcome::Ok };
            let op = if i % 2 == 0 { "place_order" } else { "pay" };
            recorder.record(op, intended, intended + Duration::from_millis(5), outcome);
        }
        recorder.record("pay", at(&recorder, 2500), at(&recorder, 3500), Outcome::Error("timeout".into()));
        let m = recorder.finish(Some(50.0));
        assert_eq!(m.requests, 101);
        assert_eq!(m.errors, 11);
        assert_eq!(m.errors_by_kind["503 unavailable"], 10);
        assert_eq!(m.errors_by_kind["timeout"], 1);
        assert_eq!(m.operations["place_order"].requests, 50);
        assert_eq!(m.operations["place_order"].errors, 10);
        assert_eq!(m.operations["pay"].requests, 51);
        assert_eq!(m.seconds.len(), 4);
        assert_eq!(m.seconds[0].requested, 50);
        assert_eq!(m.seconds[1].requested, 50);
        assert_eq!(m.seconds[0].completed + m.seconds[1].completed + m.seconds[2].completed, 100);
        // The timeout finished in second 3, so it is counted there, with its whole second of latency.
        assert_eq!(m.seconds[3].completed, 1);
        assert_eq!(m.seconds[3].errors, 1);
        assert!((m.seconds[3].max_ms - 1000.0).abs() < 10.0, "{:?}", m.seconds[3]);
        assert!((m.duration_s - 3.5).abs() < 1e-6, "the span ends at the last answer: {}", m.duration_s);
        assert!((m.achieved_rate - 101.0 / m.duration_s).abs() < 1e-9);
        assert_eq!(m.requested_rate, Some(50.0));
        let percentiles: Vec<f64> = m.spectrum.iter().map(|(p, _)| *p).collect();
        assert!(percentiles.contains(&99.0) && !percentiles.contains(&99.9), "101 requests: {percentiles:?}");
        assert!(m.spectrum.windows(2).all(|w| w[0].1 <= w[1].1), "the spectrum rises");
    }

    #[test]
    fn latencies_beyond_an_hour_saturate() {
        let recorder = Recorder::new();
        recorder.record("slow", at(&recorder, 0), at(&recorder, 2 * 3_600_000), Outcome::Ok);
        let m = recorder.finish(None);
        assert!(m.latency.max_ms >= 3_600_000.0 * 0.999, "{:?}", m.latency);
        assert_eq!(m.requested_rate, None);
    }

    #[test]
    fn the_scenario_s_own_measures_are_kept() {
        let recorder = Recorder::new();
        recorder.observe("projection_lag_events", 10.0);
        recorder.observe("projection_lag_events", 4.0);
        recorder.observe_latency("activation", Duration::from_millis(3));
        recorder.observe_latency("activation", Duration::from_millis(7));
        recorder.figure("lag_drain_seconds", 1.5, "s");
        let m = recorder.finish(None);
        let values: Vec<f64> = m.series["projection_lag_events"].iter().map(|p| p.1).collect();
        assert_eq!(values, vec![10.0, 4.0]);
        assert_eq!(m.latencies["activation"].count, 2);
        assert!((m.latencies["activation"].max_ms - 7.0).abs() < 0.01);
        assert_eq!(m.figures["lag_drain_seconds"], Figure { value: 1.5, unit: "s".into() });
        let live = recorder.live();
        assert_eq!((live.requested, live.completed, live.errors), (0, 0, 0));
    }

    #[test]
    fn recorders_share_one_state_across_threads() {
        let recorder = Recorder::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = recorder.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let now = Instant::now();
                        r.requested(now);
                        r.record("op", now, now, Outcome::Ok);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let live = recorder.live();
        assert_eq!((live.requested, live.completed, live.errors), (4000, 4000, 0));
    }
}
