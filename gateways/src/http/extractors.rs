//! Turning a request's raw parts into typed input, or into a 4xx naming the field that is wrong: the
//! strict JSON body reader, UUID path segments, RFC 3339 query times, and admission of commands.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::SemaphorePermit;
use uuid::Uuid;

use super::errors::ApiError;
use super::ApiState;

/// Reads a JSON body up to `limit` bytes and decodes it, naming the field that is wrong.
pub(super) async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        if len > limit {
            return Err(ApiError::TooLarge(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest { message: format!("cannot read body: {e}"), field: None })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let mut de = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("malformed JSON: {inner}")
            }
            _ => inner.to_string(),
        };
        let field = missing_field(&message)
            .map(|f| if path == "." { f.clone() } else { format!("{path}.{f}") })
            .or_else(|| (path != ".").then_some(path));
        ApiError::BadRequest { message, field }
    })
}

/// The field serde reports missing, from its message "missing field `name`".
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// A path segment that must be a UUID; a 400 naming `field` otherwise.
pub(super) fn parse_uuid(raw: &str, field: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::bad(format!("{field} must be a UUID"), field))
}

/// An RFC 3339 time as microseconds since the epoch; a 400 naming `field` otherwise.
pub(super) fn parse_time(raw: &str, field: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_micros())
        .map_err(|_| ApiError::bad(format!("{field} must be an RFC 3339 time, e.g. 2026-11-21T08:00:00Z"), field))
}

/// A place among the commands in flight on this node, held until the handler returns; a 503 when
/// there is none.
pub(super) fn admit(state: &ApiState) -> Result<SemaphorePermit<'_>, ApiError> {
    state.admission.try_acquire().map_err(|_| ApiError::Unavailable("too many commands in flight".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(missing_field("missing field `store_id` at line 1 column 2").as_deref(), Some("store_id"));
        assert_eq!(missing_field("invalid type: string, expected i64"), None);
    }
}
