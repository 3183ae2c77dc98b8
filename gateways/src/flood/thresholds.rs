//! Pass/fail criteria on a flood's measurements, written the way people say them: `p99<20ms`,
//! `errors<0.1%`, `rate>=0.95`. A threshold that cannot be evaluated (no requests, an operation that
//! was never measured, a requested rate in a closed model) fails: a criterion never passes unchecked.
//!
//! Grammar: `METRIC[{NAME}] OP VALUE` with OP one of `<`, `<=`, `>`, `>=`, and
//! - `pN` (`p50`, `p99`, `p99.9`), `max`, `mean`: latency, VALUE a duration (`20ms`, `1s`, `250us`);
//! - `errors`: VALUE with `%` is a share of the requests, without it a count;
//! - `rate`: achieved / requested rate (open model only), VALUE a ratio (`0.95`) or a percentage (`95%`);
//! - `throughput`: finished requests per second.
//!
//! `{NAME}` narrows a latency, `errors` or `throughput` threshold to one operation (`p99{place_order}<20ms`);
//! for latencies, a name that is not an operation is looked up among the scenario's own
//! distributions (`p99{activation}<1s`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::arrivals::parse_duration;
use super::measure::{LatencySummary, Measurements};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Comparison {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Self::Less => actual < limit,
            Self::LessOrEqual => actual <= limit,
            Self::Greater => actual > limit,
            Self::GreaterOrEqual => actual >= limit,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Metric {
    /// A percentile (0..=100) of the latency, in ms.
    Percentile(f64),
    Max,
    Mean,
    /// The share of requests that failed, 0..=1.
    ErrorShare,
    ErrorCount,
    /// Achieved / requested rate.
    Rate,
    /// Requests per second.
    Throughput,
}

/// One pass/fail criterion, parsed from text such as `"p99<20ms"` or `"errors{pay}<0.1%"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    text: String,
    metric: Metric,
    operation: Option<String>,
    comparison: Comparison,
    /// In the metric's unit: ms for latencies, a share 0..=1 for error shares and rates.
    limit: f64,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_number(text: &str, whole: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("threshold {whole:?}: {:?} is not a number, 0 or more", text.trim())),
    }
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let whole = text.trim();
        let operator_at = whole.find(['<', '>']).ok_or_else(|| {
            format!("threshold {whole:?}: no comparison (expected e.g. p99<20ms, errors<0.1%, rate>=0.95)")
        })?;
        let (left, right) = whole.split_at(operator_at);
        let (comparison, value) = if let Some(v) = right.strip_prefix("<=") {
            (Comparison::LessOrEqual, v)
        } else if let Some(v) = right.strip_prefix(">=") {
            (Comparison::GreaterOrEqual, v)
        } else if let Some(v) = right.strip_prefix('<') {
            (Comparison::Less, v)
        } else {
            (Comparison::Greater, &right[1..])
        };
        let left = left.trim();
        let (name, operation) = match left.split_once('{') {
            Some((name, rest)) => {
                let operation = rest
                    .strip_suffix('}')
                    .filter(|o| !o.trim().is_empty())
                    .ok_or_else(|| format!("threshold {whole:?}: {left:?} should read METRIC{{OPERATION}}"))?;
                (name.trim(), Some(operation.trim().to_owned()))
            }
            None => (left, None),
        };
        let value = value.trim();
        let latency = |value: &str| -> Result<f64, String> {
            parse_duration(value)
                .map(|d| d.as_secs_f64() * 1000.0)
                .map_err(|e| format!("threshold {whole:?}: a latency needs a duration: {e}"))
        };
        let (metric, limit) = match name {
            "max" => (Metric::Max, latency(value)?),
            "mean" | "avg" => (Metric::Mean, latency(value)?),
            "errors" => match value.strip_suffix('%') {
                Some(percent) => (Metric::ErrorShare, parse_number(percent, whole)? / 100.0),
                None => (Metric::ErrorCount, parse_number(value, whole)?),
            },
            "rate" => match value.strip_suffix('%') {
                Some(percent) => (Metric::Rate, parse_number(percent, whole)? / 100.0),
                None => (Metric::Rate, parse_number(value, whole)?),
            },
            "throughput" => (Metric::Throughput, parse_number(value.trim_end_matches("/s"), whole)?),
            percentile if percentile.starts_with('p') => {
                let p = parse_number(&percentile[1..], whole).ok().filter(|p| *p <= 100.0).ok_or_else(|| {
                    format!("threshold {whole:?}: {percentile:?} is not a percentile (p50, p99, p99.9)")
                })?;
                (Metric::Percentile(p), latency(value)?)
            }
            other => {
                return Err(format!(
                    "threshold {whole:?}: unknown metric {other:?} (use pN, max, mean, errors, rate or throughput)"
                ))
            }
        };
        if metric == Metric::Rate && operation.is_some() {
            return Err(format!("threshold {whole:?}: rate is the whole flood's, it takes no {{OPERATION}}"));
        }
        Ok(Self { text: whole.to_owned(), metric, operation, comparison, limit })
    }
}

/// A threshold, checked: the text as given, what was measured, and whether it held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    pub threshold: String,
    pub actual: String,
    pub passed: bool,
}

/// An HDR percentile of a summary: only the ones the summary keeps.
fn percentile_of(summary: &LatencySummary, p: f64) -> Option<f64> {
    let kept = [
        (50.0, summary.p50_ms),
        (90.0, summary.p90_ms),
        (99.0, summary.p99_ms),
        (99.9, summary.p999_ms),
        (100.0, summary.max_ms),
    ];
    kept.iter().find(|(q, _)| (q - p).abs() < 1e-9).map(|(_, ms)| *ms)
}

/// The spectrum's value at a percentile: exact at its points, the next point up between them (never
/// flattering).
fn percentile_from_spectrum(spectrum: &[(f64, f64)], p: f64) -> Option<f64> {
    spectrum.iter().find(|(q, _)| *q >= p).map(|(_, ms)| *ms)
}

fn evaluate_one(threshold: &Threshold, m: &Measurements) -> Result<(f64, String), String> {
    let operation = threshold.operation.as_deref();
    // The requests, errors and latency the threshold is about: the whole flood's or one operation's.
    let (requests, errors, latency) = match operation {
        None => (m.requests, m.errors, Some(&m.latency)),
        Some(name) => match (m.operations.get(name), m.latencies.get(name)) {
            (Some(op), _) => (op.requests, op.errors, Some(&op.latency)),
            (None, Some(own)) => (own.count, 0, Some(own)),
            (None, None) => return Err(format!("no operation {name:?} was measured")),
        },
    };
    let latency_value = |pick: &dyn Fn(&LatencySummary) -> Option<f64>| -> Result<(f64, String), String> {
        let summary = latency.filter(|s| s.count > 0).ok_or("no latencies measured")?;
        let value = pick(summary).ok_or("this percentile is not measured")?;
        Ok((value, format!("{value:.3} ms")))
    };
    match threshold.metric {
        Metric::Max => latency_value(&|s| Some(s.max_ms)),
        Metric::Mean => latency_value(&|s| Some(s.mean_ms)),
        Metric::Percentile(p) => latency_value(&|s| {
            percentile_of(s, p).or_else(|| {
                // Other percentiles come from the whole flood's spectrum.
                operation.is_none().then(|| percentile_from_spectrum(&m.spectrum, p)).flatten()
            })
        }),
        Metric::ErrorCount => Ok((errors as f64, format!("{errors} errors of {requests} requests"))),
        Metric::ErrorShare => {
            if requests == 0 {
                return Err("no requests measured".to_owned());
            }
            let share = errors as f64 / requests as f64;
            Ok((share, format!("{:.3}% ({errors} of {requests})", share * 100.0)))
        }
        Metric::Rate => {
            let requested = m.requested_rate.filter(|r| *r > 0.0).ok_or("no requested rate (a closed model)")?;
            let ratio = m.achieved_rate / requested;
            Ok((ratio, format!("{ratio:.3} ({:.1}/s of {requested:.1}/s)", m.achieved_rate)))
        }
        Metric::Throughput => {
            let rate = if m.duration_s > 0.0 { requests as f64 / m.duration_s } else { 0.0 };
            Ok((rate, format!("{rate:.1}/s")))
        }
    }
}

/// Checks every threshold against the measurements, in order.
pub fn evaluate(thresholds: &[Threshold], measurements: &Measurements) -> Vec<ThresholdResult> {
    thresholds
        .iter()
        .map(|threshold| match evaluate_one(threshold, measurements) {
            Ok((actual, shown)) => ThresholdResult {
                threshold: threshold.text.clone(),
                actual: shown,
                passed: threshold.comparison.holds(actual, threshold.limit),
            },
            Err(why) => ThresholdResult { threshold: threshold.text.clone(), actual: why, passed: false },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::flood::measure::{Outcome, Recorder};

    /// 1000 requests over 10 s (100/s requested, all achieved): 10 errors, latencies 1..=1000 µs
    /// for `place_order` and a flat 30 ms for `pay`.
    fn measurements() -> Measurements {
        let recorder = Recorder::new();
        let start = recorder.started();
        for i in 0..1000u64 {
            let intended = start + Duration::from_millis(i * 10);
            recorder.requested(intended);
            let (op, latency) = if i % 2 == 0 {
                ("place_order", Duration::from_micros(i + 1))
            } else {
                ("pay", Duration::from_millis(30))
            };
            let outcome = if i % 100 == 1 { Outcome::Error("503 unavailable".into()) } else { Outcome::Ok };
            recorder.record(op, intended, intended + latency, outcome);
        }
        recorder.observe_latency("activation", Duration::from_millis(200));
        let mut m = recorder.finish(Some(100.0));
        // Pin the span so rates are exact whatever the clock did.
        m.duration_s = 10.0;
        m.achieved_rate = 100.0;
        m
    }

    fn check(text: &str, m: &Measurements) -> ThresholdResult {
        let threshold: Threshold = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        evaluate(&[threshold], m).remove(0)
    }

    #[test]
    fn a_met_threshold_passes_and_a_breached_one_fails() {
        let m = measurements();
        assert!(check("p99<40ms", &m).passed);
        let breached = check("p99<20ms", &m);
        assert!(!breached.passed, "{breached:?}");
        assert!(breached.actual.contains("ms"), "{breached:?}");
        assert!(check("p50<=31ms", &m).passed);
        assert!(!check("max<1ms", &m).passed);
        assert!(check("max<1s", &m).passed);
        assert!(check("mean<20ms", &m).passed);
        assert!(check("p99.9<100ms", &m).passed);
        // Percentiles outside the summary come from the spectrum: p95 is a pay's 30 ms.
        assert!(!check("p95<10ms", &m).passed);
        assert!(check("p95<40ms", &m).passed);
        let unmeasured = check("p99.999<1s", &m);
        assert!(!unmeasured.passed, "1000 requests cannot tell p99.999: {unmeasured:?}");
    }

    #[test]
    fn errors_with_a_percent_read_a_share_and_without_a_count() {
        let m = measurements(); // 10 errors of 1000 = 1%
        let share = check("errors<0.1%", &m);
        assert!(!share.passed, "{share:?}");
        assert!(share.actual.contains("1.000%"), "{share:?}");
        assert!(check("errors<2%", &m).passed);
        assert!(check("errors<=10", &m).passed);
        assert!(!check("errors<10", &m).passed);
        assert!(check("errors{place_order}<=0", &m).passed, "every error was a pay");
        assert!(!check("errors{pay}<1%", &m).passed);
    }

    #[test]
    fn rate_and_throughput() {
        let mut m = measurements();
        assert!(check("rate>=0.95", &m).passed);
        assert!(check("rate>=95%", &m).passed);
        assert!(check("throughput>=100", &m).passed);
        assert!(!check("throughput>=1000", &m).passed);
        assert!(check("throughput{pay}>=50", &m).passed);
        m.achieved_rate = 90.0;
        assert!(!check("rate>=0.95", &m).passed);
        m.requested_rate = None;
        let closed = check("rate>=0.5", &m);
        assert!(!closed.passed && closed.actual.contains("closed"), "{closed:?}");
    }

    #[test]
    fn operations_and_the_scenario_s_own_latencies() {
        let m = measurements();
        assert!(check("p99{place_order}<2ms", &m).passed);
        assert!(!check("p99{pay}<2ms", &m).passed);
        assert!(check("p99{activation}<1s", &m).passed);
        assert!(!check("p99{activation}<100ms", &m).passed);
        let missing = check("p99{refund}<1s", &m);
        assert!(!missing.passed && missing.actual.contains("refund"), "{missing:?}");
    }

    #[test]
    fn nothing_measured_fails() {
        let m = Recorder::new().finish(Some(10.0));
        assert!(!check("p99<1s", &m).passed);
        assert!(!check("errors<1%", &m).passed);
    }

    #[test]
    fn parse_errors_name_the_bad_part() {
        let bad = |text: &str| text.parse::<Threshold>().unwrap_err();
        assert!(bad("p99=20ms").contains("no comparison"));
        assert!(bad("p99<20").contains("needs a unit"));
        assert!(bad("p99<20parsecs").contains("\"parsecs\""));
        assert!(bad("latency<20ms").contains("\"latency\""));
        assert!(bad("pxx<20ms").contains("\"pxx\""));
        assert!(bad("p101<20ms").contains("\"p101\""));
        assert!(bad("errors<lots").contains("\"lots\""));
        assert!(bad("rate{pay}>=0.9").contains("rate"));
        assert!(bad("p99{place_order<20ms").contains("METRIC{OPERATION}"));
        assert_eq!("  p99<20ms ".parse::<Threshold>().unwrap().to_string(), "p99<20ms");
    }
}
