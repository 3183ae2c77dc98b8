//! The one way the workspace builds AWS SDK configuration: against an emulator (endpoint override,
//! region `us-east-1` unless given, static test credentials) or against AWS (the SDK's default
//! credential chain and endpoints). The binary builds its clients through it from its settings, and
//! the tests through the test kit.
//!
//! [`classify`] is the one reading of SDK errors: every adapter (Kinesis, SQS, DynamoDB, the payment
//! ledger) turns a failed call into an [`AwsFailure`] and decides on its [`FailureKind`], keeping the
//! SDK error as the cause. [`dynamodb`] holds the DynamoDB table helpers that read models, shard
//! leases and the payment ledger share.

#[cfg(feature = "dynamodb")]
pub mod dynamodb;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// Where and how to reach AWS APIs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// An emulator's URL; `None` means AWS itself, through the default credential chain.
    pub endpoint: Option<String>,
    /// The region; `us-east-1` against an emulator, the default chain's region otherwise.
    pub region: Option<String>,
    /// The longest one operation (retries included) may take.
    pub operation_timeout: Option<Duration>,
    /// How many attempts the SDK's standard retry makes.
    pub max_attempts: Option<u32>,
}

impl AwsSettings {
    /// AWS itself, or the emulator at `endpoint` when one is given.
    pub fn new(endpoint: Option<String>) -> Self {
        AwsSettings { endpoint, ..AwsSettings::default() }
    }

    pub fn emulator(endpoint: impl Into<String>) -> Self {
        AwsSettings::new(Some(endpoint.into()))
    }

    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// The shared configuration every service client is built from (`Client::new(&config)`).
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(endpoint) = &self.endpoint {
            loader = loader
                .endpoint_url(endpoint)
                .region(Region::new(self.region.clone().unwrap_or_else(|| "us-east-1".to_owned())))
                .credentials_provider(Credentials::new("test", "test", None, None, "cloudcafe-emulator"));
        } else if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(timeout) = self.operation_timeout {
            loader = loader.timeout_config(
                TimeoutConfig::builder().connect_timeout(Duration::from_secs(1)).operation_timeout(timeout).build(),
            );
        }
        if let Some(attempts) = self.max_attempts {
            loader = loader.retry_config(RetryConfig::standard().with_max_attempts(attempts));
        }
        loader.load().await
    }
}

/// What a failed AWS call means to its caller; the one reading of SDK errors in the workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The request itself is wrong (invalid parameter, malformed batch, not even sent): sending it
    /// again cannot help.
    Refused,
    /// A conditional write's condition did not hold (DynamoDB `ConditionalCheckFailedException`).
    ConditionFailed,
    /// The table, stream or queue does not exist (or not yet, or no longer).
    NotFound,
    /// Anything else: unreachable, timed out, throttled, a server fault. Try again later.
    Unavailable,
}

/// A failed AWS call, classified, with the SDK's error kept as its cause.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct AwsFailure {
    pub kind: FailureKind,
    /// The service's error code, when it answered with one.
    pub code: Option<String>,
    /// What was being done, e.g. the table or stream name.
    pub what: String,
    detail: String,
    #[source]
    source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
}

impl AwsFailure {
    /// A failure that is not an SDK error (a table that never became active, a request that could
    /// not be built): `what` names the resource, `cause` says what happened.
    pub fn new(
        kind: FailureKind,
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        AwsFailure {
            kind,
            code: None,
            what: what.into(),
            detail: cause.to_string(),
            source: std::sync::Arc::new(cause),
        }
    }

    /// Whether the failure is of `kind`.
    pub fn is(&self, kind: FailureKind) -> bool {
        self.kind == kind
    }
}

/// Error codes that say the request itself is wrong, across Kinesis, SQS and DynamoDB (SQS's
/// `AWS.SimpleQueueService.` prefix is ignored).
const REFUSED_CODES: &[&str] = &[
    "ValidationException",
    "InvalidArgumentException",
    "SerializationException",
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "BatchEntryIdsNotDistinct",
    "BatchRequestTooLong",
    "EmptyBatchRequest",
    "TooManyEntriesInBatchRequest",
    "InvalidBatchEntryId",
];

/// Classifies a failed call (`what` names what it was doing, e.g. the table) and keeps it as the cause.
pub fn classify<E, R>(
    what: impl Into<String>,
    error: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> AwsFailure
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;
    let code = error.code().map(str::to_owned);
    let bare = code.as_deref().map(|c| c.strip_prefix("AWS.SimpleQueueService.").unwrap_or(c));
    let kind = match (&error, bare) {
        (SdkError::ConstructionFailure(_), _) => FailureKind::Refused,
        (SdkError::ServiceError(_), Some("ConditionalCheckFailedException")) => FailureKind::ConditionFailed,
        (SdkError::ServiceError(_), Some("ResourceNotFoundException" | "QueueDoesNotExist" | "NonExistentQueue")) => {
            FailureKind::NotFound
        }
        (SdkError::ServiceError(_), Some(c)) if REFUSED_CODES.contains(&c) => FailureKind::Refused,
        _ => FailureKind::Unavailable,
    };
    let detail = aws_smithy_types::error::display::DisplayErrorContext(&error).to_string();
    AwsFailure { kind, code, what: what.into(), detail, source: std::sync::Arc::new(error) }
}

/// A read model's failed call: poison when the request itself was refused (a `ValidationException`:
/// an item the table cannot hold; sending it again cannot help), unavailable otherwise. The reason
/// names what was being done, the failure is the cause.
impl From<AwsFailure> for crate::SinkError {
    fn from(failure: AwsFailure) -> Self {
        if failure.is(FailureKind::Refused) {
            return crate::SinkError::poison_because(format!("{} refused the request", failure.what), failure);
        }
        crate::SinkError::Unavailable { reason: failure.what.clone(), cause: Some(std::sync::Arc::new(failure)) }
    }
}

/// A bus adapter's failed call (Kinesis, SQS): refused when the request itself is wrong (sending it
/// again cannot help), unavailable otherwise: unreachable, timed out, throttled, a server fault, a
/// stream or queue missing or being recreated. The reason names what was being done, the failure
/// is the cause.
impl From<AwsFailure> for crate::bus::publisher::BusError {
    fn from(failure: AwsFailure) -> Self {
        use crate::bus::publisher::BusError;
        let reason = failure.what.clone();
        let cause: events::Cause = std::sync::Arc::new(failure.clone());
        match failure.kind {
            FailureKind::Refused => BusError::Refused { reason, cause: Some(cause) },
            FailureKind::ConditionFailed | FailureKind::NotFound | FailureKind::Unavailable => {
                BusError::Unavailable { reason, cause: Some(cause) }
            }
        }
    }
}
