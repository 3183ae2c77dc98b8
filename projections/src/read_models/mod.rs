//! The read models: sinks that follow the journal (or, for the stream-ordered ones, a Kinesis shard),
//! the runner that feeds them, the cache in front of them, and replay, which rebuilds and compares them.

pub mod analytics;
pub mod cache;
pub mod replay;
pub mod runner;
pub mod storefront;

#[cfg(feature = "dynamodb")]
pub mod dynamo;

#[cfg(feature = "documentdb")]
pub mod documents;

#[cfg(feature = "conformance")]
pub mod conformance;
