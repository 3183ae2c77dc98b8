//! One direction of a proxied connection, where the faults act on the bytes: each piece waits for
//! its latency, is paced to the bandwidth cap, or is held while the black hole is on.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::FaultsWatch;

/// How often a bandwidth-capped direction writes: a slice every 1/20 s.
const PACING_SLICES_PER_SECOND: u64 = 20;

/// The faults that act on bytes, copied out of the snapshot for one decision.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Pace {
    latency_ms: u64,
    jitter_ms: u64,
    bandwidth_kbps: Option<u64>,
    hold: bool,
}

impl Pace {
    /// No fault on the bytes: they go as they come.
    const CLEAN: Pace = Pace { latency_ms: 0, jitter_ms: 0, bandwidth_kbps: None, hold: false };

    /// When a piece that arrived at `arrival` may leave; `draw` in [-1, 1] places it in the jitter.
    fn due(&self, arrival: Instant, draw: f64) -> Instant {
        if self.latency_ms == 0 && self.jitter_ms == 0 {
            return arrival;
        }
        let ms = (self.latency_ms as f64 + draw * self.jitter_ms as f64).max(0.0);
        arrival + Duration::from_secs_f64(ms / 1000.0)
    }
}

/// What a direction does next with the bytes it holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Plan {
    /// Write this many bytes now.
    Write(usize),
    /// Wait until then (`None`: until the faults change); [`Outbound::wait`] also wakes on a change.
    Wait(Option<Instant>),
}

/// Where a piece falls within the jitter band: uniform in [-1, 1].
pub(super) fn jitter_draw() -> f64 {
    fastrand::f64() * 2.0 - 1.0
}

/// The writing end of one direction, with the faults it obeys and the counter of what it forwarded.
pub(super) struct Outbound<'a, W> {
    writer: W,
    faults: FaultsWatch,
    forwarded: &'a AtomicU64,
    /// With a bandwidth cap: when the next slice may be written.
    next_slot: Instant,
}

impl<'a, W: AsyncWrite + Unpin> Outbound<'a, W> {
    pub(super) fn new(writer: W, faults: FaultsWatch, forwarded: &'a AtomicU64) -> Self {
        Outbound { writer, faults, forwarded, next_slot: Instant::now() }
    }

    /// The current faults; later changes wake [`Self::wait`].
    pub(super) fn armed(&mut self) -> std::sync::Arc<super::Armed> {
        self.faults.borrow_and_update().clone()
    }

    fn pace(&mut self) -> Pace {
        let armed = self.faults.borrow_and_update();
        let f = &armed.faults;
        Pace { latency_ms: f.latency_ms, jitter_ms: f.jitter_ms, bandwidth_kbps: f.bandwidth_kbps, hold: f.timeout }
    }

    /// Returns at `deadline` (never, if `None`) or as soon as the faults change, whichever is first.
    pub(super) async fn wait(&mut self, deadline: Option<Instant>) {
        let changed = async {
            if self.faults.changed().await.is_err() {
                // The proxy's sender outlives every connection; should it go, only the deadline counts.
                std::future::pending::<()>().await;
            }
        };
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = changed => {}
                }
            }
            None => changed.await,
        }
    }

    /// What to do next with a piece of `remaining` bytes that arrived at `arrival` (`draw` in
    /// [-1, 1] places it in the jitter), under the faults in force now. Re-asked after every write
    /// and every wake, so a change (a cleared latency, a lifted black hole) applies to bytes that
    /// are still waiting here.
    pub(super) fn plan(&mut self, remaining: usize, arrival: Instant, draw: f64) -> Plan {
        let pace = self.pace();
        if pace == Pace::CLEAN {
            return Plan::Write(remaining);
        }
        if pace.hold {
            return Plan::Wait(None);
        }
        let now = Instant::now();
        let due = pace.due(arrival, draw);
        if due > now {
            return Plan::Wait(Some(due));
        }
        match pace.bandwidth_kbps {
            None => Plan::Write(remaining),
            Some(_) if self.next_slot > now => Plan::Wait(Some(self.next_slot)),
            Some(kbps) => {
                let bytes_per_second = kbps.max(1).saturating_mul(1024);
                let slice = (bytes_per_second / PACING_SLICES_PER_SECOND).max(1);
                let len = remaining.min(usize::try_from(slice).unwrap_or(usize::MAX));
                // No credit for idle time: the cap holds from the first slice after a pause.
                self.next_slot = now + Duration::from_secs_f64(len as f64 / bytes_per_second as f64);
                Plan::Write(len)
            }
        }
    }

    /// Writes bytes that [`Self::plan`] let go.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.forwarded.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Forwards `bytes`, which arrived at `arrival`, waiting here as the faults require.
    pub(super) async fn send(&mut self, bytes: &[u8], arrival: Instant) -> io::Result<()> {
        let draw = jitter_draw();
        let mut sent = 0;
        while sent < bytes.len() {
            match self.plan(bytes.len() - sent, arrival, draw) {
                Plan::Write(len) => {
                    self.write(&bytes[sent..sent + len]).await?;
                    sent += len;
                }
                Plan::Wait(until) => self.wait(until).await,
            }
        }
        Ok(())
    }

    /// Ends this direction the way the other side ended its own (FIN after everything sent).
    pub(super) async fn shutdown(&mut self) -> io::Result<()> {
        self.writer.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_with_jitter_stays_within_its_band_and_never_before_arrival() {
        let arrival = Instant::now();
        let pace = Pace { latency_ms: 100, jitter_ms: 40, bandwidth_kbps: None, hold: false };
        assert_eq!(pace.due(arrival, -1.0), arrival + Duration::from_millis(60));
        assert_eq!(pace.due(arrival, 1.0), arrival + Duration::from_millis(140));
        let wide = Pace { latency_ms: 10, jitter_ms: 50, ..pace };
        assert_eq!(wide.due(arrival, -1.0), arrival);
        let none = Pace { latency_ms: 0, jitter_ms: 0, ..pace };
        assert_eq!(none.due(arrival, 0.7), arrival);
    }
}
