//! [`System`]: the composition root that wires router, tracker, mailboxes,
//! engine and actors, and the embedding API (send, request, observe, shut down).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wasm_core::{
    ComponentId, ComponentManifest, CorrelationId, LocalComponent, MessageRouter, MessagingError, Origin,
    RemoteInbound, RemoteNodeStats, RemoteTransport, RequestError, SendError, timeout_ms,
};
use wasm_messaging::{ActorRef, AuditEvent, AuditSink, DeadLetter, NoAudit, Outcome, Router, RouterStats, Target};
use wasm_runtime::{CompiledComponent, EngineConfig, RuntimeError, WasmEngine};

use crate::actor::{Actor, Shared};
use crate::error::SystemError;
use crate::events::{EventHub, SystemEvent};
use crate::manifest::{LoadedComponent, check_values};
use crate::shards::{Placed, Shards};
use crate::stop::{StopSender, stop_signal};
use crate::supervisor::RestartIntensity;

/// Where a component's code comes from, for [`System::add`] (the builder
/// has one method per kind).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ComponentSource {
    /// A `.wasm` component (or, with the `wat` feature, a `.wat` core module)
    /// on disk.
    File(PathBuf),
    /// Component binary bytes already in memory.
    Bytes(Vec<u8>),
    /// Already compiled with the system's engine (compiled code is shared,
    /// not copied; on shards, each shard after the first copies it once:
    /// see [`SystemBuilder::shards`]).
    Compiled(CompiledComponent),
}

use ComponentSource as Source;

/// Builds a [`System`]: add components, optionally an engine to share and
/// an audit sink, then [`SystemBuilder::start`].
#[must_use]
pub struct SystemBuilder {
    /// Each component: its manifest, its code, and the manifest file it was
    /// loaded from (named in its errors).
    components: Vec<(ComponentManifest, Source, Option<PathBuf>)>,
    engine: Option<Arc<WasmEngine>>,
    audit: Arc<dyn AuditSink>,
    metrics_interval: Option<Duration>,
    cluster: Option<Arc<dyn RemoteTransport>>,
    shards: usize,
}

impl SystemBuilder {
    /// Adds a component whose code is at `wasm_path` (a `.wasm` component or
    /// a `.wat` core module), with the rules of `manifest`.
    pub fn component(mut self, manifest: ComponentManifest, wasm_path: impl Into<PathBuf>) -> Self {
        self.components.push((manifest, Source::File(wasm_path.into()), None));
        self
    }

    /// Adds a component loaded from its manifest file.
    pub fn loaded(mut self, component: &LoadedComponent) -> Self {
        let source = Source::File(component.wasm_path.clone());
        self.components.push((component.manifest.clone(), source, Some(component.file.clone())));
        self
    }

    /// Adds a component from component binary bytes.
    pub fn component_bytes(mut self, manifest: ComponentManifest, bytes: Vec<u8>) -> Self {
        self.components.push((manifest, Source::Bytes(bytes), None));
        self
    }

    /// Adds a component compiled beforehand with the engine passed to
    /// [`SystemBuilder::engine`] (compiled code is shared, not copied; on
    /// shards, each shard after the first copies it once, see
    /// [`SystemBuilder::shards`]). Without shards, a component compiled by
    /// another engine fails to start ([`SystemError::Runtime`]); on shards it
    /// is copied into each shard's engine like the system's own, if that
    /// engine has the same settings.
    pub fn compiled(mut self, manifest: ComponentManifest, component: CompiledComponent) -> Self {
        self.components.push((manifest, Source::Compiled(component), None));
        self
    }

    /// Shares an engine (and its compiled code cache) with other systems. On
    /// shards, only the first shard runs on it; each system makes its own
    /// engines for the others ([`SystemBuilder::shards`]).
    pub fn engine(mut self, engine: Arc<WasmEngine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Sends audit records to `sink` (default: discarded).
    pub fn audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = sink;
        self
    }

    /// Publishes the system's metrics to the process's `metrics` recorder
    /// every `interval` (see [`System::record_metrics`] for what), and
    /// measures each handler's duration into the histogram
    /// `airssys_handler_duration_seconds`. Install the recorder before
    /// [`SystemBuilder::start`]: each actor registers its histogram when it
    /// starts. Default: off (then nothing is measured per envelope, and
    /// [`System::record_metrics`] still publishes on demand).
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.metrics_interval = Some(interval);
        self
    }

    /// Joins the system to other hosts (SPEC section 5): component ids
    /// `name@node` of other nodes are reached through `transport` (the NATS
    /// transport of `wasm-cluster`), with the same policy step, errors,
    /// timeouts and cancellation as local ids; this host's components are
    /// announced to the others as they start and stop. Give the transport
    /// [`System::remote_inbound`] once the system runs, so what other hosts
    /// send reaches it.
    pub fn cluster(mut self, transport: Arc<dyn RemoteTransport>) -> Self {
        self.cluster = Some(transport);
        self
    }

    /// Runs the actors on `count` shards: single-threaded executors, one OS
    /// thread each (named `wasm-shard-<k>`), instead of on the runtime
    /// that calls [`SystemBuilder::start`]. Each actor stays on one shard
    /// for its life; components of one `[placement] group` share a shard,
    /// so the messages, requests and callbacks between them never wake
    /// another thread; the others, and each new group, get shards in turn.
    /// `0` (the default) keeps the actors on the calling runtime; more than
    /// 256 is refused when the system starts (`SystemError::Shards`).
    ///
    /// Choose it for request/response between components that talk to each
    /// other (grouped): the `guest_to_guest` bench measures a round trip
    /// p99 three to four times lower than on a two-worker work-stealing
    /// runtime, and independent groups scale across the shards. Leave it
    /// off when one sender floods one receiver: on a work-stealing runtime
    /// the two run in parallel on two cores, on one shard they take turns.
    /// Nothing balances load between shards: a shard whose actors are busy
    /// stays busy while another idles (within a shard the execution model
    /// holds: a computing guest yields every epoch tick).
    ///
    /// The first shard calls guests on the system's engine, each other on
    /// an engine of its own with the same settings
    /// ([`WasmEngine::sibling`], one more ticker thread each,
    /// `wasm-epoch-sib`), so that no two shards call guests on one engine
    /// and contend on its engine-wide state. Components are compiled once;
    /// such a shard copies a component's compiled code
    /// ([`WasmEngine::adopt`], on the blocking pool) the first time one of
    /// its actors is placed there, which costs the component's compiled size
    /// in memory on that shard while its actors run there (the copy goes with
    /// the last of them and the original). A component
    /// that fails to start takes no shard's turn and claims no shard for its
    /// group.
    pub fn shards(mut self, count: usize) -> Self {
        self.shards = count;
        self
    }

    /// Compiles every component (each distinct file once, on tokio's
    /// blocking pool, so compiling never stalls the async workers), checks
    /// it against the world, registers its mailbox, instantiates it and
    /// starts its actor.
    ///
    /// # Errors
    /// [`SystemError`] for a bad manifest value, a component that does not
    /// compile or fit the world, a failed instantiation, or a duplicate id.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    ///
    /// # Cancel safety
    /// Cancel-safe: the components started so far belong to a `System` that
    /// is dropped with the future, and dropping a `System` stops them (see
    /// its `Drop`).
    pub async fn start(self) -> Result<System, SystemError> {
        let engine = match self.engine {
            Some(engine) => engine,
            None => Arc::new(WasmEngine::new(EngineConfig::default()).map_err(SystemError::Engine)?),
        };
        let router = Router::start(self.audit);
        if let Some(transport) = self.cluster {
            router.set_remote(transport);
        }
        let events = Arc::new(EventHub::default());
        let observer = Arc::clone(&events);
        router.on_dead_letter(Box::new(move |letter| {
            if observer.active() {
                observer.emit(SystemEvent::DeadLettered(letter.clone()));
            }
        }));
        let shards = match self.shards {
            0 => None,
            count => Some(Shards::start(count, &engine)?),
        };
        let shared = Arc::new(Shared { engine, router, events, measure_handlers: self.metrics_interval.is_some() });
        let actors = Arc::new(Mutex::new(Vec::new()));
        let metrics = self.metrics_interval.map(|interval| spawn_metrics(interval, &actors, &shared.router));
        let system = System { shared, actors, metrics, shards };

        let mut compiled: HashMap<PathBuf, CompiledComponent> = HashMap::new();
        for (manifest, source, file) in self.components {
            let file = file.as_deref();
            let component = match source {
                Source::File(path) => match compiled.get(&path) {
                    Some(c) => c.clone(),
                    None => {
                        let c = system.compile(&manifest.component.id, Source::File(path.clone()), file).await?;
                        compiled.insert(path, c.clone());
                        c
                    }
                },
                source => system.compile(&manifest.component.id, source, file).await?,
            };
            system.spawn_actor(manifest, component, file).await?;
        }
        system.announce();
        Ok(system)
    }
}

impl fmt::Debug for SystemBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<_> = self.components.iter().map(|(m, _, _)| m.component.id.clone()).collect();
        f.debug_struct("SystemBuilder").field("components", &ids).field("shards", &self.shards).finish()
    }
}

/// A running system of component actors.
///
/// Components can be added ([`System::add`]) and stopped
/// ([`System::stop_component`]) while it runs. [`System::shutdown`] drains
/// and stops everything and reports the final counters.
///
/// # Drop
/// Dropping a `System` without [`System::shutdown`] stops it without
/// draining: every actor is told to stop (what is queued is dead-lettered,
/// queued requests answer `delivery-failed`, a handler still running is
/// interrupted), refusals not yet audited are written, the host's pending
/// requests are dropped (their futures resolve to `delivery-failed`) and the
/// timer driver stops. The actors finish on their own tasks; nothing waits
/// for them, so the final counters are not reported.
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
    actors: Arc<Mutex<Vec<ActorHandle>>>,
    /// The task publishing metrics ([`SystemBuilder::metrics_interval`]).
    metrics: Option<JoinHandle<()>>,
    /// Where the actors run, with [`SystemBuilder::shards`].
    shards: Option<Shards>,
}

/// A component registered with the router whose actor has not started yet:
/// dropping it unregisters the id (a failed instantiation, a dropped
/// `add`); [`Registration::keep`] once the actor runs.
struct Registration<'a> {
    router: &'a Router,
    id: Option<ComponentId>,
}

impl Registration<'_> {
    fn keep(mut self) {
        self.id = None;
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.router.unregister(&id);
        }
    }
}

/// A running actor as the system keeps it.
struct ActorHandle {
    id: ComponentId,
    /// Its registration: what [`System::component_stats`] reads.
    actor: ActorRef,
    /// Tells the actor to stop (dropping it too: a shutdown).
    stop: StopSender,
    task: JoinHandle<Result<(), String>>,
    /// Its shard ([`SystemBuilder::shards`]).
    shard: Option<usize>,
}

impl System {
    /// A builder with no components.
    pub fn builder() -> SystemBuilder {
        SystemBuilder {
            components: Vec::new(),
            engine: None,
            audit: Arc::new(NoAudit),
            metrics_interval: None,
            cluster: None,
            shards: 0,
        }
    }

    /// Compiles `source` for component `id` (from manifest `file`, if any)
    /// on tokio's blocking pool.
    async fn compile(
        &self,
        id: &ComponentId,
        source: Source,
        file: Option<&Path>,
    ) -> Result<CompiledComponent, SystemError> {
        let engine = Arc::clone(&self.shared.engine);
        let name = id.to_string();
        // Already compiled: no trip to the blocking pool (it costs a thread
        // hand-off per instance when thousands start).
        if let Source::Compiled(component) = source {
            return Ok(component);
        }
        let origin = name.clone();
        let compiled = on_blocking_pool(&origin, move || match source {
            Source::File(path) => engine.load_file(&path),
            Source::Bytes(bytes) => engine.load(&name, &bytes),
            Source::Compiled(component) => Ok(component),
        })
        .await;
        compiled.map_err(|source| SystemError::runtime(id, file, source))
    }

    async fn spawn_actor(
        &self,
        manifest: ComponentManifest,
        compiled: CompiledComponent,
        file: Option<&Path>,
    ) -> Result<ComponentRef, SystemError> {
        let id = manifest.component.id.clone();
        let named = file.map_or_else(|| PathBuf::from(format!("<manifest of {id}>")), Path::to_path_buf);
        let policy = check_values(&manifest, &named)?;
        let router = &self.shared.router;
        let (me, inbox) = router.register(id.clone(), policy, &manifest.mailbox)?;
        // Undone if the instance fails or this future is dropped before the
        // actor starts, so the id is free again.
        let registration = Registration { router, id: Some(id.clone()) };
        // On shards, the shard's engine and its copy of the code (see
        // `shards.rs`); the placement is undone if the start fails.
        let (placed, engine, compiled) = match &self.shards {
            Some(shards) => {
                let placed = shards.place(manifest.placement.group.as_deref());
                let engine = Arc::clone(shards.engine(placed.shard()));
                let compiled =
                    adopt(&engine, compiled).await.map_err(|source| SystemError::runtime(&id, file, source))?;
                (Some(placed), engine, compiled)
            }
            None => (None, Arc::clone(&self.shared.engine), compiled),
        };
        let instance = match engine
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
            Err(source) => return Err(SystemError::runtime(&id, file, source)),
        };
        router.audit_lifecycle(AuditEvent::Start, &id, format!("started from {}", compiled.origin()));
        tracing::info!(component = %id, origin = compiled.origin(), "component started");
        let (stop_tx, stop_rx) = stop_signal();
        let handle = ComponentRef { actor: me.clone(), router: Arc::clone(router) };
        // This component's series of a histogram, when metrics are on.
        let histogram = |name: &'static str| {
            self.shared.measure_handlers.then(|| metrics::histogram!(name, "component" => id.to_string()))
        };
        let actor = Actor {
            me,
            engine,
            compiled,
            instance: Some(instance),
            limits: manifest.limits.clone(),
            wasi: manifest.wasi.clone(),
            intensity: RestartIntensity::new(manifest.restart),
            shared: Arc::clone(&self.shared),
            stop: stop_rx,
            handler_duration: histogram(crate::metrics::HANDLER_DURATION),
            request_duration: histogram(crate::metrics::REQUEST_DURATION),
        };
        let shard = placed.map(Placed::keep);
        let task = match (&self.shards, shard) {
            (Some(shards), Some(shard)) => shards.spawn(shard, actor.run(inbox)),
            _ => tokio::spawn(actor.run(inbox)),
        };
        registration.keep();
        self.actors.lock().push(ActorHandle { id, actor: handle.actor.clone(), stop: stop_tx, task, shard });
        Ok(handle)
    }

    /// Starts one more component while the system runs: compiles `source`
    /// (on the blocking pool), registers it under the manifest's id and
    /// starts its actor; returns its handle.
    ///
    /// # Errors
    /// As [`SystemBuilder::start`] for one component: a bad manifest value,
    /// code that does not compile or fit the world, a failed instantiation,
    /// or an id that is taken (`SystemError::Registry`).
    ///
    /// # Cancel safety
    /// Cancel-safe: dropped before its actor starts (while compiling or
    /// instantiating), the half-made instance is dropped and the
    /// registration undone, so the id is free again; after that, the
    /// component runs.
    pub async fn add(&self, manifest: ComponentManifest, source: ComponentSource) -> Result<ComponentRef, SystemError> {
        let compiled = self.compile(&manifest.component.id, source, None).await?;
        let added = self.spawn_actor(manifest, compiled, None).await?;
        self.announce();
        Ok(added)
    }

    /// The router as the receiving end of other hosts' messages: hand it to
    /// the cluster transport (see [`SystemBuilder::cluster`]).
    #[must_use]
    pub fn remote_inbound(&self) -> Arc<dyn RemoteInbound> {
        Arc::clone(&self.shared.router) as Arc<dyn RemoteInbound>
    }

    /// Tells the other hosts which components run here (when in a cluster).
    fn announce(&self) {
        let Some(transport) = self.shared.router.remote() else { return };
        let components = self
            .actors
            .lock()
            .iter()
            .filter(|h| !h.actor.is_stopped())
            .map(|h| LocalComponent { name: h.id.to_string(), accepts: h.actor.policy().accepts().codecs() })
            .collect();
        transport.announce(components);
    }

    /// Stops component `id` while the rest runs, and waits until it has
    /// stopped: it is unregistered (later sends get `target-not-found`), a
    /// handler still running is interrupted (dead-lettered; a request's
    /// requester gets `target-failed`), what is queued is dead-lettered
    /// (queued requests answer `delivery-failed`) and the requests it had
    /// pending are dropped. Its id can then be used again by
    /// [`System::add`].
    ///
    /// # Errors
    /// [`SystemError::NotRunning`] when no component started by this system
    /// runs under `id` (never started, already stopped, or stopped on its
    /// own after too many crashes: then the error carries why).
    ///
    /// # Cancel safety
    /// Cancel-safe: the stop is signalled before the first await; dropping
    /// the future only stops the waiting.
    pub async fn stop_component(&self, id: &str) -> Result<(), SystemError> {
        let handle = {
            let mut actors = self.actors.lock();
            let index = actors
                .iter()
                .position(|handle| handle.id.as_str() == id)
                .ok_or_else(|| SystemError::NotRunning(format!("{id}: not started by this system")))?;
            actors.swap_remove(index)
        };
        self.announce();
        handle.stop.send(STOPPED_BY_HOST);
        match handle.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(SystemError::NotRunning(format!("{id}: had stopped already: {reason}"))),
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => Err(SystemError::NotRunning(format!("{id}: actor task failed: {join}"))),
        }
    }

    /// Sends a fire-and-forget message as the host (sender `host`) without
    /// waiting: a [`Payload`](wasm_core::Payload) (`Payload::json(&value)?`,
    /// ...) or the wire bytes (`Vec<u8>`, multicodec prefix included).
    /// tokio's `try_send`: a full mailbox refuses at once.
    ///
    /// # Errors
    /// A [`SendError`] with the [`MessagingError`] of the chokepoint (the host
    /// may message any component, unlimited, but payload, target and mailbox
    /// rules hold) and the payload handed back (`into_inner`), so a refused
    /// message is never lost.
    pub fn try_send(&self, target: &str, payload: impl Into<Vec<u8>>) -> Result<(), SendError<Vec<u8>>> {
        host_send(&self.shared.router, target.into(), payload.into())
    }

    /// Sends a fire-and-forget message as the host, waiting up to `timeout`
    /// for room when the target's mailbox is full (by count or by bytes);
    /// tokio's `send_timeout`. Every other refusal is immediate, as in
    /// [`System::try_send`]. The wait is woken by the target's actor taking
    /// envelopes, not by polling.
    ///
    /// # Errors
    /// As [`System::try_send`]; `queue-full` when there was still no room at
    /// the deadline. The payload is handed back either way.
    ///
    /// # Cancel safety
    /// Cancel-safe: until it returns `Ok` the message is not queued, so a
    /// dropped future sent nothing (and the payload is dropped with it).
    pub async fn send(
        &self,
        target: &str,
        payload: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(), SendError<Vec<u8>>> {
        self.shared.router.host_send_within(target, payload.into(), timeout).await
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
    /// As [`System::try_send`]; the payload is handed back in the
    /// [`SendError`]. Host requests take no pending-request slot: each is
    /// bounded by the `HostRequest` the embedder holds.
    pub fn request(
        &self,
        target: &str,
        payload: impl Into<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<HostRequest, SendError<Vec<u8>>> {
        host_request(&self.shared.router, target.into(), payload.into(), timeout)
    }

    /// This host's node name when it is in a cluster
    /// ([`SystemBuilder::cluster`]): its components are `name@<node>` to
    /// the others.
    #[must_use]
    pub fn node(&self) -> Option<&str> {
        self.shared.router.node()
    }

    /// The host's own sending handle ([`HostHandle`]): sends and requests
    /// to any target, local or on another node, from any task, without
    /// borrowing the system.
    #[must_use]
    pub fn host_handle(&self) -> HostHandle {
        HostHandle { router: Arc::clone(&self.shared.router) }
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
        Ok(ComponentRef { actor, router: Arc::clone(&self.shared.router) })
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

    /// Each component's counts now, sorted by id: those running, and those
    /// that stopped on their own (restart intensity exceeded) until the
    /// system shuts down; not those the host stopped
    /// ([`System::stop_component`]).
    #[must_use]
    pub fn component_stats(&self) -> Vec<(ComponentId, ComponentStats)> {
        component_stats(&self.actors)
    }

    /// Publishes every count to the process's current `metrics` recorder
    /// (global, or local with `metrics::with_local_recorder`): per component
    /// (label `component`) messages and requests accepted, handled, handler
    /// errors, callbacks handled, dead letters by reason, refusals by
    /// `messaging-error` kind, mailbox depth and bytes, pending requests,
    /// crashes and restarts; per system the tracker's pending requests,
    /// requests ended by outcome, orphaned responses, and the audit sink's
    /// records written and dropped. Names and units: the constants of
    /// [`crate::metrics`]. Counters are set to the host's own counts
    /// (`absolute`), so publishing twice counts nothing twice.
    pub fn record_metrics(&self) {
        publish_metrics(&self.actors, &self.shared.router);
    }

    /// The traffic with each other node this host exchanged envelopes
    /// with, sorted by node: sent, acknowledged, pending acknowledgement,
    /// undelivered by [`wasm_core::DeliveryLoss`], credit refusals,
    /// received (see [`RemoteNodeStats`]). Empty outside a cluster, or with
    /// a transport that keeps no per-node counts.
    #[must_use]
    pub fn cluster_nodes(&self) -> Vec<RemoteNodeStats> {
        node_stats(&self.shared.router)
    }

    /// The shard component `id`'s actor runs on (`0..shard_count`), when
    /// the system runs on shards ([`SystemBuilder::shards`]); `None` without
    /// shards, or for an id not running here (never started, or stopped
    /// with [`System::stop_component`]).
    #[must_use]
    pub fn shard_of(&self, id: &str) -> Option<usize> {
        self.actors.lock().iter().find(|handle| handle.id.as_str() == id).and_then(|handle| handle.shard)
    }

    /// How many shards the system runs its actors on (0: none, the actors
    /// run on the runtime that started it).
    #[must_use]
    pub fn shard_count(&self) -> usize {
        self.shards.as_ref().map_or(0, Shards::len)
    }

    /// Ids of the running components, sorted.
    #[must_use]
    pub fn components(&self) -> Vec<ComponentId> {
        self.shared.router.component_ids()
    }

    /// The router as host functions see it ([`MessageRouter`]): sends made
    /// through it pass the same policy step and accounting as a guest's,
    /// under the sender id given in each `Origin`. For tools and benchmarks
    /// that act as a component without running one; the router itself (its
    /// registration and settlement) stays private to the system.
    #[must_use]
    pub fn message_router(&self) -> Arc<dyn MessageRouter> {
        Arc::clone(&self.shared.router) as Arc<dyn MessageRouter>
    }

    /// True when nothing is queued or being handled and no request is
    /// pending.
    #[must_use]
    pub fn is_quiescent(&self) -> bool {
        self.shared.router.is_quiescent()
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
    /// Cancel-safe: the future owns the `System`, so dropping it part-way
    /// stops the system as `Drop` does (see the type's docs); only the
    /// waiting for the actors and the report are lost.
    pub async fn shutdown(self, drain: Duration) -> ShutdownReport {
        let drained = self.wait_quiescent(drain).await;
        let handles = std::mem::take(&mut *self.actors.lock());
        for handle in &handles {
            handle.stop.send(SHUTDOWN);
        }
        let mut stopped_abnormally = Vec::new();
        let mut components = Vec::with_capacity(handles.len());
        for handle in handles {
            components.push((handle.id.clone(), handle.actor.clone()));
            match handle.task.await {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => stopped_abnormally.push((handle.id, reason)),
                Err(e) => {
                    tracing::error!(component = %handle.id, error = %e, "actor task failed");
                    stopped_abnormally.push((handle.id, format!("actor task failed: {e}")));
                }
            }
        }
        let router = &self.shared.router;
        router.flush_audit();
        let dropped_host_requests = router.drop_requests_of(ComponentId::host_ref());
        router.stop_timers().await;
        if let Some(task) = &self.metrics {
            // The last values, so a final scrape sees how the run ended.
            task.abort();
            let final_stats: Vec<_> = components.iter().map(|(id, actor)| (id.clone(), actor.stats())).collect();
            crate::metrics::publish(&final_stats, &router.stats(), router.audit_counts(), &node_stats(router));
        }
        let mut components: Vec<_> = components.into_iter().map(|(id, actor)| (id, actor.stats())).collect();
        components.sort_by(|a, b| a.0.cmp(&b.0));
        let nodes = node_stats(router);
        ShutdownReport { drained, dropped_host_requests, stopped_abnormally, stats: router.stats(), components, nodes }
    }
}

/// Why an actor stops when the system shuts down.
pub(crate) const SHUTDOWN: &str = "system shutdown";
/// Why an actor stops on [`System::stop_component`].
pub(crate) const STOPPED_BY_HOST: &str = "stopped by the host";

impl fmt::Debug for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System").field("components", &self.components()).field("stats", &self.stats()).finish()
    }
}

impl Drop for System {
    /// Stops without draining (see the type's docs). After
    /// [`System::shutdown`] there is nothing left to do.
    fn drop(&mut self) {
        if let Some(task) = &self.metrics {
            task.abort();
        }
        for handle in self.actors.lock().iter() {
            handle.stop.send(SHUTDOWN);
        }
        let router = &self.shared.router;
        router.flush_audit();
        router.drop_requests_of(ComponentId::host_ref());
        router.stop_timers_now();
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
    /// Each component's final counts, sorted by id (as
    /// [`System::component_stats`] before the stop, after it).
    pub components: Vec<(ComponentId, ComponentStats)>,
    /// The traffic with each other node at the stop, sorted by node (empty
    /// outside a cluster; see [`System::cluster_nodes`]).
    pub nodes: Vec<RemoteNodeStats>,
}

/// Each component's counts now, sorted by id.
fn component_stats(actors: &Mutex<Vec<ActorHandle>>) -> Vec<(ComponentId, ComponentStats)> {
    let mut stats: Vec<_> = actors.lock().iter().map(|h| (h.id.clone(), h.actor.stats())).collect();
    stats.sort_by(|a, b| a.0.cmp(&b.0));
    stats
}

/// [`System::record_metrics`].
fn publish_metrics(actors: &Mutex<Vec<ActorHandle>>, router: &Router) {
    crate::metrics::publish(&component_stats(actors), &router.stats(), router.audit_counts(), &node_stats(router));
}

/// The traffic with each other node, when the host is in a cluster.
fn node_stats(router: &Router) -> Vec<RemoteNodeStats> {
    router.remote().map(|transport| transport.node_stats()).unwrap_or_default()
}

/// Publishes metrics every `interval` until aborted (or the system is gone).
fn spawn_metrics(interval: Duration, actors: &Arc<Mutex<Vec<ActorHandle>>>, router: &Arc<Router>) -> JoinHandle<()> {
    let (actors, router) = (Arc::downgrade(actors), Arc::downgrade(router));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (Some(actors), Some(router)) = (actors.upgrade(), router.upgrade()) else { return };
            publish_metrics(&actors, &router);
        }
    })
}

/// Sends a message as the host to `target`.
fn host_send(router: &Router, target: Target<'_>, payload: Vec<u8>) -> Result<(), SendError<Vec<u8>>> {
    router.try_send_message(Origin { sender: ComponentId::host_ref(), trace: None }, target, payload)
}

/// Sends a request as the host to `target`; its outcome comes back on the
/// channel the tracker entry holds.
fn host_request(
    router: &Arc<Router>,
    target: Target<'_>,
    payload: Vec<u8>,
    timeout: Option<Duration>,
) -> Result<HostRequest, SendError<Vec<u8>>> {
    let (id, reply) = router.host_request(target, payload, timeout_ms(timeout))?;
    Ok(HostRequest { id, reply, router: Arc::clone(router), settled: false })
}

/// A handle on one component, from [`System::component`] or
/// [`System::add`]: send to it, request from it, read its counts. Cheap to
/// clone.
#[derive(Clone)]
pub struct ComponentRef {
    actor: ActorRef,
    router: Arc<Router>,
}

/// What a [`ComponentRef`] reads of its component at one moment: mailbox
/// and request gauges, and the counts of what it accepted, handled, failed,
/// dead-lettered and was refused ([`wasm_messaging::ActorStats`]).
pub type ComponentStats = wasm_messaging::ActorStats;

/// The embedding host's own sending handle, from [`System::host_handle`]:
/// [`System::try_send`], [`System::send`] and [`System::request`] to any
/// target, a component of this host or `name@node` of another, from any
/// task. Cheap to clone (one `Arc`). Unlike a [`ComponentRef`], it is not
/// tied to one component: each send looks its target up (and checks its
/// syntax), so a component that stops and starts again is reached again.
#[derive(Clone)]
pub struct HostHandle {
    router: Arc<Router>,
}

impl HostHandle {
    /// [`System::try_send`].
    ///
    /// # Errors
    /// As [`System::try_send`].
    pub fn try_send(&self, target: &str, payload: impl Into<Vec<u8>>) -> Result<(), SendError<Vec<u8>>> {
        host_send(&self.router, target.into(), payload.into())
    }

    /// [`System::send`]: waits up to `timeout` for room (a remote target's
    /// credit).
    ///
    /// # Errors
    /// As [`System::send`].
    ///
    /// # Cancel safety
    /// As [`System::send`]: the message is queued only by the call that
    /// returns `Ok`.
    pub async fn send(
        &self,
        target: &str,
        payload: impl Into<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(), SendError<Vec<u8>>> {
        self.router.host_send_within(target, payload.into(), timeout).await
    }

    /// [`System::request`].
    ///
    /// # Errors
    /// As [`System::request`].
    pub fn request(
        &self,
        target: &str,
        payload: impl Into<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<HostRequest, SendError<Vec<u8>>> {
        host_request(&self.router, target.into(), payload.into(), timeout)
    }

    /// Whether `target` names a component of another node (`name@node`
    /// with a node other than this host's, in a cluster).
    #[must_use]
    pub fn is_remote(&self, target: &str) -> bool {
        self.router.is_remote(target)
    }
}

impl std::fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostHandle").field("node", &self.router.node()).finish_non_exhaustive()
    }
}

impl ComponentRef {
    /// The component's id.
    #[must_use]
    pub fn id(&self) -> &ComponentId {
        self.actor.id()
    }

    /// [`System::try_send`] to this component.
    ///
    /// # Errors
    /// As [`System::try_send`].
    pub fn try_send(&self, payload: impl Into<Vec<u8>>) -> Result<(), SendError<Vec<u8>>> {
        host_send(&self.router, self.id().into(), payload.into())
    }

    /// [`System::send`] to this component: waits up to `timeout` for room.
    ///
    /// # Errors
    /// As [`System::send`].
    ///
    /// # Cancel safety
    /// As [`System::send`].
    pub async fn send(&self, payload: impl Into<Vec<u8>>, timeout: Duration) -> Result<(), SendError<Vec<u8>>> {
        self.router.host_send_within(self.id(), payload.into(), timeout).await
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
        host_request(&self.router, self.id().into(), payload.into(), timeout)
    }

    /// Its mailbox and request counts now.
    #[must_use]
    pub fn stats(&self) -> ComponentStats {
        self.actor.stats()
    }
}

impl fmt::Debug for ComponentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentRef").field("id", self.id()).field("stats", &self.stats()).finish()
    }
}

/// A request made by the host: its correlation id and, as a future, its
/// outcome, which the tracker entry sends straight to it.
///
/// # Cancel safety
/// Dropping it before the outcome arrives cancels the request (counted as
/// cancelled); a late response is dropped and counted as orphaned. After the
/// outcome, dropping it does nothing.
#[derive(Debug)]
pub struct HostRequest {
    id: CorrelationId,
    reply: oneshot::Receiver<Outcome>,
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
            // `request-not-found`: it ended already (its outcome went to the
            // channel no one reads now, or the system stopped).
            let _ =
                self.router.cancel_request(Origin { sender: ComponentId::host_ref(), trace: None }, self.id.as_str());
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

/// `engine`'s copy of `compiled` (see `shards.rs`): at once when it owns
/// the component or copied it before; otherwise the copy is made on the
/// blocking pool (it takes milliseconds for a large component), like
/// compiling.
async fn adopt(engine: &Arc<WasmEngine>, compiled: CompiledComponent) -> Result<CompiledComponent, RuntimeError> {
    if let Some(copy) = engine.adopted(&compiled) {
        return Ok(copy);
    }
    let engine = Arc::clone(engine);
    let origin = compiled.origin().to_owned();
    on_blocking_pool(&origin, move || engine.adopt(&compiled)).await
}

/// Runs `work` (compiling or copying the code of component `origin`) on
/// the blocking pool, so the async workers never stall on it. A panic in
/// `work` is resumed here; work dropped before it ran (the runtime shutting
/// down) is a [`RuntimeError::Compile`].
async fn on_blocking_pool<T: Send + 'static>(
    origin: &str,
    work: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => Err(RuntimeError::Compile { origin: origin.to_owned(), reason: format!("not run: {join}") }),
    }
}
