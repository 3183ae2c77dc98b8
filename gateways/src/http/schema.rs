//! The pieces of the OpenAPI document that the handlers' `#[utoipa::path]` annotations name: the
//! error body, the error answers every body route shares (408, 413, 415, 500, 503), and the enums
//! the wire types show as strings. `openapi` gathers the handlers into the document; the handlers
//! take these from here, so neither imports the other both ways.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::ToResponse;

/// The body of every error answer, as `errors` writes it.
pub(super) type ErrorJson = super::errors::ErrorBody<'static>;

/// A string that is one of `values`.
fn one_of(values: &[&str]) -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied())).build()
}

/// An order's status as the API shows it (`not_placed` never leaves the actor).
pub(super) fn order_status() -> Object {
    one_of(&["placed", "paid", "preparing", "ready", "completed", "abandoned", "cancelled"])
}

/// A status store staff move an order to.
pub(super) fn order_progress() -> Object {
    one_of(&["preparing", "ready", "completed"])
}

/// A loyalty tier.
pub(super) fn loyalty_tier() -> Object {
    one_of(&["green", "gold", "platinum"])
}

fn error_content() -> Content {
    Content::new(Some(Ref::from_schema_name("Error")))
}

/// A reusable error answer: its component name and description.
fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content("application/json", error_content())
}

/// 413: a body over the node's `--body-limit`.
pub(super) struct PayloadTooLarge;

impl<'r> ToResponse<'r> for PayloadTooLarge {
    fn response() -> (&'r str, RefOr<Response>) {
        let r =
            error_response("The body is larger than the node's `--body-limit` (16 KiB by default); nothing was read");
        ("PayloadTooLarge", r.build().into())
    }
}

/// 415: a body that is not `application/json`.
pub(super) struct UnsupportedMediaType;

impl<'r> ToResponse<'r> for UnsupportedMediaType {
    fn response() -> (&'r str, RefOr<Response>) {
        let r = error_response(
            "The body's `Content-Type` is missing or is not `application/json` (or `application/<type>+json`)",
        );
        ("UnsupportedMediaType", r.build().into())
    }
}

/// 408: a body that did not arrive within the node's deadline; the connection is closed.
pub(super) struct RequestTimeout;

impl<'r> ToResponse<'r> for RequestTimeout {
    fn response() -> (&'r str, RefOr<Response>) {
        let r = error_response("The body did not arrive within the node's body deadline; the connection is closed");
        ("RequestTimeout", r.build().into())
    }
}

/// 500: a fault inside the service; the cause goes to the log only.
pub(super) struct Internal;

impl<'r> ToResponse<'r> for Internal {
    fn response() -> (&'r str, RefOr<Response>) {
        let r = error_response("A fault inside the service (corrupt data, an event this build cannot encode); the cause is logged, not shown");
        ("Internal", r.build().into())
    }
}

/// 503 with `Retry-After`: only ever "unavailable, retry".
pub(super) struct Unavailable;

impl<'r> ToResponse<'r> for Unavailable {
    fn response() -> (&'r str, RefOr<Response>) {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        let retry_after =
            HeaderBuilder::new().schema(Some(seconds)).description(Some("Seconds to wait before retrying")).build();
        let r = error_response(
            "Unavailable, retry: the node is saturated (`--max-in-flight`, a full actor queue) or a store does not answer. \
             Never a client error.",
        )
        .header("Retry-After", retry_after);
        ("Unavailable", r.build().into())
    }
}

/// 401 with `WWW-Authenticate`: a route that needs a token asked without a valid one.
pub(super) struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        let challenge = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some("`Bearer realm=\"cloudcafe\"`"))
            .build();
        let r = error_response(
            "The `Authorization: Bearer <token>` header is missing, malformed, or holds a token that is expired, not \
             yet valid, for another issuer or audience, or not signed by a known key; nothing was read or written",
        )
        .header("WWW-Authenticate", challenge);
        ("Unauthorized", r.build().into())
    }
}

/// 429 with `Retry-After`: over the caller's rate limit.
pub(super) struct TooManyRequests;

impl<'r> ToResponse<'r> for TooManyRequests {
    fn response() -> (&'r str, RefOr<Response>) {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
        let retry_after = HeaderBuilder::new()
            .schema(Some(seconds))
            .description(Some("Seconds until the caller's bucket has a token again"))
            .build();
        let r = error_response(
            "Over the rate limit of the caller (per token subject and role, or per client address without a token); \
             nothing was read or written",
        )
        .header("Retry-After", retry_after);
        ("TooManyRequests", r.build().into())
    }
}

/// 403: a valid token whose role does not allow this.
pub(super) struct Forbidden;

impl<'r> ToResponse<'r> for Forbidden {
    fn response() -> (&'r str, RefOr<Response>) {
        let r = error_response(
            "The token is valid, and its role does not allow this (a customer on the admin plane, staff of another \
             store); nothing was read or written",
        );
        ("Forbidden", r.build().into())
    }
}
