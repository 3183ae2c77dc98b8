//! # CloudCafe actors
//!
//! [`domain`] holds the pure deciders; [`host`] the actix actors that host them (activation,
//! passivation, bounded mailboxes, the registry); [`saga`] the order saga that drives an order from
//! placed to paid or cancelled.
//!
//! Architecture Invariant: deciders do no I/O; actors are thin shells around `(state, version, journal)`.

pub mod domain;
