//! # CloudCafe actors
//!
//! [`domain`] holds the pure deciders; [`host`] the actix actors that host them (activation,
//! passivation, bounded mailboxes, the registry); [`cafe`] the use cases the gateways call;
//! [`saga`] the order saga that drives an order from placed to paid or cancelled; [`pickup`] the
//! timer that abandons a ready order nobody picked up by its deadline; [`freshness`]
//! bounds how old the state of a node's actors can be while other nodes write to the same journal;
//! [`catalogue`] keeps the menu and the stores in memory for the order path, within that bound.
//!
//! Architecture Invariant: deciders do no I/O; actors are thin shells around `(state, version, journal)`.
//! Architecture Invariant: nothing here reads the environment or opens a server; ports arrive built.

pub mod cafe;
pub mod catalogue;
pub mod domain;
pub mod freshness;
pub mod host;
pub mod pickup;
pub mod saga;
