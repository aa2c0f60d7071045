//! The router's envelope accounting: what makes `enqueued == settled` at
//! quiescence (SPEC section 3, accounting).
//!
//! The protocol has two halves, each in one place:
//!
//! - **Count, try, roll back** ([`Accounting::enqueue`]): an envelope is
//!   counted *before* it is put in a mailbox, and the count is taken back if
//!   the mailbox refuses it. Counting after the send would let the receiving
//!   actor settle it first, so `settled` could run ahead of `enqueued` and an
//!   observer could see a quiescent system with an envelope in flight.
//! - **Settle once** ([`Accounting::settle`]): only a [`crate::Delivery`]
//!   calls it, once, from the method that consumes it or from its `Drop`.
//!
//! The loom model `loom_accounting` runs this very code with a bounded queue
//! standing in for the mailbox.

use crate::sync::{AtomicU64, Ordering};

/// What kind of envelope is being enqueued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// A fire-and-forget message.
    Message,
    /// A request.
    Request,
    /// The callback of a request, to its requester.
    Callback,
}

/// How an envelope taken from a mailbox ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// A message or request whose handler returned (ok or err).
    Handled,
    /// A callback whose `handle-callback` ran.
    CallbackHandled,
    /// Not handled: dead-lettered.
    DeadLettered,
}

/// The envelope counters. Every field only grows, except that
/// [`Accounting::enqueue`] takes back its own count when the send fails.
#[derive(Default)]
pub(crate) struct Accounting {
    pub(crate) messages_accepted: AtomicU64,
    pub(crate) requests_accepted: AtomicU64,
    pub(crate) callbacks_queued: AtomicU64,
    pub(crate) handled: AtomicU64,
    pub(crate) callbacks_handled: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) settled: AtomicU64,
}

impl Accounting {
    fn counter(&self, kind: Enqueued) -> &AtomicU64 {
        match kind {
            Enqueued::Message => &self.messages_accepted,
            Enqueued::Request => &self.requests_accepted,
            Enqueued::Callback => &self.callbacks_queued,
        }
    }

    /// Counts an envelope of `kind`, then runs `send`, which puts it in a
    /// mailbox; if `send` fails, the count is taken back before the error is
    /// returned. Nothing else may put an envelope in a mailbox.
    ///
    /// # Errors
    /// `send`'s error, unchanged.
    pub(crate) fn enqueue<T, E>(&self, kind: Enqueued, send: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let counter = self.counter(kind);
        counter.fetch_add(1, Ordering::AcqRel);
        let sent = send();
        if sent.is_err() {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// Counts one envelope as settled `how`. Returns true when `settled`
    /// caught up with `enqueued` (time to wake whoever waits for quiescence).
    pub(crate) fn settle(&self, how: Settled) -> bool {
        let counter = match how {
            Settled::Handled => &self.handled,
            Settled::CallbackHandled => &self.callbacks_handled,
            Settled::DeadLettered => &self.dead_lettered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let settled = self.settled.fetch_add(1, Ordering::AcqRel) + 1;
        settled == self.enqueued()
    }

    /// Envelopes put in mailboxes (accepted messages, requests and callbacks).
    pub(crate) fn enqueued(&self) -> u64 {
        self.messages_accepted.load(Ordering::Acquire)
            + self.requests_accepted.load(Ordering::Acquire)
            + self.callbacks_queued.load(Ordering::Acquire)
    }

    /// Envelopes that ended (handled or dead-lettered).
    pub(crate) fn settled(&self) -> u64 {
        self.settled.load(Ordering::Acquire)
    }

    /// True when every envelope put in a mailbox has been settled. `settled`
    /// is read first: it never exceeds `enqueued` at any instant, so a read
    /// in this order never sees more settled than enqueued.
    pub(crate) fn caught_up(&self) -> bool {
        let settled = self.settled();
        settled == self.enqueued()
    }
}
