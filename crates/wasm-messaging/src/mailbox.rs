//! Bounded mailboxes (SPEC section 3, backpressure).
//!
//! A mailbox has two queues: a bounded one for messages and requests, which
//! refuses at once when full and never blocks the sender, and one for
//! callbacks that never refuses for room, because a callback answers a
//! request the owner already made and must never be lost. The callback
//! queue is bounded in count by the owner's pending-request quota (a slot is
//! freed only once the callback is settled) and in bytes by the byte bound
//! below.
//!
//! Bytes are bounded too: the payload bytes of everything queued (messages,
//! requests and callbacks together, [`Envelope::payload_bytes`]) stay within
//! the mailbox's `max_bytes`. A message or request over it is refused like a
//! full queue; a callback over it is handed back by
//! [`Mailbox::try_send_callback`], so the router can deliver a short
//! `target-failed` in its place ([`Mailbox::send_callback`] always takes it).

// Every refusal hands the envelope back (128 bytes), by design: the caller
// keeps it, and nothing is lost or copied to the heap on the refusal path.
#![expect(clippy::result_large_err, reason = "a refusal returns the envelope itself")]

use std::fmt;

use tokio::sync::{Notify, mpsc};
use wasm_core::{ComponentId, DEFAULT_MAILBOX_BYTES, DEFAULT_MAILBOX_CAPACITY};

use crate::envelope::Envelope;
use crate::error::MailboxError;
use crate::sync::{Arc, AtomicU64, AtomicUsize, Ordering};

/// The sending side of a component's mailbox. Cloning is cheap.
#[derive(Clone)]
pub struct Mailbox {
    id: ComponentId,
    messages: mpsc::Sender<Envelope>,
    callbacks: mpsc::UnboundedSender<Envelope>,
    capacity: usize,
    max_bytes: u64,
    /// Callbacks queued (the bounded queue's length comes from tokio).
    callbacks_queued: Arc<AtomicU64>,
    /// Payload bytes queued, both queues (and reserved by permits).
    bytes_queued: Arc<AtomicU64>,
    room: Arc<Room>,
}

/// Wakes senders that wait for room ([`Mailbox::retry_until_room`]). The
/// receiver notifies only while someone waits, so a mailbox no one waits on
/// pays one load per envelope taken.
#[derive(Default)]
struct Room {
    notify: Notify,
    waiters: AtomicUsize,
}

/// Counts one waiter for as long as it lives.
struct Waiting<'a>(&'a Room);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The receiving side, owned by the component's actor; it outlives instance
/// restarts, so queued messages survive a crash.
pub struct MailboxReceiver {
    messages: mpsc::Receiver<Envelope>,
    callbacks: mpsc::UnboundedReceiver<Envelope>,
    callbacks_queued: Arc<AtomicU64>,
    bytes_queued: Arc<AtomicU64>,
    room: Arc<Room>,
}

/// A reservation of one slot, and of a payload's bytes, in a mailbox's
/// bounded queue; dropping it unused gives both back.
pub struct MailboxPermit<'a> {
    permit: Option<mpsc::Permit<'a, Envelope>>,
    bytes: u64,
    bytes_queued: &'a AtomicU64,
}

/// Creates a mailbox for `id` holding at most `capacity` messages and
/// requests (0 means [`DEFAULT_MAILBOX_CAPACITY`]) and at most `max_bytes`
/// payload bytes in all (0 means [`DEFAULT_MAILBOX_BYTES`]).
#[must_use]
pub fn mailbox(id: ComponentId, capacity: usize, max_bytes: usize) -> (Mailbox, MailboxReceiver) {
    let capacity = if capacity == 0 { DEFAULT_MAILBOX_CAPACITY } else { capacity };
    let max_bytes = if max_bytes == 0 { DEFAULT_MAILBOX_BYTES } else { max_bytes };
    let (tx, rx) = mpsc::channel(capacity);
    let (cb_tx, cb_rx) = mpsc::unbounded_channel();
    let callbacks_queued = Arc::new(AtomicU64::new(0));
    let bytes_queued = Arc::new(AtomicU64::new(0));
    let room = Arc::new(Room::default());
    (
        Mailbox {
            id,
            messages: tx,
            callbacks: cb_tx,
            capacity,
            max_bytes: max_bytes as u64,
            callbacks_queued: Arc::clone(&callbacks_queued),
            bytes_queued: Arc::clone(&bytes_queued),
            room: Arc::clone(&room),
        },
        MailboxReceiver { messages: rx, callbacks: cb_rx, callbacks_queued, bytes_queued, room },
    )
}

impl Mailbox {
    /// Takes `bytes` of the byte bound, or says there is no room.
    fn take_bytes(&self, bytes: u64) -> bool {
        let max = self.max_bytes;
        self.bytes_queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued.checked_add(bytes).filter(|total| *total <= max)
            })
            .is_ok()
    }

    fn give_bytes(&self, bytes: u64) {
        self.bytes_queued.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Queues a message or request without waiting.
    ///
    /// # Errors
    /// [`MailboxError::Full`] when the bounded queue is full or its payload
    /// would go over the byte bound, [`MailboxError::Closed`] when the actor
    /// is gone; either way the envelope is handed back.
    pub fn try_send(&self, envelope: Envelope) -> Result<(), MailboxError<Envelope>> {
        let bytes = envelope.payload_bytes() as u64;
        if !self.take_bytes(bytes) {
            return Err(MailboxError::Full(envelope));
        }
        self.messages.try_send(envelope).map_err(|e| {
            self.give_bytes(bytes);
            match e {
                mpsc::error::TrySendError::Full(env) => MailboxError::Full(env),
                mpsc::error::TrySendError::Closed(env) => MailboxError::Closed(env),
            }
        })
    }

    /// Reserves one slot in the bounded queue and `bytes` of the byte bound,
    /// so a request can be registered only once it is sure to be queued.
    ///
    /// # Errors
    /// [`MailboxError::Full`] or [`MailboxError::Closed`] (with `()`).
    pub fn try_reserve(&self, bytes: usize) -> Result<MailboxPermit<'_>, MailboxError<()>> {
        let bytes = bytes as u64;
        if !self.take_bytes(bytes) {
            return Err(MailboxError::Full(()));
        }
        match self.messages.try_reserve() {
            Ok(permit) => Ok(MailboxPermit { permit: Some(permit), bytes, bytes_queued: &self.bytes_queued }),
            Err(e) => {
                self.give_bytes(bytes);
                Err(match e {
                    mpsc::error::TrySendError::Full(()) => MailboxError::Full(()),
                    mpsc::error::TrySendError::Closed(()) => MailboxError::Closed(()),
                })
            }
        }
    }

    /// Queues a callback if its payload fits the byte bound.
    ///
    /// # Errors
    /// [`MailboxError::Full`] with the envelope when its payload would go
    /// over the byte bound (deliver a short outcome with
    /// [`Mailbox::send_callback`] instead), [`MailboxError::Closed`] when the
    /// actor is gone.
    pub fn try_send_callback(&self, envelope: Envelope) -> Result<(), MailboxError<Envelope>> {
        if !self.take_bytes(envelope.payload_bytes() as u64) {
            return Err(MailboxError::Full(envelope));
        }
        self.queue_callback(envelope)
    }

    /// Queues a callback whatever the room: for outcomes the host makes
    /// (timeouts, cancellations, failures with a short reason).
    ///
    /// # Errors
    /// [`MailboxError::Closed`] with the envelope when the actor is gone.
    pub fn send_callback(&self, envelope: Envelope) -> Result<(), MailboxError<Envelope>> {
        self.bytes_queued.fetch_add(envelope.payload_bytes() as u64, Ordering::AcqRel);
        self.queue_callback(envelope)
    }

    /// Queues a callback whose bytes are already counted.
    fn queue_callback(&self, envelope: Envelope) -> Result<(), MailboxError<Envelope>> {
        self.callbacks_queued.fetch_add(1, Ordering::Relaxed);
        self.callbacks.send(envelope).map_err(|e| {
            self.callbacks_queued.fetch_sub(1, Ordering::Relaxed);
            self.give_bytes(e.0.payload_bytes() as u64);
            MailboxError::Closed(e.0)
        })
    }

    /// Runs `attempt` (a send into this mailbox that returns `None` when
    /// the mailbox is full) until it returns `Some`, waiting between
    /// attempts until the receiver takes an envelope (which frees a slot and
    /// its bytes), or until `deadline`. `None` at the deadline.
    ///
    /// No wake-up is lost: the waiter is counted and its notification armed
    /// before each attempt, so an envelope taken between a failed attempt
    /// and the wait still wakes it.
    ///
    /// # Cancel safety
    /// Cancel-safe if `attempt` is: between attempts nothing is held.
    pub(crate) async fn retry_until_room<R>(
        &self,
        deadline: tokio::time::Instant,
        mut attempt: impl FnMut() -> Option<R>,
    ) -> Option<R> {
        let room = &*self.room;
        room.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(room);
        loop {
            let notified = room.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(done) = attempt() {
                return Some(done);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Payload bytes queued (both queues; bytes reserved by a
    /// [`MailboxPermit`] count as queued).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes_queued.load(Ordering::Acquire)
    }

    /// The byte bound, in payload bytes.
    #[must_use]
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
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

    /// Free slots in the bounded queue of messages and requests now (the
    /// credit the host can grant other nodes for this mailbox).
    #[must_use]
    pub fn free_slots(&self) -> u64 {
        self.messages.capacity() as u64
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
    /// Queues `envelope` in the reserved slot; its payload must be the size
    /// reserved.
    pub fn send(mut self, envelope: Envelope) {
        debug_assert_eq!(envelope.payload_bytes() as u64, self.bytes, "the payload reserved");
        self.bytes = 0;
        if let Some(permit) = self.permit.take() {
            permit.send(envelope);
        }
    }
}

impl Drop for MailboxPermit<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.bytes_queued.fetch_sub(self.bytes, Ordering::AcqRel);
        }
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
        // What is queued is taken without arming either channel's wait.
        if let Some(envelope) = self.try_recv() {
            return Some(envelope);
        }
        tokio::select! {
            biased;
            Some(env) = self.callbacks.recv() => Some(self.took_callback(env)),
            env = self.messages.recv() => match env {
                Some(env) => Some(self.took(env)),
                None => self.callbacks.recv().await.map(|env| self.took_callback(env)),
            },
        }
    }

    fn took(&self, envelope: Envelope) -> Envelope {
        self.bytes_queued.fetch_sub(envelope.payload_bytes() as u64, Ordering::AcqRel);
        if self.room.waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify.notify_waiters();
        }
        envelope
    }

    fn took_callback(&self, envelope: Envelope) -> Envelope {
        self.callbacks_queued.fetch_sub(1, Ordering::Relaxed);
        self.took(envelope)
    }

    /// Takes an envelope if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Envelope> {
        match self.callbacks.try_recv() {
            Ok(env) => Some(self.took_callback(env)),
            Err(_) => self.messages.try_recv().ok().map(|env| self.took(env)),
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
            .field("bytes", &self.bytes())
            .field("max_bytes", &self.max_bytes)
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

    #[test]
    fn an_envelope_is_128_bytes() {
        // What a refusal hands back (the `result_large_err` expectation at
        // the top of this file): the callback variant is the largest.
        assert_eq!(size_of::<Envelope>(), 128);
    }

    /// A pending-request slot of a component of its own, for callbacks.
    pub(super) fn test_slot() -> crate::QuotaSlot {
        let id = ComponentId::parse("requester").expect("id");
        let (tx, _rx) = mailbox(id.clone(), 1, 0);
        let owner = crate::ActorRef::new(id, tx, crate::Policy::host());
        owner.try_acquire_slot(1).expect("a free slot")
    }

    #[tokio::test]
    async fn full_mailbox_refuses_at_once_and_hands_the_message_back() {
        let (mailbox, mut rx) = mailbox(ComponentId::parse("a").expect("id"), 2, 0);
        mailbox.try_send(message(1)).expect("room");
        mailbox.try_send(message(2)).expect("room");
        match mailbox.try_send(message(3)) {
            Err(MailboxError::Full(Envelope::Message { payload, .. })) => assert_eq!(payload, vec![0x55, 3]),
            other => panic!("expected Full with the message back, got {other:?}"),
        }
        assert!(mailbox.try_reserve(2).is_err());
        // Callbacks still get through, and come first.
        mailbox
            .send_callback(Envelope::Callback {
                id: wasm_core::CorrelationId::generate(),
                outcome: Ok(vec![0x55]),
                trace: TraceContext::new_root(),
                slot: test_slot(),
                registered_ns: 0,
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

#[cfg(all(test, not(loom)))]
mod byte_tests {
    use wasm_core::{CorrelationId, TraceContext};

    use super::*;

    fn message(bytes: usize) -> Envelope {
        Envelope::Message { sender: ComponentId::host(), payload: vec![0x55; bytes], trace: TraceContext::new_root() }
    }

    fn callback(bytes: usize) -> Envelope {
        Envelope::Callback {
            id: CorrelationId::generate(),
            outcome: Ok(vec![0x55; bytes]),
            trace: TraceContext::new_root(),
            slot: super::tests::test_slot(),
            registered_ns: 0,
        }
    }

    #[tokio::test]
    async fn the_byte_bound_holds_for_messages_permits_and_callbacks_and_frees_on_receipt() {
        let (mailbox, mut rx) = mailbox(ComponentId::parse("a").expect("id"), 100, 1_000);
        mailbox.try_send(message(600)).expect("room");
        assert!(matches!(mailbox.try_send(message(401)), Err(MailboxError::Full(_))), "over the bytes, not the count");
        {
            let _unused = mailbox.try_reserve(400).expect("400 bytes fit");
            assert!(mailbox.try_reserve(1).is_err(), "reserved bytes count");
        }
        assert_eq!(mailbox.bytes(), 600, "an unused permit gives its bytes back");
        assert!(matches!(mailbox.try_send_callback(callback(401)), Err(MailboxError::Full(_))));
        mailbox.send_callback(callback(10)).expect("short outcomes always go");
        assert_eq!(mailbox.bytes(), 610);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_some());
        assert_eq!(mailbox.bytes(), 0, "taking an envelope frees its bytes");
        mailbox.try_send(message(1_000)).expect("the whole bound is free again");
    }
}
