//! Audit records (SPEC section 3, audit): one per refusal and per lifecycle
//! event. The messaging layer produces them; the composition root decides
//! where they go (a JSON-lines file, through a bounded channel).

use std::fmt;
use std::time::SystemTime;

use wasm_core::{ComponentId, CorrelationId};

/// What an [`AuditRecord`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditEvent {
    /// A send refused by the chokepoint (`outcome` names the error variant).
    Refused,
    /// A message or callback dead-lettered (a trap, a stop).
    DeadLetter,
    /// A component instance started.
    Start,
    /// A component instance trapped or exceeded a limit.
    Crash,
    /// The supervisor re-instantiated a component.
    Restart,
    /// A component stopped (shutdown or restart intensity exceeded).
    Stop,
}

impl AuditEvent {
    /// The event as a word: `refused`, `dead-letter`, `start`, `crash`, `restart`, `stop`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Refused => "refused",
            AuditEvent::DeadLetter => "dead-letter",
            AuditEvent::Start => "start",
            AuditEvent::Crash => "crash",
            AuditEvent::Restart => "restart",
            AuditEvent::Stop => "stop",
        }
    }
}

/// One audit line: time, event, sender, target, correlation id, outcome and reason.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// When it happened.
    pub time: SystemTime,
    /// What happened.
    pub event: AuditEvent,
    /// The sender (or the component, for lifecycle events).
    pub sender: Option<ComponentId>,
    /// The target as the sender wrote it (may be an invalid id).
    pub target: Option<String>,
    /// The request's correlation id, if any.
    pub correlation_id: Option<CorrelationId>,
    /// The outcome in a word: the refusal's error variant (`permission-denied`),
    /// or the event's result.
    pub outcome: &'static str,
    /// Why.
    pub reason: String,
    /// How many events the record stands for: 1, or for an aggregate of
    /// repeated refusals (same sender, kind and second), how many there were.
    pub count: u64,
}

impl AuditRecord {
    /// A record stamped now.
    #[must_use]
    pub fn now(event: AuditEvent, outcome: &'static str, reason: impl Into<String>) -> Self {
        Self {
            time: SystemTime::now(),
            event,
            sender: None,
            target: None,
            correlation_id: None,
            outcome,
            reason: reason.into(),
            count: 1,
        }
    }

    /// The tenant the record is about, for sharing an audit queue fairly: the
    /// sender, or for what the host did to a component (lifecycle records),
    /// that component.
    #[must_use]
    pub fn tenant(&self) -> &str {
        match (&self.sender, &self.target) {
            (Some(sender), _) if !sender.is_host() => sender.as_str(),
            (_, Some(target)) => target,
            (Some(sender), None) => sender.as_str(),
            (None, None) => wasm_core::HOST_ID,
        }
    }
}

/// Where audit records go. `record` is called on the message path, so it
/// must not block: implementations queue the record and count what they drop.
pub trait AuditSink: Send + Sync {
    /// Takes one record.
    fn record(&self, record: AuditRecord);

    /// Records written and dropped so far, for metrics; `None` (the
    /// default) for a sink that does not count.
    fn counts(&self) -> Option<AuditCounts> {
        None
    }
}

/// What an [`AuditSink`] did with the records it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditCounts {
    /// Records written to the sink's destination.
    pub written: u64,
    /// Records dropped (the sink's queue was full, or it was closed).
    pub dropped: u64,
}

impl AuditCounts {
    /// Counts of `written` and `dropped` records.
    #[must_use]
    pub fn new(written: u64, dropped: u64) -> Self {
        Self { written, dropped }
    }
}

/// Discards records (for embeddings that audit nothing).
#[derive(Clone, Copy, Default)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _record: AuditRecord) {}
}

impl fmt::Debug for NoAudit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoAudit")
    }
}
