//! Per-request state: what a component remembers about a request until its
//! callback arrives.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use wasm_core::{MessagingError, RequestError};

use crate::host::{self, Callback, RequestId};
use wasm_core::{Message, Payload};

/// A map from each pending request this component sent to a value of `T`
/// (why it was sent: an order number, the original requester, a step of a
/// saga), cleared by the request's callback whatever its outcome.
///
/// [`Requests::request`] sends and records in one step (nothing is recorded
/// when the host refuses the request), and [`Requests::settle`] hands the value
/// back with the outcome and removes it. Since the host delivers exactly one
/// callback per accepted request (a response, a timeout, a cancellation or an
/// error), settling every callback keeps the map exactly as large as the
/// number of requests in flight.
///
/// ```
/// use wasm_guest::Requests;
///
/// let reasons: Requests<&str> = Requests::new();
/// assert!(reasons.is_empty());
/// ```
pub struct Requests<T> {
    pending: HashMap<RequestId, T>,
}

impl<T> Requests<T> {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self { pending: HashMap::new() }
    }

    /// Sends a request ([`host::request`]) and records `state` for it.
    ///
    /// # Errors
    /// [`MessagingError`] when the host refuses it; then nothing is recorded
    /// (and `state` is dropped).
    pub fn request(
        &mut self,
        target: &str,
        payload: &Payload,
        timeout: Duration,
        state: T,
    ) -> Result<RequestId, MessagingError> {
        let id = host::request(target, payload, timeout)?;
        self.insert(id.clone(), state);
        Ok(id)
    }

    /// Records `state` for a request sent some other way. Returns the value
    /// it replaces, if the id was already recorded.
    pub fn insert(&mut self, id: RequestId, state: T) -> Option<T> {
        self.pending.insert(id, state)
    }

    /// Takes the state of `callback`'s request and hands it back with the
    /// outcome: `None` when the request was not recorded here (sent without
    /// this map, or already settled).
    pub fn settle(&mut self, callback: Callback) -> (Option<T>, Result<Message, RequestError>) {
        let (id, outcome) = callback.into_parts();
        (self.pending.remove(&id), outcome)
    }

    /// The state of a pending request, without settling it.
    #[must_use]
    pub fn get(&self, id: &RequestId) -> Option<&T> {
        self.pending.get(id)
    }

    /// Takes the state of a request, as [`Requests::settle`] does, by id.
    pub fn remove(&mut self, id: &RequestId) -> Option<T> {
        self.pending.remove(id)
    }

    /// The ids of the recorded requests, in no particular order (to cancel
    /// them all, for example).
    pub fn ids(&self) -> impl Iterator<Item = &RequestId> {
        self.pending.keys()
    }

    /// How many requests are recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none is recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl<T> Default for Requests<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for Requests<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.pending.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> RequestId {
        RequestId::from_host(text.to_owned())
    }

    #[test]
    fn every_outcome_clears_its_entry_and_only_its_entry() {
        let mut requests = Requests::new();
        requests.insert(id("a"), 1);
        requests.insert(id("b"), 2);
        requests.insert(id("c"), 3);
        let ok = Callback::new(
            id("a"),
            Message::from_bytes(Payload::raw("x").into_bytes()).map_err(|_| RequestError::Timeout),
        );
        let (state, outcome) = requests.settle(ok);
        assert_eq!(state, Some(1));
        assert!(outcome.is_ok());
        let (state, outcome) = requests.settle(Callback::new(id("b"), Err(RequestError::Timeout)));
        assert_eq!((state, outcome.map(|_| ())), (Some(2), Err(RequestError::Timeout)));
        assert_eq!(requests.len(), 1);
        assert_eq!(requests.get(&id("c")), Some(&3));
        // A callback for a request this map never saw hands back no state.
        let (state, _) = requests.settle(Callback::new(id("zzz"), Err(RequestError::Cancelled)));
        assert_eq!(state, None);
        let (state, _) = requests.settle(Callback::new(id("c"), Err(RequestError::Cancelled)));
        assert_eq!(state, Some(3));
        assert!(requests.is_empty());
    }
}
