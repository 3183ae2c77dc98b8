//! The operator's routes: `/health` (liveness, no dependencies), `/ready` (the journal answers),
//! `/metrics` (Prometheus text) and `/admin/projections` (each projection's lag, and the event it is
//! stalled on, if any).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::errors::ApiError;
use super::schema::{Internal, Unauthorized, Unavailable};
use super::ApiState;
use crate::node::{projection_lag, ProjectionLag};

/// How long `/ready` waits for the journal.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/health` and `/ready`.
#[derive(Serialize, ToSchema)]
#[schema(as = Status)]
struct StatusJson {
    /// `ok` (alive) or `ready` (the journal answers).
    #[schema(value_type = String, pattern = "^(ok|ready)$")]
    status: &'static str,
}

/// Every projection's lag, the journal-fed ones first.
#[derive(Serialize, ToSchema)]
#[schema(as = Projections)]
struct ProjectionsJson {
    projections: Vec<ProjectionLag>,
}

/// `GET /health`: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    summary = "Liveness",
    description = "The process answers; touches no store.",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = StatusJson)),
)]
pub(super) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(StatusJson { status: "ok" })
}

/// `GET /ready`: the journal answers a ping within 2 s; 503 otherwise.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    summary = "Readiness",
    description = "The journal answers a ping within 2 s.",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = StatusJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn ready(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.journal.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(StatusJson { status: "ready" })),
        // Whatever the journal's failure, this node is not ready: a 503, not a 500.
        Ok(Err(e)) => Err(ApiError::Unavailable(e.into())),
        Err(_) => Err(ApiError::Unavailable("journal did not answer within 2s".into())),
    }
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "Prometheus text exposition format 0.0.4.",
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain")),
)]
pub(super) async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

/// `GET /admin/projections`: each projection's position, how far it trails the journal, and
/// `stalled`: the event it cannot apply (position, stream, type, error, since), or `null`.
#[utoipa::path(
    get,
    path = "/admin/projections",
    tag = "operations",
    summary = "Projections' lag and stalls",
    description = "Each read model's position in the journal's global order and how far it trails the head, \
        measured now from the journal and each read model's stored position; `stalled` names the event a \
        projection cannot apply (see `cloudcafe projections park`), or is null.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every projection, the journal-fed ones first", body = ProjectionsJson),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    ),
)]
pub(super) async fn projections(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::new();
    for p in &state.projections {
        out.push(projection_lag(state.journal.as_ref(), p.as_ref(), &state.stalls).await?);
    }
    let head = state.journal.head_position().await?;
    for (name, lag) in &state.stream_fed {
        out.push(ProjectionLag::fed_from_kinesis(name, head, lag.as_ref()));
    }
    Ok(HttpResponse::Ok().json(ProjectionsJson { projections: out }))
}
