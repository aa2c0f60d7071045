//! One actor per component: a tokio task that takes envelopes from the
//! component's mailbox one at a time and calls its instance, so a component
//! never handles two things at once. The mailbox outlives the instance: a
//! crash discards the instance, the supervisor makes a new one, and queued
//! messages wait for it.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use wasm_core::{ComponentError, ComponentId, CorrelationId, Limits, RequestError, TraceContext};
use wasm_messaging::{ActorRef, AuditEvent, DeadLetter, Envelope, MailboxReceiver, Router, Settled};
use wasm_runtime::{CompiledComponent, ComponentInstance, GuestFailure, WasmEngine};

use crate::events::{EventHub, SystemEvent};
use crate::supervisor::RestartIntensity;

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
    pub(crate) intensity: RestartIntensity,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Actor {
    fn id(&self) -> &ComponentId {
        self.me.id()
    }

    pub(crate) async fn run(mut self) {
        let reason = loop {
            let envelope = tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => break "system shutdown".to_owned(),
                envelope = self.inbox.recv() => match envelope {
                    Some(envelope) => envelope,
                    None => break "mailbox closed".to_owned(),
                },
            };
            if let Err(reason) = self.handle(envelope).await {
                break reason;
            }
        };
        self.stop_for_good(&reason);
    }

    /// Handles one envelope. `Err` means the component must stop.
    async fn handle(&mut self, envelope: Envelope) -> Result<(), String> {
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
        let router = &self.shared.router;
        let failure = match envelope {
            Envelope::Message { ref sender, ref payload, .. } => {
                let result = span.in_scope(|| instance.handle_message(sender, payload, Some(trace)));
                match result {
                    Ok(result) => {
                        self.emit_handled(sender, None, payload, (trace, parent), || result);
                        router.settle(Settled::Handled);
                        None
                    }
                    Err(failure) => Some((failure, envelope)),
                }
            }
            Envelope::Request { ref sender, id, ref payload, .. } => {
                let result = span.in_scope(|| instance.handle_message(sender, payload, Some(trace)));
                match result {
                    Ok(result) => {
                        self.emit_handled(sender, Some(id), payload, (trace, parent), || result.clone());
                        router.respond(&self.me, &id, result, trace);
                        router.settle(Settled::Handled);
                        None
                    }
                    Err(failure) => {
                        router.fail(&id, RequestError::TargetFailed(format!("{}: {failure}", self.me.id())), trace);
                        Some((failure, envelope))
                    }
                }
            }
            Envelope::Callback { id, ref outcome, .. } => {
                let result = span.in_scope(|| instance.handle_callback(&id, outcome, Some(trace)));
                match result {
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
                        router.settle(Settled::CallbackHandled);
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
            Some((failure, envelope)) => {
                self.dead_letter(&envelope, failure.to_string());
                self.crashed(&failure).await
            }
        }
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

    fn dead_letter(&self, envelope: &Envelope, reason: String) {
        let (sender, correlation_id) = match envelope {
            Envelope::Message { sender, .. } => (sender.clone(), None),
            Envelope::Request { sender, id, .. } => (sender.clone(), Some(*id)),
            Envelope::Callback { id, .. } => (self.me.id().clone(), Some(*id)),
        };
        let letter = DeadLetter { target: self.me.id().clone(), sender, kind: envelope.kind(), correlation_id, reason };
        if self.shared.events.active() {
            self.shared.events.emit(SystemEvent::DeadLettered(letter.clone()));
        }
        self.shared.router.dead_letter(letter);
        self.shared.router.settle(Settled::DeadLettered);
    }

    /// The instance failed: discard it, drop the requests it had pending,
    /// and restart it (after a backoff) unless the restart intensity is
    /// exceeded. `Err` when the component must stop.
    async fn crashed(&mut self, failure: &GuestFailure) -> Result<(), String> {
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
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match self.shared.engine.instantiate(
                &self.compiled,
                self.id().clone(),
                &self.limits,
                Arc::clone(&self.shared.router) as _,
            ) {
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
