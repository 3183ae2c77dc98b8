//! CloudWatch: the node's metrics exported (Embedded Metric Format lines or `PutMetricData`), and the
//! dashboards and alarms generated from the metric catalog (`events::metric`).
//!
//! - [`sample`]: a recorder beside the Prometheus one that keeps, per series of a catalog metric, what
//!   happened since the last sample (counter increase, gauge value, histogram values with counts), in
//!   CloudWatch units, with bounded memory whatever the rate.
//! - [`emf`]: a sample as Embedded Metric Format lines.
//! - `put` (feature `cloud`): a sample as batched `PutMetricData` calls, retried with backoff, dropped
//!   and counted when CloudWatch stays unreachable.
//! - [`dashboard`]: the overview and per-service dashboards as data (widgets over catalog metrics).
//! - [`render`]: dashboards and alarms as CloudWatch JSON bodies (`deploy/cloudwatch/`).
//! - [`alarms`]: the alarms, over catalog and AWS metrics.
//! - `apply` (feature `cloud`): the rendered dashboards and alarms put into CloudWatch.
//! - [`history`]: samples kept in memory for the node's own dashboard page (`GET /admin/dashboard`).
//!
//! Architecture Invariant: a dashboard widget or alarm names a metric only through the catalog, so it
//! cannot name one the code does not record.

pub mod alarms;
#[cfg(feature = "cloud")]
pub mod apply;
pub mod dashboard;
pub mod emf;
pub mod history;
#[cfg(feature = "cloud")]
pub mod put;
pub mod render;
pub mod sample;
