//! The port between a host's router and the hosts of other nodes (SPEC
//! section 5): a component id `name@node` whose node is not this host's is
//! reached through a [`RemoteTransport`] (the NATS transport of
//! `wasm-cluster`, injected by wasm-system), and what other hosts send here
//! comes in through the host's [`RemoteInbound`] (its router).
//!
//! The sending host runs the whole policy step, so what crosses is already
//! checked: an envelope names its sender as `name@node` of the sending host,
//! and the receiving host trusts the sending host to state it (hosts of one
//! lattice trust each other; the broker's credentials decide who joins).
//! The requester's host owns a request's correlation entry and its timer;
//! the responder's host only sends the outcome back.

use crate::correlation::CorrelationId;
use crate::error::{MessagingError, RequestError, SendError};
use crate::id::ComponentId;
use crate::payload::Codec;
use crate::trace::TraceContext;

/// What an envelope between hosts is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteKind {
    /// Fire-and-forget.
    Message,
    /// A request: its correlation id at the requester's host, and how long
    /// the requester waits, in ms (the receiving host keeps its own entry no
    /// longer than that).
    Request {
        /// The id the requester's host registered.
        id: CorrelationId,
        /// The request's timeout, ms.
        timeout_ms: u64,
    },
}

/// A message or request from a component on one host to a component on
/// another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEnvelope {
    /// The sender, qualified with its host's node: `name@node`.
    pub sender: ComponentId,
    /// The target, `name@node` with the receiving host's node.
    pub target: ComponentId,
    /// Message or request.
    pub kind: RemoteKind,
    /// The payload, multicodec prefix included, as the sender sent it.
    pub payload: Vec<u8>,
    /// The sending span (W3C `traceparent`).
    pub trace: TraceContext,
}

/// The outcome of a request, on its way back to the requester's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteOutcome {
    /// The requester, `name@node` with its host's node.
    pub requester: ComponentId,
    /// The id the requester's host registered.
    pub id: CorrelationId,
    /// The response, or why there is none.
    pub outcome: Result<Vec<u8>, RequestError>,
    /// The span that produced the outcome.
    pub trace: TraceContext,
}

/// A component of this host, as announced to the others: its name (without
/// `@node`) and the codecs it accepts (empty: all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalComponent {
    /// Its name on this host.
    pub name: String,
    /// Codecs its manifest accepts; empty means every codec.
    pub accepts: Vec<Codec>,
}

/// Why a message or request this host sent to another node was not
/// delivered there: the closed set of reasons (the label of the per-node
/// `undelivered` counts; [`RemoteUndelivered::reason`] is the free text).
///
/// A sending host counts an envelope delivered only when the receiving host
/// acknowledges that it queued it; everything else ends in exactly one of
/// these, as a `delivery-failed` dead letter (a message) or a
/// `delivery-failed` outcome (a request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeliveryLoss {
    /// The receiving host refused it (its mailbox was full, the component
    /// stopped, the codec or size was refused): a negative acknowledgement.
    Refused,
    /// The receiving host saw a gap in this host's sequence numbers: the
    /// envelope was lost on the way (a broker restart, a slow consumer).
    Lost,
    /// No acknowledgement came within the acknowledgement timeout: it may or
    /// may not have been queued there (the receiving host or the way back
    /// failed).
    AckTimeout,
    /// The receiving host left the lattice (an empty announcement, or no
    /// heartbeat for 3 intervals) before acknowledging it.
    NodeLeft,
    /// The NATS client refused to publish it (its connection was closed).
    PublishFailed,
}

impl DeliveryLoss {
    /// Every reason, in the order of [`RemoteNodeStats::undelivered`].
    pub const ALL: [DeliveryLoss; 5] = [
        DeliveryLoss::Refused,
        DeliveryLoss::Lost,
        DeliveryLoss::AckTimeout,
        DeliveryLoss::NodeLeft,
        DeliveryLoss::PublishFailed,
    ];

    /// Its name in kebab-case (`refused`, `lost`, `ack-timeout`,
    /// `node-left`, `publish-failed`): the metric label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryLoss::Refused => "refused",
            DeliveryLoss::Lost => "lost",
            DeliveryLoss::AckTimeout => "ack-timeout",
            DeliveryLoss::NodeLeft => "node-left",
            DeliveryLoss::PublishFailed => "publish-failed",
        }
    }

    /// Its index in [`DeliveryLoss::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            DeliveryLoss::Refused => 0,
            DeliveryLoss::Lost => 1,
            DeliveryLoss::AckTimeout => 2,
            DeliveryLoss::NodeLeft => 3,
            DeliveryLoss::PublishFailed => 4,
        }
    }
}

impl std::fmt::Display for DeliveryLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fire-and-forget message this host sent to another node that was not
/// delivered there (see [`DeliveryLoss`]): the host dead-letters it with
/// cause `delivery-failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteUndelivered {
    /// The sending component, `name@node` with this host's node.
    pub sender: ComponentId,
    /// The target, `name@node` of the other node.
    pub target: ComponentId,
    /// Why, as a class.
    pub loss: DeliveryLoss,
    /// Why, in words (the receiving host's refusal, or the timeout).
    pub reason: String,
}

/// The traffic between this host and one other node, since the transport
/// connected (counts, except `pending_acks`, a gauge).
///
/// At any moment `messages_sent + requests_sent == acknowledged +
/// pending_acks + sum(undelivered)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteNodeStats {
    /// The other node.
    pub node: String,
    /// Fire-and-forget messages sent to it.
    pub messages_sent: u64,
    /// Requests sent to it.
    pub requests_sent: u64,
    /// Envelopes it acknowledged as queued.
    pub acknowledged: u64,
    /// Envelopes sent to it and not yet acknowledged nor given up.
    pub pending_acks: u64,
    /// Envelopes sent to it that were not delivered, indexed by
    /// [`DeliveryLoss::index`].
    pub undelivered: [u64; DeliveryLoss::ALL.len()],
    /// Sends to it refused at once with `queue-full` because its component
    /// had granted no more credit.
    pub credit_refusals: u64,
    /// Envelopes it sent to this host (queued or refused here).
    pub received: u64,
    /// Of those, the ones this host refused (negatively acknowledged).
    pub refused_here: u64,
}

impl RemoteNodeStats {
    /// Counts for `node`, all zero.
    #[must_use]
    pub fn new(node: impl Into<String>) -> Self {
        Self { node: node.into(), ..Self::default() }
    }

    /// Undelivered envelopes of every reason.
    #[must_use]
    pub fn undelivered_total(&self) -> u64 {
        self.undelivered.iter().sum()
    }
}

/// How the router reaches components on other nodes.
///
/// Every method returns at once: the router calls them on the message path
/// (inside a guest's `send-message`).
pub trait RemoteTransport: Send + Sync {
    /// This host's node name: ids `name@<node>` are local.
    fn node(&self) -> &str;

    /// Whether `target` (`name@node`, another node) accepts `codec`, from
    /// the directory the hosts keep: `None` when no live host announced it
    /// (`target-not-found`), `Some(false)` when it refuses the codec
    /// (`invalid-message`).
    fn accepts(&self, target: &ComponentId, codec: Codec) -> Option<bool>;

    /// Sends `envelope` to its target's host.
    ///
    /// # Errors
    /// A [`SendError`] holding the refusal and the envelope's payload
    /// (so a refused send loses nothing and the router copies nothing):
    /// [`MessagingError::QueueFull`] when the outgoing queue (or the
    /// target's credit) is exhausted; [`MessagingError::DeliveryFailed`]
    /// when the transport is closed. Nothing is sent on error.
    fn send(&self, envelope: RemoteEnvelope) -> Result<(), SendError<Vec<u8>>>;

    /// Sends a request's outcome back to the requester's host. Best effort:
    /// an outcome lost on the way ends as the requester's timeout.
    fn respond(&self, outcome: RemoteOutcome);

    /// Replaces the list of this host's components that the others see
    /// (announced at once and on every heartbeat).
    fn announce(&self, components: Vec<LocalComponent>);

    /// The traffic with each other node this host has exchanged envelopes
    /// with, sorted by node. The default: none (a transport that keeps no
    /// per-node counts).
    fn node_stats(&self) -> Vec<RemoteNodeStats> {
        Vec::new()
    }
}

/// What a [`RemoteTransport`] hands to its host (the router implements it).
pub trait RemoteInbound: Send + Sync {
    /// An envelope from another host for a component of this one: queued
    /// in its mailbox, or refused.
    ///
    /// # Errors
    /// [`MessagingError::TargetNotFound`] (no such component here),
    /// [`MessagingError::QueueFull`], [`MessagingError::InvalidMessage`]
    /// (codec or size); the transport answers a refused request with
    /// `delivery-failed`.
    fn deliver(&self, envelope: RemoteEnvelope) -> Result<(), MessagingError>;

    /// The outcome of a request this host sent to another.
    fn complete(&self, outcome: RemoteOutcome);

    /// A fire-and-forget message this host sent was not delivered: the
    /// host dead-letters it (cause `delivery-failed`). Called at most once
    /// per message, and never for one that was acknowledged.
    fn undelivered(&self, letter: RemoteUndelivered);

    /// The free slots of local component `name`'s mailbox now (the credit
    /// this host can grant the others); `None` when no such component runs
    /// here.
    fn free_slots(&self, name: &str) -> Option<u64>;
}
