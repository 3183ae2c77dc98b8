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
use crate::rate_limit::{Caller, Decision};

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

/// Paths the rate limiter does not see: the balancer's health checks and the metrics scrape.
pub const UNLIMITED_PATHS: &[&str] = &["/health", "/ready", "/metrics"];

/// Whether the route of this path template is outside the rate limits.
pub fn is_unlimited(path: &str) -> bool {
    UNLIMITED_PATHS.contains(&path)
}

/// The client's address: the connection's peer, or behind a balancer that appends it (the ALB) the
/// last `X-Forwarded-For` entry. Earlier entries are whatever the client wrote, and never trusted.
fn client_address(req: &ServiceRequest, trust_forwarded_for: bool) -> Option<std::net::IpAddr> {
    if trust_forwarded_for {
        let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).last();
        if let Some(ip) = forwarded.and_then(|v| v.rsplit(',').next()).and_then(|ip| ip.trim().parse().ok()) {
            return Some(ip);
        }
    }
    req.peer_addr().map(|a| a.ip())
}

/// Takes a token from the caller's bucket: the verified principal's, else the client address's.
async fn limit(req: &ServiceRequest, state: &ApiState) -> Result<(), ApiError> {
    let Some(limiter) = state.rate_limiter.as_ref() else { return Ok(()) };
    if req.match_pattern().is_some_and(|p| is_unlimited(&p)) {
        return Ok(());
    }
    let principal = req.extensions().get::<Principal>().cloned();
    let caller = match (&principal, client_address(req, state.trust_forwarded_for)) {
        (Some(p), _) => Caller::Signed(p),
        (None, Some(ip)) => Caller::Anonymous(ip),
        (None, None) => return Ok(()),
    };
    match limiter.admit(caller).await {
        Decision::Allowed => Ok(()),
        Decision::Limited(wait) => Err(ApiError::TooManyRequests(wait)),
    }
}

fn state(req: &ServiceRequest) -> Result<&ApiState, ApiError> {
    req.app_data::<web::Data<ApiState>>()
        .map(|s| s.get_ref())
        .ok_or_else(|| ApiError::Internal("the API state is not registered".into()))
}

/// Whether the request may go on, and as whom.
async fn decide(req: &ServiceRequest, guard: Guard) -> Result<(), ApiError> {
    let state = state(req)?;
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
            events::metric::AUTH_REFUSED.counter(&[("reason", refused_reason(&e))]).increment(1);
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
    // The limit first when the token was refused too: a client spraying bad tokens is slowed down
    // like any other.
    let decided = decide(&req, guard).await;
    let limited = match state(&req) {
        Ok(state) => limit(&req, state).await,
        Err(e) => Err(e),
    };
    let mut response = match limited.and(decided) {
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
