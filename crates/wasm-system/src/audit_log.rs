//! The JSON-lines audit log: one object per line, written by a background
//! thread so the message path never blocks.
//!
//! The queue in front of the writer is shared fairly between tenants (the
//! component a record is about, [`AuditRecord::tenant`]): records wait in one
//! queue per tenant, the writer takes them round-robin, and when
//! [`AUDIT_QUEUE_RECORDS`] are waiting, the oldest record of the *longest*
//! queue makes room. A tenant that floods the log therefore loses its own
//! records first and never another tenant's. Nothing is lost silently:
//! dropped records are counted in [`AuditLog::dropped`] (and per tenant in
//! [`AuditLog::dropped_by_tenant`]) and in the final summary.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use wasm_messaging::{AuditCounts, AuditRecord, AuditSink};

/// Records waiting for the writer, all tenants together, before the longest
/// tenant queue drops its oldest.
pub const AUDIT_QUEUE_RECORDS: usize = 65_536;

/// How the writer thread is started: `std::thread::Builder::spawn`, or in
/// tests a spawner that fails.
type Spawn = fn(
    std::thread::Builder,
    Box<dyn FnOnce() -> std::io::Result<()> + Send>,
) -> std::io::Result<JoinHandle<std::io::Result<()>>>;

/// A JSON-lines audit writer.
///
/// Each line: `{"time": RFC 3339 UTC with ms, "event", "sender", "target",
/// "correlation_id", "outcome", "reason", "count"}` (absent fields are
/// `null`; `count` is 1 but for aggregated refusals).
pub struct AuditLog {
    queue: Arc<FairQueue>,
    written: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

/// Per-tenant queues behind one lock, and the writer's wake-up.
#[derive(Default)]
struct FairQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    tenants: HashMap<String, VecDeque<AuditRecord>>,
    /// Tenants with records waiting, in the order the writer serves them.
    turn: VecDeque<String>,
    waiting: usize,
    dropped: HashMap<String, u64>,
    closed: bool,
}

impl QueueState {
    fn drop_one(&mut self, tenant: &str) {
        *self.dropped.entry(tenant.to_owned()).or_default() += 1;
    }

    fn push(&mut self, record: AuditRecord) {
        let tenant = record.tenant().to_owned();
        if self.closed {
            self.drop_one(&tenant);
            return;
        }
        if self.waiting >= AUDIT_QUEUE_RECORDS {
            let longest = self.tenants.iter().max_by_key(|(_, queue)| queue.len()).map(|(t, q)| (t.clone(), q.len()));
            let mine = self.tenants.get(&tenant).map_or(0, VecDeque::len);
            match longest {
                Some((longest, len)) if len > mine => {
                    if let Some(queue) = self.tenants.get_mut(&longest) {
                        queue.pop_front();
                    }
                    self.waiting -= 1;
                    self.drop_one(&longest);
                }
                _ => {
                    // This tenant's queue is the longest: it loses its own record.
                    self.drop_one(&tenant);
                    return;
                }
            }
        }
        let queue = self.tenants.entry(tenant.clone()).or_default();
        if queue.is_empty() {
            self.turn.push_back(tenant);
        }
        queue.push_back(record);
        self.waiting += 1;
    }

    /// The next record, round-robin over the tenants with records waiting.
    fn pop(&mut self) -> Option<AuditRecord> {
        while let Some(tenant) = self.turn.pop_front() {
            let Some(queue) = self.tenants.get_mut(&tenant) else { continue };
            // A queue emptied by evictions is skipped.
            let Some(record) = queue.pop_front() else { continue };
            if !queue.is_empty() {
                self.turn.push_back(tenant);
            }
            self.waiting -= 1;
            return Some(record);
        }
        None
    }
}

impl AuditLog {
    /// Creates (truncates) `path` and starts the writer thread.
    ///
    /// # Errors
    /// The I/O error when the file cannot be created or the writer thread
    /// cannot start (an audit log that writes nothing is never handed out).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = File::create(path)?;
        Self::to_writer(Box::new(BufWriter::new(file)))
    }

    /// Writes to any writer (for tests: a shared buffer).
    ///
    /// # Errors
    /// The I/O error when the writer thread cannot start.
    pub fn to_writer(out: Box<dyn Write + Send>) -> std::io::Result<Self> {
        Self::to_writer_with(out, |builder, body| builder.spawn(body))
    }

    /// As [`AuditLog::to_writer`], starting the writer thread with `spawn`.
    fn to_writer_with(out: Box<dyn Write + Send>, spawn: Spawn) -> std::io::Result<Self> {
        let queue = Arc::new(FairQueue::default());
        let written = Arc::new(AtomicU64::new(0));
        let (from, count) = (Arc::clone(&queue), Arc::clone(&written));
        let body = Box::new(move || write_all(&from, out, &count));
        let thread = spawn(std::thread::Builder::new().name("audit-log".into()), body)?;
        Ok(Self { queue, written, thread: Mutex::new(Some(thread)) })
    }

    /// Records written so far.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Records dropped, all tenants (the queue was full, or the log closed).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.queue.state.lock().dropped.values().sum()
    }

    /// Records dropped per tenant, sorted by tenant.
    #[must_use]
    pub fn dropped_by_tenant(&self) -> Vec<(String, u64)> {
        let mut dropped: Vec<(String, u64)> =
            self.queue.state.lock().dropped.iter().map(|(t, n)| (t.clone(), *n)).collect();
        dropped.sort();
        dropped
    }

    /// Stops taking records, writes what is queued and flushes.
    ///
    /// # Errors
    /// The writer's I/O error, if any.
    pub fn close(&self) -> std::io::Result<()> {
        self.queue.state.lock().closed = true;
        self.queue.ready.notify_one();
        match self.thread.lock().take() {
            Some(thread) => thread.join().unwrap_or_else(|_| Err(std::io::Error::other("audit writer panicked"))),
            None => Ok(()),
        }
    }
}

fn write_all(queue: &FairQueue, mut out: Box<dyn Write + Send>, written: &AtomicU64) -> std::io::Result<()> {
    loop {
        let record = {
            let mut state = queue.state.lock();
            loop {
                if let Some(record) = state.pop() {
                    break Some(record);
                }
                if state.closed {
                    break None;
                }
                queue.ready.wait(&mut state);
            }
        };
        let Some(record) = record else { break };
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
        "count": record.count,
    })
    .to_string()
}

impl AuditSink for AuditLog {
    fn record(&self, record: AuditRecord) {
        self.queue.state.lock().push(record);
        self.queue.ready.notify_one();
    }

    fn counts(&self) -> Option<AuditCounts> {
        Some(AuditCounts::new(self.written(), self.dropped()))
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
            AuditLog::to_writer(Box::new(Gated { gate: Arc::clone(&gate), opened: false, out: Arc::clone(&out) }))
                .expect("the writer thread starts");
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
        for key in ["time", "event", "sender", "target", "correlation_id", "outcome", "reason", "count"] {
            assert!(first.get(key).is_some(), "missing {key}: {first}");
        }
        assert_eq!(first["event"], "refused");
        assert_eq!(first["target"], "victim-0");
        assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "RFC 3339: {first}");
    }

    #[test]
    fn a_flooding_tenant_loses_its_own_records_and_never_another_tenants() {
        let gate = Arc::new(Barrier::new(2));
        let out = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let log =
            AuditLog::to_writer(Box::new(Gated { gate: Arc::clone(&gate), opened: false, out: Arc::clone(&out) }))
                .expect("the writer thread starts");
        for n in 0..AUDIT_QUEUE_RECORDS + 500 {
            log.record(refusal(n));
        }
        let quiet = ComponentId::parse("quiet").expect("id");
        for n in 0..10 {
            log.record(AuditRecord {
                sender: Some(quiet.clone()),
                target: Some(format!("quiet-{n}")),
                ..AuditRecord::now(AuditEvent::Refused, "permission-denied", "not allowed")
            });
        }
        gate.wait();
        log.close().expect("flushes");
        let text = String::from_utf8(out.lock().clone()).expect("utf-8");
        let quiet_lines = text.lines().filter(|line| line.contains("\"sender\":\"quiet\"")).count();
        assert_eq!(quiet_lines, 10, "every record of the quiet tenant is written");
        let dropped = log.dropped_by_tenant();
        assert!(
            matches!(dropped.as_slice(), [(tenant, n)] if tenant == "flooder" && *n >= 509),
            "only the flooder pays for the room (the writer holds one record): {dropped:?}"
        );
    }

    #[test]
    fn an_audit_log_whose_writer_cannot_start_is_an_error() {
        let failing: Spawn = |_, _| Err(std::io::Error::other("no threads left"));
        let error =
            AuditLog::to_writer_with(Box::new(std::io::sink()), failing).expect_err("no log without its writer");
        assert_eq!(error.to_string(), "no threads left");
    }
}
