//! Shard leases in a DynamoDB table, as the Kinesis Client Library keeps them (features `kinesis` and
//! `dynamodb`).
//!
//! One item per shard, key `shard_id` (S):
//!
//! | attribute    | type | meaning                                                                  |
//! |--------------|------|--------------------------------------------------------------------------|
//! | `owner`      | S    | the worker holding the lease; absent when nobody does                   |
//! | `lease_counter` | N | the lease counter: every write by the holder (renewal, checkpoint) adds 1 |
//! | `checkpoint` | S    | `TRIM_HORIZON`, a sequence number (processed up to and including), or `SHARD_END` |
//! | `parents`    | SS   | the parent shard ids (after a split or merge); absent for an original shard |
//!
//! Every write is conditional, so the table itself arbitrates between workers:
//!
//! - a worker **takes** an expired lease only if its counter is still the one it watched expire, and
//!   **steals** one from a busier worker only if that worker still holds it;
//! - the holder **renews** and **checkpoints** only if it still owns the lease *and* the counter is the
//!   one it last wrote. A worker that lost its lease (taken, stolen) fails both: it is fenced off and
//!   can no longer move the checkpoint.
//!
//! Expiry needs no synchronized clocks: a worker remembers, by its own clock, when it first saw each
//! lease's counter; a counter unchanged for longer than the lease timeout means its holder stopped
//! renewing.
//!
//! Architecture Invariant: a checkpoint only moves forward ([`Checkpoint`] is ordered), and only the
//! holder of the current counter moves it.

use std::cmp::Ordering;
use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use crate::aws::dynamodb::{ensure_keyed_table, scan_all};
use crate::aws::{classify, AwsFailure, FailureKind};

/// How far a shard has been processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// Nothing processed: start at the oldest record.
    TrimHorizon,
    /// Processed up to and including this sequence number.
    After(String),
    /// The shard is closed and every record of it was processed.
    ShardEnd,
}

impl Checkpoint {
    pub fn parse(text: &str) -> Result<Self, LeaseError> {
        match text {
            "TRIM_HORIZON" => Ok(Checkpoint::TrimHorizon),
            "SHARD_END" => Ok(Checkpoint::ShardEnd),
            digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Checkpoint::After(digits.to_owned()))
            }
            other => Err(LeaseError::Corrupt(format!("checkpoint {other:?}"))),
        }
    }

    pub fn as_text(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => "TRIM_HORIZON",
            Checkpoint::After(sequence) => sequence,
            Checkpoint::ShardEnd => "SHARD_END",
        }
    }
}

impl PartialOrd for Checkpoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Checkpoint {
    /// `TrimHorizon` < every sequence number < `ShardEnd`; sequence numbers are decimal strings of
    /// varying length, ordered by length, then text.
    fn cmp(&self, other: &Self) -> Ordering {
        fn rank(c: &Checkpoint) -> (u8, usize, &str) {
            match c {
                Checkpoint::TrimHorizon => (0, 0, ""),
                Checkpoint::After(s) => {
                    let (len, text) = crate::sequence_key(s);
                    (1, len, text)
                }
                Checkpoint::ShardEnd => (2, 0, ""),
            }
        }
        rank(self).cmp(&rank(other))
    }
}

/// One shard's lease as last read or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub shard_id: String,
    pub owner: Option<String>,
    pub counter: u64,
    pub checkpoint: Checkpoint,
    pub parents: Vec<String>,
}

/// Why a lease operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LeaseError {
    /// The condition failed: another worker holds the lease now, or wrote it since we read it.
    #[error("lease on {0} lost to another worker")]
    Lost(String),
    /// A checkpoint never moves back.
    #[error("checkpoint of {shard} would move back from {from} to {to}")]
    Backwards { shard: String, from: String, to: String },
    /// The lease table could not be reached or written (the call's failure is the cause).
    #[error("lease table unavailable: {0}")]
    Unavailable(#[from] AwsFailure),
    /// An item of the lease table is not a lease this code wrote.
    #[error("lease table holds an item it cannot read: {0}")]
    Corrupt(String),
}

/// The lease table of one consumer application.
#[derive(Clone)]
pub struct LeaseTable {
    client: Client,
    table: String,
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Maps a failed conditional write to [`LeaseError::Lost`], anything else to `Unavailable`.
fn conditional<E, R>(table: &str, shard: &str, e: SdkError<E, R>) -> LeaseError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let failure = classify(table, e);
    if failure.is(FailureKind::ConditionFailed) {
        LeaseError::Lost(shard.to_owned())
    } else {
        LeaseError::Unavailable(failure)
    }
}

fn lease_of(item: &HashMap<String, AttributeValue>) -> Result<Lease, LeaseError> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let shard_id = text("shard_id").ok_or_else(|| LeaseError::Corrupt("an item without shard_id".into()))?;
    let counter = item
        .get("lease_counter")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| LeaseError::Corrupt(format!("{shard_id}: counter")))?;
    let checkpoint = Checkpoint::parse(&text("checkpoint").unwrap_or_else(|| "TRIM_HORIZON".into()))?;
    let mut parents = item.get("parents").and_then(|v| v.as_ss().ok()).cloned().unwrap_or_default();
    parents.sort();
    Ok(Lease { shard_id, owner: text("owner"), counter, checkpoint, parents })
}

impl LeaseTable {
    /// Opens the lease table `table`, creating it (on-demand capacity) if absent.
    pub async fn open(client: Client, table: impl Into<String>) -> Result<Self, LeaseError> {
        let leases = LeaseTable { client, table: table.into() };
        leases.ensure_table().await?;
        Ok(leases)
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    async fn ensure_table(&self) -> Result<(), LeaseError> {
        Ok(ensure_keyed_table(&self.client, &self.table, "shard_id").await?)
    }

    /// Every lease (a strongly consistent scan), by shard id.
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let items = scan_all(&self.client, &self.table).await?;
        let mut leases = items.iter().map(lease_of).collect::<Result<Vec<_>, _>>()?;
        leases.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        Ok(leases)
    }

    /// Adds an unowned lease for a shard the table does not know yet; `false` if it was there.
    pub async fn create_if_absent(&self, shard_id: &str, parents: &[String]) -> Result<bool, LeaseError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("shard_id", s(shard_id))
            .item("lease_counter", n(0))
            .item("checkpoint", s(Checkpoint::TrimHorizon.as_text()))
            .condition_expression("attribute_not_exists(shard_id)");
        if !parents.is_empty() {
            put = put.item("parents", AttributeValue::Ss(parents.to_vec()));
        }
        match put.send().await.map_err(|e| classify(&self.table, e)) {
            Ok(_) => Ok(true),
            Err(failure) if failure.is(FailureKind::ConditionFailed) => Ok(false),
            Err(failure) => Err(failure.into()),
        }
    }

    /// Takes a lease whose holder stopped renewing (or that nobody holds): succeeds only if its
    /// counter is still `seen.counter`.
    pub async fn take(&self, seen: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        self.write(&seen.shard_id, owner, "#counter = :seen", seen.counter, None, None).await
    }

    /// Takes a lease from a worker that holds more than its share: succeeds only if `seen.owner`
    /// still holds it (whatever its counter). The old holder's next renewal or checkpoint fails.
    pub async fn steal(&self, seen: &Lease, owner: &str) -> Result<Lease, LeaseError> {
        let Some(victim) = &seen.owner else { return self.take(seen, owner).await };
        self.write(&seen.shard_id, owner, "#owner = :victim", seen.counter, Some(victim), None).await
    }

    /// Keeps a held lease: succeeds only if `held` is still ours at its counter.
    pub async fn renew(&self, held: &Lease) -> Result<Lease, LeaseError> {
        let owner = held.owner.as_deref().ok_or_else(|| LeaseError::Lost(held.shard_id.clone()))?;
        self.write(&held.shard_id, owner, "#owner = :me AND #counter = :seen", held.counter, None, None).await
    }

    /// Moves a held lease's checkpoint forward (fenced like [`LeaseTable::renew`]).
    pub async fn checkpoint(&self, held: &Lease, to: Checkpoint) -> Result<Lease, LeaseError> {
        if to < held.checkpoint {
            return Err(LeaseError::Backwards {
                shard: held.shard_id.clone(),
                from: held.checkpoint.as_text().to_owned(),
                to: to.as_text().to_owned(),
            });
        }
        let owner = held.owner.as_deref().ok_or_else(|| LeaseError::Lost(held.shard_id.clone()))?;
        self.write(&held.shard_id, owner, "#owner = :me AND #counter = :seen", held.counter, None, Some(to)).await
    }

    /// Gives a held lease up (on shutdown) so that another worker takes it at once.
    pub async fn release(&self, held: &Lease) -> Result<(), LeaseError> {
        let owner = held.owner.as_deref().ok_or_else(|| LeaseError::Lost(held.shard_id.clone()))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("shard_id", s(&held.shard_id))
            .update_expression("REMOVE #owner SET #counter = #counter + :one")
            .condition_expression("#owner = :me AND #counter = :seen")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#counter", "lease_counter")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":seen", n(held.counter))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| conditional(&self.table, &held.shard_id, e))?;
        Ok(())
    }

    /// Sets `owner`, adds 1 to the counter and optionally sets the checkpoint, under `condition`
    /// (which may use `:seen` = `counter`, `:me` = `owner`, `:victim`).
    async fn write(
        &self,
        shard_id: &str,
        owner: &str,
        condition: &str,
        counter: u64,
        victim: Option<&str>,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Lease, LeaseError> {
        let mut update = "SET #owner = :me, #counter = #counter + :one".to_owned();
        if checkpoint.is_some() {
            update.push_str(", #checkpoint = :checkpoint");
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("shard_id", s(shard_id))
            .update_expression(update)
            .condition_expression(format!("attribute_exists(shard_id) AND {condition}"))
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#counter", "lease_counter")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew);
        if condition.contains(":seen") {
            request = request.expression_attribute_values(":seen", n(counter));
        }
        if let Some(victim) = victim {
            request = request.expression_attribute_values(":victim", s(victim));
        }
        if let Some(c) = &checkpoint {
            request = request
                .expression_attribute_names("#checkpoint", "checkpoint")
                .expression_attribute_values(":checkpoint", s(c.as_text()));
        }
        let out = request.send().await.map_err(|e| conditional(&self.table, shard_id, e))?;
        lease_of(out.attributes().ok_or_else(|| LeaseError::Corrupt(format!("{shard_id}: no attributes back")))?)
    }
}
