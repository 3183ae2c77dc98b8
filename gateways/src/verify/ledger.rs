//! The ack ledger: every command a flood (or a chaos experiment's load) sent, and whether the system
//! acknowledged it, kept so that [`super::verify`] can compare it with the journal afterwards.
//!
//! A file ledger is written as JSON lines (one [`Acknowledgement`] a line), so that it survives the
//! process that wrote it and another process (`cloudcafe verify --acks FILE`) can read it back.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One command the flood sent: `answered` = the system acknowledged it (2xx / Ok). Unanswered ones
/// (timeouts, dropped connections) may have happened, but at most once.
///
/// With `correlation_id: Some(c)`, the journal must hold exactly one event of `event_type` on
/// `stream_id` whose correlation id is `c` and whose causation id is `None` (the root event of that
/// request); with `None`, the stream must hold exactly one event of `event_type`. Unanswered: at most one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub stream_id: String,
    pub event_type: String,
    pub correlation_id: Option<uuid::Uuid>,
    pub answered: bool,
}

/// The ack ledger: written during a flood from many tasks at once, to a JSON-lines file or in memory.
///
/// Both kinds also keep the entries in memory, so that the flood that wrote them can verify at once
/// without reading the file back ([`AckLedger::entries`]).
pub struct AckLedger {
    inner: Mutex<Inner>,
}

struct Inner {
    entries: Vec<Acknowledgement>,
    file: Option<BufWriter<File>>,
    /// The first write that failed: `record` cannot fail (a flood must not stop for its ledger),
    /// so the failure waits for the next [`AckLedger::flush`].
    failed: Option<io::Error>,
}

impl AckLedger {
    /// A ledger kept in memory only.
    pub fn in_memory() -> Self {
        AckLedger { inner: Mutex::new(Inner { entries: Vec::new(), file: None, failed: None }) }
    }

    /// A ledger written to `path` (created, or truncated if it exists).
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = BufWriter::new(File::create(path)?);
        Ok(AckLedger { inner: Mutex::new(Inner { entries: Vec::new(), file: Some(file), failed: None }) })
    }

    /// Records one command's outcome. A failed write to the file is reported by the next [`AckLedger::flush`].
    pub fn record(&self, ack: Acknowledgement) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(file) = inner.file.as_mut() {
            if inner.failed.is_none() {
                let written = serde_json::to_writer(&mut *file, &ack)
                    .map_err(io::Error::from)
                    .and_then(|()| file.write_all(b"\n"));
                if let Err(e) = written {
                    inner.failed = Some(e);
                }
            }
        }
        inner.entries.push(ack);
    }

    /// Everything recorded so far, in the order it was recorded.
    pub fn entries(&self) -> Vec<Acknowledgement> {
        self.lock().entries.clone()
    }

    /// Writes what is buffered to the file; fails if any earlier write did.
    pub fn flush(&self) -> io::Result<()> {
        let mut inner = self.lock();
        if let Some(e) = inner.failed.take() {
            return Err(e);
        }
        match inner.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }

    /// Reads a ledger file back. A last line cut short (the writer died mid-line) is left out: that
    /// command is not known to have been recorded whole. Any other line that does not parse fails
    /// with [`io::ErrorKind::InvalidData`], naming the line.
    pub fn load(path: &Path) -> io::Result<Vec<Acknowledgement>> {
        let mut reader = BufReader::new(File::open(path)?);
        let mut out = Vec::new();
        let (mut line, mut number) = (String::new(), 0usize);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(out);
            }
            number += 1;
            let complete = line.ends_with('\n');
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str(text) {
                Ok(ack) => out.push(ack),
                Err(_) if !complete => return Ok(out),
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: line {number} is not an acknowledgement: {e}", path.display()),
                    ))
                }
            }
        }
    }

    /// The lock is only ever held for a push and a buffered write, and neither panics while holding
    /// it; a poisoned lock still holds consistent entries, so it is used as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for AckLedger {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ack(n: u32, answered: bool) -> Acknowledgement {
        Acknowledgement {
            stream_id: format!("order-{n}"),
            event_type: "OrderPlaced".into(),
            correlation_id: n.is_multiple_of(2).then(|| uuid::Uuid::from_u128(u128::from(n))),
            answered,
        }
    }

    #[test]
    fn a_file_ledger_reads_back_what_many_threads_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.jsonl");
        let ledger = Arc::new(AckLedger::create(&path).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let ledger = ledger.clone();
                std::thread::spawn(move || (0..250).for_each(|i| ledger.record(ack(t * 1000 + i, i % 3 != 0))))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        ledger.flush().unwrap();
        let mut written = ledger.entries();
        let mut read = AckLedger::load(&path).unwrap();
        assert_eq!(read.len(), 1000);
        written.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        read.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        assert_eq!(read, written);
    }

    #[test]
    fn an_in_memory_ledger_keeps_entries_in_order() {
        let ledger = AckLedger::in_memory();
        ledger.record(ack(1, true));
        ledger.record(ack(2, false));
        ledger.flush().unwrap();
        assert_eq!(ledger.entries(), vec![ack(1, true), ack(2, false)]);
    }

    #[test]
    fn a_line_cut_short_at_the_end_is_left_out_but_a_bad_line_inside_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.jsonl");
        let whole = serde_json::to_string(&ack(1, true)).unwrap();
        std::fs::write(&path, format!("{whole}\n\n{}", &whole[..whole.len() / 2])).unwrap();
        assert_eq!(AckLedger::load(&path).unwrap(), vec![ack(1, true)]);
        std::fs::write(&path, format!("{whole}\nnot json\n{whole}\n")).unwrap();
        let e = AckLedger::load(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn dropping_a_file_ledger_flushes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.jsonl");
        let ledger = AckLedger::create(&path).unwrap();
        ledger.record(ack(7, true));
        drop(ledger);
        assert_eq!(AckLedger::load(&path).unwrap(), vec![ack(7, true)]);
    }
}
