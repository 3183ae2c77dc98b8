//! `cloudcafe replay` as an operator runs it: on a tampered journal, and killed halfway.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::sqlite::{SqliteJournal, SqliteOptions};
use events::Journal;
use projections::read_models::conformance::{a_day_of_orders, write_history};
use projections::read_models::runner::ProjectionRunner;
use projections::read_models::storefront::sqlite::SqliteStorefront;
use projections::Sink;

/// A data directory holding `orders` orders' worth of history and a live storefront caught up on it.
async fn data_dir(orders: u32) -> (tempfile::TempDir, u64, projections::Fingerprint) {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(dir.path(), SqliteOptions::default()).unwrap());
    write_history(journal.as_ref(), &a_day_of_orders(orders)).await;
    let live = Arc::new(SqliteStorefront::open(dir.path()).unwrap());
    let head = ProjectionRunner::new(journal.clone(), live.clone()).catch_up().await.unwrap();
    let fingerprint = live.fingerprint().await.unwrap();
    (dir, head, fingerprint)
}

fn replay(dir: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudcafe"));
    cmd.args(["replay", "--data-dir"]).arg(dir).args(extra).env("RUST_LOG", "warn");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_journal_stops_replay_at_the_first_broken_link() {
    let (dir, _, _) = data_dir(50).await; // journal files are closed when the journal drops
    tokio::time::sleep(Duration::from_millis(50)).await;
    let db = rusqlite::Connection::open(dir.path().join("journal.db")).unwrap();
    let (stream, version, mut payload): (String, i64, Vec<u8>) = db
        .query_row("SELECT stream_id, stream_version, payload FROM events WHERE global_position = 137", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let middle = payload.len() / 2;
    payload[middle] ^= 0x01;
    db.execute("UPDATE events SET payload = ?1 WHERE global_position = 137", [payload]).unwrap();
    drop(db);

    let out = replay(dir.path(), &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let expected = format!("hash chain broken in stream {stream} at version {version} (global position 137)");
    assert!(stderr.contains(&expected), "{stderr}");
}

/// SIGKILL halfway through a rebuild of 100K events; the same command then resumes from the shadow's
/// own position and ends with a model equal to the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replay_resumes_and_ends_equal() {
    let (dir, head, live_before) = data_dir(12_000).await;
    assert!(head >= 100_000, "a journal of {head} events");
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut child =
        replay(dir.path(), &["--page-size", "500"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let offsets = rusqlite::Connection::open(dir.path().join("readmodel.db")).unwrap();
    let shadow_position = || -> u64 {
        offsets
            .query_row("SELECT position FROM projection_offsets WHERE name = 'storefront.rebuild'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|p| p as u64)
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while shadow_position() < 5_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = shadow_position();
    assert!(killed_at > 0 && killed_at < head, "killed halfway: shadow at {killed_at} of {head}");

    let out = replay(dir.path(), &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("resuming from position {killed_at}")), "{stdout}");
    assert!(stdout.contains("equal to the live model; swapped in"), "{stdout}");
    assert!(stdout.contains(&format!("{} rows, checksum {}", live_before.rows, live_before.checksum)), "{stdout}");
    let live = SqliteStorefront::open(dir.path()).unwrap();
    assert_eq!(live.fingerprint().await.unwrap(), live_before);
    assert_eq!(live.position().await.unwrap(), head);
}
