//! The router: the one chokepoint every send passes (SPEC section 3), and
//! the way back for responses, failures, cancellations and timeouts.
//!
//! The policy step runs in SPEC order and takes no write lock: target id
//! syntax, payload (multicodec prefix, size; for requests also the timeout),
//! capability, rate limit, target exists, target accepts the codec, (for
//! requests) the pending-request quota, mailbox room. The first failure is
//! returned, counted and audited, and nothing is queued.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;
use tokio::sync::{Notify, oneshot};
use wasm_core::{
    Codec, ComponentError, ComponentId, CorrelationId, CorrelationTracker, MailboxSection, MessageRouter,
    MessagingError, Origin, PendingRequest, RemoteEnvelope, RemoteInbound, RemoteKind, RemoteOutcome, RemoteTransport,
    RemoteUndelivered, RequestError, RequestsSection, SendError, TraceContext, TrackerStats, decode_prefix,
};

use crate::accounting::{Accounting, Enqueued, Settled};
use crate::audit::{AuditCounts, AuditEvent, AuditRecord, AuditSink};
use crate::clock::MonotonicClock;
use crate::delivery::Inbox;
use crate::envelope::Envelope;
use crate::error::{MailboxError, RegistryError};
use crate::mailbox::mailbox;
use crate::policy::Policy;
use crate::registry::{ActorRef, ActorRegistry, Actors, DeadLetterCause};
use crate::reply::{Outcome, RemoteRequester, ReplyTo, Requester};
use crate::sync::unmodelled::{Arc, OnceLock, Weak};
use crate::sync::{AtomicU64, Mutex, Ordering};
use crate::timer::{TimerDriver, spawn_timer_driver};
use crate::tracker::PendingRequests;

/// How many dead letters the router keeps for inspection (the oldest go first;
/// all are counted and audited).
pub const DEAD_LETTERS_KEPT: usize = 1024;

/// The tracker type the router uses: each entry owns the way back to its
/// requester and the sending span's trace context ([`Requester`]); time is
/// monotonic.
pub type RequestTracker = PendingRequests<Requester, MonotonicClock>;

/// How often [`Router::host_send_within`] retries a send to another node
/// whose credit is used up: the credit comes back with the receiving
/// host's next acknowledgement or credit update (every 10 ms at most).
pub const REMOTE_CREDIT_POLL: Duration = Duration::from_millis(1);

/// Called with every dead letter as it is recorded (see
/// [`Router::on_dead_letter`]).
pub type DeadLetterObserver = Box<dyn Fn(&DeadLetter) + Send + Sync>;

/// Whom a send is for: the text a guest passed, checked against the id
/// syntax when it names no registered component (a registered id is valid
/// already), or a [`ComponentId`], validated once when it was made (a
/// handle's sends skip the syntax check; the target is still looked up, so
/// a stopped component is still `target-not-found`).
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Unchecked text (`send-message`'s `target`).
    Text(&'a str),
    /// A validated id.
    Id(&'a ComponentId),
}

impl Target<'_> {
    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Target::Text(text) => text,
            Target::Id(id) => id.as_str(),
        }
    }
}

impl<'a> From<&'a str> for Target<'a> {
    fn from(text: &'a str) -> Self {
        Target::Text(text)
    }
}

impl<'a> From<&'a ComponentId> for Target<'a> {
    fn from(id: &'a ComponentId) -> Self {
        Target::Id(id)
    }
}

/// A message that could not be handled, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The component it was for.
    pub target: ComponentId,
    /// Who sent it.
    pub sender: ComponentId,
    /// `message`, `request` or `callback`.
    pub kind: &'static str,
    /// The correlation id, for requests and callbacks.
    pub correlation_id: Option<CorrelationId>,
    /// Why it was not handled.
    pub reason: String,
    /// The reason's class: the label of the dead-letter counts.
    pub cause: DeadLetterCause,
}

/// The router's counters. At quiescence `enqueued == settled`, and
/// `messages_accepted + requests_accepted + callbacks_queued ==
/// handled + callbacks_handled + dead_lettered`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterStats {
    /// Fire-and-forget messages accepted into a mailbox.
    pub messages_accepted: u64,
    /// Requests accepted into a mailbox.
    pub requests_accepted: u64,
    /// Callbacks queued to a requester.
    pub callbacks_queued: u64,
    /// Callbacks not queued because the requester was gone.
    pub callbacks_dropped: u64,
    /// Messages and requests whose handler returned.
    pub handled: u64,
    /// Callbacks handled.
    pub callbacks_handled: u64,
    /// Envelopes dead-lettered.
    pub dead_lettered: u64,
    /// Responses refused (bad prefix, over the cap, codec not accepted, a
    /// handler error's message over the cap) and delivered as `target-failed`.
    pub responses_refused: u64,
    /// Requests whose target's `handle-message` returned an error that
    /// reached the requester as `handler-error`: the part of
    /// `requests.completed` that is not a response.
    pub request_handler_errors: u64,
    /// Sends refused, by error variant, in WIT order: indexed by
    /// [`MessagingError::kind_index`], named by [`MessagingError::KINDS`].
    pub refused: [u64; 9],
    /// The part of `refused` whose sender was the host (the embedding
    /// application), in the same order. Each component's part is in its
    /// [`ActorStats::refused`](crate::ActorStats::refused).
    pub refused_host: [u64; 9],
    /// Messages handed to the transport for components on other nodes.
    pub remote_messages_sent: u64,
    /// Requests handed to the transport (their outcomes are in `requests`,
    /// as this host owns them).
    pub remote_requests_sent: u64,
    /// Outcomes of other hosts' requests sent back to them.
    pub remote_outcomes_sent: u64,
    /// Messages sent to other nodes that their transport reported
    /// undelivered, dead-lettered here with cause `delivery-failed` (not
    /// part of `dead_lettered`, which counts this host's mailboxes).
    pub remote_dead_lettered: u64,
    /// Envelopes put in mailboxes.
    pub enqueued: u64,
    /// Envelopes that ended (handled or dead-lettered).
    pub settled: u64,
    /// The correlation tracker's counters.
    pub requests: TrackerStats,
}

impl RouterStats {
    /// Sends refused, all variants.
    #[must_use]
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// True when every accepted envelope ended exactly once and every
    /// registered request is accounted for (SPEC section 3, accounting).
    #[must_use]
    pub fn balanced(&self) -> bool {
        self.enqueued == self.settled
            && self.messages_accepted + self.requests_accepted + self.callbacks_queued
                == self.handled + self.callbacks_handled + self.dead_lettered
            && self.requests.balanced()
    }
}

/// Counters beside the envelope accounting.
#[derive(Default)]
struct Counters {
    callbacks_dropped: AtomicU64,
    responses_refused: AtomicU64,
    request_handler_errors: AtomicU64,
    refused: [AtomicU64; 9],
    /// The part of `refused` whose sender was the host (the components'
    /// parts are in their [`ActorStats`]).
    host_refused: [AtomicU64; 9],
    remote_messages_sent: AtomicU64,
    remote_requests_sent: AtomicU64,
    remote_outcomes_sent: AtomicU64,
    remote_dead_lettered: AtomicU64,
}

/// The host's router: registry, tracker, policy step, audit. Implements
/// [`MessageRouter`] for host functions; the composition root registers
/// components (each gets an [`Inbox`], whose [`crate::Delivery`] guards
/// settle what the actor takes) and sends for the embedding application.
pub struct Router {
    registry: ActorRegistry,
    tracker: Arc<RequestTracker>,
    /// The rules of sender `host` (the embedding application).
    host_policy: Policy,
    audit: Arc<dyn AuditSink>,
    accounting: Accounting,
    counters: Counters,
    dead_letters: Mutex<VecDeque<DeadLetter>>,
    dead_letter_observer: OnceLock<DeadLetterObserver>,
    /// The way to components on other nodes (SPEC section 5), when the
    /// host joined a cluster.
    remote: OnceLock<Arc<dyn RemoteTransport>>,
    quiet: Notify,
    timer: Mutex<Option<TimerDriver>>,
    /// Aggregation of repeated refusals, per sender and kind (see `refuse`).
    refusal_windows: Mutex<FxHashMap<(ComponentId, usize), RefusalWindow>>,
}

impl Router {
    /// Starts a router (and its one timer driver task) writing audit records
    /// to `audit`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(audit: Arc<dyn AuditSink>) -> Arc<Self> {
        let tracker = Arc::new(RequestTracker::new(MonotonicClock::new()));
        Arc::new_cyclic(|weak: &Weak<Router>| {
            let weak = weak.clone();
            let driver = spawn_timer_driver(Arc::clone(&tracker), move |id, pending| {
                if let Some(router) = weak.upgrade() {
                    // The timeout is the host's outcome: its parent is the
                    // span that sent the request, so it stays in that trace.
                    let trace = pending.owner.trace;
                    router.deliver(id, pending, Err(RequestError::Timeout), trace);
                }
            });
            Router {
                registry: ActorRegistry::new(),
                tracker,
                host_policy: Policy::host(),
                audit,
                accounting: Accounting::default(),
                counters: Counters::default(),
                dead_letters: Mutex::new(VecDeque::new()),
                dead_letter_observer: OnceLock::new(),
                remote: OnceLock::new(),
                quiet: Notify::new(),
                timer: Mutex::new(Some(driver)),
                refusal_windows: Mutex::new(FxHashMap::default()),
            }
        })
    }

    /// Registers a component with its rules and a mailbox with the bounds
    /// of `bounds` (envelopes and payload bytes); returns its handle and the
    /// [`Inbox`] its actor takes envelopes from.
    ///
    /// # Errors
    /// [`RegistryError`] for a taken or reserved id.
    pub fn register(
        self: &Arc<Self>,
        id: ComponentId,
        policy: Policy,
        bounds: &MailboxSection,
    ) -> Result<(ActorRef, Inbox), RegistryError> {
        let (tx, rx) = mailbox(id.clone(), bounds.capacity, bounds.max_bytes);
        let actor = ActorRef::new(id, tx, policy);
        self.registry.register(actor.clone())?;
        Ok((actor.clone(), Inbox::new(rx, Arc::clone(self), actor)))
    }

    /// Sets the one observer that sees every dead letter as it is recorded
    /// (the composition root turns them into events). Returns false, and
    /// keeps the first, when one is already set.
    pub fn on_dead_letter(&self, observer: DeadLetterObserver) -> bool {
        self.dead_letter_observer.set(observer).is_ok()
    }

    /// Joins the router to other nodes: ids `name@node` of another node are
    /// sent through `transport`, and `name@<its node>` is local. Returns
    /// false, and keeps the first, when one is already set. The transport
    /// hands what other hosts send to this router as its
    /// [`RemoteInbound`].
    pub fn set_remote(&self, transport: Arc<dyn RemoteTransport>) -> bool {
        self.remote.set(transport).is_ok()
    }

    /// The transport to other nodes, when the host joined a cluster.
    #[must_use]
    pub fn remote(&self) -> Option<&Arc<dyn RemoteTransport>> {
        self.remote.get()
    }

    /// The node name of this host, when it joined a cluster.
    #[must_use]
    pub fn node(&self) -> Option<&str> {
        self.remote.get().map(|t| t.node())
    }

    /// Removes a component: later sends to it get `target-not-found`.
    pub fn unregister(&self, id: &ComponentId) -> Option<ActorRef> {
        self.registry.unregister(id.as_str())
    }

    /// The registered component `id`.
    #[must_use]
    pub fn lookup(&self, id: &str) -> Option<ActorRef> {
        self.registry.get(id)
    }

    /// Ids of all registered components, sorted.
    #[must_use]
    pub fn component_ids(&self) -> Vec<ComponentId> {
        self.registry.ids()
    }

    /// A handler returned for request `id`: `Ok(bytes)` is the response,
    /// `Err(e)` becomes `handler-error(e)` (its message within the
    /// responder's payload cap, or `target-failed`). The response must carry a valid
    /// multicodec prefix within `responder`'s payload cap and in a codec the
    /// requester accepts, or the requester gets `target-failed` with the
    /// reason. A request that already ended (timed out, cancelled) counts
    /// the response as orphaned.
    pub(crate) fn respond(
        &self,
        responder: &ActorRef,
        id: &CorrelationId,
        result: Result<Vec<u8>, ComponentError>,
        trace: TraceContext,
    ) {
        let Some(pending) = self.tracker.complete(id) else {
            return;
        };
        let outcome = match result {
            Err(error) => match check_handler_error(responder, &error) {
                Ok(()) => {
                    self.counters.request_handler_errors.fetch_add(1, Ordering::Relaxed);
                    Err(RequestError::HandlerError(error))
                }
                Err(reason) => {
                    self.counters.responses_refused.fetch_add(1, Ordering::Relaxed);
                    Err(RequestError::TargetFailed(reason))
                }
            },
            Ok(bytes) => match self.check_response(responder, &pending.owner.reply, &bytes) {
                Ok(()) => Ok(bytes),
                Err(reason) => {
                    self.counters.responses_refused.fetch_add(1, Ordering::Relaxed);
                    Err(RequestError::TargetFailed(reason))
                }
            },
        };
        self.deliver(*id, pending, outcome, trace);
    }

    fn check_response(&self, responder: &ActorRef, requester: &ReplyTo, bytes: &[u8]) -> Result<(), String> {
        let max = responder.policy().max_message_bytes();
        if bytes.len() > max {
            return Err(format!("response of {} bytes exceeds the cap of {max} bytes", bytes.len()));
        }
        self.check_response_codec(requester, bytes)
    }

    /// Request `id` failed at its target (`target-failed`, `delivery-failed`):
    /// the requester's callback gets `error`. A request that already ended
    /// counts as orphaned.
    pub(crate) fn fail(&self, id: &CorrelationId, error: RequestError, trace: TraceContext) {
        if let Some(pending) = self.tracker.fail(id) {
            self.deliver(*id, pending, Err(error), trace);
        }
    }

    /// The router's clock in ns since it started (the tracker's TSC clock,
    /// about 10 ns a read): what [`Requester::registered_ns`] holds.
    #[must_use]
    pub fn now_ns(&self) -> u64 {
        self.tracker.clock().now_ns()
    }

    /// Time since `since_ns` (from [`Router::now_ns`]); for example a
    /// request's round trip, read from its [`Requester::registered_ns`] as
    /// its callback ends. Zero for a time ahead of the clock.
    #[must_use]
    pub fn elapsed_since(&self, since_ns: u64) -> Duration {
        Duration::from_nanos(self.now_ns().saturating_sub(since_ns))
    }

    /// Drops every request pending from `owner` (its instance crashed or it
    /// stopped, or, for `host`, the system shut down; the new instance does
    /// not know them): each is counted as dropped and gets no callback (a
    /// host request's future sees the system stopped); late responses count
    /// as orphaned. Returns how many were dropped. Touches only the owner's
    /// entries (the tracker's per-owner index); dropping them gives their
    /// pending-request slots back.
    pub fn drop_requests_of(&self, owner: &ComponentId) -> usize {
        self.tracker.drain_owner(owner).len()
    }

    /// Hands `outcome` to the requester the entry names: a host request's
    /// future at once, a component through its callback queue.
    #[expect(clippy::result_large_err, reason = "a full or closed mailbox hands the envelope back (see mailbox.rs)")]
    fn deliver(&self, id: CorrelationId, pending: PendingRequest<Requester>, outcome: Outcome, trace: TraceContext) {
        let registered_ns = pending.owner.registered_ns;
        let slot = match pending.owner.reply {
            ReplyTo::Host(reply) => {
                // The future may be gone (dropped after the outcome was
                // decided); the outcome is counted by the tracker either way.
                let _ = reply.send(outcome);
                return;
            }
            ReplyTo::Actor(slot) => slot,
            ReplyTo::Remote(remote) => {
                let RemoteRequester { requester, id } = *remote;
                // The requester's host owns the timer; this entry's own
                // timeout only ends it here.
                if outcome != Err(RequestError::Timeout)
                    && let Some(transport) = self.remote.get()
                {
                    transport.respond(RemoteOutcome { requester, id, outcome, trace });
                    self.counters.remote_outcomes_sent.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        };
        // The slot moves into the callback: the quota bounds the callbacks
        // queued as well as the requests in flight.
        let owner = slot.owner().clone();
        let mailbox = owner.mailbox();
        let sent = self.accounting.enqueue(Enqueued::Callback, || {
            // A response, or a handler's error text, counts against the
            // requester's byte bound; one that does not fit becomes a short
            // `target-failed`, so the requester still gets its one callback.
            match outcome {
                Ok(_) | Err(RequestError::HandlerError(_)) => {
                    match mailbox.try_send_callback(Envelope::Callback { id, outcome, trace, slot, registered_ns }) {
                        Err(MailboxError::Full(refused)) => {
                            self.counters.responses_refused.fetch_add(1, Ordering::Relaxed);
                            let reason = format!(
                                "a response of {} bytes does not fit {}'s mailbox ({} of {} bytes queued)",
                                refused.payload_bytes(),
                                owner.id(),
                                mailbox.bytes(),
                                mailbox.max_bytes()
                            );
                            let Envelope::Callback { slot, .. } = refused else {
                                unreachable!("try_send_callback hands back the callback it was given")
                            };
                            let outcome = Err(RequestError::TargetFailed(reason));
                            mailbox.send_callback(Envelope::Callback { id, outcome, trace, slot, registered_ns })
                        }
                        other => other,
                    }
                }
                Err(_) => mailbox.send_callback(Envelope::Callback { id, outcome, trace, slot, registered_ns }),
            }
        });
        // A closed mailbox hands the envelope back; dropping it gives the
        // slot back.
        if sent.is_err() {
            self.counters.callbacks_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one envelope as settled (only [`crate::Delivery`] calls it).
    pub(crate) fn settle(&self, how: Settled) {
        if self.accounting.settle(how) {
            self.quiet.notify_waiters();
        }
    }

    /// Records a dead letter (counted by the [`crate::Delivery`] that calls
    /// it), keeps it for inspection, audits it and shows it to the observer.
    pub(crate) fn dead_letter(&self, letter: DeadLetter) {
        self.audit.record(AuditRecord {
            sender: Some(letter.sender.clone()),
            target: Some(letter.target.to_string()),
            correlation_id: letter.correlation_id,
            ..AuditRecord::now(AuditEvent::DeadLetter, "dead-lettered", format!("{}: {}", letter.kind, letter.reason))
        });
        tracing::warn!(target = %letter.target, sender = %letter.sender, kind = letter.kind, reason = %letter.reason, "dead letter");
        if let Some(observer) = self.dead_letter_observer.get() {
            observer(&letter);
        }
        let mut kept = self.dead_letters.lock();
        if kept.len() == DEAD_LETTERS_KEPT {
            kept.pop_front();
        }
        kept.push_back(letter);
    }

    /// The most recent dead letters, oldest first (at most [`DEAD_LETTERS_KEPT`]).
    #[must_use]
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters.lock().iter().cloned().collect()
    }

    /// Writes a lifecycle record (start, crash, restart, stop) about
    /// `component`: the component is the record's `target`, the supervising
    /// host its `sender`, and the outcome `started`, `crashed`, `restarted`
    /// or `stopped`.
    pub fn audit_lifecycle(&self, event: AuditEvent, component: &ComponentId, reason: impl Into<String>) {
        let outcome = match event {
            AuditEvent::Start => "started",
            AuditEvent::Crash => "crashed",
            AuditEvent::Restart => "restarted",
            AuditEvent::Stop => "stopped",
            AuditEvent::Refused => "refused",
            AuditEvent::DeadLetter => "dead-lettered",
        };
        self.audit.record(AuditRecord {
            sender: Some(ComponentId::host()),
            target: Some(component.to_string()),
            ..AuditRecord::now(event, outcome, reason)
        });
    }

    /// What the audit sink wrote and dropped, if it counts
    /// ([`AuditSink::counts`]).
    #[must_use]
    pub fn audit_counts(&self) -> Option<AuditCounts> {
        self.audit.counts()
    }

    /// A snapshot of every counter.
    #[must_use]
    pub fn stats(&self) -> RouterStats {
        let (a, c) = (&self.accounting, &self.counters);
        let load = |a: &AtomicU64| a.load(Ordering::Acquire);
        // `settled` first: it never exceeds `enqueued` at any instant.
        let settled = a.settled();
        RouterStats {
            messages_accepted: a.total(|s| &s.messages_accepted),
            requests_accepted: a.total(|s| &s.requests_accepted),
            callbacks_queued: a.total(|s| &s.callbacks_queued),
            callbacks_dropped: load(&c.callbacks_dropped),
            handled: a.total(|s| &s.handled),
            callbacks_handled: a.total(|s| &s.callbacks_handled),
            dead_lettered: a.total(|s| &s.dead_lettered),
            responses_refused: load(&c.responses_refused),
            request_handler_errors: load(&c.request_handler_errors),
            refused: std::array::from_fn(|i| load(&c.refused[i])),
            refused_host: std::array::from_fn(|i| load(&c.host_refused[i])),
            remote_messages_sent: load(&c.remote_messages_sent),
            remote_requests_sent: load(&c.remote_requests_sent),
            remote_outcomes_sent: load(&c.remote_outcomes_sent),
            remote_dead_lettered: load(&c.remote_dead_lettered),
            enqueued: a.enqueued(),
            settled,
            requests: self.tracker.stats(),
        }
    }

    /// True when no envelope is queued or being handled and no request is pending.
    #[must_use]
    pub fn is_quiescent(&self) -> bool {
        self.accounting.caught_up() && self.tracker.pending_len() == 0
    }

    /// Waits until [`Router::is_quiescent`] or `bound` passes; returns
    /// whether it is quiescent.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only observes.
    pub async fn wait_quiescent(&self, bound: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + bound;
        // Settles check for quiescence (and wake this) only while someone
        // waits; this looks itself after registering, and every 5 ms.
        let _waiting = self.accounting.waiting();
        loop {
            let notified = self.quiet.notified();
            if self.is_quiescent() {
                return true;
            }
            // Pending requests end by timers, not by settling: re-check on a
            // short period as well as on every settle that empties the queues.
            let step = tokio::time::Instant::now() + Duration::from_millis(5);
            if tokio::time::timeout_at(step.min(deadline), notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return self.is_quiescent();
            }
        }
    }

    /// Stops the timer driver at once, without waiting for its task (for
    /// `Drop` paths): pending requests no longer time out.
    pub fn stop_timers_now(&self) {
        drop(self.timer.lock().take());
    }

    /// Stops the timer driver: pending requests no longer time out.
    ///
    /// # Cancel safety
    /// Cancel-safe; the driver stops either way.
    pub async fn stop_timers(&self) {
        let driver = self.timer.lock().take();
        if let Some(driver) = driver {
            driver.shutdown().await;
        }
    }

    /// Counts a refusal and audits it. Repeated refusals of one kind from
    /// one sender are aggregated: the first [`REFUSALS_IN_FULL_PER_SECOND`]
    /// of each second are written in full, the rest of that second are
    /// counted, and their number is written as one record (`count`) when
    /// the sender's next refusal of that kind comes in a later second, or at
    /// [`Router::flush_audit`]. A flooding sender thus writes at most
    /// eleven records per kind and second, however fast it floods; every
    /// refusal is still counted in [`RouterStats::refused`].
    fn refuse(
        &self,
        origin: Origin<'_>,
        target: &str,
        correlation_id: Option<CorrelationId>,
        error: MessagingError,
    ) -> MessagingError {
        let sender = if origin.sender.is_host() { None } else { self.registry.get(origin.sender.as_str()) };
        self.refuse_counted(sender.as_ref(), origin, target, correlation_id, error)
    }

    /// [`Router::refuse`] with the sender's handle (`None`: the host, or a
    /// sender no longer registered) already looked up.
    fn refuse_counted(
        &self,
        sender: Option<&ActorRef>,
        origin: Origin<'_>,
        target: &str,
        correlation_id: Option<CorrelationId>,
        error: MessagingError,
    ) -> MessagingError {
        let (index, outcome) = (error.kind_index(), error.kind());
        self.counters.refused[index].fetch_add(1, Ordering::Relaxed);
        if origin.sender.is_host() {
            self.counters.host_refused[index].fetch_add(1, Ordering::Relaxed);
        } else if let Some(sender) = sender {
            sender.count_refused(&error);
        }
        // Decided before the record is built: an aggregated refusal costs a
        // clock read and a map lookup, not the formatting of a record.
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let earlier = {
            let mut windows = self.refusal_windows.lock();
            let window = windows.entry((origin.sender.clone(), index)).or_default();
            if window.second == second {
                if window.written >= REFUSALS_IN_FULL_PER_SECOND {
                    window.aggregated += 1;
                    return error;
                }
                window.written += 1;
                None
            } else {
                let earlier = (window.aggregated > 0).then_some((window.second, window.aggregated));
                *window = RefusalWindow { second, written: 1, aggregated: 0 };
                earlier
            }
        };
        if let Some((earlier_second, count)) = earlier {
            self.audit.record(aggregate_record(origin.sender, outcome, earlier_second, count));
        }
        self.audit.record(AuditRecord {
            time: now,
            sender: Some(origin.sender.clone()),
            target: Some(truncated(target)),
            correlation_id,
            ..AuditRecord::now(AuditEvent::Refused, outcome, error.to_string())
        });
        error
    }

    /// Writes the aggregates of repeated refusals not yet written (after the
    /// first [`REFUSALS_IN_FULL_PER_SECOND`] of a second, a sender's further
    /// refusals of one kind in that second are counted and written as one
    /// record); call before the audit sink closes.
    pub fn flush_audit(&self) {
        let windows = std::mem::take(&mut *self.refusal_windows.lock());
        for ((sender, index), window) in windows {
            if window.aggregated > 0 {
                self.audit.record(aggregate_record(
                    &sender,
                    MessagingError::KINDS[index],
                    window.second,
                    window.aggregated,
                ));
            }
        }
    }

    /// The checks shared by messages and requests, in SPEC order up to the
    /// mailbox, under the registry's read guard: returns the sender's handle
    /// (`None` for the host) and rules, and the target's handle, borrowed
    /// from the guard (no clone on the hot path).
    fn check<'a>(
        &'a self,
        actors: &'a Actors,
        origin: Origin<'_>,
        target: Target<'_>,
        payload: &[u8],
        request: bool,
    ) -> Result<Checked<'a>, MessagingError> {
        let (target, unchecked) = match target {
            Target::Text(text) => (text, true),
            Target::Id(id) => (id.as_str(), false),
        };
        // A registered id is valid by construction: only text that names no
        // component needs the syntax check (same outcome; a send to a
        // registered component makes one pass less over the target).
        let found = actors.get(target);
        if unchecked
            && found.is_none()
            && let Err(e) = ComponentId::validate(target)
        {
            return Err(MessagingError::InvalidMessage(format!("invalid target id: {e}")));
        }
        if target == wasm_core::HOST_ID {
            return Err(MessagingError::InvalidMessage(
                "target `host` is reserved: the host answers through handle-message's return".into(),
            ));
        }
        let (sender, policy, codec) = self.check_sender(actors, origin, target, payload, request)?;
        let Some(target_actor) = found else {
            return Err(match target.split_once('@') {
                Some((_, node)) => MessagingError::TargetNotFound(format!("{target}: no route to node {node}")),
                None => MessagingError::TargetNotFound(target.to_owned()),
            });
        };
        let accepts = target_actor.policy().accepts();
        if !accepts.contains(codec) {
            return Err(MessagingError::InvalidMessage(format!(
                "codec {codec} is not accepted by {target} (accepts: {accepts})"
            )));
        }
        let trace = origin.trace.copied().unwrap_or_else(TraceContext::new_root);
        Ok(Checked { sender, policy, target: target_actor, trace })
    }

    /// The sender's part of the policy step, the same for local and remote
    /// targets: the sender is running, the payload within its cap with a
    /// valid multicodec prefix (whose codec is returned), the capability to
    /// message `target` (and to send requests), the rate limit.
    fn check_sender<'a>(
        &'a self,
        actors: &'a Actors,
        origin: Origin<'_>,
        target: &str,
        payload: &[u8],
        request: bool,
    ) -> Result<(Option<&'a ActorRef>, &'a Policy, Codec), MessagingError> {
        let sender =
            if origin.sender.is_host() {
                None
            } else {
                Some(actors.get(origin.sender.as_str()).ok_or_else(|| {
                    MessagingError::DeliveryFailed(format!("sender {} is not running", origin.sender))
                })?)
            };
        let policy = sender.map_or(&self.host_policy, ActorRef::policy);
        let max = policy.max_message_bytes();
        if payload.len() > max {
            return Err(MessagingError::InvalidMessage(format!(
                "payload of {} bytes exceeds the cap of {max} bytes",
                payload.len()
            )));
        }
        let (codec, _) = decode_prefix(payload)?;
        if !policy.may_send_to(target) {
            return Err(MessagingError::PermissionDenied(format!("{} may not message {target}", origin.sender)));
        }
        if request && !policy.may_request() {
            return Err(MessagingError::PermissionDenied(format!("{} may not send requests", origin.sender)));
        }
        if !policy.admit() {
            return Err(MessagingError::RateLimited(format!("{} exceeded its message rate", origin.sender)));
        }
        Ok((sender, policy, codec))
    }

    /// Where `target` lives: a `name@node` id of another node goes through
    /// the transport (when there is one); `name@<this node>` is the local
    /// `name`; anything else is local.
    fn route<'t>(&self, target: Target<'t>) -> Route<'t> {
        let Some(transport) = self.remote.get() else { return Route::Local(target) };
        let text: &'t str = match target {
            Target::Text(text) => text,
            Target::Id(id) => id.as_str(),
        };
        match text.split_once('@') {
            Some((name, node)) if node == transport.node() => Route::Local(Target::Text(name)),
            Some(_) => Route::Remote(text),
            None => Route::Local(target),
        }
    }

    /// Whether `target` names a component of another node (a `name@node`
    /// whose node is not this host's, in a cluster): such a send goes to the
    /// cluster transport.
    #[must_use]
    pub fn is_remote(&self, target: &str) -> bool {
        matches!(self.route(Target::Text(target)), Route::Remote(_))
    }

    /// The policy step for a target on another node: the sender's part, then
    /// the directory (`target-not-found` for a component no live host
    /// announced, `invalid-message` for a codec it does not accept).
    fn check_remote<'a>(
        &'a self,
        actors: &'a Actors,
        origin: Origin<'_>,
        target: &str,
        payload: &[u8],
        request: bool,
    ) -> Result<RemoteChecked<'a>, MessagingError> {
        let id = ComponentId::parse(target)
            .map_err(|e| MessagingError::InvalidMessage(format!("invalid target id: {e}")))?;
        let (sender, policy, codec) = self.check_sender(actors, origin, target, payload, request)?;
        let transport = self.remote.get().ok_or_else(|| MessagingError::TargetNotFound(target.to_owned()))?;
        match transport.accepts(&id, codec) {
            None => {
                let node = id.node().unwrap_or_default();
                return Err(MessagingError::TargetNotFound(format!(
                    "{target}: no live host of node {node} announced it"
                )));
            }
            Some(false) => {
                return Err(MessagingError::InvalidMessage(format!("codec {codec} is not accepted by {target}")));
            }
            Some(true) => {}
        }
        let trace = origin.trace.copied().unwrap_or_else(TraceContext::new_root);
        let qualified = qualify(origin.sender, transport.node());
        Ok(RemoteChecked { sender, policy, target: id, qualified, trace, transport })
    }

    /// A message to a component on another node.
    fn send_remote_message(
        &self,
        origin: Origin<'_>,
        target: &str,
        message: Vec<u8>,
    ) -> Result<(), (MessagingError, Vec<u8>)> {
        let actors = self.registry.read();
        let checked = match self.check_remote(&actors, origin, target, &message, false) {
            Ok(checked) => checked,
            Err(error) => return Err((error, message)),
        };
        let envelope = RemoteEnvelope {
            sender: checked.qualified,
            target: checked.target,
            kind: RemoteKind::Message,
            payload: message,
            trace: checked.trace,
        };
        // A refusal hands the message back.
        checked.transport.send(envelope).map_err(SendError::into_parts)?;
        self.counters.remote_messages_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A request to a component on another node. This host owns the
    /// request: its tracker entry, timer and the requester's slot; the
    /// outcome comes back through [`RemoteInbound::complete`].
    fn send_remote_request(
        &self,
        origin: Origin<'_>,
        target: &str,
        request: Vec<u8>,
        timeout_ms: u64,
        host_reply: Option<oneshot::Sender<Outcome>>,
    ) -> Result<CorrelationId, SendError<Vec<u8>>> {
        let actors = self.registry.read();
        let checked = self.check_remote(&actors, origin, target, &request, true).and_then(|checked| {
            let quotas = checked.policy.requests();
            let timeout_ms = request_timeout(quotas, timeout_ms)?;
            let reply = requester_reply(checked.sender, host_reply, quotas.max_pending, origin.sender)?;
            Ok((checked, timeout_ms, reply))
        });
        let (checked, timeout_ms, reply) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                let sender = actors.get(origin.sender.as_str());
                let error = self.refuse_counted(sender, origin, target, None, error);
                return Err(SendError::new(error, request));
            }
        };
        let trace = checked.trace;
        let id = self.tracker.register(
            Requester { reply, trace, registered_ns: self.now_ns() },
            checked.target.clone(),
            timeout_ms,
        );
        let envelope = RemoteEnvelope {
            sender: checked.qualified,
            target: checked.target,
            kind: RemoteKind::Request { id, timeout_ms },
            payload: request,
            trace,
        };
        match checked.transport.send(envelope) {
            Ok(()) => {
                self.counters.remote_requests_sent.fetch_add(1, Ordering::Relaxed);
                Ok(id)
            }
            Err(refused) => {
                // Never sent: the registration is taken back uncounted (its
                // slot is given back as the entry drops).
                drop(self.tracker.withdraw(&id));
                let (error, request) = refused.into_parts();
                let sender = actors.get(origin.sender.as_str());
                let error = self.refuse_counted(sender, origin, target, None, error);
                Err(SendError::new(error, request))
            }
        }
    }
}

/// Where a send goes.
enum Route<'t> {
    /// A component of this host.
    Local(Target<'t>),
    /// `name@node` on another node.
    Remote(&'t str),
}

/// What the policy step found for a remote target.
struct RemoteChecked<'a> {
    sender: Option<&'a ActorRef>,
    policy: &'a Policy,
    target: ComponentId,
    /// The sender as the other host sees it: `name@<this node>`.
    qualified: ComponentId,
    trace: TraceContext,
    transport: &'a Arc<dyn RemoteTransport>,
}

/// A request's timeout under the sender's quotas: 0 means its default; more
/// than its maximum is refused.
fn request_timeout(quotas: &RequestsSection, timeout_ms: u64) -> Result<u64, MessagingError> {
    let timeout_ms = if timeout_ms == 0 { quotas.default_timeout_ms } else { timeout_ms };
    if timeout_ms > quotas.max_timeout_ms {
        return Err(MessagingError::InvalidMessage(format!(
            "timeout of {timeout_ms} ms exceeds the maximum of {} ms",
            quotas.max_timeout_ms
        )));
    }
    Ok(timeout_ms)
}

/// `sender` as other nodes name it: `name@node` (`host@node` for the host).
fn qualify(sender: &ComponentId, node: &str) -> ComponentId {
    if sender.node().is_some() {
        return sender.clone();
    }
    ComponentId::parse(&format!("{sender}@{node}")).unwrap_or_else(|_| sender.clone())
}

/// The way back for a request: the requesting component's pending-request
/// slot (refused over its quota), or the host's channel.
fn requester_reply(
    sender: Option<&ActorRef>,
    host_reply: Option<oneshot::Sender<Outcome>>,
    max_pending: usize,
    sender_id: &ComponentId,
) -> Result<ReplyTo, MessagingError> {
    match (sender, host_reply) {
        (Some(sender), _) => Ok(ReplyTo::Actor(sender.try_acquire_slot(max_pending).ok_or_else(|| {
            MessagingError::TooManyPending(format!(
                "{sender_id} already has {} pending requests (quota {max_pending})",
                sender.pending_requests(),
            ))
        })?)),
        (None, Some(reply)) => Ok(ReplyTo::Host(reply)),
        (None, None) => {
            Err(MessagingError::InvalidMessage("the host's requests go through Router::host_request".into()))
        }
    }
}

/// What the policy step found: who sends (`None`: the host) under which
/// rules, to whom, in which trace.
struct Checked<'a> {
    sender: Option<&'a ActorRef>,
    policy: &'a Policy,
    target: &'a ActorRef,
    trace: TraceContext,
}

impl Router {
    /// [`MessageRouter::send_message`], handing the payload back when the
    /// send is refused (the host's `System::try_send` returns it to embedders).
    ///
    /// # Errors
    /// A [`SendError`] holding the refusal and `message`.
    pub fn try_send_message<'t>(
        &self,
        origin: Origin<'_>,
        target: impl Into<Target<'t>>,
        message: Vec<u8>,
    ) -> Result<(), SendError<Vec<u8>>> {
        let target = target.into();
        self.send_message_unaudited(origin, target, message)
            .map_err(|(error, message)| SendError::new(self.refuse(origin, target.as_str(), None, error), message))
    }

    /// Sends a message as the host, waiting up to `timeout` for room when
    /// the target's mailbox is full (by count or bytes). Every other
    /// refusal is immediate. The wait is woken by the target's actor taking
    /// an envelope; only the final refusal is counted and audited. For a
    /// component on another node, room is its credit (see
    /// [`wasm_core::RemoteTransport::send`]): the send is retried every
    /// [`REMOTE_CREDIT_POLL`] until the credit comes back or the deadline.
    ///
    /// # Errors
    /// A [`SendError`] holding the refusal (`queue-full` when the deadline
    /// passed) and `message`.
    ///
    /// # Cancel safety
    /// Cancel-safe: the message is queued only by the call that returns
    /// `Ok`; a dropped future queued nothing.
    pub async fn host_send_within<'t>(
        &self,
        target: impl Into<Target<'t>>,
        message: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), SendError<Vec<u8>>> {
        let target = target.into();
        let origin = Origin { sender: ComponentId::host_ref(), trace: None };
        let deadline = tokio::time::Instant::now() + timeout;
        if let Route::Remote(_) = self.route(target) {
            return self.remote_send_within(origin, target, message, deadline).await;
        }
        // No such component (or not a valid id): the plain path refuses it.
        let Some(actor) = self.registry.get(target.as_str()) else {
            return self.try_send_message(origin, target, message);
        };
        // The first attempt runs before any wait (`retry_until_room`).
        let mut held = Some(message);
        let done = actor
            .mailbox()
            .retry_until_room(deadline, || {
                let message = held.take()?;
                match self.send_message_unaudited(origin, target, message) {
                    Err((MessagingError::QueueFull, message)) => {
                        held = Some(message);
                        None
                    }
                    other => Some(other),
                }
            })
            .await;
        let (error, message) = match done {
            Some(Ok(())) => return Ok(()),
            Some(Err(refused)) => refused,
            None => (MessagingError::QueueFull, held.take().unwrap_or_default()),
        };
        Err(SendError::new(self.refuse(origin, target.as_str(), None, error), message))
    }

    /// [`Router::host_send_within`] to another node: retried while the
    /// target's credit is used up (`queue-full`), until `deadline`.
    async fn remote_send_within(
        &self,
        origin: Origin<'_>,
        target: Target<'_>,
        mut message: Vec<u8>,
        deadline: tokio::time::Instant,
    ) -> Result<(), SendError<Vec<u8>>> {
        loop {
            let error = match self.send_message_unaudited(origin, target, message) {
                Ok(()) => return Ok(()),
                Err((MessagingError::QueueFull, held)) if tokio::time::Instant::now() < deadline => {
                    message = held;
                    tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + REMOTE_CREDIT_POLL)).await;
                    continue;
                }
                Err(refused) => refused,
            };
            let (error, message) = error;
            return Err(SendError::new(self.refuse(origin, target.as_str(), None, error), message));
        }
    }

    /// The message path without the audit of a refusal: the refusal and
    /// the message come back.
    #[expect(clippy::result_large_err, reason = "a full or closed mailbox hands the envelope back (see mailbox.rs)")]
    fn send_message_unaudited(
        &self,
        origin: Origin<'_>,
        target: Target<'_>,
        message: Vec<u8>,
    ) -> Result<(), (MessagingError, Vec<u8>)> {
        let target = match self.route(target) {
            Route::Local(target) => target,
            Route::Remote(target) => return self.send_remote_message(origin, target, message),
        };
        let actors = self.registry.read();
        let checked = match self.check(&actors, origin, target, &message, false) {
            Ok(checked) => checked,
            Err(error) => return Err((error, message)),
        };
        let envelope = Envelope::Message { sender: origin.sender.clone(), payload: message, trace: checked.trace };
        let queued = self.accounting.enqueue(Enqueued::Message, || checked.target.mailbox().try_send(envelope));
        if queued.is_ok() {
            checked.target.count_accepted(false);
        }
        queued.map_err(|e| {
            let error = mailbox_error(&e, target.as_str());
            match e.into_inner() {
                Envelope::Message { payload, .. } => (error, payload),
                // The envelope handed back is the message built above.
                _ => unreachable!("try_send hands back the envelope it was given"),
            }
        })
    }

    /// [`MessageRouter::send_request`], handing the payload back when the
    /// request is refused.
    ///
    /// # Errors
    /// A [`SendError`] holding the refusal and `request`.
    pub fn try_send_request<'t>(
        &self,
        origin: Origin<'_>,
        target: impl Into<Target<'t>>,
        request: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<CorrelationId, SendError<Vec<u8>>> {
        self.send_request_from(origin, target.into(), request, timeout_ms, None)
    }

    /// Sends a request as the embedding application (sender `host`): the
    /// same policy step under the host's rules, and the outcome comes back
    /// on the returned receiver, straight from whoever ends the request
    /// ([`ReplyTo::Host`]). Host requests take no pending-request slot: the
    /// embedder holds each one's receiver, which is its own bound.
    ///
    /// # Errors
    /// A [`SendError`] holding the refusal and `request`.
    pub fn host_request<'t>(
        &self,
        target: impl Into<Target<'t>>,
        request: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<(CorrelationId, oneshot::Receiver<Outcome>), SendError<Vec<u8>>> {
        let (reply, outcome) = oneshot::channel();
        let origin = Origin { sender: ComponentId::host_ref(), trace: None };
        let id = self.send_request_from(origin, target.into(), request, timeout_ms, Some(reply))?;
        Ok((id, outcome))
    }

    /// The request path of components (`host_reply` is `None`: the sender's
    /// callback queue, under its quota) and of the host (`Some`).
    fn send_request_from(
        &self,
        origin: Origin<'_>,
        target: Target<'_>,
        request: Vec<u8>,
        timeout_ms: u64,
        host_reply: Option<oneshot::Sender<Outcome>>,
    ) -> Result<CorrelationId, SendError<Vec<u8>>> {
        let target = match self.route(target) {
            Route::Local(target) => target,
            Route::Remote(target) => return self.send_remote_request(origin, target, request, timeout_ms, host_reply),
        };
        let actors = self.registry.read();
        let checked = self.check(&actors, origin, target, &request, true).and_then(|checked| {
            let quotas = checked.policy.requests();
            let timeout_ms = request_timeout(quotas, timeout_ms)?;
            let permit =
                checked.target.mailbox().try_reserve(request.len()).map_err(|e| mailbox_error(&e, target.as_str()))?;
            let reply = requester_reply(checked.sender, host_reply, quotas.max_pending, origin.sender)?;
            Ok((checked.target, checked.trace, timeout_ms, permit, reply))
        });
        let (target_actor, trace, timeout_ms, permit, reply) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                // The sender is looked up in the guard this call holds: a
                // second read lock could wait on a queued writer that waits
                // on this one.
                let sender = actors.get(origin.sender.as_str());
                let error = self.refuse_counted(sender, origin, target.as_str(), None, error);
                return Err(SendError::new(error, request));
            }
        };
        // Counted before it exists anywhere, so its callback (even a 1 ms
        // timeout firing at once) can never settle ahead of it. The slot was
        // reserved, so queueing cannot fail.
        let queued = self.accounting.enqueue(Enqueued::Request, || {
            let registered_ns = self.now_ns();
            let id =
                self.tracker.register(Requester { reply, trace, registered_ns }, target_actor.id().clone(), timeout_ms);
            permit.send(Envelope::Request { sender: origin.sender.clone(), id, payload: request, trace });
            Ok::<_, Infallible>(id)
        });
        target_actor.count_accepted(true);
        let Ok(id) = queued;
        Ok(id)
    }
}

impl MessageRouter for Router {
    fn send_message(&self, origin: Origin<'_>, target: &str, message: Vec<u8>) -> Result<(), MessagingError> {
        self.try_send_message(origin, target, message).map_err(MessagingError::from)
    }

    fn send_request(
        &self,
        origin: Origin<'_>,
        target: &str,
        request: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<CorrelationId, MessagingError> {
        self.try_send_request(origin, target, request, timeout_ms).map_err(MessagingError::from)
    }

    fn cancel_request(&self, origin: Origin<'_>, request_id: &str) -> Result<(), MessagingError> {
        let id = CorrelationId::parse(request_id)
            .map_err(|e| self.refuse(origin, "", None, MessagingError::RequestNotFound(e.to_string())))?;
        match self.tracker.cancel(&id, origin.sender) {
            Ok(pending) => {
                let trace = origin.trace.copied().unwrap_or_else(TraceContext::new_root);
                self.deliver(id, pending, Err(RequestError::Cancelled), trace);
                Ok(())
            }
            Err(error) => Err(self.refuse(origin, "", Some(id), error)),
        }
    }
}

/// How long a request from another node is kept past its timeout on the
/// responder's host, ms: a response that late still goes back, and the
/// requester's host (which owns the timer) counts it as orphaned.
pub const REMOTE_RESPONSE_GRACE_MS: u64 = 5_000;

/// What other hosts send to this one (through its transport). The sending
/// host ran the policy step; this one checks only what is its own: the
/// target is one of its components, accepts the codec, and its mailbox has
/// room (by count and bytes).
impl RemoteInbound for Router {
    #[expect(clippy::result_large_err, reason = "a full or closed mailbox hands the envelope back (see mailbox.rs)")]
    fn deliver(&self, envelope: RemoteEnvelope) -> Result<(), MessagingError> {
        let RemoteEnvelope { sender, target, kind, payload, trace } = envelope;
        let local = self.remote.get().is_some_and(|t| target.node() == Some(t.node()));
        if !local {
            return Err(MessagingError::TargetNotFound(format!("{target}: not a component of this node")));
        }
        let actors = self.registry.read();
        let Some(actor) = actors.get(target.name()) else {
            return Err(MessagingError::TargetNotFound(target.to_string()));
        };
        let (codec, _) = decode_prefix(&payload)?;
        let accepts = actor.policy().accepts();
        if !accepts.contains(codec) {
            return Err(MessagingError::InvalidMessage(format!(
                "codec {codec} is not accepted by {target} (accepts: {accepts})"
            )));
        }
        match kind {
            RemoteKind::Message => {
                let envelope = Envelope::Message { sender, payload, trace };
                self.accounting
                    .enqueue(Enqueued::Message, || actor.mailbox().try_send(envelope))
                    .map_err(|e| mailbox_error(&e, target.as_str()))?;
                actor.count_accepted(false);
            }
            RemoteKind::Request { id, timeout_ms } => {
                let permit =
                    actor.mailbox().try_reserve(payload.len()).map_err(|e| mailbox_error(&e, target.as_str()))?;
                // This host's own entry, under its own id, answers the
                // requester's host. It outlives the request by a grace
                // period, so a late response still goes back and is counted
                // orphaned where the request was made.
                let reply = ReplyTo::Remote(Box::new(RemoteRequester { requester: sender.clone(), id }));
                let keep_ms = timeout_ms.saturating_add(REMOTE_RESPONSE_GRACE_MS);
                let queued = self.accounting.enqueue(Enqueued::Request, || {
                    let local_id = self.tracker.register(
                        Requester { reply, trace, registered_ns: self.now_ns() },
                        actor.id().clone(),
                        keep_ms,
                    );
                    permit.send(Envelope::Request { sender, id: local_id, payload, trace });
                    Ok::<_, Infallible>(())
                });
                let Ok(()) = queued;
                actor.count_accepted(true);
            }
        }
        Ok(())
    }

    fn complete(&self, outcome: RemoteOutcome) {
        let RemoteOutcome { id, outcome, trace, .. } = outcome;
        // A response or a handler's error completes the request, as locally;
        // the other errors fail it. An id no longer pending (timed out,
        // cancelled, dropped) counts as orphaned.
        let pending = match &outcome {
            Ok(_) | Err(RequestError::HandlerError(_)) => self.tracker.complete(&id),
            Err(_) => self.tracker.fail(&id),
        };
        let Some(pending) = pending else { return };
        let outcome = match outcome {
            Ok(bytes) => match self.check_response_codec(&pending.owner.reply, &bytes) {
                Ok(()) => Ok(bytes),
                Err(reason) => {
                    self.counters.responses_refused.fetch_add(1, Ordering::Relaxed);
                    Err(RequestError::TargetFailed(reason))
                }
            },
            Err(RequestError::HandlerError(e)) => {
                self.counters.request_handler_errors.fetch_add(1, Ordering::Relaxed);
                Err(RequestError::HandlerError(e))
            }
            other => other,
        };
        self.deliver(id, pending, outcome, trace);
    }

    /// Dead-letters the message (cause `delivery-failed`), counted on its
    /// sender (the target is another host's).
    fn undelivered(&self, letter: RemoteUndelivered) {
        let RemoteUndelivered { sender, target, loss, reason } = letter;
        if let Some(actor) = self.registry.read().get(sender.name()) {
            actor.count_dead_letter(DeadLetterCause::DeliveryFailed);
        }
        self.counters.remote_dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.dead_letter(DeadLetter {
            target,
            sender,
            kind: "message",
            correlation_id: None,
            reason: format!("{loss}: {reason}"),
            cause: DeadLetterCause::DeliveryFailed,
        });
    }

    fn free_slots(&self, name: &str) -> Option<u64> {
        self.registry.read().get(name).map(|actor| actor.mailbox().free_slots())
    }
}

impl Router {
    /// A response meets the requester's rules: a valid multicodec prefix in
    /// a codec it accepts (a remote requester's host checks its own).
    fn check_response_codec(&self, requester: &ReplyTo, bytes: &[u8]) -> Result<(), String> {
        let (codec, _) = decode_prefix(bytes).map_err(|e| format!("malformed response: {e}"))?;
        let (policy, id) = match requester {
            ReplyTo::Actor(slot) => (slot.owner().policy(), slot.owner().id()),
            ReplyTo::Host(_) => (&self.host_policy, ComponentId::host_ref()),
            ReplyTo::Remote(_) => return Ok(()),
        };
        let accepts = policy.accepts();
        if !accepts.contains(codec) {
            return Err(format!("response codec {codec} is not accepted by {id} (accepts: {accepts})"));
        }
        Ok(())
    }
}

/// A handler error's message is capped like a response: at the responder's
/// `max_message_bytes` (SPEC section 3, execution limits), so a guest cannot
/// push more bytes to a requester through an error than through an answer.
fn check_handler_error(responder: &ActorRef, error: &ComponentError) -> Result<(), String> {
    let max = responder.policy().max_message_bytes();
    if error.message.len() > max {
        return Err(format!(
            "handler error (code {}) with a message of {} bytes exceeds the cap of {max} bytes",
            error.code,
            error.message.len()
        ));
    }
    Ok(())
}

fn mailbox_error<T>(error: &MailboxError<T>, target: &str) -> MessagingError {
    match error {
        MailboxError::Full(_) => MessagingError::QueueFull,
        MailboxError::Closed(_) => MessagingError::DeliveryFailed(format!("{target} is stopping")),
    }
}

/// Refusals of one kind from one sender audited in full per second; the
/// rest of that second are aggregated into one record with a count.
pub const REFUSALS_IN_FULL_PER_SECOND: u32 = 10;

/// The refusals of one kind from one sender in the current second.
#[derive(Default)]
struct RefusalWindow {
    /// The second (Unix time) the window is about.
    second: u64,
    /// Refusals of that second written in full.
    written: u32,
    /// Refusals of that second past the ones written, not yet written.
    aggregated: u64,
}

/// One record for `count` refusals of kind `outcome` from `sender` in `second`.
fn aggregate_record(sender: &ComponentId, outcome: &'static str, second: u64, count: u64) -> AuditRecord {
    AuditRecord {
        sender: Some(sender.clone()),
        count,
        ..AuditRecord::now(
            AuditEvent::Refused,
            outcome,
            format!("{count} more refusals of this kind in the second from Unix time {second} (aggregated)"),
        )
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(160).collect()
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router").field("registry", &self.registry).field("stats", &self.stats()).finish()
    }
}
