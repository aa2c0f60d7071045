//! Registered components: [`ActorRef`] and the [`ActorRegistry`] keyed by
//! [`ComponentId`], and [`QuotaSlot`], one of a component's pending-request
//! slots as a value.

use std::fmt;

use rustc_hash::FxHashMap;
use wasm_core::ComponentId;

use crate::error::RegistryError;
use crate::mailbox::Mailbox;
use crate::policy::Policy;
use crate::sync::unmodelled::Arc;
use crate::sync::{AtomicUsize, Ordering, RwLock, RwLockReadGuard};

/// The registry's map, as seen through a read guard.
pub(crate) type Actors = FxHashMap<ComponentId, ActorRef>;

struct ActorCell {
    id: ComponentId,
    mailbox: Mailbox,
    policy: Policy,
    pending: AtomicUsize,
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
        Self(Arc::new(ActorCell { id, mailbox, policy, pending: AtomicUsize::new(0) }))
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
        self.0.pending.load(Ordering::Relaxed)
    }

    /// Takes one pending-request slot if fewer than `max` are in use.
    pub(crate) fn try_acquire_slot(&self, max: usize) -> Option<QuotaSlot> {
        self.0
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| QuotaSlot(self.clone()))
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
        let _ = self.0.0.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
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
