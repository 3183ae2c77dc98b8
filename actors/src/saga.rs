//! The order saga: follows the journal and drives each order from placed to paid or cancelled, and
//! gives back what a cancelled order took.
//!
//! ```text
//! OrderPlaced ─► reserve stock per line ─┬─► authorize payment ─► PaymentAuthorized ─► capture
//!                                        │                         PaymentCaptured ─► OrderPaid ─► accrue points
//!                                        └─ out of stock ─► OrderCancelled
//! OrderPreparationStarted ─► settle stock (the reservation becomes a sale)
//! PaymentDeclined ─► OrderCancelled
//! OrderCancelled ─► release reserved stock, void an authorized payment, refund a captured one,
//!                   revoke the points the order earned
//! PaymentAuthorized (order already cancelled) ─► void      PaymentCaptured (order already cancelled) ─► refund
//! PaymentVoidRequested ─► PaymentVoided, PaymentRefundRequested ─► PaymentRefunded (here when the
//!                         saga authorizes; else the payment processor, from the queue)
//! ```
//!
//! Stock is sold when the order's preparation starts, not when it is paid: until then a customer
//! may cancel, and the reservation is simply released.
//!
//! No hold is left behind and no money is kept: whichever comes second of an order's cancellation
//! and its payment's authorization asks for the void, and of the cancellation and the capture, for
//! the refund, so a payment that moves on after the order was cancelled is given back too.
//!
//! Within a reaction, commands that do not depend on each other go out at once (every line's
//! reservation; every line's release, the void or refund and the points), so hot streams batch them
//! with other orders' commands. Every reaction is a command that is idempotent by order id, and the
//! saga stores its position in the journal ([`CHECKPOINT`]) only after a whole page is handled, so a
//! crash replays reactions and changes nothing. The saga is a [`Follower`]: the loop, its retries
//! and its metrics (`follower_*{follower="order-saga"}`) are [`events::follow`]'s.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use events::domain::{streams, CodecError};
use events::follow::{follow, FollowOptions, Follower};
use events::{Causation, DomainEvent, RecordedEvent, StoreError};
use futures::StreamExt;
use uuid::Uuid;

use crate::cafe::{AuthorizePayment, Authorizer, Cafe, CafeError};
use crate::domain::inventory::{InventoryCommand, InventoryError};
use crate::domain::loyalty::LoyaltyCommand;
use crate::domain::order::{OrderCommand, OrderError, OrderStatus};
use crate::domain::payment::PaymentCommand;
use crate::host::{CommandError, ExecuteOptions};

/// The name the saga's position is stored under, and its name as a follower.
pub const CHECKPOINT: &str = "order-saga";

/// Saga commands need no state back: skip the copy.
const QUIET: ExecuteOptions = ExecuteOptions { new_stream: false, return_state: false };

/// A reaction could not finish because something was unavailable; the page is tried again.
#[derive(Debug, thiserror::Error)]
pub enum Retry {
    /// A command or query of the cafe failed.
    #[error("saga step failed: {0}")]
    Cafe(#[from] CafeError),
    /// The journal did not answer.
    #[error("saga step failed: journal: {0}")]
    Journal(#[from] StoreError),
    /// An event the saga reacts to does not decode.
    #[error("saga step failed: {0}")]
    Decode(#[from] CodecError),
}

/// Turns a domain rejection into "done" (the reaction is moot) and anything else into a retry.
fn settle<T, E: crate::domain::Rejection>(result: Result<T, CommandError<E>>) -> Result<(), Retry> {
    match result {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected(e)) => {
            tracing::debug!(rejection = %e, "saga reaction refused");
            Ok(())
        }
        Err(other) => Err(CafeError::from(other).into()),
    }
}

/// The order saga: a [`Follower`] of the journal that reacts to order and payment events.
pub struct OrderSaga {
    cafe: Arc<Cafe>,
    concurrency: usize,
}

impl OrderSaga {
    /// A saga that drives the orders of `cafe`.
    pub fn new(cafe: Arc<Cafe>) -> Self {
        OrderSaga { cafe, concurrency: 1024 }
    }

    /// Follows the journal from the stored checkpoint until `stop` turns true (see [`follow`]).
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) {
        follow(self.cafe.journal.clone(), &self, FollowOptions::default(), stop).await
    }

    /// Reacts to a page of events: orders concurrently, each order's events in order.
    pub async fn handle_page(&self, page: &[RecordedEvent]) -> Result<(), Retry> {
        let mut by_order: HashMap<Uuid, Vec<(DomainEvent, Causation)>> = HashMap::new();
        for recorded in page {
            let category = streams::category(&recorded.stream_id);
            if !matches!(category, "order" | "payment") {
                continue;
            }
            let event = recorded.decode()?;
            let order_id = match &event {
                DomainEvent::OrderPlaced(e) => e.order_id,
                DomainEvent::OrderPaid(e) => e.order_id,
                DomainEvent::OrderCancelled(e) => e.order_id,
                DomainEvent::PaymentAuthorized(e) => e.order_id,
                DomainEvent::PaymentDeclined(e) => e.order_id,
                DomainEvent::PaymentCaptured(e) => e.order_id,
                DomainEvent::PaymentVoidRequested(e) => e.order_id,
                DomainEvent::PaymentRefundRequested(e) => e.order_id,
                DomainEvent::OrderPreparationStarted(e) => e.order_id,
                _ => continue,
            };
            by_order.entry(order_id).or_default().push((event, Causation::following(recorded)));
        }
        let results: Vec<Result<(), Retry>> = futures::stream::iter(by_order.into_values())
            .map(|events| async move {
                for (event, causation) in events {
                    self.react(&event, causation).await?;
                }
                Ok(())
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Runs a command on the order's payment, [`settle`]d: a rejection (the payment is not in a state
    /// the command applies to, e.g. a void asked of a payment holding no authorization) is done.
    async fn carry_out(&self, order_id: Uuid, command: PaymentCommand, causation: Causation) -> Result<(), Retry> {
        settle(self.cafe.payments.execute_with(&streams::payment(order_id), command, causation, QUIET).await)
    }

    async fn react(&self, event: &DomainEvent, causation: Causation) -> Result<(), Retry> {
        let cafe = &self.cafe;
        match event {
            DomainEvent::OrderPlaced(placed) => {
                let Some(order) = cafe.order(placed.order_id).await? else { return Ok(()) };
                if order.status != OrderStatus::Placed {
                    return Ok(()); // already decided: this is a replay
                }
                // Every line at once: a hot SKU's actor batches them with other orders' lines. A
                // line short of stock cancels the order, and the cancellation releases every line.
                let reservations = placed.lines.iter().map(|line| {
                    let command = InventoryCommand::Reserve {
                        store_id: placed.store_id.clone(),
                        sku: line.item_id.clone(),
                        order_id: placed.order_id,
                        quantity: line.quantity,
                    };
                    let stream = streams::inventory(&placed.store_id, &line.item_id);
                    async move { (line, cafe.inventory.execute_with(&stream, command, causation, QUIET).await) }
                });
                let mut shortage = None;
                for (line, reserved) in futures::future::join_all(reservations).await {
                    match reserved {
                        Ok(_) => {}
                        Err(CommandError::Rejected(InventoryError::OutOfStock { .. })) => {
                            shortage.get_or_insert_with(|| line.item_id.clone());
                        }
                        Err(other) => settle::<(), _>(Err(other))?,
                    }
                }
                if let Some(sku) = shortage {
                    let command = OrderCommand::Cancel { reason: format!("out_of_stock:{sku}") };
                    return settle(
                        cafe.orders.execute_with(&streams::order(placed.order_id), command, causation, QUIET).await,
                    );
                }
                if cafe.payment_policy.authorizer != Authorizer::Saga {
                    return Ok(()); // the payment processor authorizes from the payment-request queue
                }
                let request = AuthorizePayment {
                    order_id: placed.order_id,
                    customer_id: placed.customer_id.clone(),
                    amount_cents: placed.total_cents,
                };
                match cafe.authorize_payment(&request, causation).await {
                    Ok(_) | Err(CafeError::Rejected { .. } | CafeError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            DomainEvent::PaymentAuthorized(e) => {
                let Some(order) = cafe.order(e.order_id).await? else { return Ok(()) };
                match order.status {
                    OrderStatus::Placed => {}
                    // Cancelled meanwhile (out of stock): not charged, and the hold is released.
                    OrderStatus::Cancelled => {
                        let reason = order.cancel_reason.clone().unwrap_or_else(|| "order_cancelled".into());
                        return self.carry_out(e.order_id, PaymentCommand::RequestVoid { reason }, causation).await;
                    }
                    _ => return Ok(()), // captured before: this is a replay
                }
                self.carry_out(e.order_id, PaymentCommand::Capture, causation).await
            }
            DomainEvent::PaymentCaptured(e) => {
                let command = OrderCommand::MarkPaid { amount_cents: e.amount_cents };
                match cafe.orders.execute_with(&streams::order(e.order_id), command, causation, QUIET).await {
                    // Cancelled while the payment was captured: the money goes back.
                    Err(CommandError::Rejected(OrderError::CannotPay(_))) => {
                        let command = PaymentCommand::RequestRefund { reason: "order_cancelled".into() };
                        self.carry_out(e.order_id, command, causation).await
                    }
                    other => settle(other),
                }
            }
            DomainEvent::PaymentDeclined(e) => {
                let command = OrderCommand::Cancel { reason: "payment_declined".into() };
                settle(cafe.orders.execute_with(&streams::order(e.order_id), command, causation, QUIET).await)
            }
            DomainEvent::OrderCancelled(e) => {
                let Some(order) = cafe.order(e.order_id).await? else { return Ok(()) };
                let releases = order.lines.iter().map(|line| {
                    let stream = streams::inventory(&order.store_id, &line.item_id);
                    let command = InventoryCommand::Release { order_id: e.order_id };
                    async move { settle(cafe.inventory.execute_with(&stream, command, causation, QUIET).await) }
                });
                // A payment authorized before the cancellation is voided, and one captured before it
                // refunded; one that moves on after it is given back when that is reacted to (above).
                // Each asks nothing of a payment in another state.
                let void =
                    self.carry_out(e.order_id, PaymentCommand::RequestVoid { reason: e.reason.clone() }, causation);
                let refund =
                    self.carry_out(e.order_id, PaymentCommand::RequestRefund { reason: e.reason.clone() }, causation);
                let command = LoyaltyCommand::Revoke {
                    customer_id: order.customer_id.clone(),
                    order_id: e.order_id,
                    amount_cents: order.total_cents,
                };
                let account = streams::loyalty(&order.customer_id);
                let revoke = async { settle(cafe.loyalty.execute_with(&account, command, causation, QUIET).await) };
                let (released, voided, refunded, revoked) =
                    futures::join!(futures::future::join_all(releases), void, refund, revoke);
                released.into_iter().collect::<Result<(), Retry>>()?;
                voided.and(refunded).and(revoked)
            }
            // The payment processor voids or refunds it, from the payment-request queue.
            DomainEvent::PaymentVoidRequested(_) | DomainEvent::PaymentRefundRequested(_)
                if cafe.payment_policy.authorizer != Authorizer::Saga =>
            {
                Ok(())
            }
            DomainEvent::PaymentVoidRequested(e) => self.carry_out(e.order_id, PaymentCommand::Void, causation).await,
            DomainEvent::PaymentRefundRequested(e) => {
                self.carry_out(e.order_id, PaymentCommand::Refund, causation).await
            }
            DomainEvent::OrderPaid(e) => {
                let Some(order) = cafe.order(e.order_id).await? else { return Ok(()) };
                // Points at payment; an order cancelled since earns none (or gives them back).
                let command = LoyaltyCommand::Accrue {
                    customer_id: order.customer_id.clone(),
                    order_id: e.order_id,
                    amount_cents: order.total_cents,
                    order_paid: order.status.is_paid(),
                };
                let account = streams::loyalty(&order.customer_id);
                settle(cafe.loyalty.execute_with(&account, command, causation, QUIET).await)
            }
            DomainEvent::OrderPreparationStarted(e) => {
                let Some(order) = cafe.order(e.order_id).await? else { return Ok(()) };
                // The barista starts: the reserved units are sold, every line at once.
                let settlements = order.lines.iter().map(|line| {
                    let stream = streams::inventory(&order.store_id, &line.item_id);
                    let command = InventoryCommand::Settle { order_id: e.order_id };
                    async move { settle(cafe.inventory.execute_with(&stream, command, causation, QUIET).await) }
                });
                futures::future::join_all(settlements).await.into_iter().collect()
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Follower for OrderSaga {
    type Error = Retry;

    fn name(&self) -> &str {
        CHECKPOINT
    }

    async fn start_position(&self) -> Result<u64, Retry> {
        Ok(self.cafe.journal.load_checkpoint(CHECKPOINT).await?)
    }

    async fn handle(&self, page: &[RecordedEvent]) -> Result<(), Retry> {
        self.handle_page(page).await
    }

    async fn commit(&self, position: u64) -> Result<(), Retry> {
        Ok(self.cafe.journal.save_checkpoint(CHECKPOINT, position).await?)
    }
}
