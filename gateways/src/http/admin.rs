//! The operator's routes: `/health` (liveness, no dependencies), `/ready` (the journal answers),
//! `/metrics` (Prometheus text) and `/admin/projections` (each projection's lag, and the event it is
//! stalled on, if any).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::errors::ApiError;
use super::ApiState;
use crate::node::{projection_lag, ProjectionLag};

/// How long `/ready` waits for the journal.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/health` and `/ready`.
#[derive(Serialize)]
struct StatusJson {
    /// `ok` (alive) or `ready` (the journal answers).
    status: &'static str,
}

/// Every projection's lag, the journal-fed ones first.
#[derive(Serialize)]
struct ProjectionsJson {
    projections: Vec<ProjectionLag>,
}

/// `GET /health`: the process answers.
pub(super) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(StatusJson { status: "ok" })
}

/// `GET /ready`: the journal answers a ping within 2 s; 503 otherwise.
pub(super) async fn ready(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.journal.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(StatusJson { status: "ready" })),
        // Whatever the journal's failure, this node is not ready: a 503, not a 500.
        Ok(Err(e)) => Err(ApiError::Unavailable(e.into())),
        Err(_) => Err(ApiError::Unavailable("journal did not answer within 2s".into())),
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub(super) async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    state.metrics.run_upkeep();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}

/// `GET /admin/projections`: each projection's position, how far it trails the journal, and
/// `stalled`: the event it cannot apply (position, stream, type, error, since), or `null`.
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
