//! Clients for the AWS emulators (kinesalite for Kinesis, moto for SQS and DynamoDB), built only
//! through the workspace's one builder, [`AwsSettings`], and Kinesis streams of a test's own that
//! are deleted when the test is done ([`TemporaryStream`]).

use std::time::Duration;

use projections::aws::AwsSettings;
use projections::bus::kinesis;
use projections::read_models::dynamo::TableNames;

use crate::names::{short_id, unique};

/// The longest one call to an emulator may take in a test, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How many attempts the SDK's standard retry makes against an emulator.
pub const MAX_ATTEMPTS: u32 = 3;

/// How an emulator at `endpoint` is reached in tests: static test credentials, `us-east-1`,
/// [`OPERATION_TIMEOUT`] and [`MAX_ATTEMPTS`].
pub fn emulator(endpoint: &str) -> AwsSettings {
    AwsSettings::emulator(endpoint).with_operation_timeout(OPERATION_TIMEOUT).with_max_attempts(MAX_ATTEMPTS)
}

/// A DynamoDB client for the emulator at `endpoint`, with the SDK's default timeouts (none per
/// operation), as the node's own clients have them: moto applies DynamoDB requests one at a time, so
/// under a flood on a busy machine one request can wait behind many others for longer than
/// [`OPERATION_TIMEOUT`] without anything being wrong.
pub async fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&AwsSettings::emulator(endpoint).sdk_config().await)
}

/// An SQS client for the emulator at `endpoint`.
pub async fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&emulator(endpoint).sdk_config().await)
}

/// A Kinesis client for the emulator at `endpoint`.
pub async fn kinesis_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    kinesis_client_with(&emulator(endpoint)).await
}

/// A Kinesis client with settings of the test's own (e.g. one that fails fast against a broker the
/// test kills).
pub async fn kinesis_client_with(settings: &AwsSettings) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&settings.sdk_config().await)
}

/// DynamoDB read-model table names no other test uses.
pub fn fresh_table_names() -> TableNames {
    TableNames::new(format!("t{}", short_id()), "test")
}

/// A Kinesis stream of one test's own, deleted when this is dropped (also when the test panics), so
/// that a test run leaves no streams behind in the emulator.
#[derive(Debug)]
pub struct TemporaryStream {
    name: String,
    endpoint: String,
}

impl TemporaryStream {
    /// Creates `prefix-<unique id>` with `shards` shards on the emulator at `endpoint` (which
    /// `client` reaches) and waits until it is active.
    pub async fn create(client: &aws_sdk_kinesis::Client, endpoint: &str, prefix: &str, shards: i32) -> Self {
        let stream = TemporaryStream::adopt(endpoint, unique(prefix));
        kinesis::ensure_stream(client, &stream.name, shards, OPERATION_TIMEOUT).await.unwrap();
        stream
    }

    /// Takes charge of deleting a stream that something else (a node under test) creates.
    pub fn adopt(endpoint: &str, name: impl Into<String>) -> Self {
        TemporaryStream { name: name.into(), endpoint: endpoint.to_owned() }
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::ops::Deref for TemporaryStream {
    type Target = str;

    fn deref(&self) -> &str {
        &self.name
    }
}

impl Drop for TemporaryStream {
    /// Deletes the stream from a thread and runtime of its own with a client of its own, so that it
    /// works from any test runtime (a current-thread one is blocked while this runs) and while
    /// unwinding. A stream already gone, or an emulator already stopped, is fine.
    fn drop(&mut self) {
        let (name, endpoint) = (self.name.clone(), self.endpoint.clone());
        let deleting = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async {
                let settings =
                    AwsSettings::emulator(endpoint).with_operation_timeout(Duration::from_secs(5)).with_max_attempts(1);
                let client = kinesis_client_with(&settings).await;
                let deleted = client.delete_stream().stream_name(&name).enforce_consumer_deletion(true).send().await;
                if let Err(e) = deleted {
                    if e.as_service_error().is_none_or(|s| !s.is_resource_not_found_exception()) {
                        eprintln!("could not delete the test's Kinesis stream {name}: {e}");
                    }
                }
            });
        });
        let _ = deleting.join();
    }
}
