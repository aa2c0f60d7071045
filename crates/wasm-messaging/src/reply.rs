//! Where a request's outcome goes: [`ReplyTo`], the owner of every tracker
//! entry.

use std::fmt;

use tokio::sync::oneshot;
use wasm_core::{ComponentId, CorrelationId, RequestError, RequestOwner, TraceContext};

use crate::registry::QuotaSlot;

/// A request's outcome: the response, or why there is none.
pub type Outcome = Result<Vec<u8>, RequestError>;

/// The way back to a request's requester, kept in its tracker entry. The
/// entry is the only place the way back lives, so whoever takes the entry
/// (response, failure, cancellation, timeout, the requester's crash or
/// stop) is the only one who can answer, and dropping the entry answers no
/// one twice.
///
pub enum ReplyTo {
    /// A component: the outcome is queued as a callback in its mailbox. The
    /// slot is the requester's pending-request slot; it travels on with the
    /// callback and is given back when that settles.
    Actor(QuotaSlot),
    /// The embedding application (sender `host`): the outcome goes straight
    /// to the [`oneshot::Receiver`] its request future awaits; no mailbox,
    /// no task in between. Dropping the entry drops the sender, which the
    /// future sees as the system having stopped.
    Host(oneshot::Sender<Outcome>),
    /// A component on another host (SPEC section 5): the outcome goes back
    /// through the transport, under the id the requester's host registered.
    /// That host owns the request's timer: this entry only expires with it,
    /// and its timeout is sent nowhere. Boxed, so the other two (every local
    /// entry) stay 16 bytes.
    Remote(Box<RemoteRequester>),
}

/// The requester of a request from another node.
#[derive(Debug)]
pub struct RemoteRequester {
    /// The requester, `name@node`.
    pub requester: ComponentId,
    /// The id at the requester's host.
    pub id: CorrelationId,
}

/// The owner of a tracker entry: the way back to the requester, and the
/// trace context of the span that sent the request, so that an outcome the
/// host makes (a timeout) is delivered as a child of the requester's span and
/// stays in its trace. The context costs 25 bytes (32 with alignment) per
/// entry; see `tracker.rs` for the memory per pending request.
#[derive(Debug)]
pub struct Requester {
    /// Where the outcome goes.
    pub reply: ReplyTo,
    /// The sending span's context (W3C trace context).
    pub trace: TraceContext,
    /// When the request was registered, in ns on the router's clock
    /// ([`crate::Router::now_ns`]), read back with
    /// [`crate::Router::elapsed_since`] when its callback has run (the
    /// request latency histogram).
    pub registered_ns: u64,
}

impl RequestOwner for Requester {
    fn owner_id(&self) -> &ComponentId {
        self.reply.owner_id()
    }
}

impl RequestOwner for ReplyTo {
    fn owner_id(&self) -> &ComponentId {
        match self {
            ReplyTo::Actor(slot) => slot.owner().id(),
            ReplyTo::Host(_) => ComponentId::host_ref(),
            ReplyTo::Remote(remote) => &remote.requester,
        }
    }
}

impl fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyTo::Actor(slot) => f.debug_tuple("Actor").field(slot.owner().id()).finish(),
            ReplyTo::Host(_) => f.write_str("Host"),
            ReplyTo::Remote(remote) => remote.fmt(f),
        }
    }
}
