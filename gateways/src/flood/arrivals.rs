//! The open model's schedule: when each request is *due*, whatever the system answers. A flood that
//! waited for answers before sending more (a closed model) would slow down with the system under test
//! and hide its queueing; here the arrivals keep coming at the requested rate, and the latency counts
//! from the intended send time (see `measure`).
//!
//! Stages follow k6's ramping arrival rate: each one ramps the rate linearly from where the previous
//! one ended (the first from the start rate) to its own rate over its duration. A stage to rate 0
//! ramps down; a stage that is at rate 0 from end to end sends nothing but still takes its time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One stage of an open-model load: the rate ramps linearly from the previous stage's end rate
/// (the first stage from `Arrivals::new`'s start rate) to `rate` over `duration` (k6's ramping
/// arrival rate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub duration: Duration,
    /// Requests per second at the end of the stage.
    pub rate: f64,
}

/// Parses a duration: a number with a unit (`us`, `ms`, `s`, `m`, `h`), or several run together
/// (`1m30s`). `"500ms"`, `"10s"`, `"2m"`, `"1h"`, `"1.5s"`. The error names the bad part.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration (expected e.g. 500ms, 10s, 2m, 1h)".to_owned());
    }
    let mut seconds = 0.0_f64;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(format!("duration {trimmed:?}: expected a number at {rest:?}"));
        }
        let value: f64 = number.parse().map_err(|_| format!("duration {trimmed:?}: {number:?} is not a number"))?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("duration {trimmed:?}: {number:?} needs a unit (us, ms, s, m or h)")),
            other => return Err(format!("duration {trimmed:?}: unknown unit {other:?} (use us, ms, s, m or h)")),
        };
        seconds += value * scale;
        rest = next;
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("duration {trimmed:?}: {e}"))
}

/// Parses a rate in requests per second: a non-negative number, optionally followed by `/s`.
fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches("/s");
    match number.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        Ok(_) => Err(format!("rate {text:?} must be a finite number of requests per second, 0 or more")),
        Err(_) => Err(format!("rate {text:?} is not a number of requests per second")),
    }
}

/// Parses stages written `DURATION:RATE,DURATION:RATE,...`: `"10s:2000,30s:20000,10s:0"` ramps to
/// 2000/s over 10 s, to 20000/s over the next 30 s, then down to nothing over the last 10 s. The error
/// names the stage that does not parse.
pub fn parse_stages(text: &str) -> Result<Vec<Stage>, String> {
    if text.trim().is_empty() {
        return Err("no stages (expected e.g. 10s:2000,30s:20000,10s:0)".to_owned());
    }
    text.split(',')
        .enumerate()
        .map(|(index, part)| {
            let number = index + 1;
            let (duration, rate) = part
                .split_once(':')
                .ok_or_else(|| format!("stage {number} {:?}: expected DURATION:RATE, e.g. 10s:2000", part.trim()))?;
            let duration = parse_duration(duration).map_err(|e| format!("stage {number} {:?}: {e}", part.trim()))?;
            let rate = parse_rate(rate).map_err(|e| format!("stage {number} {:?}: {e}", part.trim()))?;
            Ok(Stage { duration, rate })
        })
        .collect()
}

/// Intended send offsets (from the start) of an open model; an `Iterator<Item = Duration>` that ends
/// at `total_duration`. The n-th arrival (from 0) is due when the integral of the rate reaches n, so
/// the count of arrivals is the integral rounded up, and the first one is due at once if the rate
/// starts above 0. The iterator can end before `total_duration` when the last stages send nothing:
/// a driver that must take the whole schedule's time waits until `total_duration` itself.
#[derive(Clone, Debug)]
pub struct Arrivals {
    start_rate: f64,
    stages: Vec<Stage>,
    /// Per stage: its start offset in seconds and the arrivals due before it (the integral so far).
    starts: Vec<(f64, f64)>,
    total_seconds: f64,
    total_requests: f64,
    /// The next arrival's number and the stage it falls in (arrivals only move forward).
    next: u64,
    stage: usize,
}

impl Arrivals {
    /// A schedule that starts at `start_rate` and goes through `stages` in order. Negative or
    /// non-finite rates count as 0 (the parsers never produce them).
    pub fn new(start_rate: f64, stages: Vec<Stage>) -> Self {
        let clean = |rate: f64| if rate.is_finite() && rate > 0.0 { rate } else { 0.0 };
        let start_rate = clean(start_rate);
        let stages: Vec<Stage> =
            stages.into_iter().map(|s| Stage { duration: s.duration, rate: clean(s.rate) }).collect();
        let mut starts = Vec::with_capacity(stages.len());
        let (mut at, mut due, mut from) = (0.0_f64, 0.0_f64, start_rate);
        for stage in &stages {
            starts.push((at, due));
            let length = stage.duration.as_secs_f64();
            due += (from + stage.rate) / 2.0 * length;
            at += length;
            from = stage.rate;
        }
        Self { start_rate, stages, starts, total_seconds: at, total_requests: due, next: 0, stage: 0 }
    }

    /// A steady `rate` for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Self {
        Self::new(rate, vec![Stage { duration, rate }])
    }

    /// The whole schedule's length, including stages that send nothing.
    pub fn total_duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The rate a stage starts from.
    fn stage_from(&self, index: usize) -> f64 {
        if index == 0 {
            self.start_rate
        } else {
            self.stages[index - 1].rate
        }
    }

    /// The requested rate at this offset (0 after the end).
    pub fn rate_at(&self, offset: Duration) -> f64 {
        let t = offset.as_secs_f64();
        for (index, stage) in self.stages.iter().enumerate() {
            let (start, _) = self.starts[index];
            let length = stage.duration.as_secs_f64();
            if t < start + length {
                let from = self.stage_from(index);
                let fraction = if length > 0.0 { (t - start) / length } else { 1.0 };
                return from + (stage.rate - from) * fraction;
            }
        }
        0.0
    }

    /// The integral of the rate over the schedule: how many requests it asks for.
    pub fn expected_requests(&self) -> f64 {
        self.total_requests
    }

    /// The same schedule with every rate multiplied by `factor` (from its beginning).
    pub fn scaled(self, factor: f64) -> Self {
        let stages = self.stages.into_iter().map(|s| Stage { duration: s.duration, rate: s.rate * factor }).collect();
        Self::new(self.start_rate * factor, stages)
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let target = self.next as f64;
        if target >= self.total_requests {
            return None;
        }
        // Skip the stages whose arrivals are all before this one (including those at rate 0).
        while self.stage < self.stages.len() {
            let end_due = self.starts.get(self.stage + 1).map_or(self.total_requests, |&(_, due)| due);
            if target < end_due {
                break;
            }
            self.stage += 1;
        }
        let stage = self.stages.get(self.stage)?;
        let (start, due_before) = self.starts[self.stage];
        let length = stage.duration.as_secs_f64();
        let from = self.stage_from(self.stage);
        // Within the stage, due(s) = from·s + a·s² with a = (to − from) / 2·length; solve due(s) = x in
        // the form that stays exact when a is 0 or negative.
        let x = target - due_before;
        let a = if length > 0.0 { (stage.rate - from) / (2.0 * length) } else { 0.0 };
        let root = (from * from + 4.0 * a * x).max(0.0).sqrt();
        let denominator = from + root;
        let within = if denominator > 0.0 { (2.0 * x / denominator).min(length) } else { 0.0 };
        self.next += 1;
        Some(Duration::from_secs_f64((start + within).clamp(0.0, self.total_seconds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_constant_rate_sends_its_integral() {
        let arrivals = Arrivals::constant(1000.0, secs(3.0));
        assert!((arrivals.expected_requests() - 3000.0).abs() < 1e-9);
        let offsets: Vec<Duration> = arrivals.collect();
        assert!((offsets.len() as f64 - 3000.0).abs() <= 1.0, "{}", offsets.len());
        assert_eq!(offsets[0], Duration::ZERO);
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "offsets go forward");
        assert!(*offsets.last().unwrap() < secs(3.0));
        // Evenly spaced: the 1000th arrival is due at 1 s.
        assert!((offsets[1000].as_secs_f64() - 1.0).abs() < 1e-6, "{:?}", offsets[1000]);
    }

    #[test]
    fn a_ramp_sends_its_integral_and_speeds_up() {
        // 0 → 2000/s over 10 s, hold 10 s, down to 0 over 5 s: 10000 + 20000 + 5000.
        let stages = parse_stages("10s:2000,10s:2000,5s:0").unwrap();
        let arrivals = Arrivals::new(0.0, stages);
        assert!((arrivals.expected_requests() - 35_000.0).abs() < 1e-6);
        assert_eq!(arrivals.total_duration(), secs(25.0));
        let offsets: Vec<Duration> = arrivals.clone().collect();
        assert!((offsets.len() as f64 - arrivals.expected_requests()).abs() <= 1.0, "{}", offsets.len());
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
        // The ramp's first half holds a quarter of its arrivals.
        let first_half = offsets.iter().filter(|o| **o < secs(5.0)).count() as f64;
        assert!((first_half - 2500.0).abs() <= 1.0, "{first_half}");
        // The ramp down's last second holds 1/25 of its 5000.
        let last = offsets.iter().filter(|o| **o >= secs(24.0)).count() as f64;
        assert!((last - 200.0).abs() <= 1.0, "{last}");
        assert!((arrivals.rate_at(secs(5.0)) - 1000.0).abs() < 1e-9);
        assert!((arrivals.rate_at(secs(22.5)) - 1000.0).abs() < 1e-9);
        assert_eq!(arrivals.rate_at(secs(30.0)), 0.0);
    }

    #[test]
    fn a_stage_at_rate_zero_sends_nothing_but_takes_its_time() {
        // 100/s for 2 s, nothing for 3 s (a drop to 0 at once, then a pause), 100/s for 2 s.
        let stages = vec![
            Stage { duration: secs(2.0), rate: 100.0 },
            Stage { duration: Duration::ZERO, rate: 0.0 },
            Stage { duration: secs(3.0), rate: 0.0 },
            Stage { duration: Duration::ZERO, rate: 100.0 },
            Stage { duration: secs(2.0), rate: 100.0 },
        ];
        let arrivals = Arrivals::new(100.0, stages);
        assert_eq!(arrivals.total_duration(), secs(7.0));
        let offsets: Vec<Duration> = arrivals.collect();
        assert!((offsets.len() as f64 - 400.0).abs() <= 1.0, "{}", offsets.len());
        assert!(offsets.iter().all(|o| *o < secs(2.0) || *o >= secs(5.0)), "nothing due in the pause");
        assert!(offsets.iter().any(|o| *o >= secs(5.0)), "the schedule resumes after the pause");
    }

    #[test]
    fn scaling_multiplies_every_rate() {
        let arrivals = Arrivals::new(10.0, parse_stages("10s:100").unwrap()).scaled(0.5);
        assert!((arrivals.expected_requests() - 275.0).abs() < 1e-9);
        assert!((arrivals.rate_at(Duration::ZERO) - 5.0).abs() < 1e-9);
        assert!((arrivals.count() as f64 - 275.0).abs() <= 1.0);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), secs(0.5));
        assert_eq!(parse_duration("10s").unwrap(), secs(10.0));
        assert_eq!(parse_duration("2m").unwrap(), secs(120.0));
        assert_eq!(parse_duration("1h").unwrap(), secs(3600.0));
        assert_eq!(parse_duration("1.5s").unwrap(), secs(1.5));
        assert_eq!(parse_duration("1m30s").unwrap(), secs(90.0));
    }

    #[test]
    fn duration_errors_name_the_bad_part() {
        let e = parse_duration("10x").unwrap_err();
        assert!(e.contains("\"x\""), "{e}");
        let e = parse_duration("10").unwrap_err();
        assert!(e.contains("needs a unit"), "{e}");
        let e = parse_duration("fast").unwrap_err();
        assert!(e.contains("\"fast\""), "{e}");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1..5s").unwrap_err().contains("\"1..5\""));
    }

    #[test]
    fn stages_parse_and_errors_name_the_stage() {
        assert_eq!(
            parse_stages("10s:2000, 30s:20000,10s:0").unwrap(),
            vec![
                Stage { duration: secs(10.0), rate: 2000.0 },
                Stage { duration: secs(30.0), rate: 20000.0 },
                Stage { duration: secs(10.0), rate: 0.0 },
            ]
        );
        let e = parse_stages("10s:2000,30s-20000").unwrap_err();
        assert!(e.contains("stage 2") && e.contains("30s-20000"), "{e}");
        let e = parse_stages("10s:2000,30q:5").unwrap_err();
        assert!(e.contains("stage 2") && e.contains("\"q\""), "{e}");
        let e = parse_stages("10s:lots").unwrap_err();
        assert!(e.contains("stage 1") && e.contains("lots"), "{e}");
        let e = parse_stages("10s:-5").unwrap_err();
        assert!(e.contains("stage 1") && e.contains("-5"), "{e}");
        assert!(parse_stages("").is_err());
    }
}
