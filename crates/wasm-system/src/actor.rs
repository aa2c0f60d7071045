//! One actor per component: a tokio task that takes envelopes from the
//! component's mailbox one at a time and calls its instance (or hands a run
//! of queued messages to one batch call, in which the guest still takes them
//! one at a time), so a component never handles two things at once. The mailbox outlives the instance: a
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
//!
//! The actor takes [`Delivery`] guards from its [`Inbox`] and settles each
//! by consuming it; one dropped unconsumed (a panic unwinding out of the
//! handler) dead-letters itself, so the actor keeps no bookkeeping of its own
//! about what is in flight. A batch holds its envelopes as `Taken` values
//! and resumes each into a `Delivery` before it does anything else with it
//! (see `batch.rs`).
//!
//! A component that exports `batch-lifecycle` gets its queued
//! fire-and-forget messages in batches (see `batch.rs`): the actor then
//! hands its inbox to the batch for the length of one `handle-messages`
//! call.

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::FutureExt;
use tracing::Instrument;
use wasm_core::{ComponentError, ComponentId, CorrelationId, Limits, TraceContext, WasiSection};
use wasm_messaging::{ActorRef, AuditEvent, Delivery, Envelope, Inbox, Router, Taken};
use wasm_runtime::{CompiledComponent, ComponentInstance, GuestFailure, WasmEngine};

use crate::batch::Batch;
use crate::events::{EventHub, SystemEvent};
use crate::stop::StopReceiver;
use crate::supervisor::RestartIntensity;

/// What every actor shares.
pub(crate) struct Shared {
    pub(crate) engine: Arc<WasmEngine>,
    pub(crate) router: Arc<Router>,
    pub(crate) events: Arc<EventHub>,
    /// Whether actors measure each handler's duration and each request's
    /// round trip (metrics are on).
    pub(crate) measure_handlers: bool,
}

pub(crate) struct Actor {
    pub(crate) me: ActorRef,
    /// The engine its instances live on: the system's, or its shard's
    /// (see `shards.rs`); `compiled` belongs to it.
    pub(crate) engine: Arc<WasmEngine>,
    pub(crate) compiled: CompiledComponent,
    pub(crate) instance: Option<ComponentInstance>,
    pub(crate) limits: Limits,
    pub(crate) wasi: WasiSection,
    pub(crate) intensity: RestartIntensity,
    pub(crate) shared: Arc<Shared>,
    /// Tells the actor to stop (shutdown, or the host stopping this
    /// component), and why.
    pub(crate) stop: StopReceiver,
    /// Where each handler's duration goes, when metrics are on.
    pub(crate) handler_duration: Option<metrics::Histogram>,
    /// Where the round trip of each request this component sent goes (from
    /// registration to its callback handled), when metrics are on.
    pub(crate) request_duration: Option<metrics::Histogram>,
}

impl Actor {
    fn id(&self) -> &ComponentId {
        self.me.id()
    }

    /// Runs until told to stop (`Ok`: shutdown, or the host stopping this
    /// component) or the component stops for another reason (`Err` with it: restart intensity exceeded, mailbox
    /// closed).
    ///
    /// The inbox is kept apart from the actor so that the [`Delivery`] it
    /// hands out can borrow it while the actor handles it.
    pub(crate) async fn run(mut self, inbox: Inbox) -> Result<(), String> {
        let mut batch = Some(Batch::new(inbox, Arc::clone(&self.shared), self.handler_duration.clone()));
        let reason = loop {
            // The stop signal comes first: one atomic load, so a busy
            // actor checks it before every envelope for almost nothing. An
            // envelope already queued is taken in the first poll of `recv`
            // (no wait armed); the coop budget makes a busy actor give its
            // worker to the other tasks every 128 envelopes, as an awaited
            // channel would.
            if let Some(reason) = self.stop.signalled() {
                break Stop::Told(reason.to_owned());
            }
            tokio::task::consume_budget().await;
            // `None` only if a batch's call lost it (see `run_batch`): the
            // mailbox went with the instance, and the component stops.
            // Every other way out of the loop puts it back first, so that
            // `stop_for_good` closes the mailbox with the stop's reason.
            let Some(mut held) = batch.take() else {
                break Stop::OnItsOwn("the mailbox was lost with a failed batch".to_owned());
            };
            // What the last batch left to handle next comes before the
            // mailbox; it is never batched again (a batch that handed out
            // nothing gives its first message to `handle-message`).
            let next = match held.pending() {
                Some(taken) => Ok((taken, true)),
                None => tokio::select! {
                    biased;
                    taken = held.inbox.recv_taken() => {
                        taken.map(|taken| (taken, false)).ok_or_else(|| Stop::OnItsOwn("mailbox closed".to_owned()))
                    }
                    reason = self.stop.wait() => Err(Stop::Told(reason.to_owned())),
                },
            };
            let (taken, resumed) = match next {
                Ok(next) => next,
                Err(stop) => {
                    batch = Some(held);
                    break stop;
                }
            };
            let batched = !resumed
                && matches!(taken.envelope(), Envelope::Message { .. })
                && self.instance.as_ref().is_some_and(ComponentInstance::accepts_batches);
            if batched {
                let (returned, end) = self.run_batch(held, taken).await;
                batch = returned;
                let failure = match end {
                    BatchEnd::Done => continue,
                    BatchEnd::Stop(stop) => break stop,
                    BatchEnd::Crashed(failure) => failure,
                };
                // As after a crash in `handle`: a panic while recovering is
                // one more crash, and the restart intensity ends the loop.
                let mut outcome = AssertUnwindSafe(self.crashed(&failure)).catch_unwind().await;
                while let Err(panic) = outcome {
                    outcome = AssertUnwindSafe(self.recover(panic)).catch_unwind().await;
                }
                if let Ok(Err(stop)) = outcome {
                    break stop;
                }
                continue;
            }
            let delivery = held.inbox.resume(taken);
            // A panic leaves the delivery inside the dropped future, whose
            // `Drop` dead-letters it (a request's requester: `target-failed`).
            let mut outcome = AssertUnwindSafe(self.handle(delivery)).catch_unwind().await;
            batch = Some(held);
            // A panic while recovering from a panic is one more crash: the
            // restart intensity ends the loop.
            while let Err(panic) = outcome {
                outcome = AssertUnwindSafe(self.recover(panic)).catch_unwind().await;
            }
            if let Ok(Err(stop)) = outcome {
                break stop;
            }
        };
        // Stopping because told to is a normal end; anything else is not.
        // Decided by why the loop ended, not by the stop signal now: a
        // shutdown may be signalled just after the component stopped on its
        // own (its last dead letter made the system quiescent).
        let (reason, told) = match reason {
            Stop::Told(reason) => (reason, true),
            Stop::OnItsOwn(reason) => (reason, false),
        };
        self.stop_for_good(batch.as_deref_mut(), &reason);
        if told { Ok(()) } else { Err(reason) }
    }

    /// Runs one batch that starts with `first` (a message): moves the
    /// inbox into the instance for the `handle-messages` call, then takes it
    /// back and settles what the call left: the message handed out last is
    /// handled if the call returned, failed if not. A batch that handed out
    /// nothing leaves `first` pending, and the loop gives it to
    /// `handle-message`. Host panics during the call and while settling are
    /// caught here and become a crash; the crash itself (restart) is the
    /// loop's, under the same panic recovery as [`Actor::handle`].
    ///
    /// Returns the batch (`None` if the instance lost it: it cannot, short
    /// of a bug, and the component then stops) and how the batch ended.
    async fn run_batch(&mut self, mut batch: Box<Batch>, first: Taken) -> (Option<Box<Batch>>, BatchEnd) {
        batch.begin(first);
        let Some(instance) = self.instance.as_mut() else {
            // The caller checked; keep the batch's first message pending.
            return (Some(batch), BatchEnd::Done);
        };
        let stop = &self.stop;
        let called = AssertUnwindSafe(unless_stopped(stop, instance.handle_messages(batch))).catch_unwind().await;
        let Some(mut batch) = instance.take_source::<Batch>() else {
            self.instance = None;
            return (None, BatchEnd::Stop(Stop::OnItsOwn("the batch source was lost".to_owned())));
        };
        let (reason, outcome, end) = match called {
            Ok(Ok(())) => {
                // Settling runs router and event code: a panic there is a
                // crash too (the delivery's guard dead-letters the message).
                match std::panic::catch_unwind(AssertUnwindSafe(|| batch.returned())) {
                    Ok(()) => {
                        if batch.handed() > 0 {
                            self.intensity.on_success();
                        }
                        return (Some(batch), BatchEnd::Done);
                    }
                    Err(panic) => return (Some(batch), BatchEnd::Crashed(self.panicked(panic.as_ref()))),
                }
            }
            Ok(Err(CallFailure::Stopped(reason))) => {
                self.instance = None;
                (format!("interrupted: {reason}"), "stopped", BatchEnd::Stop(Stop::Told(reason.to_owned())))
            }
            Ok(Err(CallFailure::Guest(failure))) => {
                let failure = failure.to_string();
                (failure.clone(), "target-failed", BatchEnd::Crashed(failure))
            }
            Err(panic) => {
                let failure = self.panicked(panic.as_ref());
                (failure.clone(), "target-failed", BatchEnd::Crashed(failure))
            }
        };
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| batch.failed(&reason, outcome))) {
            // The failed message's guard settled it while unwinding.
            let panicked = self.panicked(panic.as_ref());
            if matches!(end, BatchEnd::Crashed(_)) {
                return (Some(batch), BatchEnd::Crashed(panicked));
            }
        }
        (Some(batch), end)
    }

    /// Handles one envelope. `Err` means the component must stop.
    async fn handle(&mut self, delivery: Delivery<'_>) -> Result<(), Stop> {
        let envelope = delivery.envelope();
        let registered_ns = match envelope {
            Envelope::Callback { registered_ns, .. } => Some(*registered_ns),
            Envelope::Message { .. } | Envelope::Request { .. } => None,
        };
        let parent = *envelope.trace();
        let trace = parent.child();
        let span = handler_span(self.me.id(), envelope, trace, parent);
        let Some(instance) = self.instance.as_mut() else {
            delivery.undelivered(&format!("{} has no running instance", self.me.id()));
            return Ok(());
        };
        let stop = &self.stop;
        // The router's TSC clock: a fifth of the cost of `Instant::now` here.
        let started = self.handler_duration.is_some().then(|| self.shared.router.now_ns());
        // A host panic inside the call (a host function, the router, an
        // audit sink) is caught here, while the delivery is still at hand,
        // so the requester's `target-failed` names the panic.
        let called = AssertUnwindSafe(async {
            match envelope {
                Envelope::Message { sender, payload, .. } | Envelope::Request { sender, payload, .. } => {
                    unless_stopped(stop, instance.handle_message(sender, payload, Some(trace)).instrument(span.clone()))
                        .await
                }
                Envelope::Callback { id, outcome, .. } => {
                    unless_stopped(stop, instance.handle_callback(id, outcome, Some(trace)).instrument(span.clone()))
                        .await
                        .map(|handled| handled.map(|()| Vec::new()))
                }
            }
        })
        .catch_unwind()
        .await;
        if let (Some(histogram), Some(started)) = (&self.handler_duration, started) {
            histogram.record(self.shared.router.elapsed_since(started));
        }
        let called = match called {
            Ok(called) => called,
            Err(panic) => {
                span.record("outcome", "target-failed");
                let failure = self.panicked(panic.as_ref());
                delivery.failed(&failure);
                return self.crashed(&failure).await;
            }
        };
        let failure = match called {
            Ok(result) => {
                span.record("outcome", if result.is_ok() { "ok" } else { "handler-error" });
                // Before settling: the settle may make the system quiescent,
                // and whoever waits for that must find the round trip counted.
                if let (Some(histogram), Some(registered_ns)) = (&self.request_duration, registered_ns) {
                    histogram.record(self.shared.router.elapsed_since(registered_ns));
                }
                self.emit(&delivery, (trace, parent), &result);
                delivery.handled(result, trace);
                self.intensity.on_success();
                return Ok(());
            }
            Err(failure) => failure,
        };
        span.record("outcome", if matches!(failure, CallFailure::Stopped(_)) { "stopped" } else { "target-failed" });
        delivery.failed(&failure.to_string());
        match failure {
            CallFailure::Stopped(reason) => {
                self.instance = None;
                Err(Stop::Told(reason.to_owned()))
            }
            CallFailure::Guest(failure) => self.crashed(&failure.to_string()).await,
        }
    }

    /// A host panic escaped while handling an envelope (or while recovering
    /// from one; the envelope was settled when its delivery was dropped):
    /// treat the instance as crashed.
    async fn recover(&mut self, panic: Box<dyn Any + Send>) -> Result<(), Stop> {
        let failure = self.panicked(panic.as_ref());
        self.crashed(&failure).await
    }

    /// Logs a host panic caught while handling and returns the failure
    /// text it becomes (`host panic while handling: <message>`).
    fn panicked(&self, panic: &(dyn Any + Send)) -> String {
        let failure = format!("host panic while handling: {}", panic_message(panic));
        tracing::error!(component = %self.id(), %failure, "actor panicked");
        failure
    }

    /// Emits [`SystemEvent::Handled`] or [`SystemEvent::Callback`] if anyone
    /// listens.
    fn emit(
        &self,
        delivery: &Delivery<'_>,
        (trace, parent): (TraceContext, TraceContext),
        result: &Result<Vec<u8>, ComponentError>,
    ) {
        if !self.shared.events.active() {
            return;
        }
        let component = self.me.id().clone();
        let event = match delivery.envelope() {
            Envelope::Message { sender, payload, .. } => {
                handled_event(component, sender, None, payload, result, (trace, parent))
            }
            Envelope::Request { sender, id, payload, .. } => {
                handled_event(component, sender, Some(*id), payload, result, (trace, parent))
            }
            Envelope::Callback { id, outcome, .. } => SystemEvent::Callback {
                component,
                request_id: *id,
                outcome: outcome.clone(),
                result: result.as_ref().map(|_| ()).map_err(Clone::clone),
                trace,
                parent,
            },
        };
        self.shared.events.emit(event);
    }

    /// The instance failed: discard it, drop the requests it had pending,
    /// and restart it (after a backoff) unless the restart intensity is
    /// exceeded or the system shuts down. `Err` when the component must stop.
    ///
    /// Boxed: a restart is rare, and its future (an instantiation's
    /// included) would otherwise make every handler's future as large as
    /// itself, several KB that moved with each envelope.
    fn crashed<'a>(&'a mut self, failure: &'a str) -> Pin<Box<dyn Future<Output = Result<(), Stop>> + Send + 'a>> {
        Box::pin(self.restart(failure))
    }

    /// [`Actor::crashed`], unboxed.
    async fn restart(&mut self, failure: &str) -> Result<(), Stop> {
        self.instance = None;
        self.me.count_crash();
        let router = Arc::clone(&self.shared.router);
        let dropped = router.drop_requests_of(self.id());
        let reason = format!("{failure}; {dropped} pending requests dropped");
        tracing::warn!(component = %self.id(), %reason, "instance crashed");
        router.audit_lifecycle(AuditEvent::Crash, self.id(), reason.clone());
        if self.shared.events.active() {
            self.shared.events.emit(SystemEvent::Crashed { component: self.id().clone(), reason });
        }
        loop {
            let delay = self.intensity.on_crash(Instant::now()).map_err(Stop::OnItsOwn)?;
            // Shutdown cuts a backoff short; an instantiation already under
            // way finishes (it is bounded by the time budget), so a crash
            // just before a shutdown still shows its restart.
            if !delay.is_zero() {
                tokio::select! {
                    biased;
                    reason = self.stop.wait() => {
                        return Err(Stop::Told(format!("{reason} during restart backoff")));
                    }
                    () = tokio::time::sleep(delay) => {}
                }
            }
            let restarted = self
                .engine
                .instantiate(&self.compiled, self.me.id().clone(), &self.limits, &self.wasi, Arc::clone(&router) as _)
                .await;
            match restarted {
                Ok(instance) => {
                    self.instance = Some(instance);
                    self.me.count_restart();
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
    fn stop_for_good(mut self, batch: Option<&mut Batch>, reason: &str) {
        let router = Arc::clone(&self.shared.router);
        router.unregister(self.id());
        // Dropping the instance drops a batch lost inside it, which closes
        // the mailbox the same way.
        self.instance = None;
        if let Some(batch) = batch {
            batch.close(&format!("{} stopped: {reason}", self.id()));
        }
        router.drop_requests_of(self.id());
        router.audit_lifecycle(AuditEvent::Stop, self.id(), reason.to_owned());
        tracing::info!(component = %self.id(), reason, "component stopped");
        if self.shared.events.active() {
            self.shared.events.emit(SystemEvent::Stopped { component: self.id().clone(), reason: reason.to_owned() });
        }
    }
}

/// Why an actor's loop ends.
enum Stop {
    /// It was told to (shutdown, or the host stopping this component): a
    /// normal end.
    Told(String),
    /// It stopped on its own: restart intensity exceeded, mailbox closed.
    OnItsOwn(String),
}

/// How a batch ended (see [`Actor::run_batch`]).
enum BatchEnd {
    /// The call returned, or the batch never started: go on.
    Done,
    /// The instance failed (the text is the failure): restart it.
    Crashed(String),
    /// The component must stop.
    Stop(Stop),
}

/// Why a guest call did not return a result.
enum CallFailure {
    /// The guest trapped or ran out of a budget.
    Guest(GuestFailure),
    /// The actor was told to stop while the call ran (why); the call was
    /// abandoned.
    Stopped(&'static str),
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Guest(failure) => failure.fmt(f),
            Self::Stopped(reason) => write!(f, "interrupted: {reason}"),
        }
    }
}

/// Drives a guest call, abandoning it if the actor is told to stop first.
/// The call is polled first, so the stop signal costs nothing to a call
/// that finishes in its first poll.
fn unless_stopped<F: Future<Output = Result<T, GuestFailure>>, T>(
    stop: &StopReceiver,
    call: F,
) -> UnlessStopped<'_, F> {
    UnlessStopped { call, stop }
}

pin_project_lite::pin_project! {
    /// The future of [`unless_stopped`]. A named future rather than an
    /// `async fn` or `select!`, which keep the call's future (hundreds of
    /// bytes) twice, as the argument and as the copy they poll, and copy it
    /// on every envelope.
    struct UnlessStopped<'a, F> {
        #[pin]
        call: F,
        stop: &'a StopReceiver,
    }
}

impl<F: Future<Output = Result<T, GuestFailure>>, T> Future for UnlessStopped<'_, F> {
    type Output = Result<T, CallFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.call.poll(cx) {
            return Poll::Ready(result.map_err(CallFailure::Guest));
        }
        this.stop.poll_wait(cx).map(|reason| Err(CallFailure::Stopped(reason)))
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

/// The [`SystemEvent::Handled`] of a message or request.
pub(crate) fn handled_event(
    component: ComponentId,
    sender: &ComponentId,
    request_id: Option<CorrelationId>,
    payload: &[u8],
    result: &Result<Vec<u8>, ComponentError>,
    (trace, parent): (TraceContext, TraceContext),
) -> SystemEvent {
    SystemEvent::Handled {
        component,
        sender: sender.clone(),
        request_id,
        payload: payload.to_vec(),
        result: result.clone(),
        trace,
        parent,
    }
}

/// The span of one handler call (`debug`, target `wasm_system::actor`; off
/// unless a subscriber wants it, so its fields cost nothing then). Its ids
/// are the host's own W3C ids: `trace_id` and `span_id` of this handler,
/// `parent_span_id` of the span that sent the envelope (for a callback: the
/// span that ended the request; for a timeout, the requester's span that sent
/// it). An envelope the host sent with no trace of its own starts the trace:
/// then there is no parent span to name, and the field stays empty. An
/// OpenTelemetry layer (see `wasm_system::otlp`) exports the span with
/// exactly these ids, so a chain of requests is one trace. `outcome` is
/// recorded when the call ends: `ok`, `handler-error`, `target-failed`
/// (trap, limit, host panic) or `stopped`; a callback also records
/// `request_outcome`: `response` or the `request-error` case.
pub(crate) fn handler_span(
    component: &ComponentId,
    envelope: &Envelope,
    trace: TraceContext,
    parent: TraceContext,
) -> tracing::Span {
    let span = tracing::debug_span!(
        "handle",
        otel.name = envelope.kind(),
        component = %component,
        kind = envelope.kind(),
        sender = tracing::field::Empty,
        correlation_id = tracing::field::Empty,
        request_outcome = tracing::field::Empty,
        outcome = tracing::field::Empty,
        trace_id = %trace.trace_id_hex(),
        span_id = %trace.span_id_hex(),
        parent_span_id = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let (sender, id) = match envelope {
        Envelope::Message { sender, .. } => (Some(sender), None),
        Envelope::Request { sender, id, .. } => (Some(sender), Some(id)),
        Envelope::Callback { id, outcome, .. } => {
            let outcome = match outcome {
                Ok(_) => "response",
                Err(error) => error.kind(),
            };
            span.record("request_outcome", outcome);
            (None, Some(id))
        }
    };
    if let Some(sender) = sender {
        span.record("sender", sender.as_str());
    }
    if let Some(id) = id {
        span.record("correlation_id", id.as_str());
    }
    if !sender.is_some_and(ComponentId::is_host) {
        span.record("parent_span_id", parent.span_id_hex());
    }
    span
}
