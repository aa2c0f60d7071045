//! Batched delivery: the actor's side of `airssys:wasm/inbox` (WIT).
//!
//! A component that exports `batch-lifecycle` gets a run of queued
//! fire-and-forget messages in one `handle-messages` call instead of one
//! `handle-message` call each. [`Batch`] owns the actor's [`Inbox`] and is
//! moved into the instance for the call (it is the call's
//! [`MessageSource`]); each `next-message` of the guest settles the message
//! handed out before it, with the outcome the guest reports, and takes the
//! next one from the mailbox. So:
//!
//! - **Exactly once.** A message is settled when the guest asks for the next
//!   one, or when the call ends: handled if the call returned, failed
//!   (dead-lettered with the trap's reason) if the call trapped, ran out of a
//!   budget or was stopped. Only the message handed out last can be the one
//!   a failure hits; messages not yet taken stay in the mailbox for the
//!   restarted instance.
//! - **Order.** Messages are handed out in mailbox order. A request or a
//!   callback found at the head ends the batch and is handled next, through
//!   `component-lifecycle` (callbacks keep their priority: the mailbox hands
//!   them out first).
//! - **Bounded.** A batch hands out at most [`BATCH_MAX`] messages, so the
//!   actor checks its stop signal and gives its worker away (the tokio coop
//!   budget) between batches as it does between messages. Each message gets
//!   the full fuel and time budget when it is taken (`wasm_runtime`'s
//!   execution model).
//! - **Observed per message.** Each message gets its own handler span,
//!   handler-duration sample, counters and `Handled` event, as a
//!   `handle-message` call would; the span is not entered while the guest
//!   runs (the fiber may move between threads), so guest output is not
//!   nested in it.
//! - **A sender named at most once per run.** A message from the sender
//!   of the message handed out just before it goes to the guest without
//!   its id (WIT `inbound-message`: `none`, the guest keeps the id it has).
//!   That saves a `cabi_realloc` call into the guest, a copy and a host
//!   allocation per message. The check compares pointers
//!   ([`ComponentId::same`]), so a sender whose messages carry separately
//!   parsed copies of its id (a remote one) is named each time, never
//!   wrongly left out.

use std::sync::Arc;

use wasm_core::{ComponentError, ComponentId, TraceContext};
use wasm_messaging::{Envelope, Inbox, Taken};
use wasm_runtime::{InboundMessage, MessageSource};

use crate::actor::{Shared, handled_event, handler_span};

/// The most messages one batch hands out. As many as the tokio coop
/// budget lets an actor handle one by one before it yields (128) would let
/// a batch hold the worker as long; half of that keeps batches short while
/// amortising the call (64 messages: one call instead of 64).
pub(crate) const BATCH_MAX: usize = 64;

/// The actor's mailbox with what a batch has taken from it: the
/// [`MessageSource`] of `handle-messages`.
pub(crate) struct Batch {
    pub(crate) inbox: Inbox,
    shared: Arc<Shared>,
    handler_duration: Option<metrics::Histogram>,
    /// The message that starts the next batch, taken by the actor's loop
    /// and handed out by the first `next`.
    first: Option<Taken>,
    /// A request or callback met at the head of the mailbox while looking
    /// for the next message: it ends the batch, and the actor handles it
    /// next.
    stashed: Option<Taken>,
    /// The message handed out last, not settled yet.
    current: Option<Current>,
    /// Messages handed out in this batch.
    handed: usize,
    /// The sender of the message handed out last in this batch: the next
    /// message from it goes to the guest without its id.
    named: Option<ComponentId>,
}

/// A message in the guest's hands.
struct Current {
    taken: Taken,
    trace: TraceContext,
    parent: TraceContext,
    span: tracing::Span,
    started_ns: Option<u64>,
    /// Whether the envelope kept its payload (events were on when it was
    /// taken); otherwise the payload went to the guest, and a `Handled`
    /// event for a subscriber that came later shows it empty.
    kept: bool,
}

impl Batch {
    pub(crate) fn new(inbox: Inbox, shared: Arc<Shared>, handler_duration: Option<metrics::Histogram>) -> Box<Self> {
        Box::new(Self {
            inbox,
            shared,
            handler_duration,
            first: None,
            stashed: None,
            current: None,
            handed: 0,
            named: None,
        })
    }

    /// Starts a batch with `first` (a message), to hand out first.
    pub(crate) fn begin(&mut self, first: Taken) {
        debug_assert!(matches!(first.envelope(), Envelope::Message { .. }), "a batch starts with a message");
        self.first = Some(first);
        self.handed = 0;
        self.named = None;
    }

    /// What the actor must handle before it takes from the mailbox again:
    /// the first message of a batch that handed out nothing, else the
    /// envelope that ended the last batch.
    pub(crate) fn pending(&mut self) -> Option<Taken> {
        self.first.take().or_else(|| self.stashed.take())
    }

    /// How many messages the batch handed out.
    pub(crate) fn handed(&self) -> usize {
        self.handed
    }

    /// The call returned: the message handed out last (if the guest did not
    /// report it) is handled.
    pub(crate) fn returned(&mut self) {
        if let Some(current) = self.current.take() {
            self.settle(current, Ok(()));
        }
    }

    /// The call failed with `reason` (trap, budget, host panic: span
    /// outcome `target-failed`; a stop: `stopped`): the message handed out
    /// last is dead-lettered with it. Messages not taken stay queued.
    pub(crate) fn failed(&mut self, reason: &str, outcome: &'static str) {
        if let Some(Current { taken, span, started_ns, .. }) = self.current.take() {
            // The delivery first: if what follows panics, its guard still
            // settles the envelope.
            let delivery = self.inbox.resume(taken);
            if let (Some(histogram), Some(started)) = (&self.handler_duration, started_ns) {
                histogram.record(self.shared.router.elapsed_since(started));
            }
            span.record("outcome", outcome);
            delivery.failed(reason);
        }
    }

    /// The component stops: what the batch holds and the mailbox are
    /// dead-lettered with `reason` (see [`Inbox::close`]).
    pub(crate) fn close(&mut self, reason: &str) {
        self.failed(reason, "stopped");
        while let Some(taken) = self.pending() {
            self.inbox.resume(taken).undelivered(reason);
        }
        self.inbox.close(reason);
    }

    fn settle(&self, current: Current, outcome: Result<(), ComponentError>) {
        let Current { taken, trace, parent, span, started_ns, kept: _ } = current;
        // The delivery first: if what follows panics, its guard still
        // settles the envelope (dead-lettered, as a host panic is).
        let delivery = self.inbox.resume(taken);
        if let (Some(histogram), Some(started)) = (&self.handler_duration, started_ns) {
            histogram.record(self.shared.router.elapsed_since(started));
        }
        span.record("outcome", if outcome.is_ok() { "ok" } else { "handler-error" });
        let result = outcome.map(|()| Vec::new());
        if self.shared.events.active()
            && let Envelope::Message { sender, payload, .. } = delivery.envelope()
        {
            let event = handled_event(self.inbox.owner().id().clone(), sender, None, payload, &result, (trace, parent));
            self.shared.events.emit(event);
        }
        delivery.handled(result, trace);
    }

    /// The next message of the batch, if there is one to hand out.
    fn take(&mut self) -> Option<Taken> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.handed >= BATCH_MAX || self.stashed.is_some() {
            return None;
        }
        let taken = self.inbox.try_take()?;
        if matches!(taken.envelope(), Envelope::Message { .. }) {
            Some(taken)
        } else {
            self.stashed = Some(taken);
            None
        }
    }
}

impl MessageSource for Batch {
    fn next(&mut self, previous: Option<Result<(), ComponentError>>) -> Option<InboundMessage> {
        if let Some(current) = self.current.take() {
            self.settle(current, previous.unwrap_or(Ok(())));
        }
        let taken = self.take()?;
        // Counted with its first message, before that message can settle
        // (and make the system quiescent).
        if self.handed == 0 {
            self.inbox.owner().count_batch();
        }
        self.handed += 1;
        let parent = *taken.envelope().trace();
        // Held before anything that could panic (a tracing layer, an
        // allocation), so a panic leaves it where `failed` finds it.
        let current = self.current.insert(Current {
            taken,
            trace: parent,
            parent,
            span: tracing::Span::none(),
            started_ns: None,
            // The payload goes to the guest; it is kept only for a
            // `Handled` event that shows it.
            kept: self.shared.events.active(),
        });
        current.trace = parent.child();
        current.span = handler_span(self.inbox.owner().id(), current.taken.envelope(), current.trace, parent);
        current.started_ns = self.handler_duration.is_some().then(|| self.shared.router.now_ns());
        let Envelope::Message { sender, payload, .. } = current.taken.envelope_mut() else {
            unreachable!("a batch takes only messages");
        };
        let message = if current.kept { payload.clone() } else { std::mem::take(payload) };
        let sender = match &self.named {
            Some(named) if named.same(sender) => None,
            _ => {
                self.named = Some(sender.clone());
                Some(sender.as_str().to_owned())
            }
        };
        Some(InboundMessage { sender, message, trace: Some(current.trace) })
    }
}

impl Drop for Batch {
    /// Dropped with the actor (its task aborted, or a host panic while the
    /// batch was inside a dropped instance): nothing it holds is lost
    /// uncounted.
    fn drop(&mut self) {
        self.close(&format!("{} stopped", self.inbox.owner().id()));
    }
}
