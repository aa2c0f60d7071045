//! The transport's counters: [`ClusterStats`].

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a [`crate::NatsTransport`]'s counters since it connected
/// (counts, not rates). Taken from relaxed atomics: each field is exact, the
/// fields are not one consistent instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Envelopes (messages and requests) handed to the NATS client for
    /// other hosts.
    pub sent: u64,
    /// Envelopes from other hosts handed to this host's
    /// [`wasm_core::RemoteInbound::deliver`] (accepted or refused there).
    pub received: u64,
    /// Request outcomes handed to the NATS client for requesters on other
    /// hosts, including the `delivery-failed` outcomes of requests this
    /// host refused.
    pub outcomes_sent: u64,
    /// Outcomes from other hosts handed to
    /// [`wasm_core::RemoteInbound::complete`].
    pub outcomes_received: u64,
    /// Inbound envelopes, outcomes and announcements dropped because a
    /// header or the body was missing or invalid.
    pub dropped_malformed: u64,
    /// Inbound envelopes and outcomes dropped because their target (or
    /// requester) header names another node than this host's.
    pub dropped_wrong_node: u64,
    /// Envelopes refused (`queue-full`) and outcomes dropped because the
    /// outgoing queue was full.
    pub dropped_queue_full: u64,
    /// Envelopes and outcomes the NATS client refused to publish (the
    /// connection was closed); each is lost (an outcome ends as its
    /// requester's timeout).
    pub publish_failed: u64,
    /// Acknowledgements (and credit updates) sent to other hosts.
    pub acks_sent: u64,
    /// Acknowledgements received from other hosts.
    pub acks_received: u64,
    /// How many times the client reconnected to the broker after its first
    /// connection.
    pub reconnects: u64,
    /// Other hosts with a live directory entry now.
    pub directory_nodes: usize,
}

/// The live counters behind [`ClusterStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) outcomes_sent: AtomicU64,
    pub(crate) outcomes_received: AtomicU64,
    pub(crate) dropped_malformed: AtomicU64,
    pub(crate) dropped_wrong_node: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) acks_sent: AtomicU64,
    pub(crate) acks_received: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The snapshot, with the two counts kept elsewhere.
    pub(crate) fn snapshot(&self, reconnects: u64, directory_nodes: usize) -> ClusterStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClusterStats {
            sent: get(&self.sent),
            received: get(&self.received),
            outcomes_sent: get(&self.outcomes_sent),
            outcomes_received: get(&self.outcomes_received),
            dropped_malformed: get(&self.dropped_malformed),
            dropped_wrong_node: get(&self.dropped_wrong_node),
            dropped_queue_full: get(&self.dropped_queue_full),
            publish_failed: get(&self.publish_failed),
            acks_sent: get(&self.acks_sent),
            acks_received: get(&self.acks_received),
            reconnects,
            directory_nodes,
        }
    }
}
