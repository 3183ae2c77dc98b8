//! # CloudCafe gateways
//!
//! Everything that takes work in from outside: the HTTP API ([`http`]), the node that serves it
//! ([`node`]), the payment processor that takes payment requests from SQS (`payments`, feature
//! `cloud`), the notification worker that tells customers by email or text (`notifications`,
//! feature `cloud`), telemetry ([`telemetry`]), the benchmarks' measuring ([`bench`]) and the load generator
//! used by the benchmarks and fault tests ([`load`]). The `cloudcafe` binary (`src/main.rs`, with one
//! module per subcommand under `src/cli/`) is the only place that reads flags and the environment.
//!
//! Architecture Invariant: handlers translate HTTP to use cases and back; they decide nothing.

pub mod auth;
pub mod bench;
pub mod cloudwatch;
pub mod flood;
pub mod http;
pub mod load;
pub mod logging;
pub mod loyalty;
#[cfg(feature = "cloud")]
pub mod messaging;
pub mod node;
#[cfg(feature = "cloud")]
pub mod notifications;
pub mod parks;
#[cfg(feature = "cloud")]
pub mod payments;
#[cfg(feature = "cloud")]
pub mod queue;
pub mod rate_limit;
#[cfg(feature = "cloud")]
pub mod rds_iam;
pub mod telemetry;
pub mod verify;

use std::sync::Arc;

use actix_web::{middleware::from_fn, App};

/// The whole HTTP application for a node, as `main` serves it.
pub fn app(
    state: Arc<http::ApiState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // The request span wraps the recording too, so that what telemetry logs carries the trace id.
    // `nosniff` on every answer: a browser never guesses a JSON error body to be HTML or script.
    App::new()
        .wrap(actix_web::middleware::DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
        .wrap(from_fn(telemetry::record_request))
        .wrap(from_fn(logging::request_span))
        .configure(http::configure(state))
}
