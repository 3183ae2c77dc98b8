//! What a failed request answers: [`ApiError`], the one place where the domain's and the stores'
//! errors become HTTP statuses, and its JSON body `{"error": "...", "field": "..."|null}`.
//!
//! 4xx name what is wrong with the request (nothing was written). 503 with `Retry-After` means only
//! "unavailable, retry": a saturated node or a store that does not answer. A fault inside the
//! service (corrupt data, an event this build cannot encode) is a 500. Neither 503 nor 500 shows
//! its cause to the client: the cause, with everything that caused it, goes to the log.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use actors::cafe::CafeError;
use actors::host::Unavailability;
use events::{ErrorChain, StoreError};
use projections::SinkError;
use serde::Serialize;

use crate::node::StartError;

/// Why a 503 or a 500 was answered, for the log only.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A request that failed, with the status it answers.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, a mistyped field, an unparsable path or query).
    #[error("{message}")]
    BadRequest { message: String, field: Option<String> },
    /// 422: well-formed, but the domain refused it.
    #[error("{message}")]
    Unprocessable { message: String, field: Option<String> },
    /// 404: the route, or the thing it names, does not exist.
    #[error("{message}")]
    NotFound { message: String, field: Option<String> },
    /// 413: the body is over the limit, in bytes.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// 415: the body is not declared as JSON (`Content-Type` names the header).
    #[error("Content-Type must be application/json or application/<type>+json")]
    UnsupportedMediaType,
    /// 408: the body did not arrive within the node's deadline; the connection is closed.
    #[error("the request body did not arrive within {} ms", .0.as_millis())]
    BodyTimeout(std::time::Duration),
    /// 409: an idempotency key reused with other contents, an order moved out of turn.
    #[error("{message}")]
    Conflict { message: String, field: Option<String> },
    /// 503 with `Retry-After`: the node is saturated or a store does not answer.
    #[error("service temporarily unavailable, retry later")]
    Unavailable(#[source] Cause),
    /// 500: a fault inside the service.
    #[error("internal error")]
    Internal(#[source] Cause),
    /// 405: the route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 401 with `WWW-Authenticate: Bearer`: a route that needs a token asked without a valid one.
    /// One answer whether the header was missing, malformed, expired, foreign or badly signed: a
    /// client learns nothing about which part was wrong.
    #[error("this route needs a valid bearer token: `Authorization: Bearer <token>`")]
    Unauthorized,
    /// 403: the token is valid, and its role does not allow this.
    #[error("the token's role does not allow this")]
    Forbidden,
    /// 429 with `Retry-After`: the caller is over their rate limit.
    #[error("too many requests: retry after {} s", retry_after_secs(*.0))]
    TooManyRequests(std::time::Duration),
}

/// Whole seconds to wait, at least 1 (`Retry-After` has no fractions).
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3).
pub(super) const CHALLENGE: &str = "Bearer realm=\"cloudcafe\"";

/// The JSON body of every error.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(super) struct ErrorBody<'a> {
    /// What is wrong, for a person to read.
    error: String,
    /// The request field at fault (`items[0].quantity`, `Idempotency-Key`, `limit`...), or null.
    #[schema(required = true)]
    field: Option<&'a str>,
}

impl ApiError {
    /// A 400 about one field of the request.
    pub fn bad(message: impl Into<String>, field: &str) -> Self {
        ApiError::BadRequest { message: message.into(), field: Some(field.into()) }
    }

    /// A 404 that names no request field.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound { message: message.into(), field: None }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { field, .. }
            | ApiError::Unprocessable { field, .. }
            | ApiError::NotFound { field, .. }
            | ApiError::Conflict { field, .. } => field.as_deref(),
            ApiError::UnsupportedMediaType => Some("Content-Type"),
            ApiError::Unauthorized | ApiError::Forbidden => Some("Authorization"),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            // The cause goes to the log, not to the client.
            ApiError::Unavailable(cause) => {
                tracing::warn!(detail = %ErrorChain(&**cause), "answering 503");
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            ApiError::Internal(cause) => tracing::error!(detail = %ErrorChain(&**cause), "answering 500"),
            // A client that trickles its body is cut off: the rest of it is not waited for.
            ApiError::BodyTimeout(_) => {
                response.force_close();
            }
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE)));
            }
            ApiError::TooManyRequests(wait) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(retry_after_secs(*wait))));
            }
            _ => {}
        }
        response.json(ErrorBody { error: self.to_string(), field: self.field() })
    }
}

impl From<CafeError> for ApiError {
    fn from(e: CafeError) -> Self {
        match e {
            CafeError::Conflict { message, field } => ApiError::Conflict { message, field },
            CafeError::Rejected { message, field } => ApiError::Unprocessable { message, field },
            CafeError::NotFound { message, field } => ApiError::NotFound { message, field },
            CafeError::Busy(message) => ApiError::Unavailable(message.into()),
            CafeError::Unavailable(cause) => cause.into(),
        }
    }
}

impl From<Unavailability> for ApiError {
    fn from(e: Unavailability) -> Self {
        match e {
            Unavailability::Journal(store) => store.into(),
            Unavailability::Encoding(_) => ApiError::Internal(e.into()),
            Unavailability::TimedOut { .. } | Unavailability::Restarting { .. } => ApiError::Unavailable(e.into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable { .. } => ApiError::Unavailable(e.into()),
            StoreError::Invalid(_) | StoreError::Corrupt(_) => ApiError::Internal(e.into()),
        }
    }
}

impl From<SinkError> for ApiError {
    fn from(e: SinkError) -> Self {
        match e {
            SinkError::Unavailable { .. } => ApiError::Unavailable(e.into()),
            SinkError::Poison { .. } => ApiError::Internal(e.into()),
        }
    }
}

/// What measuring a projection's lag can fail with (only its journal and read-model cases occur).
impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Journal(store) => store.into(),
            StartError::ReadModel(sink) => sink.into(),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// Any path no route matches: 404.
pub(super) async fn no_route(req: HttpRequest) -> HttpResponse {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path())).error_response()
}

/// A known path asked with a method it does not serve: 405, with `Allow` listing the ones it does.
pub(super) fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed.error_response();
    if let Ok(value) = HeaderValue::from_str(allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    async fn answer(e: impl Into<ApiError>) -> (StatusCode, Option<HeaderValue>, serde_json::Value) {
        let response = e.into().error_response();
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        let body = to_bytes(response.into_body()).await.unwrap();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    #[actix_web::test]
    async fn each_error_answers_one_status_and_never_its_internals() {
        let unreachable =
            StoreError::unavailable_because("connecting", std::io::Error::other("connection refused to 10.1.2.3"));
        let (status, retry_after, body) = answer(CafeError::Unavailable(unreachable.into())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.unwrap(), "1");
        assert_eq!(body, serde_json::json!({"error": "service temporarily unavailable, retry later", "field": null}));

        let (status, retry_after, body) = answer(StoreError::Corrupt("stream order-1 v3: bad bytes".into())).await;
        assert_eq!((status, retry_after), (StatusCode::INTERNAL_SERVER_ERROR, None));
        assert!(!body.to_string().contains("bad bytes"), "{body}");

        let (status, _, _) = answer(SinkError::poison("row 7")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, _, _) = answer(SinkError::unavailable("pool timed out")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, _, _) = answer(CafeError::Busy("too many commands queued for order-1".into())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let timed_out = Unavailability::TimedOut { stream_id: "order-1".into() };
        let (status, _, _) = answer(CafeError::Unavailable(timed_out)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[actix_web::test]
    async fn domain_refusals_name_their_field() {
        let (status, _, body) =
            answer(CafeError::not_found("menu item `ghost` does not exist", Some("sku".into()))).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::NOT_FOUND, Some("sku")));
        let (status, _, body) = answer(CafeError::rejected("quantity must be positive", "items[0].quantity")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("quantity must be positive"))
        );
        let conflict = CafeError::Conflict { message: "order is paid".into(), field: Some("status".into()) };
        let (status, _, body) = answer(conflict).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("status")));
    }

    #[actix_web::test]
    async fn unauthorized_challenges_for_a_bearer_token_and_names_the_header() {
        let response = ApiError::Unauthorized.error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers().get(header::WWW_AUTHENTICATE).unwrap(), r#"Bearer realm="cloudcafe""#);
        let body: serde_json::Value = serde_json::from_slice(&to_bytes(response.into_body()).await.unwrap()).unwrap();
        assert_eq!(body["field"], "Authorization");
    }
}
