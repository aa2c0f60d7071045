//! Calls to the host (`host-services`) and the errors and ids they use.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

use crate::__private::bindings::airssys::wasm::host_services;
use crate::__private::bindings::airssys::wasm::types as wit;
use wasm_core::{ComponentError, MessagingError, RequestError};

use wasm_core::{DecodeError, EncodeError, Message, Payload};

/// The WIT `messaging-error`, as the host's own type: one error table for
/// host and guests.
impl From<wit::MessagingError> for MessagingError {
    fn from(error: wit::MessagingError) -> Self {
        match error {
            wit::MessagingError::TargetNotFound(s) => Self::TargetNotFound(s),
            wit::MessagingError::PermissionDenied(s) => Self::PermissionDenied(s),
            wit::MessagingError::RateLimited(s) => Self::RateLimited(s),
            wit::MessagingError::QueueFull => Self::QueueFull,
            wit::MessagingError::InvalidMessage(s) => Self::InvalidMessage(s),
            wit::MessagingError::TooManyPending(s) => Self::TooManyPending(s),
            wit::MessagingError::RequestNotFound(s) => Self::RequestNotFound(s),
            wit::MessagingError::NotOwner(s) => Self::NotOwner(s),
            wit::MessagingError::DeliveryFailed(s) => Self::DeliveryFailed(s),
        }
    }
}

/// An error returned by a handler: the WIT `component-error`, a code and a
/// message, which the requester receives as [`RequestError::HandlerError`]
/// (holding a [`ComponentError`] with the same code and message).
///
/// The SDK's own conversions (for `?` in handlers) use these codes:
///
/// | from | code |
/// |---|---|
/// | [`DecodeError`] | [`HandlerError::BAD_PAYLOAD`] (400) |
/// | [`EncodeError`] | [`HandlerError::ENCODE_FAILED`] (500) |
/// | [`MessagingError`] | [`HandlerError::MESSAGING`] (503) |
///
/// The host caps the message it forwards (see the host's `check_handler_error`:
/// an over-long message turns into `target-failed`), so keep it short.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("handler error {code}: {message}")]
pub struct HandlerError {
    /// Application-defined code.
    pub code: u32,
    /// Human-readable reason.
    pub message: String,
}

impl HandlerError {
    /// The code of a payload that did not decode (an HTTP-like 400).
    pub const BAD_PAYLOAD: u32 = 400;
    /// The code of a value that did not encode (an HTTP-like 500).
    pub const ENCODE_FAILED: u32 = 500;
    /// The code of a send or request the host refused (an HTTP-like 503).
    pub const MESSAGING: u32 = 503;

    /// An error with this code and message.
    #[must_use]
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<DecodeError> for HandlerError {
    fn from(error: DecodeError) -> Self {
        Self::new(Self::BAD_PAYLOAD, error.to_string())
    }
}

impl From<EncodeError> for HandlerError {
    fn from(error: EncodeError) -> Self {
        Self::new(Self::ENCODE_FAILED, error.to_string())
    }
}

impl From<MessagingError> for HandlerError {
    fn from(error: MessagingError) -> Self {
        Self::new(Self::MESSAGING, error.to_string())
    }
}

impl From<HandlerError> for wit::ComponentError {
    fn from(error: HandlerError) -> Self {
        Self { code: error.code, message: error.message }
    }
}

impl From<ComponentError> for HandlerError {
    /// Passes on an error another component's handler returned.
    fn from(error: ComponentError) -> Self {
        Self { code: error.code, message: error.message }
    }
}

/// The WIT `request-error`, as the host's own type.
impl From<wit::RequestError> for RequestError {
    fn from(error: wit::RequestError) -> Self {
        match error {
            wit::RequestError::Timeout => Self::Timeout,
            wit::RequestError::Cancelled => Self::Cancelled,
            wit::RequestError::HandlerError(e) => {
                Self::HandlerError(ComponentError { code: e.code, message: e.message })
            }
            wit::RequestError::TargetFailed(s) => Self::TargetFailed(s),
            wit::RequestError::DeliveryFailed(s) => Self::DeliveryFailed(s),
        }
    }
}

/// The id of a request this component sent: the correlation id the host
/// generated (a UUID v4 in text form). Compare it with [`Callback::id`] to
/// match a callback to its request, or keep per-request state in
/// [`Requests`](crate::Requests).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(String);

impl RequestId {
    /// An id as the host wrote it.
    pub(crate) fn from_host(id: String) -> Self {
        Self(id)
    }

    /// The id's text, as the host's audit log and traces show it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The one outcome of a request: which request, and its response or why
/// there is none.
#[derive(Debug)]
pub struct Callback {
    id: RequestId,
    outcome: Result<Message, RequestError>,
}

impl Callback {
    /// A callback for request `id`.
    pub(crate) fn new(id: RequestId, outcome: Result<Message, RequestError>) -> Self {
        Self { id, outcome }
    }

    /// The request this callback settles.
    #[must_use]
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// The response, or why there is none.
    pub fn outcome(&self) -> &Result<Message, RequestError> {
        &self.outcome
    }

    /// The request id and the outcome, by value.
    pub fn into_parts(self) -> (RequestId, Result<Message, RequestError>) {
        (self.id, self.outcome)
    }
}

/// Sends `payload` to `target` (fire-and-forget).
///
/// Returns once the host has queued it in the target's mailbox; the target's
/// answer, if any, is discarded. `target` is a component id (`name`, or
/// `name@node` for another host).
///
/// # Errors
/// [`MessagingError`] when the host refuses it: unknown target, missing
/// capability, rate limit, full mailbox, invalid payload. Nothing was sent.
pub fn send(target: &str, payload: &Payload) -> Result<(), MessagingError> {
    host_services::send_message(target, payload.as_bytes()).map_err(MessagingError::from)
}

/// Sends a request to `target`; its outcome arrives later as one
/// [`Component::handle_callback`](crate::Component::handle_callback) call
/// with the returned id. Never blocks waiting for the response.
///
/// `timeout` is rounded up to whole milliseconds (at least 1 ms); the host
/// caps it at its maximum (300 s by default, `[requests] max_timeout_ms`).
/// [`request_with_default_timeout`] uses the manifest's default instead.
///
/// # Errors
/// [`MessagingError`] when the host refuses it (as for [`send`], plus
/// [`MessagingError::TooManyPending`]); no callback will arrive.
pub fn request(target: &str, payload: &Payload, timeout: Duration) -> Result<RequestId, MessagingError> {
    send_request(target, payload, wasm_core::timeout_ms(Some(timeout)))
}

/// [`request`] with this component's default timeout (`[requests]
/// default_timeout_ms`, 5,000 ms unless the manifest says otherwise).
///
/// # Errors
/// As [`request`].
pub fn request_with_default_timeout(target: &str, payload: &Payload) -> Result<RequestId, MessagingError> {
    send_request(target, payload, 0)
}

fn send_request(target: &str, payload: &Payload, timeout_ms: u64) -> Result<RequestId, MessagingError> {
    host_services::send_request(target, payload.as_bytes(), timeout_ms)
        .map(RequestId::from_host)
        .map_err(MessagingError::from)
}

/// Cancels a pending request this component sent. Its callback still
/// arrives, with [`RequestError::Cancelled`], unless the response won the
/// race (then the response arrives and this returns `RequestNotFound`).
///
/// # Errors
/// [`MessagingError::RequestNotFound`] when the request is no longer pending;
/// [`MessagingError::NotOwner`] when another component sent it.
pub fn cancel(id: &RequestId) -> Result<(), MessagingError> {
    host_services::cancel_request(id.as_str()).map_err(MessagingError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_errors_get_documented_codes() {
        let refused = HandlerError::from(MessagingError::QueueFull);
        assert_eq!((refused.code, refused.message.as_str()), (503, "queue full"));
        let wit: wit::ComponentError = HandlerError::new(7, "no").into();
        assert_eq!((wit.code, wit.message.as_str()), (7, "no"));
        let failed =
            RequestError::from(wit::RequestError::HandlerError(wit::ComponentError { code: 9, message: "bad".into() }));
        assert_eq!(failed, RequestError::HandlerError(ComponentError { code: 9, message: "bad".into() }));
        assert_eq!(MessagingError::from(wit::MessagingError::QueueFull), MessagingError::QueueFull);
    }
}
