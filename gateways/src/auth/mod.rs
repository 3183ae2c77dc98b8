//! Who the caller is and what they may do.
//!
//! - [`token`]: bearer tokens (JWT) — the node's local Ed25519 key that issues and verifies them
//!   for the embedded node, the cluster and tests, and the [`token::Verifier`] that turns a token
//!   into a [`Principal`] (signature, `kid` and algorithm, `iss`, `aud`, `exp`, `nbf`, role).
//! - [`jwks`]: an identity provider's published keys (Amazon Cognito), fetched and cached.
//! - [`access`]: the one authorization decision, a pure function of the caller and what a request
//!   touches.
//!
//! Architecture Invariant: nothing here knows HTTP. `http::auth` reads the bearer header, asks the
//! verifier, works out each route's [`Access`] and maps a [`Denial`] to a status.

pub mod access;
pub mod jwks;
pub mod token;

pub use access::{authorize, Access, Denial, Principal, Role};
pub use token::{LocalKey, TokenError, Verifier};
