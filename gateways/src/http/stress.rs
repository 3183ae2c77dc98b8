//! `POST /admin/stress/{id}` (id: a scenario) starts a flood inside this node, into its own actors
//! and journal, and `GET /admin/stress/{id}` (id: the run) answers its live figures and, once it
//! ended, its report: the seeds' trigger endpoints, on the floods of `crate::flood`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::errors::ApiError;
use super::extractors::{json_body, parse_uuid};
use super::schema::{
    ErrorJson, Internal, PayloadTooLarge, RequestTimeout, Unauthorized, Unavailable, UnsupportedMediaType,
};
use super::ApiState;
use crate::flood::arrivals::Arrivals;
use crate::flood::measure::Recorder;
use crate::flood::report::FloodReport;
use crate::flood::run::{run, FloodSettings, Verification};
use crate::flood::scenarios::{self, Context};
use crate::flood::target::{operation_timeout, ActorTarget, Target};
use crate::flood::Load;
use crate::verify::AckLedger;

/// The longest flood the endpoint starts.
const MAX_SECONDS: u64 = 3_600;
/// Runs kept (the oldest finished ones are forgotten first).
const KEPT_RUNS: usize = 32;

/// The floods this node started, by run id.
#[derive(Default)]
pub struct StressRuns {
    runs: Mutex<HashMap<Uuid, StressRun>>,
}

struct StressRun {
    scenario: &'static str,
    started_us: i64,
    recorder: Recorder,
    state: RunState,
}

enum RunState {
    Running,
    Done(Box<FloodReport>),
    Failed(String),
}

/// The body of `POST /admin/stress/{id}`.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StartStress)]
pub(super) struct StartBody {
    /// How long arrivals last, 1-3600 s (else 422).
    #[serde(deserialize_with = "super::wire::integer")]
    #[schema(value_type = i64, minimum = 1, maximum = 3600, example = 30)]
    duration_seconds: u64,
    /// Arrivals per second (default: the scenario's at `scale`).
    #[schema(minimum = 0.001, example = 500.0)]
    rate: Option<f64>,
    /// Multiplies the scenario's size (default 0.01: a live node is not a benchmark machine).
    #[schema(minimum = 0.0001, maximum = 100.0, example = 0.01)]
    scale: Option<f64>,
}

/// A flood run as `GET /admin/stress/{id}` shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = StressRun)]
pub(super) struct RunJson {
    run_id: Uuid,
    scenario: &'static str,
    /// `running`, `passed` (thresholds and invariants held), `failed`, or `error` (could not run).
    #[schema(value_type = String, pattern = "^(running|passed|failed|error)$")]
    status: &'static str,
    /// When it started, microseconds since the Unix epoch.
    started_us: i64,
    /// Figures so far.
    live: LiveJson,
    /// The report, once the run ended (as `cloudcafe flood --report-dir` writes report.json).
    #[schema(value_type = Option<Object>, required = true)]
    report: Option<serde_json::Value>,
    /// Why the run could not run, for `error`.
    #[schema(required = true)]
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = StressLive)]
pub(super) struct LiveJson {
    elapsed_seconds: f64,
    requested: u64,
    completed: u64,
    errors: u64,
    p99_ms: f64,
}

impl StressRuns {
    fn show(&self, run_id: Uuid) -> Option<RunJson> {
        let runs = self.runs.lock().expect("stress runs");
        let run = runs.get(&run_id)?;
        let live = run.recorder.live();
        let (status, report, error) = match &run.state {
            RunState::Running => ("running", None, None),
            RunState::Done(r) => (if r.passed { "passed" } else { "failed" }, serde_json::to_value(r).ok(), None),
            RunState::Failed(e) => ("error", None, Some(e.clone())),
        };
        Some(RunJson {
            run_id,
            scenario: run.scenario,
            status,
            started_us: run.started_us,
            live: LiveJson {
                elapsed_seconds: live.elapsed.as_secs_f64(),
                requested: live.requested,
                completed: live.completed,
                errors: live.errors,
                p99_ms: live.p99_ms,
            },
            report,
            error,
        })
    }

    fn insert(&self, run_id: Uuid, run: StressRun) {
        let mut runs = self.runs.lock().expect("stress runs");
        if runs.len() >= KEPT_RUNS {
            let oldest = runs
                .iter()
                .filter(|(_, r)| !matches!(r.state, RunState::Running))
                .min_by_key(|(_, r)| r.started_us)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                runs.remove(&id);
            }
        }
        runs.insert(run_id, run);
    }

    fn end(&self, run_id: Uuid, state: RunState) {
        if let Some(run) = self.runs.lock().expect("stress runs").get_mut(&run_id) {
            run.state = state;
        }
    }
}

fn unprocessable(message: &str, field: &str) -> ApiError {
    ApiError::Unprocessable { message: message.into(), field: Some(field.into()) }
}

/// `POST /admin/stress/{id}`: starts scenario `id` inside this node; 202 with the run.
#[utoipa::path(
    post,
    path = "/admin/stress/{id}",
    tag = "operations",
    summary = "Start a stress scenario inside this node",
    description = "Starts the named scenario (`cloudcafe flood list`) into this node's own actors and journal, \
        with the scenario's set-up (its stores and `flood-item-*` menu items) written like any client's. \
        The run ends with the verify step over this node's journal and read models.",
    // Not an enum of the names on purpose: a fuzzer that draws valid names would start real floods.
    params(("id" = String, Path, description = "The scenario: morning-rush, restock-storm, loyalty-batch, menu-sync, cold-start-avalanche or query-storm (else 404)")),
    request_body = StartBody,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Started; poll `Location`", body = RunJson,
            headers(("Location" = String, description = "`/admin/stress/{run_id}`"))),
        (status = 400, description = "Malformed JSON, or a missing or mistyped field", body = ErrorJson),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No such scenario", body = ErrorJson),
        (status = 422, description = "A duration, rate or scale out of bounds", body = ErrorJson),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn start(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body: StartBody = json_body(&req, payload, &state).await?;
    let Some(scenario) = scenarios::by_name(path.as_str()) else {
        return Err(ApiError::NotFound { message: "no such scenario".into(), field: Some("id".into()) });
    };
    if !(1..=MAX_SECONDS).contains(&body.duration_seconds) {
        return Err(unprocessable("duration_seconds must be 1-3600", "duration_seconds"));
    }
    let scale = body.scale.unwrap_or(0.01);
    if !(0.0001..=100.0).contains(&scale) {
        return Err(unprocessable("scale must be 0.0001-100", "scale"));
    }
    let rate = body.rate.unwrap_or_else(|| scenario.default_rate(scale));
    if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
        return Err(unprocessable("rate must be above 0 and at most 1,000,000", "rate"));
    }
    let duration = Duration::from_secs(body.duration_seconds);
    let run_id = Uuid::now_v7();
    let recorder = Recorder::new();
    state.stress.insert(
        run_id,
        StressRun {
            scenario: scenario.name(),
            started_us: events::envelope::now_us(),
            recorder: recorder.clone(),
            state: RunState::Running,
        },
    );
    let target: Arc<dyn Target> = Arc::new(ActorTarget {
        cafe: state.cafe.clone(),
        storefront: state.storefront.clone(),
        analytics: state.analytics.clone(),
        projections: state.projections.clone(),
        stalls: state.stalls.clone(),
        journal_name: "this node's journal".into(),
        metrics: Some(state.metrics.clone()),
    });
    let context = Context {
        target,
        scale,
        seed: run_id.as_u128() as u64,
        journal: Some(state.journal.clone()),
        batch: Some((state.cafe.clone(), state.storefront.clone())),
        analytics: state.analytics.clone(),
        settle: Duration::from_secs(120),
    };
    let settings = FloodSettings {
        load: Load::Open(Arrivals::constant(rate, duration)),
        timeout: operation_timeout(actors::host::HostOptions::default().command_timeout),
        max_in_flight: 50_000,
        seed: context.seed,
        thresholds: Vec::new(),
        progress: false,
        verify: true,
        flags: serde_json::json!({ "scenario": scenario.name(), "rate": rate, "duration_s": body.duration_seconds,
                                   "scale": scale, "trigger": "POST /admin/stress" }),
    };
    let verification = Verification { journal: state.journal.clone(), read_models: state.read_models.clone() };
    let runs = state.clone();
    tokio::spawn(async move {
        let outcome = async {
            let plan = scenario.prepare(&context).await?;
            let acks = Arc::new(AckLedger::in_memory());
            run(scenario.as_ref(), plan, &context, &settings, Some(&verification), acks, recorder).await
        }
        .await;
        let ended = match outcome {
            Ok(report) => RunState::Done(Box::new(report)),
            Err(e) => RunState::Failed(events::ErrorChain(&e).to_string()),
        };
        runs.stress.end(run_id, ended);
    });
    let shown = state.stress.show(run_id).ok_or_else(|| ApiError::Internal("the run vanished".into()))?;
    Ok(HttpResponse::Accepted().insert_header((header::LOCATION, format!("/admin/stress/{run_id}"))).json(shown))
}

/// `GET /admin/stress/{id}`: run `id`'s live figures, and its report once it ended.
#[utoipa::path(
    get,
    path = "/admin/stress/{id}",
    tag = "operations",
    summary = "A stress run's figures and report",
    params(("id" = Uuid, Path, description = "The run id `POST /admin/stress/{id}` answered")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The run", body = RunJson),
        (status = 400, description = "Not a run id", body = ErrorJson),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No such run on this node", body = ErrorJson),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn show(path: web::Path<String>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let run_id = parse_uuid(path.as_str(), "id")?;
    let run = state
        .stress
        .show(run_id)
        .ok_or_else(|| ApiError::NotFound { message: "no such run on this node".into(), field: Some("id".into()) })?;
    Ok(HttpResponse::Ok().json(run))
}
