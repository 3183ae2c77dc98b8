//! Turning a request's raw parts into typed input, or into a 4xx naming the field that is wrong: the
//! strict JSON body reader, identifiers and UUIDs from paths, RFC 3339 query times, and admission of
//! commands.
//!
//! Strict JSON: a body route takes `Content-Type: application/json` or `application/<x>+json`
//! (parameters allowed, any case; anything else or none is 415); the body is exactly one JSON value
//! with nothing after it; it decodes into the route's request type with no unknown, missing or
//! repeated field; and wherever the request type has an object the body has an object, not a
//! positional array (serde would take `["alice","store-1",[]]` for a struct). Every failure is a
//! 400 naming the field's path (`items[0].quantity`), or `null` for the body as a whole. A body that
//! does not arrive within the node's body deadline is a 408 and its connection is closed.

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::SemaphorePermit;
use uuid::Uuid;

use super::errors::ApiError;
use super::ApiState;

/// Reads a JSON body under the node's size limit and deadline and decodes it strictly (see the
/// module docs), naming the field that is wrong.
///
/// Take the admission permit ([`admit`]) after this returns: a client that sends its body slowly
/// must not hold a place among the commands in flight while it does.
pub(super) async fn json_body<T: DeserializeOwned + Serialize>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &ApiState,
) -> Result<T, ApiError> {
    let json = req.headers().get(header::CONTENT_TYPE).and_then(|ct| ct.to_str().ok()).is_some_and(is_json_media_type);
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let limit = state.body_limit;
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        if len > limit {
            return Err(ApiError::TooLarge(limit));
        }
    }
    let body = tokio::time::timeout(state.body_timeout, read_body(payload, limit))
        .await
        .map_err(|_| ApiError::BodyTimeout(state.body_timeout))??;
    decode_strict(&body)
}

/// The whole body, up to `limit` bytes.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest { message: format!("cannot read body: {e}"), field: None })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `application/json`, or `application/<x>+json`, with any parameters, in any case.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some(subtype) = essence.strip_prefix("application/") else { return false };
    subtype == "json"
        || subtype.strip_suffix("+json").is_some_and(|prefix| {
            !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.".contains(&b))
        })
}

/// One JSON value, nothing after it, decoded into `T` with objects where `T` has objects.
fn decode_strict<T: DeserializeOwned + Serialize>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(decode_error)?;
    de.end().map_err(|e| ApiError::BadRequest {
        message: format!("malformed JSON: the body must be exactly one JSON value, with nothing after it ({e})"),
        field: None,
    })?;
    // serde-derived structs also take a positional array ("visit_seq"): compare what was decoded
    // with what was sent, and refuse an array (or anything else) where the type has an object.
    let sent: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest { message: format!("malformed JSON: {e}"), field: None })?;
    let decoded = serde_json::to_value(&value).map_err(|e| ApiError::Internal(e.into()))?;
    if let Some((path, kind)) = not_an_object(&decoded, &sent, String::new()) {
        let message = if path.is_empty() {
            format!("the body must be a JSON object, not {kind}")
        } else {
            format!("`{path}` must be a JSON object, not {kind}")
        };
        return Err(ApiError::BadRequest { message, field: (!path.is_empty()).then_some(path) });
    }
    Ok(value)
}

/// The first place (as a field path, empty for the body itself) where `decoded` has an object and
/// `sent` has something else, with what `sent` has there.
fn not_an_object(decoded: &Value, sent: &Value, path: String) -> Option<(String, &'static str)> {
    match (decoded, sent) {
        (Value::Object(fields), Value::Object(sent_fields)) => fields.iter().find_map(|(name, value)| {
            let inner = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            not_an_object(value, sent_fields.get(name)?, inner)
        }),
        (Value::Object(_), other) => Some((path, json_kind(other))),
        (Value::Array(items), Value::Array(sent_items)) => {
            items.iter().zip(sent_items).enumerate().find_map(|(n, (d, s))| not_an_object(d, s, format!("{path}[{n}]")))
        }
        _ => None,
    }
}

/// What a JSON value is, with its article, for messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A decoding failure as a 400 naming the field's path.
fn decode_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let message = match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => format!("malformed JSON: {inner}"),
        _ => inner.to_string(),
    };
    let field = named_field(&message)
        .map(|f| match path.as_str() {
            "." => f,
            p if p == f || p.ends_with(&format!(".{f}")) => p.to_owned(),
            p => format!("{p}.{f}"),
        })
        .or_else(|| (path != ".").then_some(path));
    ApiError::BadRequest { message, field }
}

/// The field serde names in "missing field `x`", "duplicate field `x`" or "unknown field `x`".
fn named_field(message: &str) -> Option<String> {
    ["missing field `", "duplicate field `", "unknown field `"].iter().find_map(|prefix| {
        let rest = message.strip_prefix(prefix)?;
        Some(rest[..rest.find('`')?].to_owned())
    })
}

/// A customer, store or menu item id (a SKU) from a path or query: the domain's identifier syntax
/// (`actors::domain::limits::is_id`), checked before it reaches an actor or a store; a 400 naming
/// `field` otherwise (a NUL, a control character or an over-long value included).
pub(super) fn path_id<'a>(raw: &'a str, field: &str) -> Result<&'a str, ApiError> {
    checked_id(raw, field, actors::domain::limits::is_id(raw))
}

fn checked_id<'a>(raw: &'a str, field: &str, valid: bool) -> Result<&'a str, ApiError> {
    if valid {
        return Ok(raw);
    }
    let message = if raw.chars().any(char::is_control) {
        format!("{field} must not contain control characters")
    } else {
        format!("{field} must be 1-64 ASCII letters, digits, '-' or '_'")
    };
    Err(ApiError::bad(message, field))
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
/// there is none. Taken once the request's body has arrived (after [`json_body`]), so that only
/// requests ready to be decided count.
pub(super) fn admit(state: &ApiState) -> Result<SemaphorePermit<'_>, ApiError> {
    state.admission.try_acquire().map_err(|_| ApiError::Unavailable("too many commands in flight".into()))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Order {
        customer_id: String,
        items: Vec<Line>,
        #[serde(default)]
        note: Option<Note>,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Line {
        item_id: String,
        quantity: i64,
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Note {
        #[serde(default)]
        text: String,
    }

    fn refused(body: &str) -> (String, Option<String>) {
        match decode_strict::<Order>(body.as_bytes()) {
            Err(ApiError::BadRequest { message, field }) => (message, field),
            Err(other) => panic!("{body}: {other:?}"),
            Ok(order) => panic!("{body} was accepted as {order:?}"),
        }
    }

    #[test]
    fn fields_serde_names_are_extracted() {
        assert_eq!(named_field("missing field `store_id` at line 1 column 2").as_deref(), Some("store_id"));
        assert_eq!(named_field("duplicate field `quantity` at line 1 column 9").as_deref(), Some("quantity"));
        assert_eq!(named_field("unknown field `discount`, expected one of `a`").as_deref(), Some("discount"));
        assert_eq!(named_field("invalid type: string, expected i64"), None);
    }

    #[test]
    fn a_well_formed_body_decodes() {
        let order: Order =
            decode_strict(br#" {"customer_id":"a","items":[{"item_id":"latte","quantity":1}],"note":{}} "#).unwrap();
        assert_eq!(order.items[0].quantity, 1);
    }

    #[test]
    fn one_json_value_and_nothing_after_it() {
        assert_eq!(refused(r#"{"customer_id":"a","items":[]} xyz"#).1, None);
        assert_eq!(refused(r#"{"customer_id":"a","items":[]}{"customer_id":"b","items":[]}"#).1, None);
        assert!(refused(r#"{"customer_id":"a","items":[]}]"#).0.contains("exactly one JSON value"));
    }

    #[test]
    fn objects_only_where_the_type_has_objects() {
        let (message, field) = refused(r#"["a",[]]"#);
        assert_eq!(field, None);
        assert!(message.contains("must be a JSON object, not an array"), "{message}");
        assert_eq!(
            refused(r#"{"customer_id":"a","items":[{"item_id":"x","quantity":1},["latte",2]]}"#).1.as_deref(),
            Some("items[1]")
        );
        assert_eq!(refused(r#"{"customer_id":"a","items":[],"note":[""]}"#).1.as_deref(), Some("note"));
    }

    #[test]
    fn repeated_unknown_and_missing_fields_are_named() {
        assert_eq!(refused(r#"{"customer_id":"a","customer_id":"b","items":[]}"#).1.as_deref(), Some("customer_id"));
        assert_eq!(
            refused(r#"{"customer_id":"a","items":[{"item_id":"x","quantity":1,"quantity":2}]}"#).1.as_deref(),
            Some("items[0].quantity")
        );
        assert_eq!(refused(r#"{"customer_id":"a","items":[],"discount":5}"#).1.as_deref(), Some("discount"));
        assert_eq!(refused(r#"{"customer_id":"a","items":[{"item_id":"x"}]}"#).1.as_deref(), Some("items[0].quantity"));
        let (_, field) = refused(&json!({"items": []}).to_string());
        assert_eq!(field.as_deref(), Some("customer_id"));
    }

    #[test]
    fn json_and_plus_json_media_types_only() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
            "application/vnd.cafe+json",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for refused in ["application/jsonp", "text/json", "application/+json", "application/json-seq", "", "json"] {
            assert!(!is_json_media_type(refused), "{refused}");
        }
    }

    #[test]
    fn identifiers_from_paths_keep_to_the_domain_syntax() {
        assert_eq!(path_id("alice-1", "customer_id").unwrap(), "alice-1");
        for bad in ["a\0b", "a\u{1b}[31m", "", "a b", &"x".repeat(65)] {
            match path_id(bad, "customer_id") {
                Err(ApiError::BadRequest { field, .. }) => assert_eq!(field.as_deref(), Some("customer_id")),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(path_id("latte", "sku").is_ok());
        assert!(path_id("lat\u{7f}te", "sku").is_err());
    }
}
