//! One actor per component: a tokio task that takes envelopes from the
//! component's mailbox one at a time and calls its instance, so a component
//! never handles two things at once. The mailbox outlives the instance: a
//! crash discards the instance, the supervisor makes a new one, and queued
//! messages wait for it.
//!
//! Guest calls are async (see `wasm_runtime`'s execution model): a guest
//! that spins yields every epoch tick and one that sleeps in WASI awaits, so
//! this task never holds a worker thread for long. Everything the actor does
//! for one envelope runs under `catch_unwind`: a host panic while handling
//! an envelope is a crash like a trap (the envelope is dead-lettered, a
//! request's requester gets `target-failed`, the restart policy applies), so
//! no panic leaves a component half-dead.

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tokio::sync::watch;
use tracing::Instrument;
use wasm_core::{ComponentError, ComponentId, CorrelationId, Limits, RequestError, TraceContext, WasiSection};
use wasm_messaging::{ActorRef, AuditEvent, DeadLetter, Envelope, MailboxReceiver, Router, Settled};
use wasm_runtime::{CompiledComponent, ComponentInstance, GuestFailure, WasmEngine};

use crate::events::{EventHub, SystemEvent};
use crate::supervisor::RestartIntensity;

/// The kinds of envelope (`Envelope::kind`) whose settling differs.
const REQUEST: &str = "request";
const CALLBACK: &str = "callback";

/// Why a component stops when the system shuts down.
const SHUTDOWN: &str = "system shutdown";

/// What every actor shares.
pub(crate) struct Shared {
    pub(crate) engine: Arc<WasmEngine>,
    pub(crate) router: Arc<Router>,
    pub(crate) events: EventHub,
}

pub(crate) struct Actor {
    pub(crate) me: ActorRef,
    pub(crate) inbox: MailboxReceiver,
    pub(crate) compiled: CompiledComponent,
    pub(crate) instance: Option<ComponentInstance>,
    pub(crate) limits: Limits,
    pub(crate) wasi: WasiSection,
    pub(crate) intensity: RestartIntensity,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: watch::Receiver<bool>,
    /// The envelope being handled and not yet settled, so that a panic
    /// part-way can still settle it exactly once.
    pub(crate) in_flight: Option<InFlight>,
}

/// What the actor needs to settle an envelope it can no longer see.
pub(crate) struct InFlight {
    sender: ComponentId,
    kind: &'static str,
    correlation_id: Option<CorrelationId>,
    trace: TraceContext,
}

impl InFlight {
    fn of(envelope: &Envelope, me: &ComponentId) -> Self {
        let (sender, correlation_id) = match envelope {
            Envelope::Message { sender, .. } => (sender.clone(), None),
            Envelope::Request { sender, id, .. } => (sender.clone(), Some(*id)),
            Envelope::Callback { id, .. } => (me.clone(), Some(*id)),
        };
        Self { sender, kind: envelope.kind(), correlation_id, trace: *envelope.trace() }
    }
}

impl Actor {
    fn id(&self) -> &ComponentId {
        self.me.id()
    }

    /// Runs until the system shuts down (`Ok`) or the component stops for
    /// another reason (`Err` with it: restart intensity exceeded, mailbox
    /// closed).
    pub(crate) async fn run(mut self) -> Result<(), String> {
        let reason = loop {
            let envelope = tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => break SHUTDOWN.to_owned(),
                envelope = self.inbox.recv() => match envelope {
                    Some(envelope) => envelope,
                    None => break "mailbox closed".to_owned(),
                },
            };
            let mut outcome = AssertUnwindSafe(self.handle(envelope)).catch_unwind().await;
            // A panic while recovering from a panic is one more crash: the
            // restart intensity ends the loop.
            while let Err(panic) = outcome {
                outcome = AssertUnwindSafe(self.recover(panic)).catch_unwind().await;
            }
            if let Ok(Err(reason)) = outcome {
                break reason;
            }
        };
        self.stop_for_good(&reason);
        if reason.starts_with(SHUTDOWN) { Ok(()) } else { Err(reason) }
    }

    /// Handles one envelope. `Err` means the component must stop.
    async fn handle(&mut self, envelope: Envelope) -> Result<(), String> {
        self.in_flight = Some(InFlight::of(&envelope, self.me.id()));
        let parent = *envelope.trace();
        let trace = parent.child();
        let span = tracing::debug_span!(
            "handle",
            component = %self.me.id(),
            kind = envelope.kind(),
            trace_id = %trace.trace_id_hex(),
            span_id = %trace.span_id_hex(),
            parent_span_id = %parent.span_id_hex(),
        );
        let Some(instance) = self.instance.as_mut() else {
            self.dead_letter(&envelope, "no running instance".to_owned());
            return Ok(());
        };
        let stop = &mut self.stop;
        let failure = match envelope {
            Envelope::Message { ref sender, ref payload, .. } => {
                let call = instance.handle_message(sender, payload, Some(trace)).instrument(span);
                match unless_stopped(stop, call).await {
                    Ok(result) => {
                        self.emit_handled(sender, None, payload, (trace, parent), || result);
                        self.settle(Settled::Handled);
                        None
                    }
                    Err(failure) => Some((failure, envelope)),
                }
            }
            Envelope::Request { ref sender, id, ref payload, .. } => {
                let call = instance.handle_message(sender, payload, Some(trace)).instrument(span);
                match unless_stopped(stop, call).await {
                    Ok(result) => {
                        self.emit_handled(sender, Some(id), payload, (trace, parent), || result.clone());
                        self.shared.router.respond(&self.me, &id, result, trace);
                        self.settle(Settled::Handled);
                        None
                    }
                    Err(failure) => {
                        let reason = RequestError::TargetFailed(format!("{}: {failure}", self.me.id()));
                        self.shared.router.fail(&id, reason, trace);
                        Some((failure, envelope))
                    }
                }
            }
            Envelope::Callback { id, ref outcome, .. } => {
                let call = instance.handle_callback(&id, outcome, Some(trace)).instrument(span);
                match unless_stopped(stop, call).await {
                    Ok(result) => {
                        if self.shared.events.active() {
                            self.shared.events.emit(SystemEvent::Callback {
                                component: self.me.id().clone(),
                                request_id: id,
                                outcome: outcome.clone(),
                                result,
                                trace,
                                parent,
                            });
                        }
                        self.settle(Settled::CallbackHandled);
                        None
                    }
                    Err(failure) => Some((failure, envelope)),
                }
            }
        };
        match failure {
            None => {
                self.intensity.on_success();
                Ok(())
            }
            Some((CallFailure::Stopped, envelope)) => {
                self.instance = None;
                self.dead_letter(&envelope, CallFailure::Stopped.to_string());
                Err(SHUTDOWN.to_owned())
            }
            Some((CallFailure::Guest(failure), envelope)) => {
                self.dead_letter(&envelope, failure.to_string());
                self.crashed(&failure.to_string()).await
            }
        }
    }

    /// A host panic escaped while handling an envelope (or while recovering
    /// from one): settle the envelope if it is not settled yet, then treat
    /// the instance as crashed.
    async fn recover(&mut self, panic: Box<dyn Any + Send>) -> Result<(), String> {
        let failure = format!("host panic while handling: {}", panic_message(panic.as_ref()));
        tracing::error!(component = %self.id(), %failure, "actor panicked");
        if let Some(in_flight) = self.in_flight.take() {
            if in_flight.kind == REQUEST
                && let Some(id) = in_flight.correlation_id
            {
                let reason = RequestError::TargetFailed(format!("{}: {failure}", self.id()));
                self.shared.router.fail(&id, reason, in_flight.trace.child());
            }
            self.dead_letter_in_flight(in_flight, failure.clone());
        }
        self.crashed(&failure).await
    }

    /// Emits [`SystemEvent::Handled`] if anyone listens; `result` is only
    /// evaluated then.
    fn emit_handled(
        &self,
        sender: &ComponentId,
        request_id: Option<CorrelationId>,
        payload: &[u8],
        (trace, parent): (TraceContext, TraceContext),
        result: impl FnOnce() -> Result<Vec<u8>, ComponentError>,
    ) {
        if self.shared.events.active() {
            self.shared.events.emit(SystemEvent::Handled {
                component: self.me.id().clone(),
                sender: sender.clone(),
                request_id,
                payload: payload.to_vec(),
                result: result(),
                trace,
                parent,
            });
        }
    }

    /// The envelope in flight ended: count it, once (a callback also frees
    /// the pending-request slot its request held).
    fn settle(&mut self, how: Settled) {
        let kind = self.in_flight.take().map(|in_flight| in_flight.kind);
        self.count_settled(kind, how);
    }

    /// Counts an envelope of `kind` as settled `how`.
    fn count_settled(&self, kind: Option<&'static str>, how: Settled) {
        if kind == Some(CALLBACK) {
            self.shared.router.settle_callback(&self.me, how);
        } else {
            self.shared.router.settle(how);
        }
    }

    fn dead_letter(&mut self, envelope: &Envelope, reason: String) {
        let in_flight = InFlight::of(envelope, self.me.id());
        self.dead_letter_in_flight(in_flight, reason);
    }

    fn dead_letter_in_flight(&mut self, in_flight: InFlight, reason: String) {
        let kind = in_flight.kind;
        let letter = DeadLetter {
            target: self.me.id().clone(),
            sender: in_flight.sender,
            kind: in_flight.kind,
            correlation_id: in_flight.correlation_id,
            reason,
        };
        if self.shared.events.active() {
            self.shared.events.emit(SystemEvent::DeadLettered(letter.clone()));
        }
        self.shared.router.dead_letter(letter);
        self.in_flight = None;
        self.count_settled(Some(kind), Settled::DeadLettered);
    }

    /// The instance failed: discard it, drop the requests it had pending,
    /// and restart it (after a backoff) unless the restart intensity is
    /// exceeded or the system shuts down. `Err` when the component must stop.
    async fn crashed(&mut self, failure: &str) -> Result<(), String> {
        self.instance = None;
        let router = Arc::clone(&self.shared.router);
        let dropped = router.drop_requests_of(&self.me);
        let reason = format!("{failure}; {dropped} pending requests dropped");
        tracing::warn!(component = %self.id(), %reason, "instance crashed");
        router.audit_lifecycle(AuditEvent::Crash, self.id(), reason.clone());
        if self.shared.events.active() {
            self.shared.events.emit(SystemEvent::Crashed { component: self.id().clone(), reason });
        }
        loop {
            let delay = self.intensity.on_crash(Instant::now())?;
            // Shutdown cuts a backoff short; an instantiation already under
            // way finishes (it is bounded by the time budget), so a crash
            // just before a shutdown still shows its restart.
            if !delay.is_zero() {
                tokio::select! {
                    biased;
                    _ = self.stop.wait_for(|stop| *stop) => return Err(format!("{SHUTDOWN} during restart backoff")),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            let restarted = self
                .shared
                .engine
                .instantiate(&self.compiled, self.me.id().clone(), &self.limits, &self.wasi, Arc::clone(&router) as _)
                .await;
            match restarted {
                Ok(instance) => {
                    self.instance = Some(instance);
                    let restarts = self.intensity.recent();
                    router.audit_lifecycle(AuditEvent::Restart, self.id(), format!("restart {restarts} in window"));
                    tracing::info!(component = %self.id(), restarts, "instance restarted");
                    if self.shared.events.active() {
                        self.shared.events.emit(SystemEvent::Restarted { component: self.id().clone(), restarts });
                    }
                    return Ok(());
                }
                Err(error) => {
                    router.audit_lifecycle(AuditEvent::Crash, self.id(), format!("restart failed: {error}"));
                }
            }
        }
    }

    /// Stops the component: no new sends reach it; what is queued is
    /// dead-lettered (queued requests answer `delivery-failed`), and requests
    /// it had pending are dropped.
    fn stop_for_good(mut self, reason: &str) {
        let router = Arc::clone(&self.shared.router);
        router.unregister(self.id());
        self.inbox.close();
        self.instance = None;
        let why = format!("{} stopped: {reason}", self.id());
        while let Some(envelope) = self.inbox.try_recv() {
            if let Envelope::Request { id, .. } = &envelope {
                router.fail(id, RequestError::DeliveryFailed(why.clone()), envelope.trace().child());
            }
            self.dead_letter(&envelope, why.clone());
        }
        router.drop_requests_of(&self.me);
        router.audit_lifecycle(AuditEvent::Stop, self.id(), reason.to_owned());
        tracing::info!(component = %self.id(), reason, "component stopped");
        if self.shared.events.active() {
            self.shared.events.emit(SystemEvent::Stopped { component: self.id().clone(), reason: reason.to_owned() });
        }
    }
}

/// Why a guest call did not return a result.
enum CallFailure {
    /// The guest trapped or ran out of a budget.
    Guest(GuestFailure),
    /// The system shut down while the call ran; the call was abandoned.
    Stopped,
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Guest(failure) => failure.fmt(f),
            Self::Stopped => write!(f, "interrupted by {SHUTDOWN}"),
        }
    }
}

/// Drives a guest call, abandoning it if the system shuts down first. The
/// call is polled first, so the stop signal costs nothing to a call that
/// finishes in its first poll.
async fn unless_stopped<T>(
    stop: &mut watch::Receiver<bool>,
    call: impl Future<Output = Result<T, GuestFailure>>,
) -> Result<T, CallFailure> {
    tokio::select! {
        biased;
        result = call => result.map_err(CallFailure::Guest),
        _ = stop.wait_for(|stop| *stop) => Err(CallFailure::Stopped),
    }
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes them).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".to_owned())
}
