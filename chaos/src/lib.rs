//! # CloudCafe chaos
//!
//! Real faults against real processes, and the bookkeeping that proves what survived them.
//! [`process::Node`] runs a `cloudcafe` process that can be killed with SIGKILL and restarted;
//! [`ledger::AckLedger`] records what the system acknowledged so that a check after the fault can
//! show that nothing acknowledged was lost and nothing was applied twice.
//!
//! Architecture Invariant: experiments only use the system's public faces (processes, HTTP); they
//! never reach into its stores to make a check pass.

pub mod ledger;
pub mod process;
