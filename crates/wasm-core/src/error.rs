//! Errors of the core contracts. The messaging and request errors mirror the
//! WIT variants of `airssys:wasm/types` (SPEC section 2) one to one.

use thiserror::Error;

use crate::payload::Codec;

/// Why the host refused a call to `host-services` (WIT `messaging-error`).
///
/// Every refusal is final for that call: nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessagingError {
    /// No component with that id runs here (or on the named node).
    #[error("target not found: {0}")]
    TargetNotFound(String),
    /// The sender's manifest grants no capability for this send.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The sender exceeded its rate limit (messages per second, burst).
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// The target's mailbox is full (backpressure); retry later.
    #[error("queue full")]
    QueueFull,
    /// The payload, target id or timeout is malformed or out of bounds.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The sender already has its maximum of pending requests.
    #[error("too many pending requests: {0}")]
    TooManyPending(String),
    /// No pending request with that id (unknown, completed, timed out or cancelled).
    #[error("request not found: {0}")]
    RequestNotFound(String),
    /// The request belongs to another component.
    #[error("not owner: {0}")]
    NotOwner(String),
    /// The message could not be handed to the target (stopped, transport down).
    #[error("delivery failed: {0}")]
    DeliveryFailed(String),
}

impl MessagingError {
    /// The WIT case names (kebab-case), in WIT order: the one table of
    /// messaging-error kinds, used for the WIT mapping's tests, the router's
    /// per-kind counters (`RouterStats::refused` is indexed by
    /// [`MessagingError::kind_index`]), audit outcomes and the CLI summary.
    pub const KINDS: [&'static str; 9] = [
        "target-not-found",
        "permission-denied",
        "rate-limited",
        "queue-full",
        "invalid-message",
        "too-many-pending",
        "request-not-found",
        "not-owner",
        "delivery-failed",
    ];

    /// The variant's position in WIT order (0 to 8): its index in
    /// [`MessagingError::KINDS`].
    #[must_use]
    pub const fn kind_index(&self) -> usize {
        match self {
            Self::TargetNotFound(_) => 0,
            Self::PermissionDenied(_) => 1,
            Self::RateLimited(_) => 2,
            Self::QueueFull => 3,
            Self::InvalidMessage(_) => 4,
            Self::TooManyPending(_) => 5,
            Self::RequestNotFound(_) => 6,
            Self::NotOwner(_) => 7,
            Self::DeliveryFailed(_) => 8,
        }
    }

    /// The WIT case name: `target-not-found`, `queue-full`, ...
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }
}

/// A send the host refused, with what was sent handed back, so a refused
/// payload is never lost (tokio's `mpsc::error::SendError<T>` style).
///
/// ```
/// use wasm_core::{MessagingError, SendError};
/// let refused = SendError::new(MessagingError::QueueFull, b"\x55hi".to_vec());
/// assert_eq!(refused.error(), &MessagingError::QueueFull);
/// assert_eq!(refused.to_string(), "queue full");
/// assert_eq!(refused.into_inner(), b"\x55hi");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SendError<T> {
    error: MessagingError,
    payload: T,
}

impl<T> SendError<T> {
    /// `payload` refused with `error`.
    pub const fn new(error: MessagingError, payload: T) -> Self {
        Self { error, payload }
    }

    /// Why it was refused.
    #[must_use]
    pub const fn error(&self) -> &MessagingError {
        &self.error
    }

    /// What was sent, handed back.
    #[must_use]
    pub fn into_inner(self) -> T {
        self.payload
    }

    /// The error and the payload.
    #[must_use]
    pub fn into_parts(self) -> (MessagingError, T) {
        (self.error, self.payload)
    }
}

impl<T> From<SendError<T>> for MessagingError {
    fn from(error: SendError<T>) -> Self {
        error.error
    }
}

impl<T> std::fmt::Debug for SendError<T> {
    /// The error only: a payload can be large, and is not the news.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendError").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<T> std::fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl<T> std::error::Error for SendError<T> {}

/// An error returned by a component's own handler (WIT `component-error`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("component error {code}: {message}")]
pub struct ComponentError {
    /// Application-defined code.
    pub code: u32,
    /// Human-readable reason.
    pub message: String,
}

/// Why a request has no response (WIT `request-error`), delivered to the
/// requester's `handle-callback`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// The deadline passed before a response arrived.
    #[error("timeout")]
    Timeout,
    /// The requester cancelled the request.
    #[error("cancelled")]
    Cancelled,
    /// The target's `handle-message` returned `err`.
    #[error("handler error: {0}")]
    HandlerError(ComponentError),
    /// The target trapped, ran out of fuel or time, or returned a malformed response.
    #[error("target failed: {0}")]
    TargetFailed(String),
    /// The request could not be delivered (the target stopped).
    #[error("delivery failed: {0}")]
    DeliveryFailed(String),
}

impl RequestError {
    /// The WIT case names (kebab-case), in WIT order.
    pub const KINDS: [&'static str; 5] = ["timeout", "cancelled", "handler-error", "target-failed", "delivery-failed"];

    /// The variant's position in WIT order (0 to 4): its index in
    /// [`RequestError::KINDS`].
    #[must_use]
    pub const fn kind_index(&self) -> usize {
        match self {
            Self::Timeout => 0,
            Self::Cancelled => 1,
            Self::HandlerError(_) => 2,
            Self::TargetFailed(_) => 3,
            Self::DeliveryFailed(_) => 4,
        }
    }

    /// The WIT case name: `timeout`, `target-failed`, ...
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }
}

/// A malformed [`crate::ComponentId`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// The name or node part is empty.
    #[error("component id {id:?} has an empty name or node part")]
    Empty {
        /// The offending text.
        id: String,
    },
    /// A part is longer than 128 bytes.
    #[error("component id {id:?}... has a part of {len} bytes (at most 128)")]
    TooLong {
        /// The first 64 bytes of the offending text.
        id: String,
        /// Length of the overlong part, in bytes.
        len: usize,
    },
    /// A character outside `[a-z0-9._-]`.
    #[error("component id {id:?} holds {found:?}; only [a-z0-9._-] and one '@' are allowed")]
    InvalidChar {
        /// The offending text (first 64 bytes).
        id: String,
        /// The first bad character.
        found: char,
    },
}

/// A malformed [`crate::CorrelationId`] text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CorrelationIdError {
    /// Not a UUID.
    #[error("{text:?} is not a correlation id (a UUID)")]
    Malformed {
        /// The offending text (first 64 characters).
        text: String,
    },
    /// A UUID of another version than 4.
    #[error("{text:?} is not a UUID v4")]
    NotV4 {
        /// The offending text (first 64 characters).
        text: String,
    },
}

/// A payload that breaks the multicodec rules (SPEC section 3, payloads).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    /// No bytes at all: not even a codec prefix.
    #[error("empty payload: a multicodec prefix is required")]
    Empty,
    /// The unsigned-varint prefix ends before its last byte.
    #[error("truncated multicodec varint prefix")]
    TruncatedVarint,
    /// The prefix is longer than 9 bytes, overflows, or is not minimally encoded.
    #[error("malformed multicodec varint prefix: {0}")]
    MalformedVarint(&'static str),
    /// A well-formed code that is not one of the codecs this host knows.
    #[error("unknown codec 0x{0:x}")]
    UnknownCodec(u64),
    /// Larger than the cap.
    #[error("payload of {len} bytes exceeds the cap of {max} bytes")]
    TooLarge {
        /// Payload length, in bytes.
        len: usize,
        /// The cap, in bytes.
        max: usize,
    },
    /// A known codec that the target does not accept.
    #[error("codec {codec} is not accepted by {target} (accepts: {accepted})")]
    CodecRefused {
        /// The payload's codec.
        codec: Codec,
        /// The refusing target.
        target: String,
        /// What the target accepts, comma-separated.
        accepted: String,
    },
}

impl From<PayloadError> for MessagingError {
    fn from(error: PayloadError) -> Self {
        Self::InvalidMessage(error.to_string())
    }
}

/// A capability grant that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CapabilityError {
    /// A target pattern is not a valid glob.
    #[error("capability pattern {pattern:?} is not a valid glob: {reason}")]
    BadPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The case names of WIT variant `name` in `wit/world.wit`, in order.
    fn wit_cases(name: &str) -> Vec<String> {
        let wit = include_str!("../../../wit/world.wit");
        let start = wit.find(&format!("variant {name} {{")).expect("the variant in the WIT");
        let body = &wit[start..];
        let body = &body[body.find('{').expect("{") + 1..body.find('}').expect("}")];
        body.split(',')
            .map(|case| case.trim().split('(').next().unwrap_or_default().trim().to_owned())
            .filter(|case| !case.is_empty())
            .collect()
    }

    #[test]
    fn the_kind_tables_are_the_wit_cases_in_wit_order() {
        assert_eq!(MessagingError::KINDS.to_vec(), wit_cases("messaging-error"));
        assert_eq!(RequestError::KINDS.to_vec(), wit_cases("request-error"));
        let all = [
            MessagingError::TargetNotFound(String::new()),
            MessagingError::PermissionDenied(String::new()),
            MessagingError::RateLimited(String::new()),
            MessagingError::QueueFull,
            MessagingError::InvalidMessage(String::new()),
            MessagingError::TooManyPending(String::new()),
            MessagingError::RequestNotFound(String::new()),
            MessagingError::NotOwner(String::new()),
            MessagingError::DeliveryFailed(String::new()),
        ];
        for (i, error) in all.iter().enumerate() {
            assert_eq!(error.kind_index(), i);
            // The Display text starts with the kind, spaced.
            assert!(error.to_string().starts_with(&error.kind().replace('-', " ")), "{error}");
        }
        let failed = RequestError::HandlerError(ComponentError { code: 1, message: String::new() });
        assert_eq!((failed.kind_index(), failed.kind()), (2, "handler-error"));
        assert_eq!(RequestError::DeliveryFailed(String::new()).kind(), "delivery-failed");
    }
}
