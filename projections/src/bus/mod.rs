//! The way out of the process and back in: the outbox publisher that follows the journal to Kinesis
//! and SQS, and the KCL-style Kinesis consumer with its DynamoDB shard leases.

pub mod publisher;

#[cfg(feature = "kinesis")]
pub mod kinesis;

#[cfg(feature = "kinesis")]
pub mod analytics;

#[cfg(feature = "sqs")]
pub mod sqs;

#[cfg(feature = "sqs")]
pub mod notifications;

#[cfg(feature = "dynamodb")]
pub mod leases;

#[cfg(all(feature = "kinesis", feature = "dynamodb"))]
pub mod consumer;
