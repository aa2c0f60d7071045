//! What travels through a mailbox.

use wasm_core::{ComponentId, CorrelationId, RequestError, TraceContext};

use crate::registry::QuotaSlot;

/// One mailbox entry: a message, a request, or the callback of a request the
/// mailbox's owner made. `trace` is the context of the span that sent it
/// (its parent, for the span that handles it).
#[derive(Debug)]
pub enum Envelope {
    /// Fire-and-forget (`send-message`); the handler's return is ignored.
    Message {
        /// Who sent it (the host's record).
        sender: ComponentId,
        /// Multicodec-prefixed payload.
        payload: Vec<u8>,
        /// Sender's trace context.
        trace: TraceContext,
    },
    /// A request (`send-request`); the handler's return is the response.
    Request {
        /// Who asked.
        sender: ComponentId,
        /// Its correlation id.
        id: CorrelationId,
        /// Multicodec-prefixed payload.
        payload: Vec<u8>,
        /// Sender's trace context.
        trace: TraceContext,
    },
    /// The outcome of a request the owner made, for its `handle-callback`.
    Callback {
        /// The request's correlation id.
        id: CorrelationId,
        /// The response, or why there is none.
        outcome: Result<Vec<u8>, RequestError>,
        /// Trace context of the span that produced the outcome.
        trace: TraceContext,
        /// The requester's pending-request slot, given back when the
        /// callback settles (or the envelope is dropped unqueued).
        slot: QuotaSlot,
        /// When the request was registered ([`crate::Requester::registered_ns`]),
        /// so its actor can measure the round trip with
        /// [`crate::Router::elapsed_since`].
        registered_ns: u64,
    },
}

impl Envelope {
    /// The envelope's kind as a word for logs and audit records:
    /// `message`, `request` or `callback`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Envelope::Message { .. } => "message",
            Envelope::Request { .. } => "request",
            Envelope::Callback { .. } => "callback",
        }
    }

    /// The payload bytes the envelope holds, as counted against a mailbox's
    /// byte bound: the payload of a message or request; the response, or the
    /// text of the error, of a callback.
    #[must_use]
    pub fn payload_bytes(&self) -> usize {
        match self {
            Envelope::Message { payload, .. } | Envelope::Request { payload, .. } => payload.len(),
            Envelope::Callback { outcome, .. } => match outcome {
                Ok(bytes) => bytes.len(),
                Err(RequestError::HandlerError(error)) => error.message.len(),
                Err(RequestError::TargetFailed(text) | RequestError::DeliveryFailed(text)) => text.len(),
                Err(RequestError::Timeout | RequestError::Cancelled) => 0,
            },
        }
    }

    /// The trace context the envelope carries.
    #[must_use]
    pub fn trace(&self) -> &TraceContext {
        match self {
            Envelope::Message { trace, .. } | Envelope::Request { trace, .. } | Envelope::Callback { trace, .. } => {
                trace
            }
        }
    }
}
