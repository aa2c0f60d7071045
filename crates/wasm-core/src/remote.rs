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
}
