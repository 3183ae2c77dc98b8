//! The `cloudcafe` subcommands, in the style of cargo's `src/bin/cargo/commands/`: one module per
//! subcommand holding its clap arguments and its body ([`serve`], [`demo`], [`replay`], [`bench`],
//! [`dlq`], [`projections`], [`flood`], [`dashboard`], [`cluster`], [`chaos`], [`token`]), the argument groups several of them share ([`storage`], [`auth`]), and the one place where a build
//! with the AWS clients and a build without them part ways ([`cloud`]).
//!
//! Architecture Invariant: only the binary reads flags and the environment; these modules turn them
//! into the libraries' typed settings and hand built clients to the libraries.

pub mod auth;
pub mod bench;
pub mod chaos;
pub mod cloud;
pub mod cluster;
pub mod dashboard;
pub mod demo;
pub mod dlq;
pub mod flood;
pub mod loyalty;
pub mod projections;
pub mod replay;
pub mod serve;
pub mod storage;
pub mod token;
pub mod verify;

// deploy/terraform and the Dockerfile against the binary's flags, names and routes.
#[cfg(all(test, feature = "cloud"))]
mod deployment_tests;
