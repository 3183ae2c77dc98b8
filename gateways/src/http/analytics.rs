//! `GET /api/analytics/stores/{store_id}/minutes?from=&to=`: one store's 1-minute windows from the
//! analytics model.

use actix_web::{web, HttpResponse};
use projections::read_models::analytics::StoreMinute;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::errors::ApiError;
use super::extractors::{parse_time, path_id};
use super::schema::{ErrorJson, Internal, Unavailable};
use super::wire::timestamp;
use super::ApiState;

/// The widest range one request may ask for.
const MAX_RANGE_US: i64 = 31 * 24 * 3_600_000_000;
/// The range asked for when `from` is left out.
const DEFAULT_RANGE_US: i64 = 3_600_000_000;

/// The `?from=&to=` of a minutes query, RFC 3339 times.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MinuteRange {
    /// Start (inclusive), RFC 3339; one hour before `to` when left out. Must be before `to`, at most 31 days
    /// earlier (else 400).
    #[param(format = DateTime)]
    from: Option<String>,
    /// End (exclusive), RFC 3339; now when left out.
    #[param(format = DateTime)]
    to: Option<String>,
}

/// One store's windows in `[from, to)`.
#[derive(Serialize, ToSchema)]
#[schema(as = StoreMinutes)]
struct StoreMinutesJson {
    store_id: String,
    #[schema(format = DateTime)]
    from: String,
    #[schema(format = DateTime)]
    to: String,
    minutes: Vec<MinuteJson>,
}

/// One 1-minute window of a store.
#[derive(Serialize, ToSchema)]
#[schema(as = Minute)]
struct MinuteJson {
    /// The start of the minute.
    #[schema(format = DateTime)]
    minute: String,
    order_count: i64,
    revenue_cents: i64,
    unique_customers: i64,
    avg_order_value_cents: i64,
}

impl From<&StoreMinute> for MinuteJson {
    fn from(m: &StoreMinute) -> Self {
        MinuteJson {
            minute: timestamp(m.minute_us),
            order_count: m.order_count,
            revenue_cents: m.revenue_cents,
            unique_customers: m.unique_customers,
            avg_order_value_cents: m.avg_order_value_cents,
        }
    }
}

/// 1-minute windows of one store from the analytics model; `from`/`to` default to the last hour.
#[utoipa::path(
    get,
    path = "/api/analytics/stores/{store_id}/minutes",
    tag = "analytics",
    summary = "A store's 1-minute windows",
    description = "Reads the analytics read model (Redshift SQL; it trails the journal by the projection's lag). \
        A node without an analytics store answers 404.",
    params(
        ("store_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "1-64 letters, digits, `-` or `_` (else 400)"),
        MinuteRange,
    ),
    responses(
        (status = 200, description = "The windows in `[from, to)` that have orders", body = StoreMinutesJson),
        (status = 400, description = "A bad `store_id`; `from` or `to` is not an RFC 3339 time, `from` is not before `to`, or the \
            range spans more than 31 days", body = ErrorJson),
        (status = 404, description = "This node has no analytics store", body = ErrorJson),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn store_minutes(
    path: web::Path<String>,
    query: Result<web::Query<MinuteRange>, actix_web::Error>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let store_id = path_id(&path, "store_id")?;
    let query = query.map_err(|_| ApiError::bad("from and to must be RFC 3339 times", "from"))?;
    let analytics = state.analytics.as_ref().ok_or_else(|| {
        ApiError::not_found("this node has no analytics store (start it with --analytics-url or a PostgreSQL journal)")
    })?;
    let to = match &query.to {
        Some(t) => parse_time(t, "to")?,
        None => events::envelope::now_us(),
    };
    let from = match &query.from {
        Some(f) => parse_time(f, "from")?,
        None => to - DEFAULT_RANGE_US,
    };
    if from >= to {
        return Err(ApiError::bad("from must be before to", "from"));
    }
    if to - from > MAX_RANGE_US {
        return Err(ApiError::bad("a range may span at most 31 days", "to"));
    }
    let minutes = analytics.store_minutes(store_id, from, to).await?;
    Ok(HttpResponse::Ok().json(StoreMinutesJson {
        store_id: store_id.to_owned(),
        from: timestamp(from),
        to: timestamp(to),
        minutes: minutes.iter().map(MinuteJson::from).collect(),
    }))
}
