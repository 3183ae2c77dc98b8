//! One flood from start to report: drive the prepared plan (and what runs beside it), sample the
//! projections' lag, finish the scenario, verify, and judge the thresholds.

use std::sync::Arc;
use std::time::Duration;

use events::Journal;
use projections::Rebuildable;
use tokio::sync::watch;

use super::measure::Recorder;
use super::report::FloodReport;
use super::scenarios::{saga_drained, sample_lag, Context, FloodError, Scenario};
use super::thresholds::{evaluate, Threshold};
use super::{drive, Flow, Load, Plan};
use crate::verify::{verify, AckLedger, Check, VerifySettings};

/// How a flood runs, beyond its scenario and target.
#[derive(Clone, Debug)]
pub struct FloodSettings {
    pub load: Load,
    /// How long one operation may take before it counts as a timeout.
    pub timeout: Duration,
    /// Requests in flight at most (the open model's memory bound).
    pub max_in_flight: usize,
    pub seed: u64,
    pub thresholds: Vec<Threshold>,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
    /// Run the `verify` step after the flood (`--no-verify` turns it off, and the report says so).
    pub verify: bool,
    /// The flags as given, for the report.
    pub flags: serde_json::Value,
}

/// Where `verify` reads after the flood; `None` skips it (the report says so, and fails).
pub struct Verification {
    pub journal: Arc<dyn Journal>,
    pub read_models: Vec<Arc<dyn Rebuildable>>,
}

/// Drives `plan` into `recorder` (made just before: its start is the flood's time zero; a caller
/// keeps a clone for live figures), then finishes, verifies and reports. The report's `passed` is false when a
/// threshold is breached or an invariant (the scenario's or `verify`'s) failed.
pub async fn run(
    scenario: &dyn Scenario,
    plan: Arc<dyn Plan>,
    context: &Context,
    settings: &FloodSettings,
    verification: Option<&Verification>,
    acks: Arc<AckLedger>,
    recorder: Recorder,
) -> Result<FloodReport, FloodError> {
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let head = || async {
        match &context.journal {
            Some(j) => j.head_position().await.ok(),
            None => context.target.projection_lag().await.ok().and_then(|l| l.first().map(|l| l.head)),
        }
    };
    let head_before = head().await;
    let activations_before = context.target.activation_seconds().await.ok();

    let flow = Flow {
        target: context.target.clone(),
        recorder: recorder.clone(),
        acks: acks.clone(),
        timeout: settings.timeout,
    };
    // The lag sampler runs from the first arrival to the end of the finish, so that the plots show
    // the lag building up and draining; the progress bar only while arrivals come.
    let (stop_sampling, sampling_stopped) = watch::channel(false);
    let sampler = tokio::spawn(sample_lag(
        context.target.clone(),
        context.journal.clone(),
        recorder.clone(),
        Duration::from_millis(250),
        sampling_stopped,
    ));
    let (stop, stopped) = watch::channel(false);
    let progress = settings
        .progress
        .then(|| super::progress::spawn_progress(recorder.clone(), settings.load.duration(), stopped.clone()));

    let markers =
        tokio::spawn(mark_stress(scenario.name().to_owned(), settings.load.clone(), recorder.clone(), stopped.clone()));
    let arrivals = drive(&flow, plan, &settings.load, settings.max_in_flight, settings.seed);
    let (sent, beside) = futures::join!(arrivals, scenario.beside(context, &flow));
    // The arrivals' own time: what ran beside them (the loyalty batch) may end later.
    let drove = sent.ended.duration_since(recorder.started());
    let resent = flow.target.resent_requests();
    if resent > 0 {
        // Not failures (each went through on its second connection), but a report says they happened.
        recorder.figure("requests_resent_on_a_new_connection", resent as f64, "requests");
    }
    let head_after = head().await;
    if let (Some(before), Some(after)) = (head_before, head_after) {
        let committed = after.saturating_sub(before) as f64;
        recorder.figure("events_committed_during_arrivals", committed, "events");
        recorder.figure(
            "events_committed_per_second_during_arrivals",
            committed / drove.as_secs_f64().max(1e-9),
            "events/s",
        );
    }
    let _ = stop.send(true);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let _ = markers.await;

    // What the arrivals set off is committed once the saga has reacted to all of it: the rate of
    // committed events counts until then, not only while arrivals came.
    if let Some(journal) = &context.journal {
        match saga_drained(journal.as_ref(), context.settle).await {
            Some(at) => {
                let took = at.duration_since(recorder.started());
                recorder.figure("saga_drain_seconds", (took.saturating_sub(drove)).as_secs_f64(), "s");
                if let (Some(before), Ok(after)) = (head_before, journal.head_position().await) {
                    let committed = after.saturating_sub(before) as f64;
                    recorder.figure("events_committed_until_settled", committed, "events");
                    recorder.figure(
                        "events_committed_per_second",
                        committed / took.as_secs_f64().max(1e-9),
                        "events/s",
                    );
                }
            }
            None => tracing::warn!("the order saga did not catch up within the settle time"),
        }
    }
    let mut invariants = beside?;
    invariants.extend(scenario.finish(context, &flow).await?);
    let _ = stop_sampling.send(true);
    let _ = sampler.await;
    if let (Some(before), Some(after)) = (head_before, head().await) {
        recorder.figure("events_committed", after.saturating_sub(before) as f64, "events");
    }
    if let (Some(before), Ok(after)) = (activations_before, context.target.activation_seconds().await) {
        let count = after.count.saturating_sub(before.count);
        if count > 0 {
            recorder.figure("activations", count as f64, "actors");
            recorder.figure("activation_mean_ms", (after.sum - before.sum) / count as f64 * 1e3, "ms");
        }
    }

    acks.flush().map_err(|e| FloodError::Unsupported(format!("cannot write the ack ledger: {e}")))?;
    match verification.filter(|_| settings.verify) {
        None if !settings.verify => {}
        Some(v) => {
            let verified = verify(
                v.journal.as_ref(),
                &v.read_models,
                &acks.entries(),
                &VerifySettings { settle: context.settle, ..VerifySettings::default() },
            )
            .await
            .map_err(|e| FloodError::Unsupported(format!("verify could not run: {}", events::ErrorChain(&e))))?;
            invariants.extend(verified);
        }
        None => invariants.push(Check {
            name: "verify".into(),
            passed: false,
            detail: "not run: the journal is not readable from here (pass --journal/--data-dir, or --no-verify)".into(),
        }),
    }

    let mut measurements = recorder.finish(settings.load.requested_rate());
    // The rate is of the arrivals' time: the finish and verify (which the lag series run through)
    // are not part of it.
    // Arrivals per second against the requested rate of arrivals (an arrival may be several
    // requests, a checkout two; the query storm's readers are not arrivals).
    measurements.duration_s = drove.as_secs_f64();
    measurements.achieved_rate = sent.arrivals as f64 / drove.as_secs_f64().max(1e-9);
    let thresholds = evaluate(&settings.thresholds, &measurements);
    let passed = thresholds.iter().all(|t| t.passed) && invariants.iter().all(|c| c.passed);
    Ok(FloodReport {
        scenario: scenario.name().to_owned(),
        story: scenario.story().to_owned(),
        driver: context.target.driver().to_owned(),
        targets: context.target.describe(),
        started_at,
        settings: settings.flags.clone(),
        measurements,
        thresholds,
        invariants,
        passed,
    })
}

/// The dashboards' stress markers while the arrivals come: `stress_scenario_running` 1, the rate the
/// schedule asks for now, and the arrivals sent; back to 0 when they end (or the flood is dropped).
async fn mark_stress(scenario: String, load: super::Load, recorder: Recorder, mut stopped: watch::Receiver<bool>) {
    use events::metric;
    let labels = [("scenario", scenario)];
    let (running, offered, arrivals) = (
        metric::STRESS_RUNNING.gauge(&labels),
        metric::STRESS_OFFERED_RATE.gauge(&labels),
        metric::STRESS_ARRIVALS.counter(&labels),
    );
    struct Lowered(metrics::Gauge, metrics::Gauge);
    impl Drop for Lowered {
        fn drop(&mut self) {
            self.0.set(0.0);
            self.1.set(0.0);
        }
    }
    let _lowered = Lowered(running.clone(), offered.clone());
    running.set(1.0);
    let mut counted = 0;
    loop {
        let live = recorder.live();
        arrivals.increment(live.requested.saturating_sub(counted));
        counted = counted.max(live.requested);
        offered.set(match &load {
            super::Load::Open(a) => a.rate_at(live.elapsed),
            // A closed model asks for as much as its clients can send: the rate achieved so far.
            super::Load::Closed { .. } => live.completed as f64 / live.elapsed.as_secs_f64().max(1e-3),
        });
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stopped.changed() => break,
        }
        if *stopped.borrow() {
            break;
        }
    }
    let live = recorder.live();
    arrivals.increment(live.requested.saturating_sub(counted));
}
