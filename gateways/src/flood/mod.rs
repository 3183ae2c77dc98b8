//! Floods: the stress scenarios, driven into the actors in process or into running nodes over HTTP,
//! measured in an open model and ending with the `verify` step.
//!
//! A flood has four phases, each owned by one module:
//! - **prepare** ([`scenarios`]): the scenario sets up what it needs (stores, menu, stock, imported
//!   accounts) through the same [`target::Target`] it will flood, unmeasured;
//! - **drive** ([`drive`]): arrivals follow the requested rate whatever the system does
//!   ([`arrivals`], the open model) or `N` clients loop (the closed model); each operation is timed
//!   from its *intended* send time into the [`measure::Recorder`] (the coordinated-omission
//!   correction of wrk2), and every command's outcome goes into the ack ledger;
//! - **finish**: the scenario's own figures and checks (projection lag drained, the menu every node
//!   serves, ...);
//! - **verify** ([`crate::verify`]): the invariants over the journal and the read models.
//!
//! [`report`] turns it all into a terminal summary, `report.json` and `report.html`;
//! [`thresholds`] decide the exit code.
//!
//! Architecture Invariant: a flood only uses a target's public faces (the use cases of a node it
//! started, or HTTP); the scenario's checks and `verify` read the journal, never a flood's own
//! bookkeeping, to decide what the system holds.

pub mod arrivals;
pub mod measure;
pub mod plots;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod target;
pub mod thresholds;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use self::arrivals::Arrivals;
use self::measure::{Outcome, Recorder};
use self::target::{Operation, Target};
use crate::verify::AckLedger;

/// How arrivals come.
#[derive(Clone, Debug)]
pub enum Load {
    /// Arrivals at the requested rate whatever the system does.
    Open(Arrivals),
    /// `concurrency` clients, each sending its next request when the previous one answered.
    Closed { concurrency: usize, duration: Duration },
}

impl Load {
    pub fn duration(&self) -> Duration {
        match self {
            Load::Open(a) => a.total_duration(),
            Load::Closed { duration, .. } => *duration,
        }
    }

    /// The mean requested rate (none for a closed model).
    pub fn requested_rate(&self) -> Option<f64> {
        match self {
            Load::Open(a) => {
                let secs = a.total_duration().as_secs_f64();
                (secs > 0.0).then(|| a.expected_requests() / secs)
            }
            Load::Closed { .. } => None,
        }
    }
}

/// The operations a prepared scenario sends: one sequence per arrival.
pub trait Plan: Send + Sync {
    /// The operations of arrival `n`, sent one after the other (a checkout reads the customer's
    /// account, then places the order). Each is measured on its own: the first from the arrival's
    /// intended time, the next ones from when the previous one answered.
    fn arrival(&self, n: u64, rng: &mut fastrand::Rng) -> Vec<Operation>;

    /// Closed-loop readers that run beside the arrivals for the whole flood (the query storm's
    /// 500 readers): how many, and the read reader `r` sends for its `i`-th request.
    fn readers(&self) -> usize {
        0
    }
    fn read(&self, _reader: usize, _i: u64, _rng: &mut fastrand::Rng) -> Option<Operation> {
        None
    }
}

/// What every request of a flood shares.
#[derive(Clone)]
pub struct Flow {
    pub target: Arc<dyn Target>,
    pub recorder: Recorder,
    pub acks: Arc<AckLedger>,
    /// How long one operation may take before it counts as a timeout.
    pub timeout: Duration,
}

impl Flow {
    /// Sends one operation, measured from `intended`, and records its outcome and acknowledgement.
    /// Returns whether it succeeded.
    pub async fn send(&self, operation: &Operation, intended: Instant) -> bool {
        let result = tokio::time::timeout(self.timeout, self.target.execute(operation)).await;
        let finished = Instant::now();
        let target = self.target.as_ref();
        let (outcome, ack) = match result {
            Ok(Ok(answer)) => (Outcome::Ok, operation.acknowledgement(target, answer.correlation_id, true)),
            Ok(Err(failure)) => {
                let ack = if failure.maybe_applied { operation.acknowledgement(target, None, false) } else { None };
                (Outcome::Error(failure.kind), ack)
            }
            Err(_) => (Outcome::Error("timeout".to_owned()), operation.acknowledgement(target, None, false)),
        };
        let ok = outcome == Outcome::Ok;
        self.recorder.record(operation.name(), intended, finished, outcome);
        if let Some(ack) = ack {
            self.acks.record(ack);
        }
        ok
    }

    /// Sends an arrival's operations in order; stops at the first that fails.
    async fn send_all(&self, operations: Vec<Operation>, intended: Instant) {
        let mut at = intended;
        for operation in &operations {
            if !self.send(operation, at).await {
                return;
            }
            at = Instant::now();
        }
    }
}

/// What the arrivals came to: how many were sent (each a sequence of operations), and when the last
/// one had answered.
#[derive(Clone, Copy, Debug)]
pub struct Drove {
    pub arrivals: u64,
    pub ended: Instant,
}

/// Runs `plan` under `load` until the arrivals end and every request has answered (or timed out).
/// `max_in_flight` bounds the memory an open model may use when the system falls behind: past it,
/// the generator waits, and the requests it delays are still measured from their intended time.
pub async fn drive(flow: &Flow, plan: Arc<dyn Plan>, load: &Load, max_in_flight: usize, seed: u64) -> Drove {
    let (stop_readers, readers_stop) = watch::channel(false);
    let mut readers = Vec::new();
    for r in 0..plan.readers() {
        let (flow, plan, mut stop) = (flow.clone(), plan.clone(), readers_stop.clone());
        readers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed ^ (0x5eed_0000 + r as u64));
            for i in 0.. {
                if *stop.borrow_and_update() {
                    break;
                }
                let Some(operation) = plan.read(r, i, &mut rng) else { break };
                let now = Instant::now();
                flow.recorder.requested(now);
                flow.send(&operation, now).await;
            }
        }));
    }
    let arrivals = match load {
        Load::Open(arrivals) => drive_open(flow, plan, arrivals.clone(), max_in_flight, seed).await,
        Load::Closed { concurrency, duration } => drive_closed(flow, plan, *concurrency, *duration, seed).await,
    };
    let ended = Instant::now();
    let _ = stop_readers.send(true);
    for reader in readers {
        let _ = reader.await;
    }
    Drove { arrivals, ended }
}

async fn drive_open(flow: &Flow, plan: Arc<dyn Plan>, arrivals: Arrivals, max_in_flight: usize, seed: u64) -> u64 {
    let start = flow.recorder.started();
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut rng = fastrand::Rng::with_seed(seed);
    let total = arrivals.total_duration();
    let mut sent = 0;
    for (n, offset) in (0u64..).zip(arrivals) {
        let intended = start + offset;
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        flow.recorder.requested(intended);
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let operations = plan.arrival(n, &mut rng);
        sent = n + 1;
        let flow = flow.clone();
        tokio::spawn(async move {
            flow.send_all(operations, intended).await;
            drop(slot);
        });
    }
    // Stages at rate 0 at the end send nothing but still take their time.
    tokio::time::sleep_until((start + total).into()).await;
    // Every request answered: all the slots are free again.
    let _ = slots.acquire_many(max_in_flight.max(1) as u32).await;
    sent
}

async fn drive_closed(flow: &Flow, plan: Arc<dyn Plan>, concurrency: usize, duration: Duration, seed: u64) -> u64 {
    let end = flow.recorder.started() + duration;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clients: Vec<_> = (0..concurrency.max(1))
        .map(|c| {
            let (flow, plan, next) = (flow.clone(), plan.clone(), next.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed ^ c as u64);
                while Instant::now() < end {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let now = Instant::now();
                    flow.recorder.requested(now);
                    flow.send_all(plan.arrival(n, &mut rng), now).await;
                }
            })
        })
        .collect();
    for client in clients {
        let _ = client.await;
    }
    next.load(std::sync::atomic::Ordering::Relaxed)
}
