//! # CloudCafe's test kit
//!
//! What the workspace's integration tests share, written once: the switches that say whether a
//! server is there ([`servers`]), the Python verifier of the Kinesis wire format ([`python`]),
//! servers that speak only TLS with a CA made at test time ([`tls`]),
//! [`wait_until`], names no other test uses ([`names`]) and, with the `aws` feature, emulator
//! clients and Kinesis streams that delete themselves ([`aws`]) and the journal-to-Kinesis setup the
//! consumer tests start from ([`workload`]).
//!
//! A dev-dependency only. Without `aws` it depends on no CloudCafe crate, so `events` and `actors`
//! can use it without compiling the AWS SDK, and nothing in it needs a crate built with `cfg(test)`.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "aws")]
pub mod aws;
pub mod names;
pub mod python;
pub mod servers;
pub mod tls;
#[cfg(feature = "aws")]
pub mod workload;

/// Polls `done` every 100 ms until it holds; panics naming `what` once `within` has passed. For
/// tests that wait for a distributed outcome (a lease moved, a follower taken over).
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The workspace's root directory (where `deploy/local` and `.cc-local` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the tests run under CI (`CI=true`), where a missing server is a failure, not a skip.
pub(crate) fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}
