//! The progress bar a flood shows while it runs: time elapsed and left, the rate achieved against
//! the rate requested over the last tick, p99 so far and errors. Drawn on stderr only when stderr is
//! a terminal, so test output and CI logs stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::measure::{Live, Recorder};
use super::plots::format_ms;

const TICK: Duration = Duration::from_millis(500);

/// The bar's message: rates over the last tick, so a ramp shows as it happens.
fn message(previous: &Live, now: &Live) -> String {
    let seconds = now.elapsed.saturating_sub(previous.elapsed).as_secs_f64();
    let per_second = |to: u64, from: u64| if seconds > 0.0 { to.saturating_sub(from) as f64 / seconds } else { 0.0 };
    format!(
        "{:.0}/s done of {:.0}/s due · p99 {} · {} errors of {}",
        per_second(now.completed, previous.completed),
        per_second(now.requested, previous.requested),
        format_ms(now.p99_ms),
        now.errors,
        now.completed,
    )
}

/// A progress bar (indicatif) until `stop` turns true: elapsed/remaining, achieved vs requested
/// rate, p99 so far, errors. The bar stays at full while the last answers drain after `total`.
pub fn spawn_progress(
    recorder: Recorder,
    total: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let target =
            if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let total_ms = u64::try_from(total.as_millis()).unwrap_or(u64::MAX).max(1);
        let bar = ProgressBar::with_draw_target(Some(total_ms), target);
        let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% ~{eta} left  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        let mut previous = recorder.live();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        break; // the flood dropped its sender: it is over
                    }
                }
                _ = ticks.tick() => {
                    let live = recorder.live();
                    bar.set_position(u64::try_from(live.elapsed.as_millis()).unwrap_or(u64::MAX).min(total_ms));
                    bar.set_message(message(&previous, &live));
                    previous = live;
                }
            }
        }
        bar.finish_and_clear();
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::flood::measure::Outcome;

    #[tokio::test]
    async fn the_bar_ends_when_told_to_stop() {
        let recorder = Recorder::new();
        let now = Instant::now();
        recorder.requested(now);
        recorder.record("op", now, now, Outcome::Ok);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let bar = spawn_progress(recorder, Duration::from_secs(3600), stop_rx);
        stop_tx.send(true).unwrap();
        bar.await.expect("the progress task ends cleanly");
    }

    #[test]
    fn the_message_shows_rates_over_the_tick() {
        let before = Live { elapsed: Duration::from_secs(1), requested: 100, completed: 90, errors: 0, p99_ms: 1.0 };
        let after = Live { elapsed: Duration::from_secs(2), requested: 300, completed: 280, errors: 3, p99_ms: 12.5 };
        let text = message(&before, &after);
        assert!(text.starts_with("190/s done of 200/s due"), "{text}");
        assert!(text.contains("p99 12.5 ms") && text.contains("3 errors of 280"), "{text}");
    }
}
