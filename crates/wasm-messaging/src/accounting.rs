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
//!
//! **Striped.** Every envelope counts twice here (enqueued by its sender,
//! settled by its receiver), on whatever cores they run. One set of
//! counters would be one cache line written by every core for every
//! envelope; instead each thread counts in a stripe of its own (one of
//! [`STRIPES`], a cache line each, assigned in turn on its first count), and the
//! totals are sums over the stripes. A total is read only by an observer
//! ([`Accounting::caught_up`], the router's stats) and by a settle while
//! someone waits for quiescence ([`Accounting::waiting`]); otherwise a
//! settle reads nothing another core writes. Reading every `settled`
//! before any `enqueued` keeps the guarantee one counter gave: an envelope
//! is counted enqueued before it can be settled (count, try, roll back),
//! so a settle an observer sees has its enqueue visible too, and `settled`
//! never reads above `enqueued`.

use std::cell::Cell;

use crate::sync::{AtomicU64, AtomicUsize, Ordering, fence, thread_local};

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

/// How many stripes the counters are split into: as many as the cores of
/// the small machines this runs on, so their threads rarely share one,
/// and few enough that a total is 8 loads (threads beyond that share
/// stripes, which costs contention, never correctness).
pub(crate) const STRIPES: usize = 8;

thread_local! {
    /// This thread's stripe (`usize::MAX` until its first count). Not a
    /// `const` initializer: the same text must build with loom's
    /// `thread_local!`, which has none.
    #[allow(clippy::missing_const_for_thread_local, reason = "loom's thread_local! has no const form")]
    static STRIPE: Cell<usize> = Cell::new(usize::MAX);
}

/// One thread's share of the counters, alone in its cache line (128
/// bytes: two 64-byte lines, as the adjacent-line prefetcher pairs them).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Stripe {
    pub(crate) messages_accepted: AtomicU64,
    pub(crate) requests_accepted: AtomicU64,
    pub(crate) callbacks_queued: AtomicU64,
    pub(crate) handled: AtomicU64,
    pub(crate) callbacks_handled: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) settled: AtomicU64,
    /// The three kinds enqueued, together (what quiescence compares).
    pub(crate) enqueued: AtomicU64,
}

/// The envelope counters, striped. Every total only grows, except that
/// [`Accounting::enqueue`] takes back its own count when the send fails.
#[derive(Default)]
pub(crate) struct Accounting {
    stripes: [Stripe; STRIPES],
    /// The next stripe to assign to a thread, under loom (each model has
    /// its own, so every run assigns the same way); otherwise the count is
    /// process-wide, so the threads of several systems spread too.
    #[cfg(loom)]
    next: AtomicUsize,
    /// Observers waiting for quiescence ([`Accounting::waiting`]).
    waiting: AtomicUsize,
}

/// Registers an observer waiting for quiescence while it lives (see
/// [`Accounting::waiting`]).
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Stripe {
    fn counter(&self, kind: Enqueued) -> &AtomicU64 {
        match kind {
            Enqueued::Message => &self.messages_accepted,
            Enqueued::Request => &self.requests_accepted,
            Enqueued::Callback => &self.callbacks_queued,
        }
    }
}

impl Accounting {
    /// The calling thread's stripe.
    fn stripe(&self) -> &Stripe {
        let index = STRIPE.with(|stripe| {
            let mut index = stripe.get();
            if index == usize::MAX {
                index = self.assign_stripe();
                stripe.set(index);
            }
            index
        });
        &self.stripes[index]
    }

    /// The stripe of a thread counting for the first time.
    #[cfg(not(loom))]
    #[allow(clippy::unused_self, reason = "the loom build's counter is per accounting")]
    fn assign_stripe(&self) -> usize {
        use crate::sync::unmodelled::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    }

    /// The stripe of a thread counting for the first time.
    #[cfg(loom)]
    fn assign_stripe(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % STRIPES
    }

    /// The total of one counter over the stripes.
    pub(crate) fn total(&self, counter: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes.iter().map(|stripe| counter(stripe).load(Ordering::Acquire)).sum()
    }

    /// Counts an envelope of `kind`, then runs `send`, which puts it in a
    /// mailbox; if `send` fails, the count is taken back before the error is
    /// returned. Nothing else may put an envelope in a mailbox.
    ///
    /// # Errors
    /// `send`'s error, unchanged.
    pub(crate) fn enqueue<T, E>(&self, kind: Enqueued, send: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let stripe = self.stripe();
        let counter = stripe.counter(kind);
        counter.fetch_add(1, Ordering::AcqRel);
        stripe.enqueued.fetch_add(1, Ordering::AcqRel);
        let sent = send();
        if sent.is_err() {
            stripe.enqueued.fetch_sub(1, Ordering::AcqRel);
            counter.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    /// Counts one envelope as settled `how`. Returns true when someone
    /// waits for quiescence ([`Accounting::waiting`]) and the settled total
    /// caught up with the enqueued one (time to wake them). Without a
    /// waiter it reads no other stripe.
    pub(crate) fn settle(&self, how: Settled) -> bool {
        let stripe = self.stripe();
        let counter = match how {
            Settled::Handled => &stripe.handled,
            Settled::CallbackHandled => &stripe.callbacks_handled,
            Settled::DeadLettered => &stripe.dead_lettered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        stripe.settled.fetch_add(1, Ordering::SeqCst);
        self.waiting.load(Ordering::SeqCst) > 0 && self.caught_up()
    }

    /// Registers an observer that waits for quiescence, until the guard is
    /// dropped: meanwhile each settle checks whether it caught up. An
    /// observer must look itself after registering (a settle just before
    /// may not have seen it) and should look again now and then.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Either a settle after this sees the waiter, or the observer's
        // look after this sees that settle (store buffering: the settle's
        // side is a SeqCst add then a SeqCst load).
        fence(Ordering::SeqCst);
        Waiting(&self.waiting)
    }

    /// Envelopes put in mailboxes (accepted messages, requests and callbacks).
    pub(crate) fn enqueued(&self) -> u64 {
        self.total(|s| &s.enqueued)
    }

    /// Envelopes that ended (handled or dead-lettered).
    pub(crate) fn settled(&self) -> u64 {
        self.total(|s| &s.settled)
    }

    /// True when every envelope put in a mailbox has been settled. `settled`
    /// is read first (every stripe): an envelope is counted enqueued before
    /// it can be settled, so a read in this order never sees more settled
    /// than enqueued.
    pub(crate) fn caught_up(&self) -> bool {
        let settled = self.settled();
        settled == self.enqueued()
    }
}
