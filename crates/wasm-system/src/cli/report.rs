//! What `run` reports when the app has shut down: the summary for people
//! (totals, then a table of the components) and the JSON report for
//! scripts (`--json`), both from the [`ShutdownReport`].

use std::fmt::Write as _;
use std::time::Duration;

use comfy_table::{CellAlignment, Table, presets};
use serde::Serialize;
use serde::ser::SerializeMap;
use wasm_core::{DeliveryLoss, MessagingError, RemoteNodeStats, TrackerStats};
use wasm_system::{ComponentId, ComponentStats, DeadLetterCause, LoadedApp, RouterStats, ShutdownReport};

/// What a run of an app ended with.
#[derive(Debug)]
pub(crate) struct RunOutcome {
    /// The system's final counters.
    pub(crate) report: ShutdownReport,
    /// From the start of the components to the end of the shutdown.
    pub(crate) elapsed: Duration,
    /// Lines written to `--events`, when it was given.
    pub(crate) events_written: Option<u64>,
}

/// The audit log's counts, when `--audit-log` was given.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct AuditCounts {
    /// Records written.
    pub(crate) written: u64,
    /// Records dropped because the writer's queue was full.
    pub(crate) dropped: u64,
}

/// Crashes, restarts and stops over all components, from their counts.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Lifecycle {
    crashes: u64,
    restarts: u64,
    /// Components whose mailbox is closed at the end: every one after a
    /// shutdown, the ones that stopped on their own included.
    stops: u64,
}

impl Lifecycle {
    fn of(components: &[(ComponentId, ComponentStats)]) -> Self {
        components.iter().fold(Self::default(), |sum, (_, c)| Self {
            crashes: sum.crashes + c.crashes,
            restarts: sum.restarts + c.restarts,
            stops: sum.stops + u64::from(c.stopped),
        })
    }
}

/// The app's name, or its file when it has none.
fn app_name(app: &LoadedApp) -> String {
    if app.manifest.app.name.is_empty() { app.file.display().to_string() } else { app.manifest.app.name.clone() }
}

/// The summary for people: the totals, a table with a row per component,
/// and the verdict (`accounting balanced`) on the last line.
pub(crate) fn summary(app: &LoadedApp, outcome: &RunOutcome, audit: Option<AuditCounts>) -> String {
    let RunOutcome { report, elapsed, events_written } = outcome;
    let stats = &report.stats;
    let r = &stats.requests;
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("== {}: {} components, {:.3}s ==", app_name(app), app.components.len(), elapsed.as_secs_f64()));
    line(format!(
        "messages   accepted {:>8}  requests accepted {:>6}  handled {:>8} (both)  dead-lettered {:>6}",
        stats.messages_accepted, stats.requests_accepted, stats.handled, stats.dead_lettered
    ));
    // The tracker's `completed` is every request its target's handler
    // answered; a handler error is shown apart from the responses.
    line(format!(
        "requests   accepted {:>8}  completed {:>6}  handler errors {:>4}  timed out {:>4}  cancelled {:>4}  failed {:>4}  dropped {:>4}  orphaned {:>4}  pending {}",
        r.registered,
        r.completed.saturating_sub(stats.request_handler_errors),
        stats.request_handler_errors,
        r.timed_out,
        r.cancelled,
        r.failed,
        r.dropped,
        r.orphaned,
        r.pending
    ));
    line(format!(
        "callbacks  queued {:>10}  handled {:>8}  dropped {:>4}  bad responses {}",
        stats.callbacks_queued, stats.callbacks_handled, stats.callbacks_dropped, stats.responses_refused
    ));
    let completed: u64 = report.components.iter().map(|(_, c)| c.completed()).sum();
    let handler_errors: u64 = report.components.iter().map(|(_, c)| c.handler_errors).sum();
    line(format!(
        "handlers   ok {completed:>14}  handler errors {handler_errors:>4}  (messages, requests and callbacks)"
    ));
    line(format!("refused    {:>8}{}", stats.refused_total(), nonzero(MessagingError::KINDS, &stats.refused)));
    if stats.remote_messages_sent + stats.remote_requests_sent + stats.remote_outcomes_sent > 0 {
        line(format!(
            "cluster    sent to other nodes: messages {}  requests {}  outcomes {}  dead letters {}",
            stats.remote_messages_sent,
            stats.remote_requests_sent,
            stats.remote_outcomes_sent,
            stats.remote_dead_lettered
        ));
    }
    for n in &report.nodes {
        line(format!(
            "node {}  sent {}  acknowledged {}  pending acks {}  undelivered {}{}  credit refusals {}  received {} (refused {})",
            n.node,
            n.messages_sent + n.requests_sent,
            n.acknowledged,
            n.pending_acks,
            n.undelivered_total(),
            nonzero(DeliveryLoss::ALL.map(DeliveryLoss::as_str), &n.undelivered),
            n.credit_refusals,
            n.received,
            n.refused_here
        ));
    }
    let lifecycle = Lifecycle::of(&report.components);
    line(format!(
        "lifecycle  crashes {}  restarts {}  stops {}",
        lifecycle.crashes, lifecycle.restarts, lifecycle.stops
    ));
    for (id, reason) in &report.stopped_abnormally {
        line(format!("stopped    {id}: {reason}"));
    }
    if let Some(AuditCounts { written, dropped }) = audit {
        line(format!("audit      written {written}  dropped {dropped}"));
    }
    if let Some(written) = events_written {
        line(format!("events     written {written}"));
    }
    if !report.components.is_empty() {
        line(component_table(&report.components));
    }
    line(format!(
        "accounting {}{}",
        if stats.balanced() { "balanced" } else { "NOT balanced" },
        if report.drained { "" } else { " (stopped before quiescence)" }
    ));
    out
}

/// The per-component table (Markdown-style, so it reads in a terminal and
/// pastes into an issue): one row per component, in id order.
fn component_table(components: &[(ComponentId, ComponentStats)]) -> String {
    const HEADER: [&str; 10] = [
        "component",
        "accepted",
        "handled",
        "completed",
        "handler errors",
        "callbacks",
        "dead letters",
        "refused",
        "crashes",
        "restarts",
    ];
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN).set_header(HEADER);
    for (id, c) in components {
        table.add_row([
            id.to_string(),
            (c.messages_accepted + c.requests_accepted).to_string(),
            c.handled.to_string(),
            c.completed().to_string(),
            c.handler_errors.to_string(),
            c.callbacks_handled.to_string(),
            c.dead_letters_total().to_string(),
            c.refused_total().to_string(),
            c.crashes.to_string(),
            c.restarts.to_string(),
        ]);
    }
    for column in table.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    let mut text = table.to_string();
    let _ = write!(
        text,
        "\n(accepted: messages and requests into its mailbox; completed: its handlers that returned ok; \
         callbacks: handled; refused: its own sends)"
    );
    text
}

/// `  (name n, ...)` for the counts that are not zero, or nothing.
fn nonzero(names: impl IntoIterator<Item = &'static str>, counts: &[u64]) -> String {
    let parts: Vec<String> =
        names.into_iter().zip(counts).filter(|(_, n)| **n > 0).map(|(name, n)| format!("{name} {n}")).collect();
    if parts.is_empty() { String::new() } else { format!("  ({})", parts.join(", ")) }
}

/// Counts by kind name, serialized as a JSON object in the kinds' order.
#[derive(Debug)]
struct ByKind(Vec<(&'static str, u64)>);

impl ByKind {
    fn new(names: impl IntoIterator<Item = &'static str>, counts: &[u64]) -> Self {
        Self(names.into_iter().zip(counts.iter().copied()).collect())
    }
}

impl Serialize for ByKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, count) in &self.0 {
            map.serialize_entry(name, count)?;
        }
        map.end()
    }
}

/// The `--json` report (schema in the README and in `run --help`).
#[derive(Debug, Serialize)]
pub(crate) struct JsonReport {
    app: String,
    file: String,
    elapsed_ms: u64,
    drained: bool,
    balanced: bool,
    totals: Totals,
    components: Vec<ComponentReport>,
    nodes: Vec<NodeReport>,
    lifecycle: Lifecycle,
    stopped_abnormally: Vec<StoppedReport>,
    dropped_host_requests: usize,
    audit: Option<AuditCounts>,
    events_written: Option<u64>,
}

impl JsonReport {
    /// The report of `outcome`, a run of `app`.
    pub(crate) fn new(app: &LoadedApp, outcome: &RunOutcome, audit: Option<AuditCounts>) -> Self {
        let report = &outcome.report;
        Self {
            app: app_name(app),
            file: app.file.display().to_string(),
            elapsed_ms: u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX),
            drained: report.drained,
            balanced: report.stats.balanced(),
            totals: Totals::from(&report.stats),
            components: report.components.iter().map(|(id, c)| ComponentReport::new(id.as_str(), c)).collect(),
            nodes: report.nodes.iter().map(NodeReport::from).collect(),
            lifecycle: Lifecycle::of(&report.components),
            stopped_abnormally: report
                .stopped_abnormally
                .iter()
                .map(|(id, reason)| StoppedReport { component: id.to_string(), reason: reason.clone() })
                .collect(),
            dropped_host_requests: report.dropped_host_requests,
            audit,
            events_written: outcome.events_written,
        }
    }
}

/// [`RouterStats`], field by field.
#[derive(Debug, Serialize)]
struct Totals {
    messages_accepted: u64,
    requests_accepted: u64,
    callbacks_queued: u64,
    callbacks_dropped: u64,
    handled: u64,
    callbacks_handled: u64,
    dead_lettered: u64,
    responses_refused: u64,
    request_handler_errors: u64,
    refused: ByKind,
    refused_total: u64,
    refused_host: ByKind,
    enqueued: u64,
    settled: u64,
    remote_messages_sent: u64,
    remote_requests_sent: u64,
    remote_outcomes_sent: u64,
    remote_dead_lettered: u64,
    requests: Requests,
}

impl From<&RouterStats> for Totals {
    fn from(s: &RouterStats) -> Self {
        Self {
            messages_accepted: s.messages_accepted,
            requests_accepted: s.requests_accepted,
            callbacks_queued: s.callbacks_queued,
            callbacks_dropped: s.callbacks_dropped,
            handled: s.handled,
            callbacks_handled: s.callbacks_handled,
            dead_lettered: s.dead_lettered,
            responses_refused: s.responses_refused,
            request_handler_errors: s.request_handler_errors,
            refused: ByKind::new(MessagingError::KINDS, &s.refused),
            refused_total: s.refused_total(),
            refused_host: ByKind::new(MessagingError::KINDS, &s.refused_host),
            enqueued: s.enqueued,
            settled: s.settled,
            remote_messages_sent: s.remote_messages_sent,
            remote_requests_sent: s.remote_requests_sent,
            remote_outcomes_sent: s.remote_outcomes_sent,
            remote_dead_lettered: s.remote_dead_lettered,
            requests: Requests::from(&s.requests),
        }
    }
}

/// [`TrackerStats`], field by field.
#[derive(Debug, Serialize)]
struct Requests {
    registered: u64,
    completed: u64,
    failed: u64,
    timed_out: u64,
    cancelled: u64,
    dropped: u64,
    orphaned: u64,
    pending: u64,
}

impl From<&TrackerStats> for Requests {
    fn from(t: &TrackerStats) -> Self {
        Self {
            registered: t.registered,
            completed: t.completed,
            failed: t.failed,
            timed_out: t.timed_out,
            cancelled: t.cancelled,
            dropped: t.dropped,
            orphaned: t.orphaned,
            pending: t.pending,
        }
    }
}

/// One component's [`ComponentStats`], field by field, with its id and
/// the totals of its by-kind counts.
#[derive(Debug, Serialize)]
struct ComponentReport {
    id: String,
    messages_accepted: u64,
    requests_accepted: u64,
    handled: u64,
    handler_errors: u64,
    callbacks_handled: u64,
    batches: u64,
    completed: u64,
    dead_letters: ByKind,
    dead_letters_total: u64,
    refused: ByKind,
    refused_total: u64,
    crashes: u64,
    restarts: u64,
    mailbox_len: u64,
    mailbox_bytes: u64,
    pending_requests: usize,
    stopped: bool,
}

impl ComponentReport {
    fn new(id: &str, c: &ComponentStats) -> Self {
        Self {
            id: id.to_owned(),
            messages_accepted: c.messages_accepted,
            requests_accepted: c.requests_accepted,
            handled: c.handled,
            handler_errors: c.handler_errors,
            callbacks_handled: c.callbacks_handled,
            batches: c.batches,
            completed: c.completed(),
            dead_letters: ByKind::new(DeadLetterCause::ALL.map(DeadLetterCause::as_str), &c.dead_letters),
            dead_letters_total: c.dead_letters_total(),
            refused: ByKind::new(MessagingError::KINDS, &c.refused),
            refused_total: c.refused_total(),
            crashes: c.crashes,
            restarts: c.restarts,
            mailbox_len: c.mailbox_len,
            mailbox_bytes: c.mailbox_bytes,
            pending_requests: c.pending_requests,
            stopped: c.stopped,
        }
    }
}

/// The traffic with one other node ([`RemoteNodeStats`]), field by field.
#[derive(Debug, Serialize)]
struct NodeReport {
    node: String,
    messages_sent: u64,
    requests_sent: u64,
    acknowledged: u64,
    pending_acks: u64,
    undelivered: ByKind,
    undelivered_total: u64,
    credit_refusals: u64,
    received: u64,
    refused_here: u64,
}

impl From<&RemoteNodeStats> for NodeReport {
    fn from(n: &RemoteNodeStats) -> Self {
        Self {
            node: n.node.clone(),
            messages_sent: n.messages_sent,
            requests_sent: n.requests_sent,
            acknowledged: n.acknowledged,
            pending_acks: n.pending_acks,
            undelivered: ByKind::new(DeliveryLoss::ALL.map(DeliveryLoss::as_str), &n.undelivered),
            undelivered_total: n.undelivered_total(),
            credit_refusals: n.credit_refusals,
            received: n.received,
            refused_here: n.refused_here,
        }
    }
}

/// A component that stopped before the shutdown.
#[derive(Debug, Serialize)]
struct StoppedReport {
    component: String,
    reason: String,
}
