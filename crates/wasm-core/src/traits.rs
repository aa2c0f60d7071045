//! The traits that join the layers: host functions (wasm-runtime) call a
//! [`MessageRouter`]; the router keeps requests in a [`CorrelationTracker`].
//! wasm-system injects the concrete types.

use crate::correlation::CorrelationId;
use crate::error::MessagingError;
use crate::id::ComponentId;
use crate::trace::TraceContext;

/// Who is sending: the host's record of the calling instance (never taken
/// from the guest) and the trace context of the message it is handling.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// The sender, as the host knows it.
    pub sender: &'a ComponentId,
    /// Trace context of the message being handled, if any; a send made
    /// outside any handler starts a new trace.
    pub trace: Option<&'a TraceContext>,
}

/// The host side of the WIT `host-services` interface (SPEC section 3).
///
/// Every call returns at once and never blocks the caller; success means the
/// message is in the target's mailbox.
pub trait MessageRouter: Send + Sync {
    /// Fire-and-forget (`send-message`): queue `message` for `target`.
    ///
    /// # Errors
    /// The matching [`MessagingError`] of the first failed check, in SPEC
    /// order: target id syntax, payload, capability, rate limit, target
    /// exists, mailbox room. Nothing is queued on error.
    fn send_message(&self, origin: Origin<'_>, target: &str, message: Vec<u8>) -> Result<(), MessagingError>;

    /// Request-response (`send-request`): register a correlation id with its
    /// deadline and queue `request`; the response reaches the sender's
    /// `handle-callback` later. `timeout_ms` 0 means the sender's default.
    ///
    /// # Errors
    /// As [`MessageRouter::send_message`], plus
    /// [`MessagingError::TooManyPending`] over the sender's quota and
    /// [`MessagingError::InvalidMessage`] for a timeout above the maximum.
    fn send_request(
        &self,
        origin: Origin<'_>,
        target: &str,
        request: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<CorrelationId, MessagingError>;

    /// `cancel-request`: the owner cancels a pending request, whose callback
    /// then gets `cancelled`.
    ///
    /// # Errors
    /// [`MessagingError::RequestNotFound`] for unknown, completed, timed-out
    /// or cancelled ids (and malformed ones); [`MessagingError::NotOwner`]
    /// when another component owns it (it stays pending).
    fn cancel_request(&self, origin: Origin<'_>, request_id: &str) -> Result<(), MessagingError>;
}

/// What owns a pending request: something that knows the owner's id (and,
/// in the composition root, how to reach its mailbox).
pub trait RequestOwner: Send + Sync + 'static {
    /// The owner's component id.
    fn owner_id(&self) -> &ComponentId;
}

impl RequestOwner for ComponentId {
    fn owner_id(&self) -> &ComponentId {
        self
    }
}

/// A pending request as the tracker holds it.
#[derive(Debug)]
pub struct PendingRequest<O> {
    /// The requester, and the way back to it.
    pub owner: O,
    /// The component asked.
    pub target: ComponentId,
    /// Deadline on the tracker's clock, in ms.
    pub deadline_ms: u64,
}

/// The outcome counters of a [`CorrelationTracker`]. Every registered request
/// ends in exactly one of `completed`, `failed`, `timed_out`, `cancelled` or
/// `dropped`; until then it is `pending`. `orphaned` counts late responses
/// for requests that had already ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackerStats {
    /// Requests registered.
    pub registered: u64,
    /// Ended by a response (`ok` or `handler-error`).
    pub completed: u64,
    /// Ended by a failure of the target (`target-failed`, `delivery-failed`).
    pub failed: u64,
    /// Ended by their deadline (`timeout`).
    pub timed_out: u64,
    /// Ended by their owner (`cancelled`).
    pub cancelled: u64,
    /// Removed without an outcome because the requester is gone.
    pub dropped: u64,
    /// Responses that arrived after their request had ended.
    pub orphaned: u64,
    /// Still pending.
    pub pending: u64,
}

impl TrackerStats {
    /// True when every registered request is accounted for exactly once.
    #[must_use]
    pub fn balanced(&self) -> bool {
        self.registered == self.completed + self.failed + self.timed_out + self.cancelled + self.dropped + self.pending
    }
}

/// Keeps pending requests by correlation id, with their deadlines, and
/// guarantees exactly one outcome per registered request: whichever of
/// complete, fail, cancel, remove or expiry takes the entry first wins; the
/// others find nothing.
pub trait CorrelationTracker: Send + Sync {
    /// What owns a request.
    type Owner: RequestOwner;

    /// Registers a new request that must end by `timeout_ms` from now.
    fn register(&self, owner: Self::Owner, target: ComponentId, timeout_ms: u64) -> CorrelationId;

    /// A response arrived: takes the entry. `None` means it had already ended;
    /// the late response is counted as orphaned.
    fn complete(&self, id: &CorrelationId) -> Option<PendingRequest<Self::Owner>>;

    /// The target failed: takes the entry, counted as failed. `None` as for
    /// [`CorrelationTracker::complete`] (counted as orphaned).
    fn fail(&self, id: &CorrelationId) -> Option<PendingRequest<Self::Owner>>;

    /// The owner cancels.
    ///
    /// # Errors
    /// [`MessagingError::RequestNotFound`] when not pending;
    /// [`MessagingError::NotOwner`] when `caller` does not own it (the
    /// request stays pending).
    fn cancel(&self, id: &CorrelationId, caller: &ComponentId) -> Result<PendingRequest<Self::Owner>, MessagingError>;

    /// True while the request has no outcome.
    fn is_pending(&self, id: &CorrelationId) -> bool;

    /// Removes a request whose requester is gone, counted as dropped.
    fn remove(&self, id: &CorrelationId) -> Option<PendingRequest<Self::Owner>>;

    /// Takes every request whose deadline has passed, counted as timed out.
    fn cleanup_expired(&self) -> Vec<(CorrelationId, PendingRequest<Self::Owner>)>;

    /// The outcome counters.
    fn stats(&self) -> TrackerStats;
}

/// A monotonic millisecond clock, injectable so that tests and loom models
/// drive time by hand.
pub trait Clock: Send + Sync {
    /// Milliseconds since an arbitrary fixed origin; never decreases.
    fn now_ms(&self) -> u64;
}
