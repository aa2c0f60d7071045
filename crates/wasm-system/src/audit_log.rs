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
