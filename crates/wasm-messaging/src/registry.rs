//! Registered components: [`ActorRef`] and the [`ActorRegistry`] keyed by
//! [`ComponentId`], and [`QuotaSlot`], one of a component's pending-request
//! slots as a value.

use std::fmt;

use rustc_hash::FxHashMap;
use wasm_core::{ComponentId, MessagingError};

use crate::error::RegistryError;
use crate::mailbox::Mailbox;
use crate::policy::Policy;
use crate::sync::unmodelled::Arc;
use crate::sync::{AtomicU64, AtomicUsize, Ordering, RwLock, RwLockReadGuard};

/// The registry's map, as seen through a read guard.
pub(crate) type Actors = FxHashMap<ComponentId, ActorRef>;

struct ActorCell {
    id: ComponentId,
    mailbox: Mailbox,
    policy: Policy,
    /// Written by whoever sends to it, on a cache line of its own.
    inbound: Line<InboundCounters>,
    /// Written by its own actor and supervisor, on a line of its own.
    own: Line<OwnCounters>,
}

/// Keeps what it holds on cache lines of its own (128 bytes: a line pair,
/// as the adjacent-line prefetcher fetches them together), so that threads
/// writing different groups of one cell do not contend for a line. A
/// sender counting an accepted message on a target's cell and the
/// target's actor counting it handled would otherwise move one line
/// between their cores for every message (false sharing).
#[repr(align(128))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The counts senders update on a target's cell (see [`ActorStats`]).
/// Statistics, not synchronisation: every update and read is `Relaxed`.
struct InboundCounters {
    messages_accepted: AtomicU64,
    requests_accepted: AtomicU64,
}

/// The counts its own actor and supervisor update, and its pending
/// requests (taken by its own sends, given back by its callbacks).
struct OwnCounters {
    pending: AtomicUsize,
    handled: AtomicU64,
    handler_errors: AtomicU64,
    callbacks_handled: AtomicU64,
    batches: AtomicU64,
    dead_letters: [AtomicU64; DeadLetterCause::ALL.len()],
    refused: [AtomicU64; MessagingError::KINDS.len()],
    crashes: AtomicU64,
    restarts: AtomicU64,
}

impl ActorCell {
    fn new(id: ComponentId, mailbox: Mailbox, policy: Policy) -> Self {
        let zero = || AtomicU64::new(0);
        Self {
            id,
            mailbox,
            policy,
            inbound: Line(InboundCounters { messages_accepted: zero(), requests_accepted: zero() }),
            own: Line(OwnCounters {
                pending: AtomicUsize::new(0),
                handled: zero(),
                handler_errors: zero(),
                callbacks_handled: zero(),
                batches: zero(),
                dead_letters: std::array::from_fn(|_| zero()),
                refused: std::array::from_fn(|_| zero()),
                crashes: zero(),
                restarts: zero(),
            }),
        }
    }
}

/// Adds one to a statistics counter.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Why an envelope was dead-lettered, as a closed set (the label of the
/// `dead letters by reason` counts; the free text is [`crate::DeadLetter::reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterCause {
    /// The handler failed: the instance trapped, ran out of fuel or time, or
    /// the host panicked while handling it (a request's requester gets
    /// `target-failed`).
    TargetFailed,
    /// It never reached a handler: the component stopped, or had no running
    /// instance (a request's requester gets `delivery-failed`).
    Undelivered,
    /// A message this host sent to a component on another node that was
    /// not delivered there (refused, lost, never acknowledged, the node
    /// left: see [`wasm_core::DeliveryLoss`]). Counted on the sending
    /// component, as the target lives on the other host.
    DeliveryFailed,
}

impl DeadLetterCause {
    /// Every cause, in the order of [`ActorStats::dead_letters`].
    pub const ALL: [DeadLetterCause; 3] =
        [DeadLetterCause::TargetFailed, DeadLetterCause::Undelivered, DeadLetterCause::DeliveryFailed];

    /// Its name in kebab-case (`target-failed`, `undelivered`): the metric label.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterCause::TargetFailed => "target-failed",
            DeadLetterCause::Undelivered => "undelivered",
            DeadLetterCause::DeliveryFailed => "delivery-failed",
        }
    }

    /// Its index in [`DeadLetterCause::ALL`].
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            DeadLetterCause::TargetFailed => 0,
            DeadLetterCause::Undelivered => 1,
            DeadLetterCause::DeliveryFailed => 2,
        }
    }
}

impl fmt::Display for DeadLetterCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One component's counts at one moment ([`ActorRef::stats`]). Counters
/// only grow while the component is registered; the mailbox and request
/// figures are gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActorStats {
    /// Envelopes queued in its mailbox now (messages, requests, callbacks,
    /// with reserved slots).
    pub mailbox_len: u64,
    /// Payload bytes queued in its mailbox now (with reserved bytes).
    pub mailbox_bytes: u64,
    /// Its pending requests now (sent, callback not yet handled).
    pub pending_requests: usize,
    /// Whether it stopped (its mailbox is closed).
    pub stopped: bool,
    /// Fire-and-forget messages accepted into its mailbox.
    pub messages_accepted: u64,
    /// Requests accepted into its mailbox.
    pub requests_accepted: u64,
    /// Messages and requests its `handle-message` returned for, with an
    /// error or not.
    pub handled: u64,
    /// Handlers that returned an error: `handle-message` for a message or a
    /// request, and `handle-callback`.
    pub handler_errors: u64,
    /// Callbacks its `handle-callback` returned for, with an error or not.
    pub callbacks_handled: u64,
    /// Batches its `handle-messages` was called with that handed out at
    /// least one message (0 for a component without `batch-lifecycle`);
    /// `handled / batches` is roughly the messages per call.
    pub batches: u64,
    /// Envelopes for it that were dead-lettered, indexed by
    /// [`DeadLetterCause::index`]; the `delivery-failed` slot counts the
    /// messages it sent to other nodes that were not delivered there.
    pub dead_letters: [u64; DeadLetterCause::ALL.len()],
    /// Its sends refused, indexed by [`MessagingError::kind_index`] (named
    /// by [`MessagingError::KINDS`]).
    pub refused: [u64; MessagingError::KINDS.len()],
    /// Times its instance crashed (counted by the supervisor).
    pub crashes: u64,
    /// Times the supervisor started a new instance after a crash.
    pub restarts: u64,
}

impl ActorStats {
    /// Dead letters of every cause.
    #[must_use]
    pub fn dead_letters_total(&self) -> u64 {
        self.dead_letters.iter().sum()
    }

    /// Sends refused, every kind.
    #[must_use]
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// Messages, requests and callbacks whose handler returned without an
    /// error.
    #[must_use]
    pub fn completed(&self) -> u64 {
        (self.handled + self.callbacks_handled).saturating_sub(self.handler_errors)
    }
}

/// A registered component as the router sees it: its id, the sending side of
/// its mailbox, its [`Policy`], and its count of pending requests (the one
/// count there is: only a [`QuotaSlot`] changes it). Cloning is one atomic
/// increment; it is 8 bytes, so each pending request's [`QuotaSlot`] holds
/// one as the way back to its requester.
#[derive(Clone)]
pub struct ActorRef(Arc<ActorCell>);

impl ActorRef {
    /// A handle for `id` with `mailbox` and `policy`, not yet registered.
    #[must_use]
    pub fn new(id: ComponentId, mailbox: Mailbox, policy: Policy) -> Self {
        Self(Arc::new(ActorCell::new(id, mailbox, policy)))
    }

    /// The component id.
    #[must_use]
    pub fn id(&self) -> &ComponentId {
        &self.0.id
    }

    /// The sending side of its mailbox: crate-private, so that every
    /// envelope reaches it through the router's accounting.
    pub(crate) fn mailbox(&self) -> &Mailbox {
        &self.0.mailbox
    }

    /// Envelopes queued in its mailbox (messages, requests and callbacks,
    /// with reserved slots).
    #[must_use]
    pub fn queued(&self) -> u64 {
        self.0.mailbox.len()
    }

    /// Payload bytes queued in its mailbox (with reserved bytes).
    #[must_use]
    pub fn queued_bytes(&self) -> u64 {
        self.0.mailbox.bytes()
    }

    /// True once its mailbox is closed (the component stopped).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.0.mailbox.is_closed()
    }

    /// Its rules.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.0.policy
    }

    /// Requests it has pending.
    #[must_use]
    pub fn pending_requests(&self) -> usize {
        self.0.own.pending.load(Ordering::Relaxed)
    }

    /// Takes one pending-request slot if fewer than `max` are in use.
    pub(crate) fn try_acquire_slot(&self, max: usize) -> Option<QuotaSlot> {
        self.0
            .own
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| QuotaSlot(self.clone()))
    }

    /// Its counts now.
    #[must_use]
    pub fn stats(&self) -> ActorStats {
        let (inbound, c) = (&self.0.inbound, &self.0.own);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ActorStats {
            mailbox_len: self.queued(),
            mailbox_bytes: self.queued_bytes(),
            pending_requests: self.pending_requests(),
            stopped: self.is_stopped(),
            messages_accepted: load(&inbound.messages_accepted),
            requests_accepted: load(&inbound.requests_accepted),
            handled: load(&c.handled),
            handler_errors: load(&c.handler_errors),
            callbacks_handled: load(&c.callbacks_handled),
            batches: load(&c.batches),
            dead_letters: std::array::from_fn(|i| load(&c.dead_letters[i])),
            refused: std::array::from_fn(|i| load(&c.refused[i])),
            crashes: load(&c.crashes),
            restarts: load(&c.restarts),
        }
    }

    /// Counts a crash of its instance (for the supervisor that saw it).
    pub fn count_crash(&self) {
        bump(&self.0.own.crashes);
    }

    /// Counts a batch that handed out at least one message (for the actor
    /// that ran it).
    pub fn count_batch(&self) {
        bump(&self.0.own.batches);
    }

    /// Counts a restart of its instance (for the supervisor that did it).
    pub fn count_restart(&self) {
        bump(&self.0.own.restarts);
    }

    /// Counts an accepted message (`request == false`) or request for it.
    pub(crate) fn count_accepted(&self, request: bool) {
        let c = &self.0.inbound;
        bump(if request { &c.requests_accepted } else { &c.messages_accepted });
    }

    /// Counts a handler that returned: `callback` for `handle-callback`.
    pub(crate) fn count_handled(&self, callback: bool, error: bool) {
        let c = &self.0.own;
        bump(if callback { &c.callbacks_handled } else { &c.handled });
        if error {
            bump(&c.handler_errors);
        }
    }

    /// Counts a dead letter for it.
    pub(crate) fn count_dead_letter(&self, cause: DeadLetterCause) {
        bump(&self.0.own.dead_letters[cause.index()]);
    }

    /// Counts one of its sends refused with `error`.
    pub(crate) fn count_refused(&self, error: &MessagingError) {
        bump(&self.0.own.refused[error.kind_index()]);
    }

    /// True when both handles are the same registration.
    #[must_use]
    pub fn same(&self, other: &ActorRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One of a component's pending-request slots (`[requests] max_pending`),
/// taken when a request it sends is accepted. The slot travels with the
/// request: in the tracker's entry, then in the callback envelope, then in
/// the [`crate::Delivery`] its actor takes; it is given back when it is
/// dropped, wherever that is (the callback settled, the requester crashed and
/// its entries were drained, its mailbox closed before the callback was
/// queued). So the count can neither leak nor be given back twice, and the
/// quota bounds the callbacks queued as well as the requests in flight.
pub struct QuotaSlot(ActorRef);

impl QuotaSlot {
    /// The component whose slot it is.
    #[must_use]
    pub fn owner(&self) -> &ActorRef {
        &self.0
    }
}

impl Drop for QuotaSlot {
    fn drop(&mut self) {
        let _ = self.0.0.own.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

impl fmt::Debug for QuotaSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QuotaSlot").field(self.0.id()).finish()
    }
}

impl fmt::Debug for ActorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRef")
            .field("id", &self.0.id)
            .field("mailbox", &self.0.mailbox)
            .field("pending", &self.pending_requests())
            .finish()
    }
}

/// Every registered component by id (FxHash: the keys come from manifests,
/// not from guests). Lookups take a read lock only; the write lock is taken
/// when a component starts or stops.
#[derive(Default)]
pub struct ActorRegistry {
    actors: RwLock<Actors>,
}

impl ActorRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `actor` under its id.
    ///
    /// # Errors
    /// [`RegistryError::Reserved`] for `host`; [`RegistryError::Duplicate`]
    /// when the id is taken.
    pub fn register(&self, actor: ActorRef) -> Result<(), RegistryError> {
        if actor.id().is_host() {
            return Err(RegistryError::Reserved);
        }
        let mut actors = self.actors.write();
        if actors.contains_key(actor.id()) {
            return Err(RegistryError::Duplicate(actor.id().to_string()));
        }
        actors.insert(actor.id().clone(), actor);
        Ok(())
    }

    /// Removes and returns the component registered as `id`.
    pub fn unregister(&self, id: &str) -> Option<ActorRef> {
        self.actors.write().remove(id)
    }

    /// The component registered as `id`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<ActorRef> {
        self.actors.read().get(id).cloned()
    }

    /// A read guard over the whole map, so a send can look up its sender and
    /// its target without cloning either.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Actors> {
        self.actors.read()
    }

    /// Ids of every registered component, sorted.
    #[must_use]
    pub fn ids(&self) -> Vec<ComponentId> {
        let mut ids: Vec<ComponentId> = self.actors.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Envelopes queued over all mailboxes.
    #[must_use]
    pub fn queued(&self) -> u64 {
        self.actors.read().values().map(|a| a.mailbox().len()).sum()
    }
}

impl fmt::Debug for ActorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRegistry").field("ids", &self.ids()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::mem::offset_of;

    use super::*;

    /// The 128-byte block (line pair) that holds `bytes` at `offset`.
    fn lines(offset: usize, bytes: usize) -> std::ops::RangeInclusive<usize> {
        offset / 128..=(offset + bytes - 1) / 128
    }

    #[test]
    fn what_senders_write_what_the_owner_writes_and_what_everyone_reads_are_on_different_lines() {
        let apart = |a: &std::ops::RangeInclusive<usize>, b: &std::ops::RangeInclusive<usize>| {
            a.end() < b.start() || b.end() < a.start()
        };
        let inbound = lines(offset_of!(ActorCell, inbound), size_of::<InboundCounters>());
        let own = lines(offset_of!(ActorCell, own), size_of::<OwnCounters>());
        assert!(apart(&inbound, &own), "{inbound:?} {own:?}");
        for read in [
            lines(offset_of!(ActorCell, id), size_of::<ComponentId>()),
            lines(offset_of!(ActorCell, mailbox), size_of::<Mailbox>()),
            lines(offset_of!(ActorCell, policy), size_of::<Policy>()),
        ] {
            assert!(apart(&read, &inbound) && apart(&read, &own), "{read:?} {inbound:?} {own:?}");
        }
        assert_eq!(align_of::<ActorCell>(), 128, "the cell starts on a line pair");
    }

    #[test]
    fn counts_land_in_their_groups_and_stats_read_them_all() {
        let id = ComponentId::parse("a").expect("id");
        let (tx, _rx) = crate::mailbox::mailbox(id.clone(), 1, 0);
        let actor = ActorRef::new(id, tx, Policy::host());
        actor.count_accepted(false);
        actor.count_accepted(true);
        actor.count_handled(false, true);
        actor.count_handled(true, false);
        actor.count_batch();
        actor.count_crash();
        actor.count_restart();
        actor.count_dead_letter(DeadLetterCause::Undelivered);
        actor.count_refused(&MessagingError::QueueFull);
        let slot = actor.try_acquire_slot(1).expect("a slot");
        let stats = actor.stats();
        assert_eq!((stats.messages_accepted, stats.requests_accepted), (1, 1));
        assert_eq!((stats.handled, stats.handler_errors, stats.callbacks_handled, stats.batches), (1, 1, 1, 1));
        assert_eq!((stats.crashes, stats.restarts), (1, 1));
        assert_eq!(stats.dead_letters[DeadLetterCause::Undelivered.index()], 1);
        assert_eq!(stats.dead_letters.iter().sum::<u64>(), 1);
        assert_eq!(stats.refused[MessagingError::QueueFull.kind_index()], 1);
        assert_eq!(stats.refused.iter().sum::<u64>(), 1);
        assert_eq!(stats.pending_requests, 1);
        drop(slot);
        assert_eq!(actor.pending_requests(), 0);
    }
}
