//! The pickup timer: a ready order nobody picks up by its deadline is completed as abandoned.
//!
//! The schedule is the journal. `OrderReadyForPickup` carries its deadline (`pickup_by_us`), so the
//! timer keeps nothing of its own that a crash could lose. It is a [`Follower`]: its pages tell it
//! which orders wait at the counter (ready, and neither picked up nor abandoned since) and since
//! which global position; alongside the pages it looks every [`TICK`] for deadlines that have
//! passed and sends each such order's actor [`OrderCommand::Abandon`]. The decider abandons only an
//! order still ready and past its deadline, so a fire that comes late, twice, or after a pickup
//! changes nothing.
//!
//! Its checkpoint never passes the `OrderReadyForPickup` of an order still waiting: it stores the
//! position before the oldest of them (or the page's end when none waits). A restarted node, or the
//! node that takes the singleton over, reads the journal again from there and knows every open
//! deadline. The price is a re-read of the journal since the oldest waiting order (at most the
//! pickup window's worth of events when the timer keeps up).
//!
//! Architecture Invariant: no deadline lives only in memory, and no clock is read in the decider:
//! the timer's clock arrives in the command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use events::domain::{streams, CodecError};
use events::follow::{FollowOptions, Follower};
use events::journal::sleep_or_stop;
use events::{Causation, DomainEvent, RecordedEvent, StoreError};
use uuid::Uuid;

use crate::cafe::{Cafe, CafeError};
use crate::domain::order::OrderCommand;
use crate::host::{CommandError, ExecuteOptions};

/// The name the timer's position is stored under, and its name as a follower.
pub const CHECKPOINT: &str = "pickup-timer";

/// How often the timer looks for deadlines that have passed.
pub const TICK: Duration = Duration::from_secs(1);

/// A page the timer could not take in.
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error("pickup timer: journal: {0}")]
    Journal(#[from] StoreError),
    #[error("pickup timer: {0}")]
    Decode(#[from] CodecError),
}

/// An order waiting at the counter.
#[derive(Clone, Debug)]
struct Waiting {
    pickup_by_us: i64,
    /// The global position of its `OrderReadyForPickup`.
    position: u64,
    /// Its abandonment follows from the `OrderReadyForPickup`.
    causation: Causation,
}

/// The pickup timer of one cafe (see the module docs).
pub struct PickupTimer {
    cafe: Arc<Cafe>,
    waiting: Mutex<HashMap<Uuid, Waiting>>,
    tick: Duration,
}

impl PickupTimer {
    pub fn new(cafe: Arc<Cafe>) -> Self {
        PickupTimer { cafe, waiting: Mutex::new(HashMap::new()), tick: TICK }
    }

    /// The same timer, looking for passed deadlines every `tick`.
    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Follows the journal from the stored checkpoint until `stop` turns true.
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) {
        let journal = self.cafe.journal.clone();
        events::follow::follow(journal, &self, FollowOptions::default(), stop).await
    }

    /// How many orders wait at the counter, as far as the timer has read.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Abandons every waiting order whose deadline is at or before `now_us`; answers how many were
    /// abandoned. An order the journal could not take now stays waiting for the next tick.
    pub async fn fire(&self, now_us: i64) -> usize {
        let due: Vec<(Uuid, Causation)> =
            self.lock().iter().filter(|(_, w)| w.pickup_by_us <= now_us).map(|(id, w)| (*id, w.causation)).collect();
        let quiet = ExecuteOptions { new_stream: false, return_state: false };
        let mut abandoned = 0;
        for (order_id, causation) in due {
            let command = OrderCommand::Abandon { now_us };
            match self.cafe.orders.execute_with(&streams::order(order_id), command, causation, quiet).await {
                Ok(done) => {
                    abandoned += usize::from(!done.events.is_empty());
                    self.lock().remove(&order_id);
                }
                Err(CommandError::Rejected(e)) => {
                    tracing::debug!(%order_id, rejection = %e, "nothing to abandon");
                    self.lock().remove(&order_id);
                }
                Err(other) => {
                    let e = CafeError::from(other);
                    tracing::warn!(%order_id, error = %events::ErrorChain(&e), "cannot abandon the order now; next tick");
                }
            }
        }
        if abandoned > 0 {
            tracing::info!(abandoned, "orders not picked up by their deadline were abandoned");
        }
        abandoned
    }
}

#[async_trait]
impl Follower for PickupTimer {
    type Error = TimerError;

    fn name(&self) -> &str {
        CHECKPOINT
    }

    async fn start_position(&self) -> Result<u64, TimerError> {
        // What was waiting is read again from the checkpoint on: start from an empty schedule.
        self.lock().clear();
        Ok(self.cafe.journal.load_checkpoint(CHECKPOINT).await?)
    }

    async fn handle(&self, page: &[RecordedEvent]) -> Result<(), TimerError> {
        for recorded in page {
            if !matches!(recorded.event_type.as_str(), "OrderReadyForPickup" | "OrderPickedUp" | "OrderAbandoned") {
                continue;
            }
            match recorded.decode()? {
                DomainEvent::OrderReadyForPickup(e) => {
                    let waiting = Waiting {
                        pickup_by_us: e.pickup_by_us,
                        position: recorded.global_position,
                        causation: Causation::following(recorded),
                    };
                    self.lock().insert(e.order_id, waiting);
                }
                DomainEvent::OrderPickedUp(e) => {
                    self.lock().remove(&e.order_id);
                }
                DomainEvent::OrderAbandoned(e) => {
                    self.lock().remove(&e.order_id);
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn commit(&self, position: u64) -> Result<(), TimerError> {
        let oldest = self.lock().values().map(|w| w.position).min();
        let keep = oldest.map_or(position, |oldest| position.min(oldest - 1));
        Ok(self.cafe.journal.save_checkpoint(CHECKPOINT, keep).await?)
    }

    async fn alongside(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        while !sleep_or_stop(&mut stop, self.tick).await {
            self.fire(events::envelope::now_us()).await;
        }
    }
}
