//! The admin plane's bearer token: every route under [`ADMIN_PREFIX`] answers 401 unless the request
//! carries `Authorization: Bearer <token>` with the node's token ([`ApiState::admin_token`]).
//!
//! The check is a middleware that [`super::configure`] wraps around every resource whose path starts
//! with [`ADMIN_PREFIX`]: it is decided by the path in `routes()`, not by each handler remembering to
//! call it, so an `/admin` route cannot be added without it (a test sends every `/admin` route of
//! `route_table()` without the token and expects 401). It runs before the body is read and before
//! admission: a request without the token costs the node nothing and changes nothing. The one
//! exception is named here, [`OPEN_ADMIN_PAGES`], with the reason.
//!
//! This is the simple shared secret of the stress issue (#11). The roles of #14 (JWT, `admin` a
//! role among customer and staff) will replace [`require_admin_token`] by their one authorization
//! decision; the routes, the 401 answer and the OpenAPI `security` entry stay as they are.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use sha2::{Digest, Sha256};

use super::errors::ApiError;
use super::ApiState;

/// Every route whose path starts with this needs the admin token.
pub const ADMIN_PREFIX: &str = "/admin/";

/// Admin pages served without the token: a browser that navigates to a page cannot send an
/// `Authorization` header, so such a page is a shell that holds no data (HTML and its script, the
/// same for everyone) and reads the token from its URL's fragment (`#token=...`, which never reaches
/// the node or any log), then sends it as the bearer on its data requests, which need it as usual
/// (`/admin/dashboard` → `/admin/dashboard/data`, [`super::dashboard`]).
pub const OPEN_ADMIN_PAGES: &[&str] = &["/admin/dashboard"];

/// Whether the route of this path template needs the admin token: every one under
/// [`ADMIN_PREFIX`] but the [`OPEN_ADMIN_PAGES`].
pub fn needs_admin_token(path: &str) -> bool {
    path.starts_with(ADMIN_PREFIX) && !OPEN_ADMIN_PAGES.contains(&path)
}

/// The fewest characters an admin token may have: a short shared secret is a guessable one.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why a configured admin token is refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("the admin token must have at least {MIN_TOKEN_CHARS} characters")]
    TooShort,
    #[error("the admin token may hold only visible ASCII characters (no spaces), as an HTTP header value must")]
    NotVisibleAscii,
}

/// Whether `token` can be an admin token: at least [`MIN_TOKEN_CHARS`] visible ASCII characters, so
/// that a client can send it as `Authorization: Bearer <token>` unchanged.
pub fn check_admin_token(token: &str) -> Result<(), AdminTokenError> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AdminTokenError::NotVisibleAscii);
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Err(AdminTokenError::TooShort);
    }
    Ok(())
}

/// A fresh admin token: 64 hex digits, the SHA-256 of two version-4 UUIDs. `Uuid::new_v4` draws from
/// the operating system's CSPRNG (`getrandom`), 122 random bits each, so the token holds 244 random
/// bits; hashing only spreads them evenly over the digits (no fixed version nibbles in the token).
pub fn generate_admin_token() -> String {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    hex::encode(Sha256::digest(seed))
}

/// Whether `presented` is `expected`, in time that depends on neither. Both are hashed with SHA-256
/// first, so the comparison always runs over 32 bytes whatever their lengths (a plain `==` returns at
/// the first differing byte, and at once on a length mismatch, which lets a client find the token a
/// byte at a time by timing); the XOR of every byte pair is OR-folded with no early exit, and
/// `black_box` keeps the compiler from turning the fold back into a short-circuiting compare.
fn same_token(presented: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(presented), Sha256::digest(expected));
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization: Bearer <token>` header, if the request has exactly one such
/// header of that form (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer_token(req: &ServiceRequest) -> Option<&[u8]> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token.as_bytes())
}

/// The middleware around every `/admin/` resource: passes the request on when the node has no admin
/// token (see [`ApiState::admin_token`]) or when it carries that token; answers 401
/// ([`ApiError::Unauthorized`]) otherwise, the same answer whether the header was missing, malformed
/// or held another token.
pub(super) async fn require_admin_token<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let refusal = match req.app_data::<web::Data<ApiState>>() {
        None => Some(ApiError::Internal("the API state is not registered".into())),
        Some(state) => state.admin_token.as_deref().and_then(|expected| {
            let admitted = bearer_token(&req).is_some_and(|presented| same_token(presented, expected.as_bytes()));
            (!admitted).then_some(ApiError::Unauthorized)
        }),
    };
    match refusal {
        // Answered here, not returned as an `Err`: the request metrics around the app count it.
        Some(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
        None => next.call(req).await.map(ServiceResponse::map_into_left_body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_data_less_page_shells_are_open() {
        assert!(needs_admin_token("/admin/projections"));
        assert!(needs_admin_token("/admin/dashboard/data"));
        assert!(needs_admin_token("/admin/dashboard/"));
        assert!(!needs_admin_token("/admin/dashboard"));
        assert!(!needs_admin_token("/health"));
        for page in OPEN_ADMIN_PAGES {
            assert!(page.starts_with(ADMIN_PREFIX), "{page}");
        }
    }

    #[test]
    fn generated_tokens_are_valid_and_differ() {
        let (a, b) = (generate_admin_token(), generate_admin_token());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        check_admin_token(&a).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn tokens_too_short_or_unsendable_are_refused() {
        assert!(matches!(check_admin_token("short"), Err(AdminTokenError::TooShort)));
        assert!(matches!(check_admin_token(""), Err(AdminTokenError::TooShort)));
        assert!(matches!(check_admin_token("sixteen chars with spaces"), Err(AdminTokenError::NotVisibleAscii)));
        assert!(matches!(check_admin_token("tokén-with-accent-é"), Err(AdminTokenError::NotVisibleAscii)));
        check_admin_token("0123456789abcdef").unwrap();
    }

    #[test]
    fn settings_never_print_the_token() {
        let settings = super::super::ApiSettings {
            admin_token: Some("secret-admin-token-42".into()),
            ..super::super::ApiSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("secret-admin-token-42") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(same_token(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_token(b"0123456789abcdeg", b"0123456789abcdef"));
        assert!(!same_token(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!same_token(b"", b"0123456789abcdef"));
    }

    #[test]
    fn only_one_well_formed_bearer_header_yields_a_token() {
        let token = |headers: &[(&str, &str)]| {
            let mut req = actix_web::test::TestRequest::get();
            for h in headers {
                req = req.append_header(*h);
            }
            let req = req.to_srv_request();
            bearer_token(&req).map(|t| String::from_utf8(t.to_vec()).unwrap())
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
