//! DynamoDB table helpers that are about DynamoDB, not about any one table (feature `dynamodb`):
//! creating a small keyed table, waiting until a table is `ACTIVE`, scanning a whole table.
//!
//! They live beside the SDK configuration and the error reading rather than with the read models
//! because three unrelated owners use them: the DynamoDB read models
//! ([`crate::read_models::dynamo`]), the Kinesis consumer's shard leases ([`crate::bus::leases`])
//! and the gateways' payment ledger. Every failure comes back classified, as an [`AwsFailure`].

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use super::{classify, AwsFailure, FailureKind};

/// One DynamoDB item: attribute name to value.
pub type Item = HashMap<String, AttributeValue>;

/// How long to wait for a new table to become `ACTIVE`.
pub const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a table is not ready for use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableNotActive {
    /// The table settled in another state (e.g. `DELETING`).
    #[error("the table is {0}, not ACTIVE")]
    Settled(String),
    /// The table was still being created or updated when the wait ended.
    #[error("the table did not become ACTIVE within {0:?}")]
    TimedOut(Duration),
}

/// Every item of `table`: a strongly consistent scan, every page.
pub async fn scan_all(client: &Client, table: &str) -> Result<Vec<Item>, AwsFailure> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify(table, e))?;
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

/// Waits until `table` is `ACTIVE` (at once on emulators, seconds on AWS); a table in any other
/// settled state, or still not ready after [`TABLE_READY_TIMEOUT`], is unavailable.
pub async fn wait_until_active(client: &Client, table: &str) -> Result<(), AwsFailure> {
    let deadline = tokio::time::Instant::now() + TABLE_READY_TIMEOUT;
    loop {
        let out = client.describe_table().table_name(table).send().await.map_err(|e| classify(table, e))?;
        match out.table.and_then(|t| t.table_status) {
            Some(TableStatus::Active) => return Ok(()),
            Some(TableStatus::Creating) | Some(TableStatus::Updating) | None => {}
            Some(other) => {
                return Err(AwsFailure::new(
                    FailureKind::Unavailable,
                    table,
                    TableNotActive::Settled(other.to_string()),
                ))
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AwsFailure::new(
                FailureKind::Unavailable,
                table,
                TableNotActive::TimedOut(TABLE_READY_TIMEOUT),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates `table` with `create` (the `CreateTable` request, not yet sent) if it is absent, and
/// waits until it is `ACTIVE` (at once on emulators, seconds on AWS). A table that exists is only
/// described, so a deployment that creates its tables itself (Terraform) need not grant
/// `CreateTable` on them; another process creating it first is fine.
pub async fn ensure_table(client: &Client, table: &str, create: CreateTableFluentBuilder) -> Result<(), AwsFailure> {
    let status = match client.describe_table().table_name(table).send().await {
        Ok(out) => out.table.and_then(|t| t.table_status),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
            match create.send().await {
                Ok(out) => out.table_description.and_then(|t| t.table_status),
                // Another process created it first.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => None,
                Err(e) => return Err(classify(table, e)),
            }
        }
        Err(e) => return Err(classify(table, e)),
    };
    if status == Some(TableStatus::Active) {
        return Ok(());
    }
    wait_until_active(client, table).await
}

/// Creates a table with one string hash key `key` (on-demand capacity) if absent, and waits until
/// it is `ACTIVE`: the small bookkeeping tables (shard leases, the payments ledger).
pub async fn ensure_keyed_table(client: &Client, table: &str, key: &str) -> Result<(), AwsFailure> {
    let create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("complete key schema"),
        );
    ensure_table(client, table, create).await
}
