//! [`System`]: the composition root that wires router, tracker, mailboxes,
//! engine and actors, and the embedding API (send, request, observe, shut down).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use wasm_core::{
    ComponentId, ComponentManifest, CorrelationId, CorrelationKey, MessageRouter, MessagingError, Origin, RequestError,
    SendError, timeout_ms,
};
use wasm_messaging::{
    ActorRef, AuditEvent, AuditSink, DeadLetter, Envelope, MailboxReceiver, NoAudit, Policy, Router, RouterStats,
    Settled,
};
use wasm_runtime::{CompiledComponent, EngineConfig, WasmEngine};

use crate::actor::{Actor, Shared};
use crate::error::{ManifestError, SystemError};
use crate::events::{EventHub, SystemEvent};
use crate::manifest::LoadedComponent;
use crate::supervisor::RestartIntensity;

/// Where a component's code comes from.
#[derive(Clone, Debug)]
enum Source {
    /// A `.wasm` component or a `.wat` core module on disk.
    File(PathBuf),
    /// Component bytes already in memory.
    Bytes(Vec<u8>),
    /// Already compiled (with the engine given to [`SystemBuilder::engine`]).
    Compiled(CompiledComponent),
}

/// Builds a [`System`]: add components, optionally an engine to share and
/// an audit sink, then [`SystemBuilder::start`].
#[must_use]
pub struct SystemBuilder {
    components: Vec<(ComponentManifest, Source)>,
    engine: Option<Arc<WasmEngine>>,
    audit: Arc<dyn AuditSink>,
}

impl SystemBuilder {
    /// Adds a component whose code is at `wasm_path` (a `.wasm` component or
    /// a `.wat` core module), with the rules of `manifest`.
    pub fn component(mut self, manifest: ComponentManifest, wasm_path: impl Into<PathBuf>) -> Self {
        self.components.push((manifest, Source::File(wasm_path.into())));
        self
    }

    /// Adds a component loaded from its manifest file.
    pub fn loaded(self, component: &LoadedComponent) -> Self {
        self.component(component.manifest.clone(), component.wasm_path.clone())
    }

    /// Adds a component from component binary bytes.
    pub fn component_bytes(mut self, manifest: ComponentManifest, bytes: Vec<u8>) -> Self {
        self.components.push((manifest, Source::Bytes(bytes)));
        self
    }

    /// Adds a component compiled beforehand with the engine passed to
    /// [`SystemBuilder::engine`] (compiled code is shared, not copied).
    pub fn compiled(mut self, manifest: ComponentManifest, component: CompiledComponent) -> Self {
        self.components.push((manifest, Source::Compiled(component)));
        self
    }

    /// Shares an engine (and its compiled code cache) with other systems.
    pub fn engine(mut self, engine: Arc<WasmEngine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Sends audit records to `sink` (default: discarded).
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = sink;
        self
    }

    /// Compiles every component (each distinct file once), checks it against
    /// the world, registers its mailbox, instantiates it and starts its actor.
    ///
    /// # Errors
    /// [`SystemError`] for a bad manifest value, a component that does not
    /// compile or fit the world, a failed instantiation, or a duplicate id.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    ///
    /// # Cancel safety
    /// Not cancel-safe: components started before the future is dropped keep
    /// running until the runtime stops (no `System` owns them to shut them down).
    pub async fn start(self) -> Result<System, SystemError> {
        let engine = match self.engine {
            Some(engine) => engine,
            None => Arc::new(WasmEngine::new(EngineConfig::default()).map_err(SystemError::Engine)?),
        };
        let (router, host_inbox) = Router::start(self.audit);
        let shared = Arc::new(Shared { engine, router: Arc::clone(&router), events: EventHub::default() });
        let (stop_tx, stop_rx) = watch::channel(false);
        let replies = Arc::new(HostReplies::default());
        let host_task = tokio::spawn(host_inbox_loop(host_inbox, Arc::clone(&replies), Arc::clone(&router)));
        let mut system = System { shared, replies, stop: stop_tx, actors: Vec::new(), host_task: Some(host_task) };

        let mut compiled: HashMap<PathBuf, CompiledComponent> = HashMap::new();
        for (manifest, source) in self.components {
            let id = manifest.component.id.clone();
            let runtime_error = |source| SystemError::Runtime { id: id.to_string(), source };
            let component = match &source {
                Source::File(path) => match compiled.get(path) {
                    Some(c) => c.clone(),
                    None => {
                        let c = system.shared.engine.load_file(path).map_err(runtime_error)?;
                        compiled.insert(path.clone(), c.clone());
                        c
                    }
                },
                Source::Bytes(bytes) => system.shared.engine.load(id.as_str(), bytes).map_err(runtime_error)?,
                Source::Compiled(component) => component.clone(),
            };
            system.spawn_actor(manifest, component, stop_rx.clone()).await?;
        }
        Ok(system)
    }
}

impl fmt::Debug for SystemBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self.components.iter().map(|(m, _)| m.component.id.clone()).collect();
        f.debug_struct("SystemBuilder").field("components", &ids).finish()
    }
}

/// A running system of component actors.
///
/// ```no_run
/// use wasm_core::{Codec, MessagePayload};
/// use wasm_system::{System, load_component};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let echo = load_component("examples/request-reply/service.toml".as_ref())?;
/// let system = System::builder().loaded(&echo).start().await?;
/// let ask = system.request("service", MessagePayload::encode(Codec::Raw, b"hi").into_bytes(), None)?;
/// assert_eq!(ask.response().await?, b"\x55hi");
/// let report = system.shutdown(std::time::Duration::from_secs(5)).await;
/// assert!(report.stats.balanced());
/// # Ok(()) }
/// ```
pub struct System {
    shared: Arc<Shared>,
    replies: Arc<HostReplies>,
    stop: watch::Sender<bool>,
    actors: Vec<(ComponentId, JoinHandle<Result<(), String>>)>,
    host_task: Option<JoinHandle<()>>,
}

impl System {
    /// A builder with no components.
    pub fn builder() -> SystemBuilder {
        SystemBuilder { components: Vec::new(), engine: None, audit: Arc::new(NoAudit) }
    }

    async fn spawn_actor(
        &mut self,
        manifest: ComponentManifest,
        compiled: CompiledComponent,
        stop: watch::Receiver<bool>,
    ) -> Result<(), SystemError> {
        let id = manifest.component.id.clone();
        let policy = Policy::from_manifest(&manifest).map_err(|e| {
            SystemError::Manifest(ManifestError::Invalid {
                file: PathBuf::from(format!("<manifest of {id}>")),
                key: e.key,
                problem: e.problem,
            })
        })?;
        let router = &self.shared.router;
        let (me, inbox) = router.register(id.clone(), policy, &manifest.mailbox)?;
        let instance = match self
            .shared
            .engine
            .instantiate(
                &compiled,
                id.clone(),
                &manifest.limits,
                &manifest.wasi,
                Arc::clone(router) as Arc<dyn MessageRouter>,
            )
            .await
        {
            Ok(instance) => instance,
            Err(source) => {
                router.unregister(&id);
                return Err(SystemError::Runtime { id: id.to_string(), source });
            }
        };
        router.audit_lifecycle(AuditEvent::Start, &id, format!("started from {}", compiled.origin()));
        tracing::info!(component = %id, origin = compiled.origin(), "component started");
        let actor = Actor {
            me,
            inbox,
            compiled,
            instance: Some(instance),
            limits: manifest.limits.clone(),
            wasi: manifest.wasi.clone(),
            in_flight: None,
            intensity: RestartIntensity::new(manifest.restart),
            shared: Arc::clone(&self.shared),
            stop,
        };
        self.actors.push((id, tokio::spawn(actor.run())));
        Ok(())
    }

    /// Sends a fire-and-forget message as the host (sender `host`): a
    /// [`Payload`](wasm_core::Payload) (`Payload::json(&value)?`, ...) or the
    /// wire bytes (`Vec<u8>`, multicodec prefix included).
    ///
    /// # Errors
    /// A [`SendError`] with the [`MessagingError`] of the chokepoint (the host
    /// may message any component, unlimited, but payload, target and mailbox
    /// rules hold) and the payload handed back (`into_inner`), so a refused
    /// message is never lost.
    pub fn send(&self, target: &str, payload: impl Into<Vec<u8>>) -> Result<(), SendError<Vec<u8>>> {
        host_send(&self.shared.router, target, payload.into())
    }

    /// Sends a request as the host; the response arrives through the returned
    /// [`HostRequest`], a future. `timeout` `None` means the default (5,000
    /// ms); a `Some` is rounded up to whole milliseconds, at least 1 ms, and
    /// above the maximum (300,000 ms) is refused with `invalid-message`.
    ///
    /// Dropping the [`HostRequest`] before its outcome cancels the request
    /// (tokio and ractor style: no one is left to read the answer).
    ///
    /// # Errors
    /// As [`System::send`], plus the request quotas; the payload is handed
    /// back in the [`SendError`].
    pub fn request(
        &self,
        target: &str,
        payload: impl Into<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<HostRequest, SendError<Vec<u8>>> {
        host_request(&self.shared.router, &self.replies, target, payload.into(), timeout)
    }

    /// A handle on component `id`, to send to it, request from it and read
    /// its mailbox and request counts without naming it again (ractor's
    /// `ActorRef`, kameo's `ActorRef`). The handle stays usable after the
    /// component stops: sends are then refused with `target-not-found`.
    ///
    /// # Errors
    /// [`MessagingError::TargetNotFound`] when no running component has
    /// this id.
    pub fn component(&self, id: &str) -> Result<ComponentRef, MessagingError> {
        let actor = self.shared.router.lookup(id).ok_or_else(|| MessagingError::TargetNotFound(id.to_owned()))?;
        Ok(ComponentRef { actor, router: Arc::clone(&self.shared.router), replies: Arc::clone(&self.replies) })
    }

    /// Cancels a request the host made.
    ///
    /// # Errors
    /// [`MessagingError::RequestNotFound`] when it already ended.
    pub fn cancel(&self, id: &CorrelationId) -> Result<(), MessagingError> {
        let host = ComponentId::host();
        self.shared.router.cancel_request(Origin { sender: &host, trace: None }, id.as_str())
    }

    /// Subscribes to [`SystemEvent`]s from now on (unbounded; drop the
    /// receiver to unsubscribe).
    #[must_use]
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<SystemEvent> {
        self.shared.events.subscribe()
    }

    /// Every counter (messages, requests, callbacks, refusals, dead letters).
    #[must_use]
    pub fn stats(&self) -> RouterStats {
        self.shared.router.stats()
    }

    /// The most recent dead letters, oldest first.
    #[must_use]
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.shared.router.dead_letters()
    }

    /// Ids of the running components, sorted.
    #[must_use]
    pub fn components(&self) -> Vec<ComponentId> {
        self.shared.router.component_ids()
    }

    /// The router (for embedders that wire more around it).
    #[must_use]
    pub fn router(&self) -> &Arc<Router> {
        &self.shared.router
    }

    /// Waits until nothing is queued or being handled and no request is
    /// pending, or `bound` passes; returns whether the system is quiescent.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only observes.
    pub async fn wait_quiescent(&self, bound: Duration) -> bool {
        self.shared.router.wait_quiescent(bound).await
    }

    /// Shuts down gracefully: lets the actors drain their mailboxes for up to
    /// `drain`, then stops every component (what is still queued is
    /// dead-lettered and queued requests answer `delivery-failed`), drops
    /// requests still pending, stops the timers and returns the final counters.
    ///
    /// The stop interrupts what would make it wait: a handler still running
    /// after `drain` is abandoned (its envelope dead-lettered, a request's
    /// requester told `target-failed`) and a restart backoff is cut short, so
    /// shutdown takes about `drain` plus the time to settle what is queued.
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropping the future part-way leaves actors running
    /// until the runtime stops.
    pub async fn shutdown(mut self, drain: Duration) -> ShutdownReport {
        let drained = self.wait_quiescent(drain).await;
        let _ = self.stop.send(true);
        let mut stopped_abnormally = Vec::new();
        for (id, task) in self.actors.drain(..) {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => stopped_abnormally.push((id, reason)),
                Err(e) => {
                    tracing::error!(component = %id, error = %e, "actor task failed");
                    stopped_abnormally.push((id, format!("actor task failed: {e}")));
                }
            }
        }
        let router = &self.shared.router;
        router.flush_audit();
        let dropped_host_requests = router.drop_requests_of(router.host());
        router.stop_timers().await;
        // Callbacks already queued to the host settle before the inbox stops.
        let _ = router.wait_quiescent(Duration::from_millis(500)).await;
        if let Some(task) = self.host_task.take() {
            task.abort();
        }
        ShutdownReport { drained, dropped_host_requests, stopped_abnormally, stats: router.stats() }
    }
}

impl fmt::Debug for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System").field("components", &self.components()).field("stats", &self.stats()).finish()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.host_task.take() {
            task.abort();
        }
    }
}

/// What [`System::shutdown`] found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// True when the system was quiescent before the components stopped.
    pub drained: bool,
    /// Requests made by the host that were still pending and were dropped.
    pub dropped_host_requests: usize,
    /// Components that had stopped before the shutdown, and why (restart
    /// intensity exceeded, mailbox closed); empty when all ran to the end.
    pub stopped_abnormally: Vec<(ComponentId, String)>,
    /// The final counters.
    pub stats: RouterStats,
}

/// Sends a message as the host to `target`.
fn host_send(router: &Router, target: &str, payload: Vec<u8>) -> Result<(), SendError<Vec<u8>>> {
    let host = ComponentId::host();
    router.try_send_message(Origin { sender: &host, trace: None }, target, payload)
}

/// Sends a request as the host to `target` and registers for its outcome.
fn host_request(
    router: &Arc<Router>,
    replies: &HostReplies,
    target: &str,
    payload: Vec<u8>,
    timeout: Option<Duration>,
) -> Result<HostRequest, SendError<Vec<u8>>> {
    let host = ComponentId::host();
    let id = router.try_send_request(Origin { sender: &host, trace: None }, target, payload, timeout_ms(timeout))?;
    let reply = replies.wait(id.key());
    Ok(HostRequest { id, reply, router: Arc::clone(router), settled: false })
}

/// A handle on one component, from [`System::component`]: send to it,
/// request from it, read its counts. Cheap to clone.
#[derive(Clone)]
pub struct ComponentRef {
    actor: ActorRef,
    router: Arc<Router>,
    replies: Arc<HostReplies>,
}

/// What a [`ComponentRef`] reads of its component at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ComponentStats {
    /// Envelopes queued in its mailbox (messages, requests, callbacks).
    pub mailbox_len: u64,
    /// Payload bytes queued in its mailbox.
    pub mailbox_bytes: u64,
    /// Its pending requests (sent, callback not yet handled).
    pub pending_requests: usize,
    /// Whether it stopped (its mailbox is closed).
    pub stopped: bool,
}

impl ComponentRef {
    /// The component's id.
    #[must_use]
    pub fn id(&self) -> &ComponentId {
        self.actor.id()
    }

    /// [`System::send`] to this component.
    ///
    /// # Errors
    /// As [`System::send`].
    pub fn send(&self, payload: impl Into<Vec<u8>>) -> Result<(), SendError<Vec<u8>>> {
        host_send(&self.router, self.id().as_str(), payload.into())
    }

    /// [`System::request`] to this component.
    ///
    /// # Errors
    /// As [`System::request`].
    pub fn request(
        &self,
        payload: impl Into<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<HostRequest, SendError<Vec<u8>>> {
        host_request(&self.router, &self.replies, self.id().as_str(), payload.into(), timeout)
    }

    /// Its mailbox and request counts now.
    #[must_use]
    pub fn stats(&self) -> ComponentStats {
        let mailbox = self.actor.mailbox();
        ComponentStats {
            mailbox_len: mailbox.len(),
            mailbox_bytes: mailbox.bytes(),
            pending_requests: self.actor.pending_requests(),
            stopped: mailbox.is_closed(),
        }
    }
}

impl fmt::Debug for ComponentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentRef").field("id", self.id()).field("stats", &self.stats()).finish()
    }
}

/// A request made by the host: its correlation id and, as a future, its
/// outcome.
///
/// # Cancel safety
/// Dropping it before the outcome arrives cancels the request (the callback
/// with `cancelled` then ends it, and it is counted as cancelled); a late
/// response is dropped and counted as orphaned. After the outcome, dropping
/// it does nothing.
#[derive(Debug)]
pub struct HostRequest {
    id: CorrelationId,
    reply: oneshot::Receiver<Result<Vec<u8>, RequestError>>,
    router: Arc<Router>,
    /// Whether the outcome was taken (then drop cancels nothing).
    settled: bool,
}

impl HostRequest {
    /// The request's correlation id.
    #[must_use]
    pub fn id(&self) -> CorrelationId {
        self.id
    }

    /// Waits for the outcome: the response, or why there is none.
    ///
    /// # Errors
    /// The [`RequestError`]: `timeout`, `cancelled`, `handler-error`,
    /// `target-failed`, or `delivery-failed` (also when the system shut down
    /// first).
    ///
    /// # Cancel safety
    /// Dropping this future before it completes cancels the request, as
    /// dropping the [`HostRequest`] does.
    pub async fn response(self) -> Result<Vec<u8>, RequestError> {
        self.await
    }
}

impl Drop for HostRequest {
    fn drop(&mut self) {
        if !self.settled {
            let host = ComponentId::host();
            // `request-not-found`: it ended already (an outcome is on its way
            // to no one, or the system stopped); there is nothing to cancel.
            let _ = self.router.cancel_request(Origin { sender: &host, trace: None }, self.id.as_str());
        }
    }
}

impl Future for HostRequest {
    type Output = Result<Vec<u8>, RequestError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = ready!(Pin::new(&mut self.reply).poll(cx));
        self.settled = true;
        Poll::Ready(outcome.unwrap_or_else(|_| Err(RequestError::DeliveryFailed("the system shut down".into()))))
    }
}

type Outcome = Result<Vec<u8>, RequestError>;

/// Waiting host requests, and outcomes that arrived before their waiter.
#[derive(Default)]
struct HostReplies {
    inner: Mutex<Replies>,
}

#[derive(Default)]
struct Replies {
    waiting: HashMap<CorrelationKey, oneshot::Sender<Outcome>>,
    early: HashMap<CorrelationKey, Outcome>,
}

impl HostReplies {
    fn wait(&self, key: CorrelationKey) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        match inner.early.remove(&key) {
            Some(outcome) => {
                let _ = tx.send(outcome);
            }
            None => {
                inner.waiting.insert(key, tx);
            }
        }
        rx
    }

    fn resolve(&self, key: CorrelationKey, outcome: Outcome) {
        let mut inner = self.inner.lock();
        match inner.waiting.remove(&key) {
            Some(tx) => {
                let _ = tx.send(outcome);
            }
            None => {
                inner.early.insert(key, outcome);
            }
        }
    }
}

async fn host_inbox_loop(mut inbox: MailboxReceiver, replies: Arc<HostReplies>, router: Arc<Router>) {
    while let Some(envelope) = inbox.recv().await {
        if let Envelope::Callback { id, outcome, .. } = envelope {
            replies.resolve(id.key(), outcome);
        }
        router.settle_callback(router.host(), Settled::CallbackHandled);
    }
}
