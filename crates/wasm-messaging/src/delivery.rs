//! What an actor takes from its mailbox: an [`Inbox`] hands out
//! [`Delivery`] guards, and each guard settles its envelope exactly once.
//!
//! Settling is what makes the router's counters balance (SPEC section 3,
//! accounting): every envelope put in a mailbox must end as handled or
//! dead-lettered, once. Before this type the actor had to call the router's
//! `respond`, then `settle` (or `dead_letter`, then `settle`) in the right
//! order, and a callback also had to give its pending-request slot back. Now
//! a `Delivery` is consumed by the one method that says how it ended
//! ([`Delivery::handled`], [`Delivery::failed`], [`Delivery::undelivered`])
//! and, if it is dropped unconsumed (a host panic unwinding through the
//! handler, a handler future abandoned), its `Drop` dead-letters it. A
//! callback's [`crate::QuotaSlot`] is inside the envelope, so it is given
//! back when the guard goes, whichever way it goes.

use std::fmt;

use wasm_core::{ComponentError, RequestError, TraceContext};

use crate::accounting::Settled;
use crate::envelope::Envelope;
use crate::mailbox::MailboxReceiver;
use crate::registry::{ActorRef, DeadLetterCause};
use crate::router::{DeadLetter, Router};
use crate::sync::unmodelled::Arc;

/// Why a [`Delivery`] dropped unconsumed is dead-lettered.
pub const DROPPED_UNSETTLED: &str = "dropped before it was settled (host panic or abandoned handler)";

/// The receiving side of a component's mailbox, owned by its actor: it
/// outlives instance restarts, so queued envelopes survive a crash.
///
/// Dropping it closes the mailbox and dead-letters whatever is still queued
/// (requests answer `delivery-failed`), as [`Inbox::close`] does.
pub struct Inbox {
    receiver: MailboxReceiver,
    router: Arc<Router>,
    owner: ActorRef,
}

impl Inbox {
    pub(crate) fn new(receiver: MailboxReceiver, router: Arc<Router>, owner: ActorRef) -> Self {
        Self { receiver, router, owner }
    }

    /// The component whose mailbox this is.
    #[must_use]
    pub fn owner(&self) -> &ActorRef {
        &self.owner
    }

    /// The next envelope, callbacks first, as a guard that must be settled.
    /// `None` once the mailbox is closed and empty.
    ///
    /// The guard borrows the inbox (no reference count is touched per
    /// envelope), so an actor takes the next one only after settling this.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future before it completes loses no
    /// envelope (tokio's `recv` is cancel-safe, and the guard is made only
    /// once an envelope is out).
    pub async fn recv(&mut self) -> Option<Delivery<'_>> {
        let envelope = self.receiver.recv().await?;
        Some(self.guard(envelope))
    }

    /// The next envelope if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Delivery<'_>> {
        let envelope = self.receiver.try_recv()?;
        Some(self.guard(envelope))
    }

    fn guard(&self, envelope: Envelope) -> Delivery<'_> {
        Delivery { envelope, router: &self.router, target: &self.owner, settled: false }
    }

    /// As [`Inbox::recv`], held apart from the inbox as a [`Taken`] (see
    /// [`Inbox::try_take`]).
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`Inbox::recv`].
    pub async fn recv_taken(&mut self) -> Option<Taken> {
        self.receiver.recv().await.map(Taken)
    }

    /// The next envelope if one is queued, without waiting, held apart from
    /// the inbox as a [`Taken`] (so the inbox stays free while it is
    /// handled: a batch holds one while it takes the next). Turn it back
    /// into a [`Delivery`] with [`Inbox::resume`] to settle it.
    pub fn try_take(&mut self) -> Option<Taken> {
        self.receiver.try_recv().map(Taken)
    }

    /// The [`Delivery`] of an envelope taken with [`Inbox::try_take`] or
    /// [`Inbox::recv_taken`], to settle it. `taken` must come from this
    /// inbox.
    pub fn resume(&self, taken: Taken) -> Delivery<'_> {
        self.guard(taken.0)
    }

    /// Closes the mailbox (later sends fail with `delivery-failed`) and
    /// dead-letters every envelope still queued with `reason`; a queued
    /// request's requester gets `delivery-failed` with it. Returns how many
    /// were dead-lettered. Closing again finds nothing.
    pub fn close(&mut self, reason: &str) -> usize {
        self.receiver.close();
        let mut dead = 0;
        while let Some(delivery) = self.try_recv() {
            delivery.undelivered(reason);
            dead += 1;
        }
        dead
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let reason = format!("{} stopped", self.owner.id());
        self.close(&reason);
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").field("owner", self.owner.id()).field("receiver", &self.receiver).finish()
    }
}

/// One envelope taken from a mailbox, not yet settled. Consuming it with
/// [`Delivery::handled`], [`Delivery::failed`] or [`Delivery::undelivered`]
/// settles it; dropping it unconsumed settles it as
/// [`Delivery::failed`] with [`DROPPED_UNSETTLED`]. Either way it is counted
/// once, and a callback's pending-request slot is given back once.
#[must_use = "dropping a delivery dead-letters its envelope"]
pub struct Delivery<'a> {
    envelope: Envelope,
    router: &'a Router,
    target: &'a ActorRef,
    settled: bool,
}

impl Delivery<'_> {
    /// The envelope.
    #[must_use]
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The handler returned `result`. For a request it is the response
    /// (`Err` becomes `handler-error`; both are checked against the
    /// responder's cap and the requester's codecs, see [`Router`]); for a
    /// message or a callback it goes nowhere (SPEC section 2: the return of
    /// a fire-and-forget handler is ignored). `trace` is the handler span's
    /// context, the parent of what the requester sees.
    pub fn handled(mut self, result: Result<Vec<u8>, ComponentError>, trace: TraceContext) {
        let is_error = result.is_err();
        let how = match &self.envelope {
            Envelope::Message { .. } => Settled::Handled,
            Envelope::Request { id, .. } => {
                self.router.respond(self.target, id, result, trace);
                Settled::Handled
            }
            Envelope::Callback { .. } => Settled::CallbackHandled,
        };
        self.target.count_handled(how == Settled::CallbackHandled, is_error);
        self.settled = true;
        self.router.settle(how);
    }

    /// The handler did not return (the guest trapped or ran out of a
    /// budget, the host panicked, the system stopped the call): dead-lettered
    /// with `reason`; a request's requester gets `target-failed` naming the
    /// target and `reason`.
    pub fn failed(mut self, reason: &str) {
        self.fail(reason);
    }

    /// The envelope never reached the guest (its component stopped, or has
    /// no instance): dead-lettered with `reason`; a request's requester gets
    /// `delivery-failed` with `reason`.
    pub fn undelivered(mut self, reason: &str) {
        if let Envelope::Request { id, trace, .. } = &self.envelope {
            self.router.fail(id, RequestError::DeliveryFailed(reason.to_owned()), trace.child());
        }
        self.dead_letter(reason, DeadLetterCause::Undelivered);
    }

    fn fail(&mut self, reason: &str) {
        if let Envelope::Request { id, trace, .. } = &self.envelope {
            let error = RequestError::TargetFailed(format!("{}: {reason}", self.target.id()));
            self.router.fail(id, error, trace.child());
        }
        self.dead_letter(reason, DeadLetterCause::TargetFailed);
    }

    fn dead_letter(&mut self, reason: &str, cause: DeadLetterCause) {
        let (sender, correlation_id) = match &self.envelope {
            Envelope::Message { sender, .. } => (sender.clone(), None),
            Envelope::Request { sender, id, .. } => (sender.clone(), Some(*id)),
            Envelope::Callback { id, .. } => (self.target.id().clone(), Some(*id)),
        };
        self.settled = true;
        self.target.count_dead_letter(cause);
        self.router.dead_letter(DeadLetter {
            target: self.target.id().clone(),
            sender,
            kind: self.envelope.kind(),
            correlation_id,
            reason: reason.to_owned(),
            cause,
        });
        self.router.settle(Settled::DeadLettered);
    }
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.fail(DROPPED_UNSETTLED);
        }
    }
}

/// An envelope taken from a mailbox and not settled yet, held apart from
/// its [`Inbox`] ([`Inbox::try_take`], [`Inbox::recv_taken`]).
///
/// It does not settle itself: give it back to [`Inbox::resume`], whose
/// [`Delivery`] settles (or dead-letters itself when dropped). Dropping a
/// `Taken` loses the envelope's settle, so the accounting would not balance;
/// a holder keeps it where its own `Drop` resumes it (as the actor's batch
/// does).
#[must_use = "a taken envelope must be resumed and settled"]
#[derive(Debug)]
pub struct Taken(Envelope);

impl Taken {
    /// The envelope.
    #[must_use]
    pub fn envelope(&self) -> &Envelope {
        &self.0
    }

    /// The envelope, to move its payload out (a batch hands the payload to
    /// the guest instead of copying it).
    pub fn envelope_mut(&mut self) -> &mut Envelope {
        &mut self.0
    }
}

impl fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("target", self.target.id())
            .field("envelope", &self.envelope)
            .field("settled", &self.settled)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use wasm_core::{
        Codec, ComponentId, ComponentManifest, MessagePayload, MessageRouter, MessagingError, Origin, RequestError,
        RequestsSection,
    };

    use super::*;
    use crate::NoAudit;

    fn raw(body: &[u8]) -> Vec<u8> {
        MessagePayload::encode(Codec::Raw, body).into_bytes()
    }

    /// A router with `a` (may request `b`, quota 1) and `b`.
    fn two() -> (Arc<Router>, Inbox, Inbox) {
        let router = Router::start(Arc::new(NoAudit));
        let a = ComponentManifest::new(ComponentId::parse("a").expect("id"))
            .may_send(["b"])
            .may_request(true)
            .requests(RequestsSection { max_pending: 1, ..RequestsSection::default() });
        let b = ComponentManifest::new(ComponentId::parse("b").expect("id"));
        let register = |m: &ComponentManifest| {
            let policy = crate::Policy::from_manifest(m).expect("policy");
            router.register(m.component.id.clone(), policy, &m.mailbox).expect("registered").1
        };
        let (a_inbox, b_inbox) = (register(&a), register(&b));
        (router, a_inbox, b_inbox)
    }

    fn from(id: &ComponentId) -> Origin<'_> {
        Origin { sender: id, trace: None }
    }

    #[tokio::test]
    async fn a_dropped_delivery_dead_letters_once_and_fails_the_request() {
        let (router, _a, mut b) = two();
        let (_, outcome) = router.host_request("b", raw(b"q"), 1_000).expect("accepted");
        let delivery = b.recv().await.expect("queued");
        drop(delivery);
        match outcome.await.expect("an outcome") {
            Err(RequestError::TargetFailed(reason)) => assert!(reason.contains(DROPPED_UNSETTLED), "{reason}"),
            other => panic!("expected target-failed, got {other:?}"),
        }
        let stats = router.stats();
        assert_eq!((stats.dead_lettered, stats.settled, stats.enqueued), (1, 1, 1));
        assert!(stats.balanced(), "{stats:?}");
        assert_eq!(router.dead_letters().len(), 1);
    }

    #[tokio::test]
    async fn the_quota_slot_travels_with_the_callback_and_is_freed_when_it_settles() {
        let (router, mut a, mut b) = two();
        let a_id = a.owner().id().clone();
        router.send_request(from(&a_id), "b", raw(b"1"), 1_000).expect("the one slot");
        let second = router.send_request(from(&a_id), "b", raw(b"2"), 1_000);
        assert!(matches!(second, Err(MessagingError::TooManyPending(_))), "{second:?}");
        b.recv().await.expect("the request").handled(Ok(raw(b"answer")), TraceContext::new_root());
        // The request ended, but its callback is queued and holds the slot.
        assert_eq!(a.owner().pending_requests(), 1);
        let third = router.send_request(from(&a_id), "b", raw(b"3"), 1_000);
        assert!(matches!(third, Err(MessagingError::TooManyPending(_))), "the callback holds the slot: {third:?}");
        let callback = a.recv().await.expect("the callback");
        assert!(matches!(callback.envelope(), Envelope::Callback { outcome: Ok(_), .. }));
        callback.handled(Ok(Vec::new()), TraceContext::new_root());
        assert_eq!(a.owner().pending_requests(), 0, "settling the callback gave the slot back");
        router.send_request(from(&a_id), "b", raw(b"4"), 1_000).expect("the slot is free again");
        drop(b);
        let stats = router.stats();
        assert_eq!(stats.callbacks_handled, 1);
        // Dropping b's inbox failed the fourth request: its callback waits for a.
        assert_eq!(a.owner().pending_requests(), 1);
        drop(a);
        assert!(router.stats().balanced(), "{:?}", router.stats());
    }

    #[tokio::test]
    async fn a_handler_error_answering_a_request_is_counted_apart_from_responses() {
        let (router, _a, mut b) = two();
        let (_, answered) = router.host_request("b", raw(b"1"), 1_000).expect("accepted");
        let (_, rejected) = router.host_request("b", raw(b"2"), 1_000).expect("accepted");
        b.recv().await.expect("the first").handled(Ok(raw(b"yes")), TraceContext::new_root());
        let error = ComponentError { code: 7, message: "no".into() };
        b.recv().await.expect("the second").handled(Err(error.clone()), TraceContext::new_root());
        assert_eq!(answered.await.expect("an outcome"), Ok(raw(b"yes")));
        assert_eq!(rejected.await.expect("an outcome"), Err(RequestError::HandlerError(error)));
        let stats = router.stats();
        assert_eq!((stats.requests.completed, stats.request_handler_errors), (2, 1), "{stats:?}");
        assert_eq!(b.owner().stats().handler_errors, 1);
        assert!(stats.balanced(), "{stats:?}");
    }

    #[tokio::test]
    async fn closing_an_inbox_dead_letters_what_is_queued_and_answers_requests_delivery_failed() {
        let (router, _a, mut b) = two();
        router.send_message(from(ComponentId::host_ref()), "b", raw(b"m")).expect("queued");
        let (_, outcome) = router.host_request("b", raw(b"q"), 1_000).expect("queued");
        assert_eq!(b.close("b is going away"), 2);
        assert_eq!(outcome.await.expect("an outcome"), Err(RequestError::DeliveryFailed("b is going away".into())));
        let refused = router.send_message(from(ComponentId::host_ref()), "b", raw(b"late"));
        assert!(matches!(refused, Err(MessagingError::DeliveryFailed(_))), "{refused:?}");
        assert_eq!(b.close("again"), 0, "closing again finds nothing");
        let stats = router.stats();
        assert_eq!((stats.dead_lettered, stats.handled), (2, 0));
        assert!(stats.balanced(), "{stats:?}");
    }
}
