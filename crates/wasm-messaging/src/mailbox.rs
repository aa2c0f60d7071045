//! Bounded mailboxes (SPEC section 3, backpressure).
//!
//! A mailbox has two queues: a bounded one for messages and requests, which
//! refuses at once when full and never blocks the sender, and an unbounded
//! one for callbacks, because a callback answers a request the owner already
//! made and must never be lost. The callback queue is bounded in practice by
//! the owner's pending-request quota (default 10,000).

use std::fmt;

use tokio::sync::mpsc;
use wasm_core::{ComponentId, DEFAULT_MAILBOX_CAPACITY};

use crate::envelope::Envelope;
use crate::error::MailboxError;
use crate::sync::{Arc, AtomicU64, Ordering};

/// The sending side of a component's mailbox. Cloning is cheap.
#[derive(Clone)]
pub struct Mailbox {
    id: ComponentId,
    messages: mpsc::Sender<Envelope>,
    callbacks: mpsc::UnboundedSender<Envelope>,
    capacity: usize,
    /// Callbacks queued (the bounded queue's length comes from tokio).
    callbacks_queued: Arc<AtomicU64>,
}

/// The receiving side, owned by the component's actor; it outlives instance
/// restarts, so queued messages survive a crash.
pub struct MailboxReceiver {
    messages: mpsc::Receiver<Envelope>,
    callbacks: mpsc::UnboundedReceiver<Envelope>,
    callbacks_queued: Arc<AtomicU64>,
}

/// A reservation of one slot in a mailbox's bounded queue.
pub struct MailboxPermit<'a> {
    permit: mpsc::Permit<'a, Envelope>,
}

/// Creates a mailbox for `id` holding at most `capacity` messages and
/// requests (0 means [`DEFAULT_MAILBOX_CAPACITY`]).
#[must_use]
pub fn mailbox(id: ComponentId, capacity: usize) -> (Mailbox, MailboxReceiver) {
    let capacity = if capacity == 0 { DEFAULT_MAILBOX_CAPACITY } else { capacity };
    let (tx, rx) = mpsc::channel(capacity);
    let (cb_tx, cb_rx) = mpsc::unbounded_channel();
    let callbacks_queued = Arc::new(AtomicU64::new(0));
    (
        Mailbox { id, messages: tx, callbacks: cb_tx, capacity, callbacks_queued: Arc::clone(&callbacks_queued) },
        MailboxReceiver { messages: rx, callbacks: cb_rx, callbacks_queued },
    )
}

impl Mailbox {
    /// Queues a message or request without waiting.
    ///
    /// # Errors
    /// [`MailboxError::Full`] when the bounded queue is full,
    /// [`MailboxError::Closed`] when the actor is gone; either way the
    /// envelope is handed back.
    pub fn try_send(&self, envelope: Envelope) -> Result<(), MailboxError<Envelope>> {
        self.messages.try_send(envelope).map_err(|e| match e {
            mpsc::error::TrySendError::Full(env) => MailboxError::Full(env),
            mpsc::error::TrySendError::Closed(env) => MailboxError::Closed(env),
        })
    }

    /// Reserves one slot in the bounded queue, so a request can be registered
    /// only once it is sure to be queued.
    ///
    /// # Errors
    /// [`MailboxError::Full`] or [`MailboxError::Closed`] (with `()`).
    pub fn try_reserve(&self) -> Result<MailboxPermit<'_>, MailboxError<()>> {
        match self.messages.try_reserve() {
            Ok(permit) => Ok(MailboxPermit { permit }),
            Err(mpsc::error::TrySendError::Full(())) => Err(MailboxError::Full(())),
            Err(mpsc::error::TrySendError::Closed(())) => Err(MailboxError::Closed(())),
        }
    }

    /// Queues a callback; callbacks are never refused for room.
    ///
    /// # Errors
    /// [`MailboxError::Closed`] with the envelope when the actor is gone.
    pub fn send_callback(&self, envelope: Envelope) -> Result<(), MailboxError<Envelope>> {
        self.callbacks_queued.fetch_add(1, Ordering::Relaxed);
        self.callbacks.send(envelope).map_err(|e| {
            self.callbacks_queued.fetch_sub(1, Ordering::Relaxed);
            MailboxError::Closed(e.0)
        })
    }

    /// The owner's id.
    #[must_use]
    pub fn id(&self) -> &ComponentId {
        &self.id
    }

    /// The bound of the message queue.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Envelopes queued and not yet taken by the actor (both queues; slots
    /// reserved by a [`MailboxPermit`] count as queued).
    #[must_use]
    pub fn len(&self) -> u64 {
        let messages = self.messages.max_capacity() - self.messages.capacity();
        messages as u64 + self.callbacks_queued.load(Ordering::Relaxed)
    }

    /// True when nothing is queued.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the receiving side is closed or dropped.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.messages.is_closed()
    }
}

impl MailboxPermit<'_> {
    /// Queues `envelope` in the reserved slot.
    pub fn send(self, envelope: Envelope) {
        self.permit.send(envelope);
    }
}

impl MailboxReceiver {
    /// The next envelope, callbacks first. `None` once every sender is gone
    /// and both queues are empty.
    ///
    /// # Cancel safety
    /// Cancel-safe: if the future is dropped before it completes, no
    /// envelope is lost (it relies on tokio's cancel-safe `recv`).
    pub async fn recv(&mut self) -> Option<Envelope> {
        tokio::select! {
            biased;
            Some(env) = self.callbacks.recv() => Some(self.took_callback(env)),
            env = self.messages.recv() => match env {
                Some(env) => Some(env),
                None => self.callbacks.recv().await.map(|env| self.took_callback(env)),
            },
        }
    }

    fn took_callback(&self, envelope: Envelope) -> Envelope {
        self.callbacks_queued.fetch_sub(1, Ordering::Relaxed);
        envelope
    }

    /// Takes an envelope if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Envelope> {
        match self.callbacks.try_recv() {
            Ok(env) => Some(self.took_callback(env)),
            Err(_) => self.messages.try_recv().ok(),
        }
    }

    /// Closes the mailbox: later sends fail with `Closed`; queued envelopes
    /// can still be taken with [`MailboxReceiver::try_recv`].
    pub fn close(&mut self) {
        self.messages.close();
        self.callbacks.close();
    }
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("id", &self.id)
            .field("capacity", &self.capacity)
            .field("queued", &self.len())
            .finish()
    }
}

impl fmt::Debug for MailboxReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxReceiver")
            .field("callbacks_queued", &self.callbacks_queued.load(Ordering::Relaxed))
            .finish()
    }
}

impl fmt::Debug for MailboxPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailboxPermit")
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use wasm_core::TraceContext;

    use super::*;

    fn message(n: u8) -> Envelope {
        Envelope::Message { sender: ComponentId::host(), payload: vec![0x55, n], trace: TraceContext::new_root() }
    }

    #[tokio::test]
    async fn full_mailbox_refuses_at_once_and_hands_the_message_back() {
        let (mailbox, mut rx) = mailbox(ComponentId::parse("a").expect("id"), 2);
        mailbox.try_send(message(1)).expect("room");
        mailbox.try_send(message(2)).expect("room");
        match mailbox.try_send(message(3)) {
            Err(MailboxError::Full(Envelope::Message { payload, .. })) => assert_eq!(payload, vec![0x55, 3]),
            other => panic!("expected Full with the message back, got {other:?}"),
        }
        assert!(mailbox.try_reserve().is_err());
        // Callbacks still get through, and come first.
        mailbox
            .send_callback(Envelope::Callback {
                id: wasm_core::CorrelationId::generate(),
                outcome: Ok(vec![0x55]),
                trace: TraceContext::new_root(),
            })
            .expect("callbacks are unbounded");
        assert_eq!(mailbox.len(), 3);
        assert!(matches!(rx.recv().await, Some(Envelope::Callback { .. })));
        assert!(matches!(rx.recv().await, Some(Envelope::Message { payload, .. }) if payload == [0x55, 1]));
        assert!(matches!(rx.recv().await, Some(Envelope::Message { payload, .. }) if payload == [0x55, 2]));
        assert!(mailbox.is_empty());
        rx.close();
        assert!(matches!(mailbox.try_send(message(4)), Err(MailboxError::Closed(_))));
    }
}
