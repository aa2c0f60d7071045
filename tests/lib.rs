//! Test harness for the end-to-end suite: fixtures from `tests/fixtures`
//! (`.wat` core modules componentized by the host at load) and Rust guests
//! from `tests/guests` (built for `wasm32-wasip2` with cargo, as component
//! authors build them), one shared engine with each component compiled once
//! per test binary, a capture of the host log, and helpers to drive the
//! `requester` fixture and wait on [`SystemEvent`]s.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use wasm_core::{ComponentError, ComponentManifest, CorrelationId, RequestError};
use wasm_messaging::{AuditEvent, AuditRecord, AuditSink, RouterStats};
use wasm_runtime::{CompiledComponent, EngineConfig, WasmEngine};
use wasm_system::{ComponentRef, System, SystemBuilder, SystemEvent};

/// Manifest snippet: may message anyone and send requests.
pub const REQUESTER: &str = "[capabilities]\nsend = [\"*\"]\nrequest = true";

/// Manifest snippet: enough fuel and time for long spins, so a request stays
/// pending while a test acts on it.
pub const PATIENT: &str = "[limits]\nfuel_per_call = 1000000000000\ntime_per_call_ms = 60000";

/// How long any wait in a test may take before the test fails: generous,
/// because tests wait on events, never on time.
pub const BOUND: Duration = Duration::from_secs(20);

static ENGINE: LazyLock<Arc<WasmEngine>> =
    LazyLock::new(|| Arc::new(WasmEngine::new(EngineConfig::default()).expect("engine starts")));
static COMPILED: LazyLock<Mutex<HashMap<String, CompiledComponent>>> = LazyLock::new(Default::default);

/// Path of `tests/fixtures/<name>.wat`.
#[must_use]
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.wat"))
}

/// The shared engine.
#[must_use]
pub fn engine() -> Arc<WasmEngine> {
    Arc::clone(&ENGINE)
}

/// Component `name`, compiled once per test binary: `rust:<package>` is the
/// Rust guest of that package (see [`rust_guest`]), anything else the
/// fixture `tests/fixtures/<name>.wat`.
///
/// # Panics
/// When the component does not build or load.
#[must_use]
pub fn compiled(name: &str) -> CompiledComponent {
    let mut cache = COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .entry(name.to_owned())
        .or_insert_with(|| {
            let path = match name.strip_prefix("rust:") {
                Some(package) => rust_guest(package),
                None => fixture(name),
            };
            ENGINE.load_file(&path).unwrap_or_else(|e| panic!("component {name}: {e}"))
        })
        .clone()
}

/// The Rust guests of `tests/guests`, built at most once per test binary:
/// each package's component path.
static RUST_GUESTS: OnceLock<Result<HashMap<&'static str, PathBuf>, String>> = OnceLock::new();

/// Path of the `wasm32-wasip2` component of Rust guest `package` (a crate in
/// `tests/guests`, for example `guest-behaviour`), building every guest on
/// first use with [`wasm_system::build_guest`] (the code `wasm-system build`
/// runs) into `<target>/guests` (its own target dir, so it never waits on
/// the build that runs the tests).
///
/// # Panics
/// When the `wasm32-wasip2` target is missing and `rustup` cannot add it,
/// the guest does not build, or `package` is not one of them; the message
/// says what to run.
#[must_use]
pub fn rust_guest(package: &str) -> PathBuf {
    let built = RUST_GUESTS.get_or_init(build_rust_guests).as_ref().unwrap_or_else(|e| panic!("{e}"));
    built.get(package).cloned().unwrap_or_else(|| panic!("{package} is not a crate in tests/guests"))
}

/// The packages in `tests/guests` and their directories.
const RUST_GUEST_PACKAGES: &[(&str, &str)] = &[("guest-behaviour", "behaviour"), ("guest-typed", "typed")];

fn build_rust_guests() -> Result<HashMap<&'static str, PathBuf>, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let target_dir = target_dir.join("guests");
    wasm_system::ensure_guest_target().map_err(|e| format!("the Rust guests need {e}"))?;
    RUST_GUEST_PACKAGES
        .iter()
        .map(|(package, dir)| {
            let cargo_toml = root.join("tests/guests").join(dir).join("Cargo.toml");
            let wasm = wasm_system::build_guest(&cargo_toml, Some(&target_dir))
                .map_err(|e| format!("Rust guest {package}: {e}"))?;
            Ok((*package, wasm))
        })
        .collect()
}

/// The host log as text: every `tracing` event of the test binary, captured
/// from the first call on (one global subscriber, at INFO and above), each
/// line with the name of the thread that logged it.
#[derive(Debug, Clone, Default)]
pub struct LogCapture {
    text: Arc<Mutex<Vec<u8>>>,
    written: Arc<tokio::sync::Notify>,
}

impl LogCapture {
    /// Everything logged so far.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// Lines logged so far that contain every one of `parts`.
    #[must_use]
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        self.text().lines().filter(|line| parts.iter().all(|p| line.contains(p))).map(str::to_owned).collect()
    }

    /// Waits until a line containing every one of `parts` is logged and
    /// returns it.
    ///
    /// # Panics
    /// When none is within [`BOUND`].
    pub async fn wait_for_line(&self, parts: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let written = self.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if let Some(line) = self.lines_with(parts).into_iter().next() {
                return line;
            }
            if tokio::time::timeout_at(deadline, written).await.is_err() {
                panic!("no log line with {parts:?} within {BOUND:?}");
            }
        }
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        self.written.notify_waiters();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The capture of this test binary's log, installed on first use.
///
/// # Panics
/// When another global subscriber was installed first.
#[must_use]
pub fn host_log() -> LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture::default();
            let writer = capture.clone();
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_thread_names(true)
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || writer.clone())
                .try_init()
                .expect("the log capture is the only global subscriber");
            capture
        })
        .clone()
}

/// A component manifest: `id`, fixture `name`, plus extra TOML sections.
///
/// # Panics
/// When the TOML is invalid.
#[must_use]
pub fn manifest(id: &str, name: &str, extra: &str) -> ComponentManifest {
    let text = format!("[component]\nid = \"{id}\"\nwasm = \"{name}.wat\"\n{extra}");
    toml::from_str(&text).unwrap_or_else(|e| panic!("manifest for {id}: {e}"))
}

/// A raw (multicodec 0x55) payload.
#[must_use]
pub fn raw(body: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x55];
    payload.extend_from_slice(body);
    payload
}

/// A requester command with a u32 argument: `op`, the argument (little
/// endian), the target's length and bytes, then the payload.
fn command(op: u8, argument: u32, target: &str, payload: &[u8]) -> Vec<u8> {
    let mut cmd = vec![0x55, op];
    cmd.extend_from_slice(&argument.to_le_bytes());
    cmd.push(u8::try_from(target.len()).expect("short target"));
    cmd.extend_from_slice(target.as_bytes());
    cmd.extend_from_slice(payload);
    cmd
}

/// Requester command `m`: send `payload` to `target` `count` times.
#[must_use]
pub fn cmd_send(count: u32, target: &str, payload: &[u8]) -> Vec<u8> {
    command(b'm', count, target, payload)
}

/// Requester command `r`: one request to `target` with `timeout_ms`.
#[must_use]
pub fn cmd_request(timeout_ms: u32, target: &str, payload: &[u8]) -> Vec<u8> {
    command(b'r', timeout_ms, target, payload)
}

/// Requester command `c`: cancel request `id`.
#[must_use]
pub fn cmd_cancel(id: &CorrelationId) -> Vec<u8> {
    let mut cmd = vec![0x55, b'c'];
    cmd.extend_from_slice(id.as_str().as_bytes());
    cmd
}

/// A `slow` fixture message spinning `iterations` times (`u32::MAX`: forever).
#[must_use]
pub fn spin(iterations: u32) -> Vec<u8> {
    let mut payload = vec![0x55];
    payload.extend_from_slice(&iterations.to_le_bytes());
    payload
}

/// The requester's error code for a messaging-error variant index (WIT order).
#[must_use]
pub fn code_of(variant_index: u32) -> u32 {
    variant_index + 1
}

/// An audit sink that keeps every record, for assertions.
#[derive(Debug, Default)]
pub struct RecordingAudit {
    records: Mutex<Vec<AuditRecord>>,
}

impl RecordingAudit {
    /// Every record so far.
    #[must_use]
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records of `event` with outcome `outcome`.
    #[must_use]
    pub fn of(&self, event: AuditEvent, outcome: &str) -> Vec<AuditRecord> {
        self.records().into_iter().filter(|r| r.event == event && r.outcome == outcome).collect()
    }
}

impl AuditSink for RecordingAudit {
    fn record(&self, record: AuditRecord) {
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(record);
    }
}

/// A running system with an event subscription.
#[derive(Debug)]
pub struct Harness {
    /// The system under test.
    pub system: System,
    events: UnboundedReceiver<SystemEvent>,
    seen: Vec<SystemEvent>,
}

impl Harness {
    /// Starts a system of `(id, fixture, extra manifest TOML)` components on
    /// the shared engine.
    ///
    /// # Panics
    /// When the system does not start.
    pub async fn start(components: &[(&str, &str, &str)]) -> Self {
        Self::start_audited(components, Arc::new(RecordingAudit::default())).await
    }

    /// As [`Harness::start`], writing audit records to `audit`.
    ///
    /// # Panics
    /// When the system does not start.
    pub async fn start_audited(components: &[(&str, &str, &str)], audit: Arc<dyn AuditSink>) -> Self {
        let mut builder = System::builder().engine(engine()).audit(audit);
        for (id, name, extra) in components {
            builder = builder.compiled(manifest(id, name, extra), compiled(name));
        }
        Self::from_builder(builder).await
    }

    /// Starts the system `builder` describes and subscribes to its events.
    ///
    /// # Panics
    /// When the system does not start.
    pub async fn from_builder(builder: SystemBuilder) -> Self {
        let system = builder.start().await.unwrap_or_else(|e| panic!("system starts: {e}"));
        let events = system.subscribe();
        Self { system, events, seen: Vec::new() }
    }

    /// Host request to `target`, awaited (bounded).
    ///
    /// # Panics
    /// When the send is refused or no outcome comes within [`BOUND`].
    pub async fn ask(&self, target: &str, payload: Vec<u8>) -> Result<Vec<u8>, RequestError> {
        let request = self.system.request(target, payload, None).unwrap_or_else(|e| panic!("request to {target}: {e}"));
        tokio::time::timeout(BOUND, request.response()).await.expect("an outcome within the bound")
    }

    /// Runs a requester command and returns what its handler returned.
    ///
    /// # Panics
    /// When the outcome is not a response or handler error.
    pub async fn command(&self, requester: &str, cmd: Vec<u8>) -> Result<Vec<u8>, ComponentError> {
        match self.ask(requester, cmd).await {
            Ok(bytes) => Ok(bytes),
            Err(RequestError::HandlerError(e)) => Err(e),
            Err(other) => panic!("command to {requester} failed: {other:?}"),
        }
    }

    /// Runs requester command `r` and returns the correlation id it got.
    ///
    /// # Panics
    /// When the requester's send-request was refused.
    pub async fn request_via(&self, requester: &str, timeout_ms: u32, target: &str, payload: &[u8]) -> CorrelationId {
        let reply = self
            .command(requester, cmd_request(timeout_ms, target, payload))
            .await
            .unwrap_or_else(|e| panic!("send-request refused: {e:?}"));
        let text = std::str::from_utf8(&reply[1..]).expect("id text");
        CorrelationId::parse(text).expect("a UUID v4 correlation id")
    }

    /// Waits for the first event (seen before or arriving) matching `pick`,
    /// removes it and returns what `pick` extracted.
    ///
    /// # Panics
    /// When none arrives within [`BOUND`].
    pub async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&SystemEvent) -> Option<T>) -> T {
        if let Some(i) = self.seen.iter().position(|e| pick(e).is_some()) {
            let event = self.seen.remove(i);
            return pick(&event).expect("matched before");
        }
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {BOUND:?}; seen: {:#?}", self.seen))
                .expect("event stream open");
            if let Some(found) = pick(&event) {
                return found;
            }
            self.seen.push(event);
        }
    }

    /// Every event not yet taken (call after [`Harness::settle`]: events
    /// are emitted before an envelope settles, so all are queued by then).
    pub fn take_events(&mut self) -> Vec<SystemEvent> {
        let mut events = std::mem::take(&mut self.seen);
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }

    /// Waits for `component`'s `handle-callback` for request `id` and returns
    /// the outcome it was given.
    pub async fn callback(&mut self, component: &str, id: CorrelationId) -> Result<Vec<u8>, RequestError> {
        self.wait_for(&format!("callback of {id} at {component}"), |e| match e {
            SystemEvent::Callback { component: c, request_id, outcome, .. }
                if c.as_str() == component && *request_id == id =>
            {
                Some(outcome.clone())
            }
            _ => None,
        })
        .await
    }

    /// Sends `sleep:MS` to `id` (a `rust:guest-behaviour` component) and
    /// waits until its actor has taken it: the handler sleeps, nothing more
    /// is taken from the mailbox for `ms`. Returns the component's handle.
    ///
    /// # Panics
    /// When `id` is not running or refuses the message.
    pub async fn stall(&self, id: &str, ms: u32) -> ComponentRef {
        let component = self.system.component(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        component.try_send(raw(format!("sleep:{ms}").as_bytes())).unwrap_or_else(|e| panic!("{id}: {e}"));
        while component.stats().mailbox_len > 0 {
            tokio::task::yield_now().await;
        }
        component
    }

    /// Waits for the system to be quiescent.
    ///
    /// # Panics
    /// When it is not within [`BOUND`].
    pub async fn settle(&self) {
        assert!(self.system.wait_quiescent(BOUND).await, "quiescent within the bound: {:?}", self.system.stats());
    }

    /// Shuts down and checks that the accounting balances: every accepted
    /// envelope ended exactly once, every request has exactly one outcome.
    ///
    /// # Panics
    /// When the counters do not balance.
    pub async fn finish(self) -> RouterStats {
        let report = self.system.shutdown(BOUND).await;
        assert!(report.drained, "drained before stop: {:?}", report.stats);
        assert!(report.stats.balanced(), "counters balance: {:#?}", report.stats);
        report.stats
    }
}

/// An in-process lattice for the cluster tests that need no broker: each
/// node's [`MemoryTransport`] delivers to the others' routers on a spawned
/// task (a hop, as over a network), and the directory is one shared map.
/// The NATS transport's own tests and the two-host tests against a real
/// `nats-server` cover the wire; this covers the routers' semantics.
#[derive(Debug, Default)]
pub struct MemoryLattice {
    nodes: Mutex<HashMap<String, MemoryNode>>,
}

#[derive(Default)]
struct MemoryNode {
    components: Vec<wasm_core::LocalComponent>,
    inbound: Option<std::sync::Weak<dyn wasm_core::RemoteInbound>>,
}

impl std::fmt::Debug for MemoryNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryNode").field("components", &self.components).finish_non_exhaustive()
    }
}

impl MemoryLattice {
    /// A transport for `node` on this lattice.
    #[must_use]
    pub fn transport(self: &Arc<Self>, node: &str) -> Arc<MemoryTransport> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner).entry(node.to_owned()).or_default();
        Arc::new(MemoryTransport { lattice: Arc::clone(self), node: node.to_owned() })
    }

    fn inbound_of(&self, node: &str) -> Option<Arc<dyn wasm_core::RemoteInbound>> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.get(node)?.inbound.as_ref()?.upgrade()
    }
}

/// One node's view of a [`MemoryLattice`].
#[derive(Debug)]
pub struct MemoryTransport {
    lattice: Arc<MemoryLattice>,
    node: String,
}

impl MemoryTransport {
    /// Connects this node to its system's router (what other nodes send
    /// goes there).
    pub fn attach(&self, system: &System) {
        let inbound = Arc::downgrade(&system.remote_inbound());
        let mut nodes = self.lattice.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.entry(self.node.clone()).or_default().inbound = Some(inbound);
    }
}

impl wasm_core::RemoteTransport for MemoryTransport {
    fn node(&self) -> &str {
        &self.node
    }

    fn accepts(&self, target: &wasm_core::ComponentId, codec: wasm_core::Codec) -> Option<bool> {
        let nodes = self.lattice.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let component = nodes.get(target.node()?)?.components.iter().find(|c| c.name == target.name())?;
        Some(component.accepts.is_empty() || component.accepts.contains(&codec))
    }

    fn send(&self, envelope: wasm_core::RemoteEnvelope) -> Result<(), wasm_core::SendError<Vec<u8>>> {
        let node = envelope.target.node().unwrap_or_default().to_owned();
        let Some(inbound) = self.lattice.inbound_of(&node) else {
            let error = wasm_core::MessagingError::DeliveryFailed(format!("node {node} is not attached"));
            return Err(wasm_core::SendError::new(error, envelope.payload));
        };
        let back = Arc::clone(&self.lattice);
        tokio::spawn(async move {
            let request = match envelope.kind {
                wasm_core::RemoteKind::Request { id, .. } => Some((envelope.sender.clone(), id, envelope.trace)),
                wasm_core::RemoteKind::Message => None,
            };
            if let Err(error) = inbound.deliver(envelope)
                && let Some((requester, id, trace)) = request
                && let Some(home) = requester.node().and_then(|n| back.inbound_of(n))
            {
                let outcome = Err(RequestError::DeliveryFailed(error.to_string()));
                home.complete(wasm_core::RemoteOutcome { requester, id, outcome, trace });
            }
        });
        Ok(())
    }

    fn respond(&self, outcome: wasm_core::RemoteOutcome) {
        let Some(home) = outcome.requester.node().and_then(|n| self.lattice.inbound_of(n)) else { return };
        tokio::spawn(async move { home.complete(outcome) });
    }

    fn announce(&self, components: Vec<wasm_core::LocalComponent>) {
        let mut nodes = self.lattice.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.entry(self.node.clone()).or_default().components = components;
    }
}

/// The `nats-server` test broker of wasm-cluster's own tests, shared so
/// both suites start it the same way (the server picks a free port and
/// writes it to a ports file, so parallel tests never race for one).
#[path = "../crates/wasm-cluster/tests/cluster/broker.rs"]
mod broker;

/// A `nats-server` on loopback, killed when dropped; it can be killed and
/// started again on the same port (a broker restart).
///
/// # Panics
/// Starting panics when `nats-server` is not installed (Debian's
/// `nats-server` package; `.ci/run` installs it) or does not listen in time.
pub struct NatsServer(broker::Broker);

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NatsServer").field(&self.url()).finish()
    }
}

impl NatsServer {
    /// Starts a broker on a free port.
    #[must_use]
    pub fn start() -> Self {
        Self(broker::Broker::start())
    }

    /// Its URL, `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Kills the broker (SIGKILL: no goodbye to the clients).
    pub fn kill(&mut self) {
        self.0.kill();
    }

    /// Starts the broker again on the same port (killing it first if it
    /// runs) and waits until it listens.
    pub fn restart(&mut self) {
        self.0.restart();
    }
}
