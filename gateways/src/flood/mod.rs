//! Floods: the stress scenarios, driven into the actors in process or into running nodes over HTTP,
//! measured in an open model and ending with the `verify` step.

pub mod arrivals;
pub mod measure;
pub mod plots;
pub mod progress;
pub mod report;
pub mod thresholds;
