//! The system's counts as metrics, through the [`metrics`] facade:
//! whatever recorder the process installed (the CLI's Prometheus exporter, an
//! embedder's own) receives them.
//!
//! The counts themselves are the atomics the router and the actors keep
//! anyway ([`ComponentStats`], [`RouterStats`]); publishing copies them into
//! the recorder (counters with `absolute`, gauges with `set`), so the message
//! path pays nothing for metrics. [`System::record_metrics`] publishes once;
//! [`crate::SystemBuilder::metrics_interval`] publishes on a timer. The
//! measurements taken per envelope, only when metrics are on, are the
//! handler duration histogram and, for a callback, the request duration
//! histogram (from the registration time each request carries: one TSC read
//! per request, metrics on or off).
//!
//! Names follow Prometheus conventions (base units, `_total` for counters,
//! `airssys_` prefix); every per-component series has the label `component`.
//! The embedding host's own sends are labelled `component="host"`. A host in
//! a cluster also publishes its traffic with each other node (`airssys_cluster_*`,
//! label `node`), from [`wasm_core::RemoteTransport::node_stats`].
//!
//! [`System::record_metrics`]: crate::System::record_metrics

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use wasm_core::{ComponentId, DeliveryLoss, MessagingError, RemoteNodeStats};
use wasm_messaging::{AuditCounts, DeadLetterCause, RouterStats};

use crate::system::ComponentStats;

/// Messages accepted into a component's mailbox (label `component`).
pub const MESSAGES_ACCEPTED: &str = "airssys_messages_accepted_total";
/// Requests accepted into a component's mailbox.
pub const REQUESTS_ACCEPTED: &str = "airssys_requests_accepted_total";
/// Messages and requests whose handler returned, with an error or not.
pub const HANDLED: &str = "airssys_handled_total";
/// Callbacks whose `handle-callback` returned.
pub const CALLBACKS_HANDLED: &str = "airssys_callbacks_handled_total";
/// Batches a component's `handle-messages` was called with that handed out
/// at least one message (see `airssys:wasm/batch-lifecycle`).
pub const BATCHES: &str = "airssys_batches_total";
/// Handlers (`handle-message`, `handle-callback`) that returned an error.
pub const HANDLER_ERRORS: &str = "airssys_handler_errors_total";
/// Envelopes for a component dead-lettered (label `reason`:
/// [`DeadLetterCause::as_str`]).
pub const DEAD_LETTERS: &str = "airssys_dead_letters_total";
/// A component's sends refused (label `kind`: the `messaging-error` case).
pub const REFUSED: &str = "airssys_refused_total";
/// Envelopes queued in a component's mailbox (gauge).
pub const MAILBOX_DEPTH: &str = "airssys_mailbox_depth";
/// Payload bytes queued in a component's mailbox (gauge, bytes).
pub const MAILBOX_BYTES: &str = "airssys_mailbox_bytes";
/// A component's pending requests (gauge).
pub const PENDING_REQUESTS: &str = "airssys_pending_requests";
/// Crashes of a component's instance.
pub const CRASHES: &str = "airssys_crashes_total";
/// Restarts of a component's instance by its supervisor.
pub const RESTARTS: &str = "airssys_restarts_total";
/// Time a component's handler took, seconds (histogram).
pub const HANDLER_DURATION: &str = "airssys_handler_duration_seconds";
/// A component's request round trip as it sees it, seconds (histogram):
/// from `send-request` accepted to the end of its `handle-callback` for
/// that request (response, error, timeout or cancellation alike).
pub const REQUEST_DURATION: &str = "airssys_request_duration_seconds";
/// Requests in the correlation tracker (gauge, all requesters).
pub const TRACKER_PENDING: &str = "airssys_tracker_pending_requests";
/// Requests that ended, by outcome (label `outcome`: `completed`, `failed`,
/// `timed-out`, `cancelled`, `dropped`).
pub const REQUESTS_ENDED: &str = "airssys_requests_ended_total";
/// Responses (or cancellations) that came after their request ended.
pub const ORPHANED: &str = "airssys_orphaned_responses_total";
/// Audit records written by the audit sink.
pub const AUDIT_WRITTEN: &str = "airssys_audit_records_written_total";
/// Audit records the audit sink dropped (its queue was full).
pub const AUDIT_DROPPED: &str = "airssys_audit_records_dropped_total";

/// Envelopes sent to another node (labels `node`, `kind`: `message`,
/// `request`).
pub const CLUSTER_SENT: &str = "airssys_cluster_sent_total";
/// Envelopes another node acknowledged as queued (label `node`).
pub const CLUSTER_ACKNOWLEDGED: &str = "airssys_cluster_acknowledged_total";
/// Envelopes sent to another node awaiting its acknowledgement (gauge,
/// label `node`).
pub const CLUSTER_PENDING_ACKS: &str = "airssys_cluster_pending_acks";
/// Envelopes sent to another node that were not delivered (labels `node`,
/// `reason`: [`wasm_core::DeliveryLoss::as_str`]).
pub const CLUSTER_UNDELIVERED: &str = "airssys_cluster_undelivered_total";
/// Sends to another node refused at once for lack of credit (label `node`).
pub const CLUSTER_CREDIT_REFUSALS: &str = "airssys_cluster_credit_refusals_total";
/// Envelopes received from another node (label `node`).
pub const CLUSTER_RECEIVED: &str = "airssys_cluster_received_total";
/// Envelopes from another node that this host refused (label `node`).
pub const CLUSTER_REFUSED_HERE: &str = "airssys_cluster_refused_here_total";

/// The buckets of [`HANDLER_DURATION`] and [`REQUEST_DURATION`], seconds:
/// 10 us to 10 s, about three per decade (guest handlers and request round
/// trips range from microseconds to the time budget).
pub const HANDLER_DURATION_BUCKETS: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Gives every metric its help text and unit (Prometheus `# HELP`).
fn describe() {
    describe_counter!(
        MESSAGES_ACCEPTED,
        Unit::Count,
        "Fire-and-forget messages accepted into the component's mailbox."
    );
    describe_counter!(REQUESTS_ACCEPTED, Unit::Count, "Requests accepted into the component's mailbox.");
    describe_counter!(HANDLED, Unit::Count, "Messages and requests whose handler returned, with an error or not.");
    describe_counter!(CALLBACKS_HANDLED, Unit::Count, "Callbacks whose handle-callback returned.");
    describe_counter!(
        HANDLER_ERRORS,
        Unit::Count,
        "Handlers (handle-message, handle-callback) that returned an error."
    );
    describe_counter!(
        BATCHES,
        Unit::Count,
        "Batches of queued messages handed to the component's handle-messages (at least one message each)."
    );
    describe_counter!(DEAD_LETTERS, Unit::Count, "Envelopes for the component that were dead-lettered, by reason.");
    describe_counter!(REFUSED, Unit::Count, "Sends by the component refused, by messaging-error kind.");
    describe_gauge!(MAILBOX_DEPTH, Unit::Count, "Envelopes queued in the component's mailbox.");
    describe_gauge!(MAILBOX_BYTES, Unit::Bytes, "Payload bytes queued in the component's mailbox.");
    describe_gauge!(PENDING_REQUESTS, Unit::Count, "Requests the component sent whose callback is not handled yet.");
    describe_counter!(CRASHES, Unit::Count, "Crashes of the component's instance (trap, limit, host panic).");
    describe_counter!(RESTARTS, Unit::Count, "New instances started by the supervisor after a crash.");
    describe_histogram!(HANDLER_DURATION, Unit::Seconds, "Time the component's handler took.");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from a request the component sent being accepted to its handle-callback returning."
    );
    describe_gauge!(TRACKER_PENDING, Unit::Count, "Requests pending in the correlation tracker.");
    describe_counter!(REQUESTS_ENDED, Unit::Count, "Requests that ended, by outcome.");
    describe_counter!(ORPHANED, Unit::Count, "Responses and cancellations that came after their request ended.");
    describe_counter!(AUDIT_WRITTEN, Unit::Count, "Audit records written.");
    describe_counter!(AUDIT_DROPPED, Unit::Count, "Audit records dropped because the audit queue was full.");
    describe_counter!(CLUSTER_SENT, Unit::Count, "Envelopes sent to the node, by kind.");
    describe_counter!(CLUSTER_ACKNOWLEDGED, Unit::Count, "Envelopes the node acknowledged as queued.");
    describe_gauge!(CLUSTER_PENDING_ACKS, Unit::Count, "Envelopes sent to the node awaiting its acknowledgement.");
    describe_counter!(
        CLUSTER_UNDELIVERED,
        Unit::Count,
        "Envelopes sent to the node that were not delivered, by reason."
    );
    describe_counter!(
        CLUSTER_CREDIT_REFUSALS,
        Unit::Count,
        "Sends to the node refused for lack of credit (queue-full)."
    );
    describe_counter!(CLUSTER_RECEIVED, Unit::Count, "Envelopes received from the node.");
    describe_counter!(CLUSTER_REFUSED_HERE, Unit::Count, "Envelopes from the node that this host refused.");
}

/// Publishes `components` and the system-wide counts to the current
/// recorder.
pub(crate) fn publish(
    components: &[(ComponentId, ComponentStats)],
    stats: &RouterStats,
    audit: Option<AuditCounts>,
    nodes: &[RemoteNodeStats],
) {
    describe();
    for n in nodes {
        publish_node(n);
    }
    for (id, s) in components {
        publish_component(id.as_str(), s);
    }
    // The host is a sender too: its refusals are labelled `component="host"`.
    publish_refused(wasm_core::HOST_ID, &stats.refused_host);
    let r = &stats.requests;
    gauge!(TRACKER_PENDING).set(u64_to_f64(r.pending));
    for (outcome, n) in [
        ("completed", r.completed),
        ("failed", r.failed),
        ("timed-out", r.timed_out),
        ("cancelled", r.cancelled),
        ("dropped", r.dropped),
    ] {
        counter!(REQUESTS_ENDED, "outcome" => outcome).absolute(n);
    }
    counter!(ORPHANED).absolute(r.orphaned);
    if let Some(audit) = audit {
        counter!(AUDIT_WRITTEN).absolute(audit.written);
        counter!(AUDIT_DROPPED).absolute(audit.dropped);
    }
}

fn publish_node(n: &RemoteNodeStats) {
    let node = || [("node", n.node.clone())];
    for (kind, count) in [("message", n.messages_sent), ("request", n.requests_sent)] {
        counter!(CLUSTER_SENT, &[("node", n.node.clone()), ("kind", kind.to_owned())]).absolute(count);
    }
    counter!(CLUSTER_ACKNOWLEDGED, &node()).absolute(n.acknowledged);
    gauge!(CLUSTER_PENDING_ACKS, &node()).set(u64_to_f64(n.pending_acks));
    for loss in DeliveryLoss::ALL {
        let labels = [("node", n.node.clone()), ("reason", loss.as_str().to_owned())];
        counter!(CLUSTER_UNDELIVERED, &labels).absolute(n.undelivered[loss.index()]);
    }
    counter!(CLUSTER_CREDIT_REFUSALS, &node()).absolute(n.credit_refusals);
    counter!(CLUSTER_RECEIVED, &node()).absolute(n.received);
    counter!(CLUSTER_REFUSED_HERE, &node()).absolute(n.refused_here);
}

fn publish_component(id: &str, s: &ComponentStats) {
    let component = id.to_owned();
    let label = || [("component", component.clone())];
    counter!(MESSAGES_ACCEPTED, &label()).absolute(s.messages_accepted);
    counter!(REQUESTS_ACCEPTED, &label()).absolute(s.requests_accepted);
    counter!(HANDLED, &label()).absolute(s.handled);
    counter!(CALLBACKS_HANDLED, &label()).absolute(s.callbacks_handled);
    counter!(HANDLER_ERRORS, &label()).absolute(s.handler_errors);
    counter!(BATCHES, &label()).absolute(s.batches);
    counter!(CRASHES, &label()).absolute(s.crashes);
    counter!(RESTARTS, &label()).absolute(s.restarts);
    for cause in DeadLetterCause::ALL {
        let labels = [("component", component.clone()), ("reason", cause.as_str().to_owned())];
        counter!(DEAD_LETTERS, &labels).absolute(s.dead_letters[cause.index()]);
    }
    publish_refused(id, &s.refused);
    gauge!(MAILBOX_DEPTH, &label()).set(u64_to_f64(s.mailbox_len));
    gauge!(MAILBOX_BYTES, &label()).set(u64_to_f64(s.mailbox_bytes));
    gauge!(PENDING_REQUESTS, &label()).set(u64_to_f64(s.pending_requests as u64));
}

fn publish_refused(id: &str, refused: &[u64; MessagingError::KINDS.len()]) {
    for (kind, n) in MessagingError::KINDS.iter().zip(refused) {
        let labels = [("component", id.to_owned()), ("kind", (*kind).to_owned())];
        counter!(REFUSED, &labels).absolute(*n);
    }
}

/// A count as a gauge value: exact below 2^53, which no gauge here reaches.
#[allow(clippy::cast_precision_loss, reason = "gauges are queue depths and request counts, far below 2^53")]
fn u64_to_f64(n: u64) -> f64 {
    n as f64
}
