//! The JSON-lines audit log: one object per line, written by a background
//! thread fed through a bounded channel so the message path never blocks.
//! When the channel is full, records are dropped and counted, never lost
//! silently: the count is in [`AuditLog::dropped`] and in the final summary.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use wasm_messaging::{AuditRecord, AuditSink};

/// Records the channel holds before the log drops new ones.
pub const AUDIT_QUEUE_RECORDS: usize = 65_536;

/// A JSON-lines audit writer.
///
/// Each line: `{"time": RFC 3339 UTC with ms, "event", "sender", "target",
/// "correlation_id", "outcome", "reason"}` (absent fields are `null`).
pub struct AuditLog {
    /// `None` is the writer's stop signal, sent once by [`AuditLog::close`].
    tx: SyncSender<Option<AuditRecord>>,
    closed: AtomicBool,
    written: Arc<AtomicU64>,
    dropped: AtomicU64,
    thread: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

impl AuditLog {
    /// Creates (truncates) `path` and starts the writer thread.
    ///
    /// # Errors
    /// The I/O error when the file cannot be created.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::create(path)?;
        Ok(Self::to_writer(Box::new(BufWriter::new(file))))
    }

    /// Writes to any writer (for tests: a shared buffer).
    #[must_use]
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        let (tx, rx) = sync_channel(AUDIT_QUEUE_RECORDS);
        let written = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&written);
        let thread =
            std::thread::Builder::new().name("audit-log".into()).spawn(move || write_all(rx, out, &count)).ok();
        Self { tx, closed: AtomicBool::new(false), written, dropped: AtomicU64::new(0), thread: Mutex::new(thread) }
    }

    /// Records written so far.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Records dropped because the queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking records, writes what is queued and flushes.
    ///
    /// # Errors
    /// The writer's I/O error, if any.
    pub fn close(&self) -> std::io::Result<()> {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(None);
        }
        match self.thread.lock().take() {
            Some(thread) => thread.join().unwrap_or_else(|_| Err(std::io::Error::other("audit writer panicked"))),
            None => Ok(()),
        }
    }
}

fn write_all(
    rx: Receiver<Option<AuditRecord>>,
    mut out: Box<dyn Write + Send>,
    written: &AtomicU64,
) -> std::io::Result<()> {
    while let Ok(Some(record)) = rx.recv() {
        let line = to_json(&record);
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        written.fetch_add(1, Ordering::Relaxed);
    }
    out.flush()
}

/// One record as a JSON object (no trailing newline).
#[must_use]
pub fn to_json(record: &AuditRecord) -> String {
    serde_json::json!({
        "time": humantime::format_rfc3339_millis(record.time).to_string(),
        "event": record.event.as_str(),
        "sender": record.sender.as_ref().map(|s| s.as_str()),
        "target": record.target,
        "correlation_id": record.correlation_id.map(|id| id.as_str().to_owned()),
        "outcome": record.outcome,
        "reason": record.reason,
    })
    .to_string()
}

impl AuditSink for AuditLog {
    fn record(&self, record: AuditRecord) {
        if self.closed.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send(Some(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("written", &self.written()).field("dropped", &self.dropped()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Barrier};

    use wasm_core::{ComponentId, CorrelationId};
    use wasm_messaging::{AuditEvent, AuditRecord, AuditSink};

    use super::*;

    /// A writer that blocks its first write until the test opens the gate,
    /// so the queue fills up behind it.
    struct Gated {
        gate: Arc<Barrier>,
        opened: bool,
        out: Arc<parking_lot::Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.opened {
                self.gate.wait();
                self.opened = true;
            }
            self.out.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn refusal(n: usize) -> AuditRecord {
        AuditRecord {
            sender: Some(ComponentId::parse("flooder").expect("id")),
            target: Some(format!("victim-{n}")),
            correlation_id: Some(CorrelationId::generate()),
            ..AuditRecord::now(AuditEvent::Refused, "rate-limited", "over the rate")
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_never_blocks() {
        let gate = Arc::new(Barrier::new(2));
        let out = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let log =
            AuditLog::to_writer(Box::new(Gated { gate: Arc::clone(&gate), opened: false, out: Arc::clone(&out) }));
        let total = AUDIT_QUEUE_RECORDS + 500;
        for n in 0..total {
            log.record(refusal(n));
        }
        // The writer holds at most one record while blocked; the queue holds
        // AUDIT_QUEUE_RECORDS; the rest were dropped at once, and counted.
        assert!(log.dropped() >= 499, "dropped {}", log.dropped());
        gate.wait();
        log.close().expect("flushes");
        let written = log.written();
        assert_eq!(written + log.dropped(), total as u64, "every record written or counted as dropped");
        let text = String::from_utf8(out.lock().clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, written);
        let first: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON object per line");
        for key in ["time", "event", "sender", "target", "correlation_id", "outcome", "reason"] {
            assert!(first.get(key).is_some(), "missing {key}: {first}");
        }
        assert_eq!(first["event"], "refused");
        assert_eq!(first["target"], "victim-0");
        assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "RFC 3339: {first}");
    }
}
