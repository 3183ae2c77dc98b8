//! Bearer tokens on the API: each route's [`Guard`] says what it needs, [`configure`](super::configure)
//! wraps every resource in [`check`], and the handlers that learn whose resource it is only from its
//! body or from the resource itself ([`Guard::InHandler`]) ask [`permit`]. Every decision is
//! [`crate::auth::authorize`]; this module only works out what a request touches and maps a
//! refusal to a status:
//!
//! | refusal | status |
//! |---|---|
//! | no token, a malformed, expired, foreign or badly signed one | 401 with `WWW-Authenticate: Bearer` |
//! | the identity provider's keys cannot be fetched, none cached | 503 with `Retry-After` |
//! | another customer's resource | 404, as if it did not exist |
//! | a role that does not allow it (a customer publishing the menu, staff of another store) | 403 |
//!
//! The guard is decided by the route table, not by each handler remembering to call it: a test
//! sends every route without a token and expects 401 on each one that is not [`Guard::Public`]. It
//! runs before the body is read and before admission: a request without a valid token costs the
//! node one signature check and changes nothing.
//!
//! With no verifier (`cloudcafe serve --auth off`, refused unless the node listens on loopback, or
//! a state built in process for tests and the embedded demo) every route is open.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, ResponseError};

use super::errors::ApiError;
use super::ApiState;
use crate::auth::{authorize, Access, Denial, Principal};

/// What a route needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Anyone: the menu listing, health checks, metrics, this API's document, the dashboard's
    /// data-less page shell.
    Public,
    /// Any verified caller.
    SignedIn,
    /// An admin: the menu's commands, `/admin/*`.
    Admin,
    /// The customer the named path parameter names (or an admin).
    CustomerInPath(&'static str),
    /// Staff of the store the named path parameter names (or an admin).
    StoreInPath(&'static str),
    /// Any verified caller here; the handler decides once it knows whose resource it is (the
    /// body's customer or store, or the loaded order's customer), with [`permit`].
    InHandler,
}

/// The token of an `Authorization: Bearer <token>` header, if the request has exactly one such
/// header of that form (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer_token(req: &ServiceRequest) -> Option<&str> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

fn refusal(denial: Denial) -> ApiError {
    match denial {
        Denial::Unauthenticated => ApiError::Unauthorized,
        Denial::Hidden => ApiError::not_found("not found"),
        Denial::Forbidden => ApiError::Forbidden,
    }
}

/// Whether the request may go on, and as whom.
async fn decide(req: &ServiceRequest, guard: Guard) -> Result<(), ApiError> {
    let state = req
        .app_data::<web::Data<ApiState>>()
        .ok_or_else(|| ApiError::Internal("the API state is not registered".into()))?;
    let Some(verifier) = state.auth.as_ref() else {
        return Ok(());
    };
    if guard == Guard::Public {
        return Ok(());
    }
    let token = bearer_token(req).ok_or(ApiError::Unauthorized)?;
    let principal = match verifier.verify(token).await {
        Ok(p) => p,
        Err(e) if e.is_unavailable() => return Err(ApiError::Unavailable(Box::new(e))),
        Err(e) => {
            metrics::counter!("cloudcafe_auth_refused_total", "reason" => refused_reason(&e)).increment(1);
            tracing::debug!(reason = %e, "bearer token refused");
            return Err(ApiError::Unauthorized);
        }
    };
    let path_param = |name: &str| req.match_info().get(name).unwrap_or_default().to_owned();
    let outcome = match guard {
        Guard::Public | Guard::SignedIn | Guard::InHandler => Ok(()),
        Guard::Admin => authorize(Some(&principal), Access::Admin),
        Guard::CustomerInPath(p) => authorize(Some(&principal), Access::Customer(&path_param(p))),
        Guard::StoreInPath(p) => authorize(Some(&principal), Access::Store(&path_param(p))),
    };
    req.extensions_mut().insert(principal);
    outcome.map_err(refusal)
}

fn refused_reason(e: &crate::auth::TokenError) -> &'static str {
    use crate::auth::TokenError::*;
    match e {
        Malformed => "malformed",
        UnknownKey => "unknown_key",
        WrongAlgorithm => "wrong_algorithm",
        Invalid(_) => "invalid",
        UnknownRole => "unknown_role",
        KeysUnavailable(_) => "keys_unavailable",
    }
}

/// The middleware around every resource: `guard` is the route's ([`super::routes`]).
pub(super) async fn check<B: MessageBody>(
    guard: Guard,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let mut response = match decide(&req, guard).await {
        // Answered here, not returned as an `Err`: the request metrics around the app count it.
        Err(e) => req.into_response(e.error_response()).map_into_right_body(),
        Ok(()) => next.call(req).await?.map_into_left_body(),
    };
    // What a guarded route answers is someone's data (or a refusal): no shared or browser cache
    // may keep it.
    if guard != Guard::Public {
        response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// For a [`Guard::InHandler`] route: whether the caller may touch `access`. Open when the node
/// has no verifier. A [`Denial::Hidden`] is the handler's to answer as its own 404.
pub(super) fn permit(req: &HttpRequest, state: &ApiState, access: Access<'_>) -> Result<(), Denial> {
    if state.auth.is_none() {
        return Ok(());
    }
    let extensions = req.extensions();
    authorize(extensions.get::<Principal>(), access)
}

/// [`permit`], with a refusal as its answer (a hidden resource is a plain 404).
pub(super) fn require(req: &HttpRequest, state: &ApiState, access: Access<'_>) -> Result<(), ApiError> {
    permit(req, state, access).map_err(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_well_formed_bearer_header_yields_a_token() {
        let token = |headers: &[(&str, &str)]| {
            let mut req = actix_web::test::TestRequest::get();
            for h in headers {
                req = req.append_header(*h);
            }
            let req = req.to_srv_request();
            bearer_token(&req).map(str::to_owned)
        };
        assert_eq!(token(&[("Authorization", "Bearer abc")]).as_deref(), Some("abc"));
        assert_eq!(token(&[("Authorization", "bearer  abc")]).as_deref(), Some("abc"));
        assert_eq!(token(&[("Authorization", "Basic abc")]), None);
        assert_eq!(token(&[("Authorization", "Bearer")]), None);
        assert_eq!(token(&[("Authorization", "Bearer ")]), None);
        assert_eq!(token(&[("Authorization", "abc")]), None);
        assert_eq!(token(&[]), None);
        assert_eq!(token(&[("Authorization", "Bearer abc"), ("Authorization", "Bearer abc")]), None);
    }
}
