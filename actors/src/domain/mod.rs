//! Pure deciders: `decide(&State, &Command) -> Result<Vec<DomainEvent>, Error>` and
//! `evolve(State, &DomainEvent) -> State`.
//!
//! Architecture Invariant: nothing in this module does I/O, reads a clock, or imports actix or tokio.
//! Everything a decision needs (prices, the time, a fraud score) arrives in the command.

use events::DomainEvent;
use serde::{de::DeserializeOwned, Serialize};

pub mod customer;
pub mod inventory;
pub mod limits;
pub mod loyalty;
pub mod menu;
pub mod order;
pub mod payment;
pub mod store;

#[cfg(test)]
pub(crate) mod given_when_then;

/// A domain rejection, with the command field it is about (for a 4xx that names it).
pub trait Rejection: std::error::Error + Send + Sync + 'static {
    fn field(&self) -> Option<String> {
        None
    }
    /// Whether the thing the command names does not exist (a 404 rather than a 422).
    fn is_not_found(&self) -> bool {
        false
    }
    /// Whether the command contradicts the state it met (a 409 rather than a 422): a step out of
    /// order, or an id reused for something else.
    fn is_conflict(&self) -> bool {
        false
    }
}

/// One aggregate's decision logic, the type an actor hosts.
pub trait Decider: 'static {
    type State: Default + Clone + Send + Unpin + Serialize + DeserializeOwned + 'static;
    type Command: Send + Unpin + 'static;
    type Error: Rejection;

    fn decide(state: &Self::State, command: &Self::Command) -> Result<Vec<DomainEvent>, Self::Error>;
    fn evolve(state: Self::State, event: &DomainEvent) -> Self::State;
}
