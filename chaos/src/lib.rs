//! # CloudCafe chaos
//!
//! Real faults against real processes, and the bookkeeping that proves what survived them.
//! [`process::Node`] runs a `cloudcafe` process that can be killed with SIGKILL and restarted;
//! [`proxy`] is a TCP fault proxy (latency, jitter, bandwidth, refuse, reset, timeout, and HTTP
//! error injection for services such as DynamoDB) with a control API, the way Toxiproxy works;
//! [`aws`] renders each local experiment's plan for AWS (FIS templates or Chaos Toolkit AWS
//! experiments); [`ledger::AckLedger`] records what the system acknowledged so that a check after
//! the fault can show that nothing acknowledged was lost and nothing was applied twice.
//!
//! Architecture Invariant: experiments only use the system's public faces (processes, HTTP, the
//! network between a node and its stores); they never reach into its stores to make a check pass.
//!
//! Architecture Invariant: this crate imports nothing from CloudCafe's other crates; the binary
//! (`cloudcafe chaos`) drives it.

pub mod aws;
pub mod cluster;
pub mod haproxy;
pub mod ledger;
pub mod process;
pub mod proxy;
