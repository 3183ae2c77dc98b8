//! The read models: sinks that follow the journal (or, for the stream-ordered ones, a Kinesis shard),
//! the runner that feeds them, the cache in front of them, and replay, which rebuilds and compares them.
//! [`fold`] is the pure event-to-row fold the storefront-shaped models share; [`shadow`] promotes the
//! SQL models' shadow copies.

pub mod analytics;
pub mod cache;
pub mod fold;
pub mod parks;
pub mod refusals;
pub mod replay;
pub mod runner;
pub mod shadow;
pub mod storefront;

#[cfg(feature = "dynamodb")]
pub mod dynamo;

#[cfg(feature = "documentdb")]
pub mod documents;

#[cfg(feature = "conformance")]
pub mod conformance;

/// How a sink without a transaction around its page writes its stored position (DynamoDB, DocumentDB).
#[cfg(any(feature = "dynamodb", feature = "documentdb"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PositionWrite {
    /// Only if there is no position yet.
    IfAbsent,
    /// Only forward: two runners of one projection never move the position back.
    Forward,
    /// Whatever it was.
    Exactly,
}
