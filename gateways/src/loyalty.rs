//! The loyalty batch jobs: the hourly tier recalculation over every customer with an account, and the
//! import of points from the previous loyalty system (whose tiers then lag until the next
//! recalculation). `cloudcafe loyalty` runs both from the command line; the `loyalty-batch` flood
//! runs them on a node that keeps taking orders.

use std::time::{Duration, Instant};

use actors::cafe::Cafe;
use actors::domain::limits::{self, Invalid, Problem};
use actors::domain::loyalty::{imported_points_order_id, GOLD_AT, PLATINUM_AT};
use events::domain::{streams, CodecError, PointsAccrued};
use events::{AppendError, AppendRequest, Causation, DomainEvent, ExpectedVersion, Journal, NewEvent};
use futures::stream::{self, StreamExt};
use projections::read_models::storefront::StorefrontQueries;
use projections::SinkError;

/// Customers listed from the storefront per page of the recalculation.
pub const RECALCULATION_PAGE: usize = 1000;

/// Appends in flight during an import: enough for the journals' group commit to fill its batches
/// (SQLite's one writer thread and PostgreSQL's batched INSERT both commit concurrent appends together,
/// up to 2,000 events a commit). On the embedded journal 256 in flight imported 33K accounts/s, 1,024
/// 85K/s (100K accounts) and 150K/s (1M): the import is bound by one fsync per group commit.
pub const IMPORT_IN_FLIGHT: usize = 1024;

/// The most points one imported account may carry: far above any real balance, and small enough that
/// the read models' `bigint` balances cannot overflow when orders keep adding to it.
pub const MAX_IMPORTED_POINTS: u64 = 1_000_000_000;

/// What a recalculation did so far (passed to the progress callback after each page), or in all.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecalculationReport {
    /// Customers recalculated (changed or not) or failed.
    pub customers: u64,
    /// Customers whose tier changed (one `TierChanged` each).
    pub changed: u64,
    /// Customers whose recalculation failed (busy, unavailable, or no account after all); the next
    /// run tries them again.
    pub failed: u64,
    pub elapsed: Duration,
}

impl RecalculationReport {
    /// Customers per second so far.
    pub fn rate(&self) -> f64 {
        self.customers as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoyaltyBatchError {
    /// The storefront could not list the next page of customers; what was recalculated stands, and
    /// a run from the start does the rest (a current tier writes nothing).
    #[error("cannot list the loyalty customers after {after:?}")]
    Listing {
        after: Option<String>,
        #[source]
        source: SinkError,
    },
}

/// The hourly batch: pages through every customer with an account (the storefront's loyalty accounts,
/// keyset-paged) and recalculates each one's tier, `concurrency` at a time. Only tiers that differ
/// from what the points earn are written. The storefront must have caught up with the journal for
/// every account to be listed: an account it does not hold yet is left to the next run.
pub async fn recalculate_tiers(
    cafe: &Cafe,
    customers: &dyn StorefrontQueries,
    concurrency: usize,
    on_progress: &mut (dyn FnMut(&RecalculationReport) + Send),
) -> Result<RecalculationReport, LoyaltyBatchError> {
    let started = Instant::now();
    // One correlation id for the run: every TierChanged it writes can be traced back to it.
    let causation = Causation::new_root();
    let mut report = RecalculationReport::default();
    let mut after: Option<String> = None;
    let mut logged_failures = 0;
    loop {
        let page = customers
            .loyalty_customers(after.as_deref(), RECALCULATION_PAGE)
            .await
            .map_err(|source| LoyaltyBatchError::Listing { after: after.clone(), source })?;
        let Some(last) = page.last().cloned() else { break };
        // Owned ids, so that the batch's future is `Send` to any caller (an `async_trait` method too).
        let mut outcomes = stream::iter(page)
            .map(|customer| async move {
                let outcome = cafe.recalculate_tier(&customer, causation).await;
                (customer, outcome)
            })
            .buffer_unordered(concurrency.max(1));
        while let Some((customer, outcome)) = outcomes.next().await {
            report.customers += 1;
            match outcome {
                Ok(recalculated) => report.changed += u64::from(recalculated.changed),
                Err(e) => {
                    report.failed += 1;
                    if logged_failures < 10 {
                        logged_failures += 1;
                        tracing::warn!(customer, error = %events::ErrorChain(&e), "tier not recalculated");
                    }
                }
            }
        }
        report.elapsed = started.elapsed();
        on_progress(&report);
        after = Some(last);
    }
    report.elapsed = started.elapsed();
    if report.failed > 0 {
        tracing::warn!(failed = report.failed, "some tiers were not recalculated; the next run retries them");
    }
    Ok(report)
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// An account of the import breaks the domain's limits; nothing was appended.
    #[error("imported account `{customer_id}`")]
    Invalid {
        customer_id: String,
        #[source]
        source: Invalid,
    },
    #[error("cannot encode an imported account")]
    Encoding(#[from] CodecError),
    /// The journal refused or failed an append; the accounts appended before it stay (a second
    /// import skips them).
    #[error("cannot append the imported accounts")]
    Append(#[from] AppendError),
}

/// Points imported from the previous system: one `PointsAccrued` per customer with order id
/// [`imported_points_order_id`], appended straight to the journal as a new stream (no `TierChanged`:
/// the tiers lag until the next recalculation), [`IMPORT_IN_FLIGHT`] appends at a time. Returns how
/// many accounts were appended: a customer whose stream exists already is skipped, so importing the
/// same accounts twice appends nothing the second time. Every account is checked before the first
/// append (ids as the domain takes them, points up to [`MAX_IMPORTED_POINTS`]; zero points makes no
/// account and is skipped).
pub async fn import_accounts(journal: &dyn Journal, accounts: &[(String, u64)]) -> Result<u64, ImportError> {
    for (customer_id, points) in accounts {
        let invalid = |source| ImportError::Invalid { customer_id: customer_id.clone(), source };
        limits::check_id("customer_id", customer_id).map_err(invalid)?;
        if *points > MAX_IMPORTED_POINTS {
            let range = Problem::OutOfRange { min: 0, max: MAX_IMPORTED_POINTS as i64 };
            return Err(invalid(Invalid::new("points", range)));
        }
    }
    // One correlation id for the import, as for one request.
    let causation = Causation::new_root();
    // Built before the appends start, owned: the stream below borrows nothing but the journal, so
    // its future is `Send` to any caller (an `async_trait` method included).
    let mut requests = Vec::with_capacity(accounts.len());
    for (customer_id, points) in accounts.iter().filter(|(_, points)| *points > 0) {
        let accrued: DomainEvent = PointsAccrued {
            customer_id: customer_id.clone(),
            order_id: imported_points_order_id(customer_id),
            points: *points,
        }
        .into();
        requests.push(AppendRequest {
            stream_id: streams::loyalty(customer_id),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent::from_domain(&accrued, causation)?],
        });
    }
    let mut appends = stream::iter(requests)
        .map(|request| async move {
            match journal.append(request).await {
                Ok(_) => Ok(1),
                Err(AppendError::Conflict { .. }) => Ok(0),
                Err(e) => Err(ImportError::Append(e)),
            }
        })
        .buffer_unordered(IMPORT_IN_FLIGHT);
    let mut appended = 0;
    while let Some(outcome) = appends.next().await {
        appended += outcome?;
    }
    Ok(appended)
}

/// `customers` synthetic accounts `cust-<i>` (i from 0) for trying the batch, drawn from `seed`:
/// about 65% below Gold, 25% Gold and 10% Platinum by their points, so that about a third of the
/// tiers change on the first recalculation after the import.
pub fn synthetic_accounts(customers: u64, seed: u64) -> Vec<(String, u64)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..customers)
        .map(|i| {
            let draw = rng.f64();
            let points = if draw < 0.10 {
                rng.u64(PLATINUM_AT..PLATINUM_AT * 3)
            } else if draw < 0.35 {
                rng.u64(GOLD_AT..PLATINUM_AT)
            } else {
                rng.u64(1..GOLD_AT)
            };
            (format!("cust-{i}"), points)
        })
        .collect()
}
