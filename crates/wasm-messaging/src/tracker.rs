//! The correlation tracker: pending requests by correlation id, their
//! deadlines, and exactly one outcome per request.
//!
//! # Design
//!
//! One [`RwLock`] guards one `State`: the map of pending requests, the timer
//! heap of their deadlines, the driver's planned wake-up time and the outcome
//! counters. Every outcome (complete, fail, cancel, remove, expiry) removes
//! the entry from the map under the write lock; **an outcome belongs to
//! whoever removes the entry, and everyone else finds nothing**. That is the
//! whole exactly-once argument, and the loom models in `src/tests/` check it.
//!
//! **Lock order.** There is only one lock, so no two locks can ever be taken
//! in opposite orders. No method calls out while holding it: the clock is
//! read before locking, the waker is called after unlocking, and error
//! strings and ids are formatted after unlocking. The one piece of foreign
//! code run under the lock is [`RequestOwner::owner_id`] (in `cancel` and
//! `drain_owner`), which must not call back into the tracker.
//!
//! **Deadlines.** One binary heap of `(deadline_ms, key)` serves every
//! request; there is never a task or a sleep per request. Ended requests
//! leave their heap entry behind (lazy deletion): [`CorrelationTracker::cleanup_expired`]
//! pops every entry that is due and takes only those still in the map with
//! that deadline passed. Garbage is bounded: when the heap holds more than
//! `2 * pending + 4096` entries, `register` drops the stale ones in one
//! `O(heap)` pass (amortised `O(1)` per register).
//!
//! **Memory.** A pending request costs one map slot (16-byte key + 24-byte
//! [`PendingRequest`] for an 8-byte owner, plus one control byte, at a load
//! factor between 7/16 and 7/8), one 24-byte heap entry and one slot of its
//! owner's index (16-byte key + one control byte). At 1,000,000 pending the
//! map has 2^21 slots: `2^21 * (41 + 17) / 10^6 + 24 * 2^20 / 10^6`, about
//! 147 bytes per request (the tracker bench measures it, with `ComponentId`
//! owners). The router's owner, [`crate::Requester`], is 56 bytes: the way
//! back ([`crate::ReplyTo`], 16 bytes: a quota slot or a one-shot sender, and
//! the tag), the sending span's trace context (25 bytes, padded), so a
//! timeout stays in the requester's trace, and the registration time (8
//! bytes, for the request latency histogram). That is 48 more per map slot
//! than an 8-byte owner: `2^21 * (89 + 17) / 10^6 + 24 * 2^20 / 10^6`, about
//! 248 bytes per pending request.
//!
//! **Per-owner index.** A crash or stop drops the requests pending from one
//! component ([`PendingRequests::drain_owner`]); the index makes that
//! touch only that component's requests, so a guest that traps on purpose
//! cannot make every crash scan the whole system's pending requests.

use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use rustc_hash::FxHashMap;
use wasm_core::{
    Clock, ComponentId, CorrelationId, CorrelationKey, CorrelationTracker, MessagingError, PendingRequest,
    RequestOwner, TrackerStats,
};

use crate::clock::MonotonicClock;
use crate::sync::RwLock;
use crate::sync::unmodelled::{Arc as StdArc, OnceLock};

/// Below this many stale heap entries `register` never compacts the heap.
const COMPACTION_FLOOR: usize = 4096;

/// The callback a tracker makes when a new deadline is earlier than the
/// timer driver's planned wake-up (see [`PendingRequests::with_waker`]).
type WakeFn = StdArc<dyn Fn() + Send + Sync>;

/// The [`CorrelationTracker`] of the host: a map of pending requests keyed by
/// [`CorrelationKey`], one deadline heap for all of them, and the outcome
/// counters, behind one `parking_lot` [`RwLock`] (a loom lock under
/// `--cfg loom`).
///
/// - `O` is what owns a request ([`ComponentId`] or an 8-byte handle such as
///   `Arc<Actor>` that also knows the way back to the requester).
/// - `C` is the clock deadlines are measured on, in ms; [`MonotonicClock`] in
///   production, [`crate::ManualClock`] in tests.
///
/// The core is synchronous. Deadlines fire when someone calls
/// [`CorrelationTracker::cleanup_expired`]: in the host that is the one task
/// of [`crate::spawn_timer_driver`], which sleeps until
/// [`PendingRequests::plan_next_wake`] and is woken by `register` when
/// an earlier deadline arrives.
///
/// Exactly once: whichever of complete, fail, cancel, remove or expiry takes
/// the entry first is its outcome; the others find nothing (a late
/// `complete` or `fail` is counted as orphaned). [`TrackerStats::balanced`]
/// holds for every [`CorrelationTracker::stats`] snapshot, because counters
/// and map change together under the lock.
///
/// ```
/// use wasm_core::{ComponentId, CorrelationTracker};
/// use wasm_messaging::{PendingRequests, ManualClock};
///
/// let clock = ManualClock::new(0);
/// let tracker = PendingRequests::<ComponentId, _>::new(clock.clone());
/// let (a, b) = (ComponentId::parse("a").unwrap(), ComponentId::parse("b").unwrap());
///
/// let id = tracker.register(a.clone(), b.clone(), 1_000);
/// assert!(tracker.cancel(&id, &b).is_err()); // not the owner: stays pending
/// assert!(tracker.complete(&id).is_some());
/// assert!(tracker.complete(&id).is_none()); // late: orphaned
///
/// let late = tracker.register(a, b, 1_000);
/// clock.advance(1_000);
/// let expired = tracker.cleanup_expired();
/// assert_eq!(expired[0].0, late);
/// let stats = tracker.stats();
/// assert_eq!((stats.completed, stats.timed_out, stats.orphaned, stats.pending), (1, 1, 1, 0));
/// assert!(stats.balanced());
/// ```
pub struct PendingRequests<O: RequestOwner, C: Clock = MonotonicClock> {
    state: RwLock<State<O>>,
    clock: C,
    waker: OnceLock<WakeFn>,
    compaction_floor: usize,
}

/// Everything the lock guards.
struct State<O> {
    /// Pending requests. The key hashes with [`KeyHashBuilder`].
    map: HashMap<SlotKey, PendingRequest<O>, KeyHashBuilder>,
    /// The keys of `map` by owner, so a crash or stop touches only the
    /// owner's requests. Kept in step with `map` by `insert` and `take`.
    /// FxHash: the keys are manifest ids (trusted), hashed on every
    /// register and outcome.
    by_owner: FxHashMap<ComponentId, HashSet<SlotKey, KeyHashBuilder>>,
    /// The hasher of the per-owner sets.
    key_hasher: KeyHashBuilder,
    /// Map entries the last `drain_owner` looked at (its cost, for tests).
    drain_visited: usize,
    /// Deadlines of pending requests, earliest first, plus stale entries of
    /// ended ones (lazy deletion).
    timers: BinaryHeap<TimerEntry>,
    /// When the timer driver plans to wake, in ms on the tracker's clock;
    /// `u64::MAX` for "not planned".
    next_wake_ms: u64,
    counts: Counts,
}

#[derive(Clone, Copy, Default)]
struct Counts {
    registered: u64,
    completed: u64,
    failed: u64,
    timed_out: u64,
    cancelled: u64,
    dropped: u64,
    orphaned: u64,
}

impl<O> State<O> {
    /// True when `timer` is the deadline of a pending request (not stale).
    fn is_live(&self, timer: &TimerEntry) -> bool {
        self.map.get(&SlotKey(timer.key.0)).is_some_and(|request| request.deadline_ms == timer.deadline_ms)
    }

    /// Drops stale entries from the head of the heap and returns the earliest
    /// live deadline.
    fn earliest_live_deadline(&mut self) -> Option<u64> {
        while let Some(head) = self.timers.peek() {
            if self.is_live(head) {
                return Some(head.deadline_ms);
            }
            self.timers.pop();
        }
        None
    }

    /// Drops every stale heap entry.
    fn compact_timers(&mut self) {
        let map = &self.map;
        self.timers.retain(|timer| {
            map.get(&SlotKey(timer.key.0)).is_some_and(|request| request.deadline_ms == timer.deadline_ms)
        });
    }

    /// Takes the request of `key` out of the map and the owner's index.
    fn take(&mut self, key: SlotKey) -> Option<PendingRequest<O>>
    where
        O: RequestOwner,
    {
        let request = self.map.remove(&key)?;
        if let Some(keys) = self.by_owner.get_mut(request.owner.owner_id()) {
            keys.remove(&key);
            // An owner that had many pending requests gives the room back.
            if keys.len() < keys.capacity() / 4 && keys.capacity() > 64 {
                keys.shrink_to(keys.len() * 2);
            }
        }
        Some(request)
    }
}

/// What `cancel` found, decided under the lock and turned into a result
/// after it.
enum CancelOutcome<O> {
    Cancelled(PendingRequest<O>),
    NotFound,
    NotOwner,
}

impl<O: RequestOwner, C: Clock> PendingRequests<O, C> {
    /// An empty tracker measuring deadlines on `clock`, with no waker (add
    /// one later with [`PendingRequests::set_waker`], as
    /// [`crate::spawn_timer_driver`] does).
    #[must_use]
    pub fn new(clock: C) -> Self {
        Self {
            state: RwLock::new(State {
                map: HashMap::with_hasher(KeyHashBuilder::new()),
                by_owner: FxHashMap::default(),
                key_hasher: KeyHashBuilder::new(),
                drain_visited: 0,
                timers: BinaryHeap::new(),
                next_wake_ms: u64::MAX,
                counts: Counts::default(),
            }),
            clock,
            waker: OnceLock::new(),
            compaction_floor: COMPACTION_FLOOR,
        }
    }

    /// An empty tracker whose `register` calls `waker` (after releasing the
    /// lock) whenever a new deadline is earlier than the driver's planned
    /// wake-up ([`PendingRequests::plan_next_wake`]), so a driver can
    /// sleep until the earliest deadline instead of polling. `waker` must be
    /// cheap and must not block; `tokio::sync::Notify::notify_one` is the
    /// intended body.
    #[must_use]
    pub fn with_waker(clock: C, waker: StdArc<dyn Fn() + Send + Sync>) -> Self {
        let tracker = Self::new(clock);
        // A fresh OnceLock is empty: this cannot fail.
        let _ = tracker.waker.set(waker);
        tracker
    }

    /// Installs the waker of [`PendingRequests::with_waker`] on a
    /// tracker built without one. A tracker has at most one waker, for its
    /// one timer driver.
    ///
    /// # Errors
    /// Hands `waker` back when the tracker already has one.
    pub fn set_waker(&self, waker: StdArc<dyn Fn() + Send + Sync>) -> Result<(), StdArc<dyn Fn() + Send + Sync>> {
        self.waker.set(waker)
    }

    /// Registers a request under a caller-chosen `id` (the trait's
    /// [`CorrelationTracker::register`] generates one). Its deadline is
    /// `clock.now_ms() + timeout_ms` (saturating; validating `timeout_ms`
    /// is the router's job). Ids must be unpredictable (UUID v4 from
    /// [`CorrelationId::generate`]): the map's hash is keyed, but assumes
    /// random keys.
    ///
    /// This is the registration path without id generation; benchmarks use
    /// it to measure the tracker alone.
    ///
    /// # Errors
    /// Hands the request back, unregistered, when `id` is already pending.
    pub fn register_with_id(
        &self,
        id: &CorrelationId,
        owner: O,
        target: ComponentId,
        timeout_ms: u64,
    ) -> Result<(), PendingRequest<O>> {
        let deadline_ms = self.clock.now_ms().saturating_add(timeout_ms);
        let request = PendingRequest { owner, target, deadline_ms };
        let key = id.key();
        let wake = {
            let mut guard = self.state.write();
            let state = &mut *guard;
            match state.map.entry(SlotKey(key.0)) {
                Entry::Occupied(_) => return Err(request),
                Entry::Vacant(slot) => {
                    let owner = request.owner.owner_id();
                    match state.by_owner.get_mut(owner) {
                        Some(keys) => {
                            keys.insert(SlotKey(key.0));
                        }
                        None => {
                            let mut keys = HashSet::with_hasher(state.key_hasher);
                            keys.insert(SlotKey(key.0));
                            state.by_owner.insert(owner.clone(), keys);
                        }
                    }
                    slot.insert(request);
                }
            }
            state.counts.registered += 1;
            state.timers.push(TimerEntry { deadline_ms, key });
            if state.timers.len() > state.map.len().saturating_mul(2).saturating_add(self.compaction_floor) {
                state.compact_timers();
            }
            let wake = deadline_ms < state.next_wake_ms;
            if wake {
                // The driver will re-plan when woken; until then, later
                // deadlines need no second wake-up.
                state.next_wake_ms = deadline_ms;
            }
            wake
        };
        if wake && let Some(waker) = self.waker.get() {
            waker();
        }
        Ok(())
    }

    /// Takes back a registration that never took effect (the request could
    /// not be sent after all): the entry is removed and uncounted, as if it
    /// had never been registered. `None` when `id` is not pending.
    pub fn withdraw(&self, id: &CorrelationId) -> Option<PendingRequest<O>> {
        let mut guard = self.state.write();
        let state = &mut *guard;
        let taken = state.take(SlotKey(id.key().0));
        if taken.is_some() {
            state.counts.registered -= 1;
        }
        taken
    }

    /// The earliest deadline of a pending request, in ms on the tracker's
    /// clock; `None` when nothing is pending. Stale heap entries of ended
    /// requests met on the way are discarded (so this takes the write lock).
    #[must_use]
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.state.write().earliest_live_deadline()
    }

    /// The timer driver's step before sleeping: finds the earliest pending
    /// deadline (as [`PendingRequests::next_deadline_ms`]) and, in the
    /// same critical section, publishes it as the planned wake-up (`u64::MAX`
    /// when `None`). From then on `register` calls the waker for any earlier
    /// deadline, so the driver may sleep until the returned time (or forever
    /// on `None`) until woken. Doing both under one lock is what makes a
    /// wake-up impossible to lose.
    #[must_use]
    pub fn plan_next_wake(&self) -> Option<u64> {
        let mut state = self.state.write();
        let next = state.earliest_live_deadline();
        state.next_wake_ms = next.unwrap_or(u64::MAX);
        next
    }

    /// Publishes the driver's planned wake-up, in ms on the tracker's clock
    /// (`u64::MAX` for none): `register` calls the waker for deadlines
    /// earlier than this. A driver that uses this instead of
    /// [`PendingRequests::plan_next_wake`] must call
    /// [`PendingRequests::next_deadline_ms`] *after* publishing and
    /// not sleep past its result, or it may miss a deadline registered in
    /// between.
    pub fn set_next_wake_ms(&self, next_wake_ms: u64) {
        self.state.write().next_wake_ms = next_wake_ms;
    }

    /// Removes every request pending from `owner` (its instance crashed or
    /// stopped, and the new instance does not know them), each counted as
    /// dropped; late responses to them count as orphaned. Returns them in no
    /// particular order.
    ///
    /// Touches only `owner`'s requests, through the per-owner index:
    /// `O(requests of owner)` under the write lock, whatever others have
    /// pending.
    pub fn drain_owner(&self, owner: &ComponentId) -> Vec<(CorrelationId, PendingRequest<O>)> {
        let drained: Vec<(SlotKey, PendingRequest<O>)> = {
            let mut guard = self.state.write();
            let state = &mut *guard;
            let keys = state.by_owner.remove(owner).into_iter().flatten();
            let mut visited = 0;
            let drained: Vec<_> = keys
                .filter_map(|key| {
                    visited += 1;
                    state.map.remove(&key).map(|request| (key, request))
                })
                .collect();
            state.drain_visited = visited;
            state.counts.dropped += drained.len() as u64;
            drained
        };
        drained.into_iter().map(|(key, request)| (CorrelationId::from_key(CorrelationKey(key.0)), request)).collect()
    }

    /// How many requests are pending (the `pending` of
    /// [`CorrelationTracker::stats`]).
    #[must_use]
    pub fn pending_len(&self) -> usize {
        self.state.read().map.len()
    }

    /// The clock deadlines are measured on.
    #[must_use]
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Sets the number of stale heap entries tolerated beyond `2 * pending`
    /// before `register` compacts, so tests exercise compaction with few
    /// requests.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn set_compaction_floor(&mut self, floor: usize) {
        self.compaction_floor = floor;
    }

    /// Map entries the last [`PendingRequests::drain_owner`] looked at.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn drain_visited(&self) -> usize {
        self.state.read().drain_visited
    }

    /// Length of the timer heap, stale entries included.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn timer_len(&self) -> usize {
        self.state.read().timers.len()
    }

    /// Takes the entry of `id`, counting the outcome with `count` when found
    /// and as orphaned (when `orphan` is set) when not.
    fn take_counted(
        &self,
        id: &CorrelationId,
        count: fn(&mut Counts) -> &mut u64,
        orphan: bool,
    ) -> Option<PendingRequest<O>> {
        let mut guard = self.state.write();
        let state = &mut *guard;
        let taken = state.take(SlotKey(id.key().0));
        if taken.is_some() {
            *count(&mut state.counts) += 1;
        } else if orphan {
            state.counts.orphaned += 1;
        }
        taken
    }
}

impl<O: RequestOwner, C: Clock> CorrelationTracker for PendingRequests<O, C> {
    type Owner = O;

    /// Generates a UUID v4 id and registers the request under it, as
    /// [`PendingRequests::register_with_id`] (deadline
    /// `now + timeout_ms`, in ms on the tracker's clock).
    fn register(&self, owner: O, target: ComponentId, timeout_ms: u64) -> CorrelationId {
        let mut request = PendingRequest { owner, target, deadline_ms: 0 };
        loop {
            let id = CorrelationId::generate();
            match self.register_with_id(&id, request.owner, request.target, timeout_ms) {
                Ok(()) => return id,
                // A UUID v4 collision with a pending id (p ~ 2^-122): draw again.
                Err(back) => request = back,
            }
        }
    }

    fn complete(&self, id: &CorrelationId) -> Option<PendingRequest<O>> {
        self.take_counted(id, |counts| &mut counts.completed, true)
    }

    fn fail(&self, id: &CorrelationId) -> Option<PendingRequest<O>> {
        self.take_counted(id, |counts| &mut counts.failed, true)
    }

    fn cancel(&self, id: &CorrelationId, caller: &ComponentId) -> Result<PendingRequest<O>, MessagingError> {
        let outcome = {
            let mut guard = self.state.write();
            let state = &mut *guard;
            let key = SlotKey(id.key().0);
            match state.map.get(&key) {
                None => CancelOutcome::NotFound,
                Some(request) if request.owner.owner_id() != caller => CancelOutcome::NotOwner,
                Some(_) => match state.take(key) {
                    Some(request) => {
                        state.counts.cancelled += 1;
                        CancelOutcome::Cancelled(request)
                    }
                    None => CancelOutcome::NotFound,
                },
            }
        };
        match outcome {
            CancelOutcome::Cancelled(request) => Ok(request),
            CancelOutcome::NotFound => Err(MessagingError::RequestNotFound(id.to_string())),
            CancelOutcome::NotOwner => Err(MessagingError::NotOwner(id.to_string())),
        }
    }

    fn is_pending(&self, id: &CorrelationId) -> bool {
        self.state.read().map.contains_key(&SlotKey(id.key().0))
    }

    fn remove(&self, id: &CorrelationId) -> Option<PendingRequest<O>> {
        self.take_counted(id, |counts| &mut counts.dropped, false)
    }

    /// Takes every request whose deadline is at or before `clock.now_ms()`,
    /// counted as timed out, earliest deadline first. After it returns, no
    /// request registered before the call with a deadline at or before that
    /// time is pending.
    fn cleanup_expired(&self) -> Vec<(CorrelationId, PendingRequest<O>)> {
        let now_ms = self.clock.now_ms();
        let mut expired = Vec::new();
        {
            let mut guard = self.state.write();
            let state = &mut *guard;
            while let Some(head) = state.timers.peek() {
                if head.deadline_ms > now_ms {
                    break;
                }
                let key = head.key;
                state.timers.pop();
                let slot = SlotKey(key.0);
                if state.map.get(&slot).is_some_and(|request| request.deadline_ms <= now_ms)
                    && let Some(request) = state.take(slot)
                {
                    expired.push((key, request));
                }
            }
            state.counts.timed_out += expired.len() as u64;
        }
        expired.into_iter().map(|(key, request)| (CorrelationId::from_key(key), request)).collect()
    }

    fn stats(&self) -> TrackerStats {
        let state = self.state.read();
        let counts = state.counts;
        // Field by field: `TrackerStats` is `#[non_exhaustive]`.
        let mut stats = TrackerStats::default();
        stats.registered = counts.registered;
        stats.completed = counts.completed;
        stats.failed = counts.failed;
        stats.timed_out = counts.timed_out;
        stats.cancelled = counts.cancelled;
        stats.dropped = counts.dropped;
        stats.orphaned = counts.orphaned;
        stats.pending = state.map.len() as u64;
        stats
    }
}

impl<O: RequestOwner, C: Clock> fmt::Debug for PendingRequests<O, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingRequests")
            .field("stats", &self.stats())
            .field("now_ms", &self.clock.now_ms())
            .field("has_waker", &self.waker.get().is_some())
            .finish_non_exhaustive()
    }
}

/// A deadline in the timer heap. Ordered by deadline only, reversed, so
/// `BinaryHeap` (a max-heap) pops the earliest first.
#[derive(Clone, Copy)]
struct TimerEntry {
    deadline_ms: u64,
    key: CorrelationKey,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline_ms == other.deadline_ms
    }
}

impl Eq for TimerEntry {}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.deadline_ms.cmp(&self.deadline_ms)
    }
}

/// The map key: the 16 bytes of a [`CorrelationKey`] (alignment 1, so a
/// slot is 16 + 24 bytes with no padding), hashed as two `u64` words.
#[derive(Clone, Copy, PartialEq, Eq)]
struct SlotKey([u8; 16]);

impl Hash for SlotKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let words = u128::from_le_bytes(self.0);
        state.write_u64(words as u64);
        state.write_u64((words >> 64) as u64);
    }
}

/// Hashing for [`SlotKey`]: keys are UUID v4 (122 random bits), so a
/// keyed multiply-fold per word (the folded multiply of foldhash and
/// aHash) mixes enough, at a fraction of SipHash's cost. The per-tracker
/// seed comes from std's [`RandomState`].
#[derive(Clone, Copy)]
struct KeyHashBuilder {
    seed: u64,
}

impl KeyHashBuilder {
    fn new() -> Self {
        Self { seed: RandomState::new().hash_one(0x6a09_e667_f3bc_c908_u64) }
    }
}

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { state: self.seed }
    }
}

struct KeyHasher {
    state: u64,
}

/// Odd constant from the fractional digits of pi (as in foldhash).
const MULTIPLIER: u64 = 0x243f_6a88_85a3_08d3;

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        let product = u128::from(self.state ^ word) * u128::from(MULTIPLIER);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::ManualClock;

    fn ids() -> (ComponentId, ComponentId) {
        (ComponentId::parse("a").expect("valid id"), ComponentId::parse("b").expect("valid id"))
    }

    #[test]
    fn slot_and_timer_entry_sizes_stay_compact() {
        assert_eq!(size_of::<(SlotKey, PendingRequest<ComponentId>)>(), 40);
        assert_eq!(size_of::<crate::ReplyTo>(), 16);
        assert_eq!(size_of::<(SlotKey, PendingRequest<crate::Requester>)>(), 88, "the router's owner: 56 bytes");
        assert_eq!(size_of::<TimerEntry>(), 24);
    }

    #[test]
    fn cancel_checks_owner_and_presence() {
        let (a, b) = ids();
        let tracker = PendingRequests::<ComponentId, _>::new(ManualClock::new(0));
        let id = tracker.register(a.clone(), b.clone(), 10);
        assert!(matches!(tracker.cancel(&id, &b), Err(MessagingError::NotOwner(text)) if text == id.as_str()));
        assert!(tracker.is_pending(&id));
        assert_eq!(tracker.cancel(&id, &a).map(|request| request.target).ok(), Some(b));
        assert!(matches!(tracker.cancel(&id, &a), Err(MessagingError::RequestNotFound(_))));
        let stats = tracker.stats();
        assert_eq!((stats.cancelled, stats.orphaned, stats.pending), (1, 0, 0));
        assert!(stats.balanced());
    }

    #[test]
    fn drain_owner_drops_only_that_owners_requests() {
        let (a, b) = ids();
        let tracker = PendingRequests::<ComponentId, _>::new(ManualClock::new(0));
        let mine: Vec<_> = (0..3).map(|_| tracker.register(a.clone(), b.clone(), 10)).collect();
        let theirs = tracker.register(b.clone(), a.clone(), 10);
        let mut drained: Vec<_> = tracker.drain_owner(&a).into_iter().map(|(id, _)| id.key()).collect();
        drained.sort_unstable();
        let mut expected: Vec<_> = mine.iter().map(CorrelationId::key).collect();
        expected.sort_unstable();
        assert_eq!(drained, expected);
        assert!(tracker.is_pending(&theirs));
        assert!(tracker.complete(&mine[0]).is_none());
        let stats = tracker.stats();
        assert_eq!((stats.dropped, stats.orphaned, stats.pending), (3, 1, 1));
        assert!(stats.balanced());
    }

    #[test]
    fn drain_owner_touches_only_that_owners_requests_however_many_others_have_pending() {
        let (a, b) = ids();
        let tracker = PendingRequests::<ComponentId, _>::new(ManualClock::new(0));
        for _ in 0..10_000 {
            tracker.register(a.clone(), b.clone(), 60_000);
        }
        let mine = tracker.register(b.clone(), a.clone(), 60_000);
        let done = tracker.register(b.clone(), a.clone(), 60_000);
        assert!(tracker.complete(&done).is_some(), "ended requests leave the owner's index");
        let drained = tracker.drain_owner(&b);
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].0, mine);
        assert_eq!(tracker.drain_visited(), 1, "one entry looked at, not 10,002");
        assert_eq!(tracker.stats().pending, 10_000);
    }

    #[test]
    fn register_with_id_refuses_a_pending_id() {
        let (a, b) = ids();
        let tracker = PendingRequests::<ComponentId, _>::new(ManualClock::new(3));
        let id = CorrelationId::generate();
        assert!(tracker.register_with_id(&id, a.clone(), b.clone(), 7).is_ok());
        let back = tracker.register_with_id(&id, b.clone(), a.clone(), 1).expect_err("duplicate refused");
        assert_eq!((back.owner, back.target, back.deadline_ms), (b, a, 4));
        assert_eq!(tracker.stats().registered, 1);
    }

    #[test]
    fn a_reused_id_expires_on_its_own_deadline_only() {
        let (a, b) = ids();
        let clock = ManualClock::new(0);
        let tracker = PendingRequests::<ComponentId, _>::new(clock.clone());
        let id = CorrelationId::generate();
        assert!(tracker.register_with_id(&id, a.clone(), b.clone(), 5).is_ok());
        assert!(tracker.complete(&id).is_some());
        assert!(tracker.register_with_id(&id, a, b, 50).is_ok());
        clock.set(5);
        assert!(tracker.cleanup_expired().is_empty());
        assert_eq!(tracker.next_deadline_ms(), Some(50));
        clock.set(50);
        assert_eq!(tracker.cleanup_expired().len(), 1);
    }

    #[test]
    fn stale_timers_are_compacted_and_pruned() {
        let (a, b) = ids();
        let mut tracker = PendingRequests::<ComponentId, _>::new(ManualClock::new(0));
        tracker.set_compaction_floor(8);
        let keep = tracker.register(a.clone(), b.clone(), 1_000);
        for _ in 0..100 {
            let id = tracker.register(a.clone(), b.clone(), 10);
            assert!(tracker.complete(&id).is_some());
        }
        assert!(tracker.timer_len() <= 2 + 8 + 1, "heap holds {}", tracker.timer_len());
        assert_eq!(tracker.next_deadline_ms(), Some(1_000));
        assert_eq!(tracker.timer_len(), 1);
        assert!(tracker.is_pending(&keep));
    }

    #[test]
    fn waker_fires_only_for_earlier_deadlines_than_planned() {
        let (a, b) = ids();
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&wakes);
        let tracker = PendingRequests::<ComponentId, _>::with_waker(
            ManualClock::new(0),
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(tracker.plan_next_wake(), None);
        tracker.register(a.clone(), b.clone(), 100);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        tracker.register(a.clone(), b.clone(), 200);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert_eq!(tracker.plan_next_wake(), Some(100));
        tracker.register(a.clone(), b.clone(), 50);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        tracker.set_next_wake_ms(10);
        tracker.register(a, b, 20);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert!(tracker.set_waker(Arc::new(|| {})).is_err());
    }

    #[test]
    fn threads_racing_every_outcome_end_each_request_once() {
        let (a, b) = ids();
        let clock = ManualClock::new(0);
        let tracker = PendingRequests::<ComponentId, _>::new(clock.clone());
        let requests: Vec<_> = (0..2_000).map(|i| tracker.register(a.clone(), b.clone(), i % 7)).collect();
        let outcomes = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for id in &requests {
                    outcomes.fetch_add(usize::from(tracker.complete(id).is_some()), Ordering::SeqCst);
                }
            });
            scope.spawn(|| {
                for id in requests.iter().rev() {
                    outcomes.fetch_add(usize::from(tracker.cancel(id, &a).is_ok()), Ordering::SeqCst);
                }
            });
            scope.spawn(|| {
                for id in requests.iter().step_by(3) {
                    outcomes.fetch_add(usize::from(tracker.fail(id).is_some()), Ordering::SeqCst);
                }
            });
            scope.spawn(|| {
                for _ in 0..7 {
                    clock.advance(1);
                    outcomes.fetch_add(tracker.cleanup_expired().len(), Ordering::SeqCst);
                }
            });
        });
        let stats = tracker.stats();
        assert_eq!(outcomes.load(Ordering::SeqCst), 2_000);
        assert_eq!(stats.pending, 0);
        assert!(stats.balanced());
        assert_eq!(stats.completed + stats.cancelled + stats.failed + stats.timed_out, 2_000);
    }
}
