//! The wasmtime engine, compiled components and live instances.
//!
//! # Execution model
//!
//! Every guest call is asynchronous (`call_async` on a wasmtime fiber) and
//! runs inside the calling tokio task, so guests never block the runtime's
//! worker threads:
//!
//! - **Preemption by epochs.** One ticker thread increments the engine's
//!   epoch every [`EngineConfig::epoch_tick_ms`]; at each tick a running
//!   guest yields to the executor (`tokio::task::yield_now`, which lets the
//!   worker run every other ready task and poll its timers first) and is
//!   resumed later. A spinning guest therefore holds a worker for at most one
//!   tick at a time, and other actors and the host's timers keep running.
//! - **Blocking WASI is awaited, not blocked on.** WASI preview 2 is linked
//!   with its async bindings: a guest's `sleep`, a socket wait or a flush
//!   suspends the fiber and frees the worker.
//! - **Budgets.** Fuel bounds a call's work deterministically (a trap at
//!   zero). Wall-clock time is bounded by a tokio timer over the whole call
//!   (including time asleep in WASI), armed only once the call first yields,
//!   so a call that finishes within its first tick pays no timer; past the
//!   budget the call is dropped (wasmtime unwinds the fiber) and fails with
//!   [`GuestFailure::Timeout`]. A call may overrun by up to one tick.
//! - **Batches.** A component that exports `batch-lifecycle` can be handed
//!   a run of queued messages in one call ([`ComponentInstance::handle_messages`]):
//!   the guest takes each from a [`MessageSource`] through the `inbox`
//!   import. Each message taken gets the full fuel budget again, and the time
//!   budget starts again once the call next waits, so a message in a batch
//!   is bounded as a call of its own would be (plus up to one tick), and the
//!   last message taken is the one a trap fails.
//!
//! The price, measured in `benches/guest_call.rs` beside a synchronous call
//! of the same guest: the fiber switch in and out of each call.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasm_core::{
    ComponentError, ComponentId, CorrelationId, Limits, MessageRouter, RequestError, SocketGrant, TraceContext,
    WasiSection,
};
use wasmtime::component::{Component as WasmComponent, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use crate::bindings::airssys::wasm::types as wit;
use crate::bindings::exports::airssys::wasm::{batch_lifecycle, component_lifecycle};
use crate::error::{GuestFailure, RuntimeError};
use crate::guest_log::{GuestLog, GuestLogLimits};
use crate::host::{BatchState, HostState, MessageSource, add_host_services_to_linker, add_inbox_to_linker};
use crate::limits::InstanceLimiter;
#[cfg(target_os = "linux")]
use crate::stacks::StackPool;

/// Engine-wide settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Period of the epoch ticker, in ms (default 1, at least 1): the longest
    /// a guest runs before it yields to other tasks, and how far a call may
    /// overrun its wall-clock budget.
    pub epoch_tick_ms: u64,
    /// How much guest stdout and stderr reaches the host log.
    pub guest_log: GuestLogLimits,
    /// Address space reserved up front for each linear memory, in bytes
    /// (wasmtime's `Config::memory_reservation`; default 4 GiB). A 32-bit
    /// memory whose maximum fits is never moved, and with
    /// [`memory_guard_bytes`](Self::memory_guard_bytes) of 2 GiB or more its
    /// bounds checks are elided. `0` reserves only what the memory uses: many
    /// more instances fit in one process, a grow past the reservation moves
    /// the memory (copies it), and every access is bounds-checked. A
    /// memory still grows up to the manifest's `memory_bytes` either way.
    pub memory_reservation_bytes: u64,
    /// Guard region after each linear memory, in bytes (wasmtime's
    /// `Config::memory_guard_size`, also placed before it; default 32 MiB):
    /// lets compiled code skip some bounds checks. `0`: none.
    pub memory_guard_bytes: u64,
    /// Extra address space reserved when a memory is allocated or moved, in
    /// bytes, so that it can grow that much in place (wasmtime's
    /// `Config::memory_reservation_for_growth`; default 2 GiB; used only
    /// by memories larger than [`memory_reservation_bytes`](Self::memory_reservation_bytes)).
    /// `0`: each grow past the allocation moves the memory.
    pub memory_reservation_for_growth_bytes: u64,
    /// Writes a perf map, `/tmp/perf-<pid>.map` (wasmtime's
    /// `ProfilingStrategy::PerfMap`, the format `perf` reads for JIT code),
    /// naming every compiled guest function, so `perf record` and `perf
    /// report` show guest code by function (a Rust guest's `dlmalloc`, its
    /// handlers, the bindings' glue) instead of one anonymous `[JIT]`
    /// region. Default off. Costs one line per compiled function when a
    /// component is loaded, nothing per call; the file stays after exit.
    pub perf_map: bool,
}

/// wasmtime's defaults, for 64-bit hosts (`Config::memory_reservation` and
/// friends).
const WASMTIME_MEMORY_RESERVATION_BYTES: u64 = 4 << 30;
const WASMTIME_MEMORY_GUARD_BYTES: u64 = 32 << 20;
const WASMTIME_MEMORY_RESERVATION_FOR_GROWTH_BYTES: u64 = 2 << 30;

/// Size of each fiber stack guest calls run on, in bytes (wasmtime's
/// default `Config::async_stack_size`; wasm may use `max_wasm_stack`, 512
/// KiB, of it, host functions the rest).
const FIBER_STACK_BYTES: usize = 2 << 20;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            epoch_tick_ms: 1,
            guest_log: GuestLogLimits::default(),
            memory_reservation_bytes: WASMTIME_MEMORY_RESERVATION_BYTES,
            memory_guard_bytes: WASMTIME_MEMORY_GUARD_BYTES,
            memory_reservation_for_growth_bytes: WASMTIME_MEMORY_RESERVATION_FOR_GROWTH_BYTES,
            perf_map: false,
        }
    }
}

impl EngineConfig {
    /// Settings for many instances in one process (100,000 and more): no
    /// address space reserved beyond what each linear memory uses, and no
    /// guard regions, so a memory is one mapping the size of its pages and
    /// adjacent memories merge (Linux caps a process's mappings with
    /// `vm.max_map_count`, 65,530 by default). The price: every memory
    /// access is bounds-checked, and every grow moves (copies) the memory.
    /// Measured in `benches/density.rs` and in wasm-system's `messaging`
    /// bench.
    #[must_use]
    pub fn dense() -> Self {
        Self {
            memory_reservation_bytes: 0,
            memory_guard_bytes: 0,
            memory_reservation_for_growth_bytes: 0,
            ..Self::default()
        }
    }
}

/// One wasmtime [`Engine`] with the host functions linked: compiles each
/// component once ([`WasmEngine::load`]) and instantiates it per actor
/// ([`WasmEngine::instantiate`]), one [`Store`] per instance. See the
/// module docs of `engine.rs` (in the source) for the execution model.
///
/// Settings, chosen deliberately:
/// - `concurrency_support(false)`: we run no component-model-async guests,
///   and the concurrent runtime costs about twice as much per call.
/// - fuel metering and epoch interruption both on: fuel bounds the work of a
///   call deterministically; epochs make a running guest yield every tick.
/// - WASI preview 2 (async bindings) linked with nothing granted but what
///   the manifest's `[wasi]` section lists: no preopened directories, no
///   network, no name lookups, no environment; stdout/stderr go to the host
///   log; clocks and random numbers work.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<HostState>,
    epoch_tick_ms: u64,
    guest_log: GuestLogLimits,
    ticker: EpochTicker,
    /// What it was built with, for [`WasmEngine::sibling`].
    config: EngineConfig,
}

impl WasmEngine {
    /// Builds the engine and starts its epoch ticker thread.
    ///
    /// # Errors
    /// [`RuntimeError::Engine`] when wasmtime rejects the configuration, the
    /// host functions cannot be linked, or the ticker thread cannot start
    /// (without it no guest would ever yield or time out).
    pub fn new(config: EngineConfig) -> Result<Self, RuntimeError> {
        Self::with_ticker(config, "wasm-epoch")
    }

    /// [`WasmEngine::new`], its ticker thread named `ticker` (at most 15
    /// bytes: Linux cuts thread names there).
    fn with_ticker(config: EngineConfig, ticker: &str) -> Result<Self, RuntimeError> {
        let engine_error = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let mut wasm_config = Config::new();
        wasm_config
            .wasm_component_model(true)
            .concurrency_support(false)
            .consume_fuel(true)
            .epoch_interruption(true)
            .memory_reservation(config.memory_reservation_bytes)
            .memory_guard_size(config.memory_guard_bytes)
            .memory_reservation_for_growth(config.memory_reservation_for_growth_bytes)
            .async_stack_size(FIBER_STACK_BYTES);
        if config.perf_map {
            wasm_config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // Stacks from shared mappings, not one mapping pair per instance
        // (see `stacks.rs`).
        #[cfg(target_os = "linux")]
        wasm_config.with_host_stack(Arc::new(StackPool::new(FIBER_STACK_BYTES)));
        let engine = Engine::new(&wasm_config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        add_host_services_to_linker(&mut linker).map_err(engine_error)?;
        add_inbox_to_linker(&mut linker).map_err(engine_error)?;
        let epoch_tick_ms = config.epoch_tick_ms.max(1);
        let ticker = EpochTicker::start(engine.clone(), epoch_tick_ms, ticker)?;
        Ok(Self { engine, linker, epoch_tick_ms, guest_log: config.guest_log, ticker, config })
    }

    /// A new engine with this one's settings: its own wasmtime `Engine`,
    /// epoch ticker thread and fiber stack pool, so that guest calls on it
    /// share no engine-wide state with calls on this one. For threads that
    /// call guests at the same time (a system's shards): every wasmtime
    /// call touches engine-wide state (wasmtime 48 takes a reference on the
    /// engine for each call's fiber, `make_fiber_unchecked`), which two
    /// cores then pass back and forth. The `guest_to_guest` bench measures
    /// raw calls on two threads with one engine and with two.
    ///
    /// Compiled code is per engine: give it components with
    /// [`WasmEngine::adopt`]. Its ticker thread is named `wasm-epoch-sib`.
    ///
    /// # Errors
    /// As [`WasmEngine::new`].
    pub fn sibling(&self) -> Result<Self, RuntimeError> {
        Self::with_ticker(self.config.clone(), "wasm-epoch-sib")
    }

    /// Whether `compiled` was compiled by (or adopted into) this engine, so
    /// [`WasmEngine::instantiate`] takes it.
    #[must_use]
    pub fn owns(&self, compiled: &CompiledComponent) -> bool {
        Engine::same(compiled.pre.engine(), &self.engine)
    }

    /// This engine's copy of `compiled`, a component compiled by another
    /// engine with the same settings (a [`WasmEngine::sibling`]): its code
    /// is copied, not compiled again (wasmtime's `Component::serialize`,
    /// then `Component::deserialize` into this engine), and checked against
    /// the world as [`WasmEngine::load`] does. A component this engine owns
    /// comes back as it is (a clone: the code is shared).
    ///
    /// The original keeps its copies (one per engine), so adopting it or a
    /// clone of it again returns the same copy, and its actors on this
    /// engine share one; the copies go with the original (each lives on
    /// while something else, an instance's actor, holds it). Copying costs
    /// the component's compiled size in memory and a copy of it: blocking
    /// work, milliseconds for a large component (run it off the async
    /// workers; [`WasmEngine::adopted`] answers without copying). Two threads
    /// adopting one component at once may both copy; one copy is kept.
    ///
    /// # Errors
    /// [`RuntimeError::Compile`] when the engines' settings differ (wasmtime
    /// checks that compiled code fits the engine that loads it), or memory
    /// for the copy runs out; [`RuntimeError::World`] as
    /// [`WasmEngine::load`] (only if the engines link different host
    /// functions, which siblings never do).
    pub fn adopt(&self, compiled: &CompiledComponent) -> Result<CompiledComponent, RuntimeError> {
        if let Some(copy) = self.adopted(compiled) {
            return Ok(copy);
        }
        let copy_error = |e: wasmtime::Error| RuntimeError::Compile {
            origin: compiled.origin.clone(),
            reason: format!("copying its compiled code to another engine: {e:#}"),
        };
        let component = crate::transfer::copy_component(compiled.pre.component(), &self.engine).map_err(copy_error)?;
        let copy = self.prepare(&compiled.origin, &component)?;
        let mut copies = compiled.copies.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = self.own_copy(&copies) {
            return Ok(kept);
        }
        copies.push(copy.clone());
        Ok(copy)
    }

    /// The one of `copies` this engine owns, if any.
    fn own_copy(&self, copies: &[CompiledComponent]) -> Option<CompiledComponent> {
        copies.iter().find(|copy| self.owns(copy)).cloned()
    }

    /// What [`WasmEngine::adopt`] would return without copying: `compiled`
    /// itself if this engine owns it, the copy it made before, or `None`
    /// (then `adopt` copies).
    #[must_use]
    pub fn adopted(&self, compiled: &CompiledComponent) -> Option<CompiledComponent> {
        if self.owns(compiled) {
            return Some(compiled.clone());
        }
        self.own_copy(&compiled.copies.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Compiles and type-checks a component against the world: every import
    /// must be one the host provides and both lifecycle exports must exist
    /// with the WIT signatures. `batch-lifecycle` is optional (world
    /// `batch-component`); with it the component accepts batches
    /// ([`ComponentInstance::accepts_batches`]). `bytes` is a component
    /// binary or component-model WAT text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`RuntimeError::Compile`] for invalid bytes, [`RuntimeError::World`]
    /// for an unsatisfied import or a missing or mistyped export.
    pub fn load(&self, origin: &str, bytes: &[u8]) -> Result<CompiledComponent, RuntimeError> {
        if is_core_module(bytes) {
            return Err(RuntimeError::Compile { origin: origin.to_owned(), reason: CORE_MODULE_HINT.to_owned() });
        }
        let component = WasmComponent::new(&self.engine, bytes)
            .map_err(|e| RuntimeError::Compile { origin: origin.to_owned(), reason: format!("{e:#}") })?;
        self.prepare(origin, &component)
    }

    /// Checks a component compiled by this engine against the world and
    /// prepares its instantiation (see [`WasmEngine::load`]).
    fn prepare(&self, origin: &str, component: &WasmComponent) -> Result<CompiledComponent, RuntimeError> {
        let world_error =
            |e: wasmtime::Error| RuntimeError::World { origin: origin.to_owned(), reason: format!("{e:#}") };
        let pre = self.linker.instantiate_pre(component).map_err(world_error)?;
        let lifecycle = component_lifecycle::GuestIndices::new(&pre).map_err(world_error)?;
        // Optional, but a component that names the interface must export it
        // whole.
        let batch = match component.get_export_index(None, BATCH_LIFECYCLE) {
            Some(_) => Some(batch_lifecycle::GuestIndices::new(&pre).map_err(world_error)?),
            None => None,
        };
        Ok(CompiledComponent {
            pre,
            copies: Arc::default(),
            lifecycle: Arc::new(lifecycle),
            batch: batch.map(Arc::new),
            origin: origin.to_owned(),
        })
    }

    /// Reads and loads a component file: a `.wat` file is a core module that
    /// is componentized against the world first (`componentize_wat`, feature
    /// `wat`; without it a `.wat` file is a [`RuntimeError::Componentize`]);
    /// anything else goes to [`WasmEngine::load`].
    ///
    /// # Errors
    /// [`RuntimeError::Read`], [`RuntimeError::Componentize`], or those of
    /// [`WasmEngine::load`].
    pub fn load_file(&self, path: &Path) -> Result<CompiledComponent, RuntimeError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Read { path: origin.clone(), source })?;
        if path.extension().is_some_and(|ext| ext == "wat") {
            let text = String::from_utf8(bytes).map_err(|e| RuntimeError::Componentize {
                origin: origin.clone(),
                reason: format!("not UTF-8 text: {e}"),
            })?;
            self.load_wat(&origin, &text)
        } else {
            self.load(&origin, &bytes)
        }
    }

    /// Componentizes the core module `text` against the world, then loads it.
    #[cfg(feature = "wat")]
    fn load_wat(&self, origin: &str, text: &str) -> Result<CompiledComponent, RuntimeError> {
        let component = crate::componentize::componentize_wat(origin, text)?;
        self.load(origin, &component)
    }

    /// Without the `wat` feature, a `.wat` file cannot be loaded.
    #[cfg(not(feature = "wat"))]
    #[allow(clippy::unused_self, reason = "the same signature as with the feature")]
    fn load_wat(&self, origin: &str, _text: &str) -> Result<CompiledComponent, RuntimeError> {
        Err(RuntimeError::Componentize {
            origin: origin.to_owned(),
            reason: "this build has no `.wat` support (wasm-runtime feature `wat`)".into(),
        })
    }

    /// Instantiates `compiled` as component `id`, in a fresh [`Store`] with
    /// `limits` (caps over all its memories and tables together and on how
    /// many it may create, for the instance's life; fuel and time per call,
    /// and the same budget for instantiation itself) and the WASI grants of
    /// `wasi`, whose host calls go to `router` on behalf of `id`.
    ///
    /// # Errors
    /// [`RuntimeError::Instantiate`] when `compiled` belongs to another
    /// engine (compiled code is per engine: [`WasmEngine::adopt`] it first),
    /// a granted directory cannot be opened, or instantiation traps, exceeds
    /// the limits or its time budget.
    ///
    /// # Panics
    /// Outside a tokio runtime with its time driver, when instantiation runs
    /// longer than one epoch tick.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future drops the half-made instance.
    pub async fn instantiate(
        &self,
        compiled: &CompiledComponent,
        id: ComponentId,
        limits: &Limits,
        wasi: &WasiSection,
        router: Arc<dyn MessageRouter>,
    ) -> Result<ComponentInstance, RuntimeError> {
        if !self.owns(compiled) {
            return Err(RuntimeError::Instantiate {
                id: id.to_string(),
                reason: format!(
                    "{} was compiled by another engine: adopt it first (WasmEngine::adopt)",
                    compiled.origin
                ),
            });
        }
        let instantiate_error =
            |e: wasmtime::Error| RuntimeError::Instantiate { id: id.to_string(), reason: format!("{e:#}") };
        let log = GuestLog::new(id.as_str(), self.guest_log);
        let wasi = wasi_context(&log, wasi).map_err(instantiate_error)?;
        let taken = Arc::new(AtomicU32::new(0));
        let state = HostState {
            id: id.clone(),
            router,
            trace: None,
            wasi,
            table: ResourceTable::new(),
            limits: InstanceLimiter::new(limits),
            batch: BatchState {
                source: None,
                taken: Arc::clone(&taken),
                fuel_per_message: limits.fuel_per_call,
                ended: false,
                named: false,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))));
        store.set_epoch_deadline(1);
        store.set_fuel(limits.fuel_per_call).map_err(instantiate_error)?;
        let budget = Duration::from_millis(limits.time_per_call_ms);
        let instance = within(budget, compiled.pre.instantiate_async(&mut store))
            .await
            .ok_or_else(|| RuntimeError::Instantiate {
                id: id.to_string(),
                reason: format!("time budget of {} ms exceeded", limits.time_per_call_ms),
            })?
            .map_err(instantiate_error)?;
        let lifecycle = compiled.lifecycle.load(&mut store, &instance).map_err(instantiate_error)?;
        let batch = compiled.batch.as_ref().map(|batch| batch.load(&mut store, &instance)).transpose();
        let batch = batch.map_err(instantiate_error)?;
        log.flush_partial();
        Ok(ComponentInstance {
            store,
            lifecycle,
            batch,
            taken,
            log,
            fuel_per_call: limits.fuel_per_call,
            time_per_call_ms: limits.time_per_call_ms,
        })
    }

    /// The period of the epoch ticker, in ms.
    #[must_use]
    pub fn epoch_tick_ms(&self) -> u64 {
        self.epoch_tick_ms
    }
}

/// The WASI context of one instance: output to `log`, clocks and random
/// numbers, and exactly what `grants` lists.
fn wasi_context(log: &Arc<GuestLog>, grants: &WasiSection) -> wasmtime::Result<WasiCtx> {
    let mut builder = WasiCtxBuilder::new();
    builder.stdout(log.stream(false)).stderr(log.stream(true));
    for (key, value) in &grants.env {
        builder.env(key, value);
    }
    for dir in &grants.dirs {
        let perms = if dir.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
        builder
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| wasmtime::Error::msg(format!("[wasi] dirs: cannot open {}: {e:#}", dir.host.display())))?;
    }
    if !grants.network.is_empty() {
        let network: Arc<[SocketGrant]> = grants.network.clone().into();
        // TCP and UDP are off unless granted (wasmtime-wasi's default); with
        // a grant they are on and every address goes through this check.
        builder.allow_tcp(true).allow_udp(true).socket_addr_check(move |addr, use_| {
            // `connect` binds implicitly to the unspecified address first:
            // that bind is no reach of its own, the connect is checked.
            let implicit_bind = matches!(use_, SocketAddrUse::TcpBind | SocketAddrUse::UdpBind)
                && addr.ip().is_unspecified()
                && addr.port() == 0;
            let allowed = implicit_bind || network.iter().any(|grant| grant.allows(addr));
            Box::pin(std::future::ready(allowed))
        });
    }
    Ok(builder.build())
}

/// Runs `call` to its end, or until `budget` has passed since it first
/// waited; `None` when the budget ran out (the call is dropped). The timer
/// is created only if the call waits, so a call that finishes in its first
/// poll reads no clock.
fn within<F: Future>(budget: Duration, call: F) -> Within<'static, F> {
    Within { call, budget, each: None, timer: None }
}

/// As [`within`], for a batch: the budget starts again whenever `taken`
/// (messages handed out) has moved since the call last waited, so each
/// message of the batch gets the whole budget, counted from the first wait
/// after it was taken (at most one epoch tick after, for a guest that
/// computes). No clock is read while the call does not wait.
fn within_each<F: Future>(budget: Duration, taken: &AtomicU32, call: F) -> Within<'_, F> {
    Within { call, budget, each: Some(taken), timer: None }
}

pin_project_lite::pin_project! {
    /// The future of [`within`] and [`within_each`]. A named future rather
    /// than an `async fn`: one of those keeps its argument and the pinned
    /// copy it polls as two fields, and a guest call's future is hundreds
    /// of bytes, copied on every call (the profile's memmove).
    struct Within<'a, F> {
        #[pin]
        call: F,
        budget: Duration,
        // For a batch: the count of messages handed out.
        each: Option<&'a AtomicU32>,
        // Boxed, and only once the call waits (most calls never do), with
        // the count of messages handed out when it was last set.
        timer: Option<(u32, Pin<Box<tokio::time::Sleep>>)>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.call.poll(cx) {
            return Poll::Ready(Some(output));
        }
        let budget = *this.budget;
        let now_taken = this.each.map_or(0, |taken| taken.load(Ordering::Relaxed));
        let sleep = match this.timer {
            Some((seen, sleep)) => {
                if *seen != now_taken {
                    *seen = now_taken;
                    sleep.as_mut().reset(tokio::time::Instant::now() + budget);
                }
                sleep
            }
            None => &mut this.timer.insert((now_taken, Box::pin(tokio::time::sleep(budget)))).1,
        };
        if sleep.as_mut().poll(cx).is_ready() { Poll::Ready(None) } else { Poll::Pending }
    }
}

impl fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmEngine")
            .field("epoch_tick_ms", &self.epoch_tick_ms)
            .field("guest_log", &self.guest_log)
            .field("ticker", &self.ticker)
            .finish()
    }
}

/// A component compiled and checked against the world, ready to instantiate
/// any number of times. Cloning is cheap (shared compiled code).
#[derive(Clone)]
pub struct CompiledComponent {
    pre: InstancePre<HostState>,
    /// Its copies on other engines ([`WasmEngine::adopt`]), shared by its
    /// clones; a copy has its own (empty) list.
    copies: Arc<Mutex<Vec<CompiledComponent>>>,
    lifecycle: Arc<component_lifecycle::GuestIndices>,
    /// `Some` when the component exports `batch-lifecycle`.
    batch: Option<Arc<batch_lifecycle::GuestIndices>>,
    origin: String,
}

/// The optional export interface of world `batch-component`.
const BATCH_LIFECYCLE: &str = "airssys:wasm/batch-lifecycle@0.1.0";

impl CompiledComponent {
    /// Whether `other` is this very compilation (a clone of it), not
    /// merely the same bytes compiled again or adopted by another engine.
    #[must_use]
    pub fn same_code(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.lifecycle, &other.lifecycle)
    }

    /// Where the component came from (a path or a name).
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the component exports `batch-lifecycle` (world
    /// `batch-component`), so its instances accept batches.
    #[must_use]
    pub fn accepts_batches(&self) -> bool {
        self.batch.is_some()
    }
}

impl fmt::Debug for CompiledComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledComponent").field("origin", &self.origin).finish()
    }
}

/// A live instance with its own [`Store`], kept for the instance's life.
/// After a [`GuestFailure`] the instance must be dropped and a new one made.
pub struct ComponentInstance {
    store: Store<HostState>,
    lifecycle: component_lifecycle::Guest,
    /// `Some` when the component exports `batch-lifecycle`.
    batch: Option<batch_lifecycle::Guest>,
    /// Messages handed to batches so far (shared with the store's
    /// `BatchState`, read by [`within_each`] while the store is borrowed).
    taken: Arc<AtomicU32>,
    log: Arc<GuestLog>,
    fuel_per_call: u64,
    time_per_call_ms: u64,
}

impl ComponentInstance {
    /// The component id this instance runs as.
    #[must_use]
    pub fn id(&self) -> &ComponentId {
        &self.store.data().id
    }

    /// Calls the guest's `handle-message(sender, message)` with a fresh fuel
    /// and time budget; sends it makes carry `trace` as their parent.
    ///
    /// Returns the handler's own result: `Ok(bytes)` or `Err(ComponentError)`.
    ///
    /// # Errors
    /// [`GuestFailure`] when the call trapped or exceeded a limit; the
    /// instance is then unusable.
    ///
    /// # Panics
    /// Outside a tokio runtime with its time driver, when the call runs
    /// longer than one epoch tick or waits in WASI. A panic of a host
    /// function during the call resumes here.
    ///
    /// # Cancel safety
    /// Dropping the future mid-call abandons the call; the instance must
    /// then be dropped, as after a [`GuestFailure`].
    pub async fn handle_message(
        &mut self,
        sender: &ComponentId,
        message: &[u8],
        trace: Option<TraceContext>,
    ) -> Result<Result<Vec<u8>, ComponentError>, GuestFailure> {
        self.arm(trace)?;
        let budget = Duration::from_millis(self.time_per_call_ms);
        let result =
            within(budget, self.lifecycle.call_handle_message(&mut self.store, sender.as_string(), message)).await;
        self.finish(result)
    }

    /// Calls the guest's `handle-callback(request-id, result)` with a fresh
    /// budget.
    ///
    /// # Errors
    /// As [`ComponentInstance::handle_message`].
    ///
    /// # Panics
    /// As [`ComponentInstance::handle_message`].
    ///
    /// # Cancel safety
    /// As [`ComponentInstance::handle_message`].
    pub async fn handle_callback(
        &mut self,
        request_id: &CorrelationId,
        outcome: &Result<Vec<u8>, RequestError>,
        trace: Option<TraceContext>,
    ) -> Result<Result<(), ComponentError>, GuestFailure> {
        self.arm(trace)?;
        let wit_error;
        let outcome = match outcome {
            Ok(bytes) => Ok(bytes.as_slice()),
            Err(e) => {
                wit_error = request_error_to_wit(e);
                Err(&wit_error)
            }
        };
        let budget = Duration::from_millis(self.time_per_call_ms);
        let result =
            within(budget, self.lifecycle.call_handle_callback(&mut self.store, request_id.as_str(), outcome)).await;
        self.finish(result)
    }

    /// Whether the component exports `batch-lifecycle`, so
    /// [`ComponentInstance::handle_messages`] can be called.
    #[must_use]
    pub fn accepts_batches(&self) -> bool {
        self.batch.is_some()
    }

    /// Calls the guest's `handle-messages`, with `source` installed as the
    /// batch's [`MessageSource`]: each `next-message` of the guest reports
    /// how the message before ended and takes the next from `source`, with a
    /// fresh fuel budget, and the time budget starts again (see the module's
    /// execution model). The source stays in the instance after the call,
    /// however the call ends: take it back with
    /// [`ComponentInstance::take_source`] (the source knows which message
    /// it handed out last, which is the one a [`GuestFailure`] fails).
    ///
    /// # Errors
    /// [`GuestFailure`] as for [`ComponentInstance::handle_message`]; also a
    /// trap when the component does not export `batch-lifecycle`
    /// ([`ComponentInstance::accepts_batches`]), before any message is taken.
    ///
    /// # Panics
    /// As [`ComponentInstance::handle_message`]; a panic of
    /// [`MessageSource::next`] resumes here.
    ///
    /// # Cancel safety
    /// As [`ComponentInstance::handle_message`]; the source stays installed.
    pub async fn handle_messages(&mut self, source: Box<dyn MessageSource>) -> Result<(), GuestFailure> {
        let state = self.store.data_mut();
        state.batch.source = Some(source);
        state.batch.named = false;
        // Each message's own trace is set as it is taken.
        self.arm(None)?;
        self.store.data_mut().batch.ended = false;
        let Some(batch) = &self.batch else {
            return Err(GuestFailure::Trap("the component does not export airssys:wasm/batch-lifecycle".into()));
        };
        let budget = Duration::from_millis(self.time_per_call_ms);
        let result = within_each(budget, &self.taken, batch.call_handle_messages(&mut self.store)).await;
        self.end_call(result)
    }

    /// Takes back the [`MessageSource`] of the last
    /// [`ComponentInstance::handle_messages`]; `None` if there is none or it
    /// is not an `S`.
    pub fn take_source<S: MessageSource>(&mut self) -> Option<Box<S>> {
        let source = self.store.data_mut().batch.source.take()?;
        let source: Box<dyn std::any::Any> = source;
        source.downcast::<S>().ok()
    }

    fn arm(&mut self, trace: Option<TraceContext>) -> Result<(), GuestFailure> {
        self.store.set_fuel(self.fuel_per_call).map_err(|e| GuestFailure::Trap(format!("{e:#}")))?;
        self.store.set_epoch_deadline(1);
        let state = self.store.data_mut();
        state.trace = trace;
        // A source left installed by an earlier `handle_messages` (until
        // `take_source`) has no batch under way: `next-message` in this call
        // gets `none` (`handle_messages` opens its own batch after this).
        state.batch.ended = true;
        Ok(())
    }

    /// Ends a call: clears its trace, logs a partial output line, and turns
    /// what the call returned (`None`: its time budget ran out) into the
    /// handler's outcome or the failure.
    fn finish<T>(
        &mut self,
        result: Option<wasmtime::Result<Result<T, wit::ComponentError>>>,
    ) -> Result<Result<T, ComponentError>, GuestFailure> {
        let returned = self.end_call(result)?;
        Ok(returned.map_err(|e| ComponentError { code: e.code, message: e.message }))
    }

    /// Ends any guest call: clears its trace, logs a partial output line,
    /// and turns `None` (its time budget ran out) or a wasmtime error into
    /// the [`GuestFailure`].
    fn end_call<T>(&mut self, result: Option<wasmtime::Result<T>>) -> Result<T, GuestFailure> {
        self.store.data_mut().trace = None;
        self.log.flush_partial();
        match result {
            None => Err(GuestFailure::Timeout { budget_ms: self.time_per_call_ms }),
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(self.classify(&e)),
        }
    }

    fn classify(&self, error: &wasmtime::Error) -> GuestFailure {
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => GuestFailure::OutOfFuel { budget: self.fuel_per_call },
            Some(Trap::Interrupt) => GuestFailure::Timeout { budget_ms: self.time_per_call_ms },
            Some(trap) => GuestFailure::Trap(trap.to_string()),
            None => GuestFailure::Trap(format!("{error:#}")),
        }
    }
}

fn request_error_to_wit(error: &RequestError) -> wit::RequestError {
    match error {
        RequestError::Timeout => wit::RequestError::Timeout,
        RequestError::Cancelled => wit::RequestError::Cancelled,
        RequestError::HandlerError(e) => {
            wit::RequestError::HandlerError(wit::ComponentError { code: e.code, message: e.message.clone() })
        }
        RequestError::TargetFailed(s) => wit::RequestError::TargetFailed(s.clone()),
        RequestError::DeliveryFailed(s) => wit::RequestError::DeliveryFailed(s.clone()),
    }
}

impl fmt::Debug for ComponentInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentInstance")
            .field("id", self.id())
            .field("fuel_per_call", &self.fuel_per_call)
            .field("time_per_call_ms", &self.time_per_call_ms)
            .finish()
    }
}

/// Increments the engine's epoch every tick on one thread, until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How a helper thread is started: `std::thread::Builder::spawn`, or in
/// tests a spawner that fails.
type Spawn = fn(std::thread::Builder, Box<dyn FnOnce() + Send>) -> std::io::Result<JoinHandle<()>>;

impl EpochTicker {
    fn start(engine: Engine, tick_ms: u64, name: &str) -> Result<Self, RuntimeError> {
        Self::start_with(engine, tick_ms, name, |builder, body| builder.spawn(body))
    }

    /// Starts the ticker with `spawn`; a thread that cannot start is an
    /// error, never a ticker that silently does not tick.
    /// The thread parks between ticks, so a drop wakes it at once (`unpark`)
    /// instead of waiting out a tick; an early wake-up just parks again
    /// until the tick is due.
    fn start_with(engine: Engine, tick_ms: u64, name: &str, spawn: Spawn) -> Result<Self, RuntimeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let tick = Duration::from_millis(tick_ms);
        let body = Box::new(move || {
            // `None`: a tick too long to reach (a huge `epoch_tick_ms`):
            // wait for the stop.
            let mut due = Instant::now().checked_add(tick);
            while !flag.load(Ordering::Acquire) {
                let now = Instant::now();
                match due {
                    None => std::thread::park(),
                    Some(at) if now < at => std::thread::park_timeout(at - now),
                    Some(_) => {
                        engine.increment_epoch();
                        // One tick from now, as the sleep this replaces:
                        // after a stall (a suspended VM) no burst of the
                        // ticks missed.
                        due = now.checked_add(tick);
                    }
                }
            }
        });
        let thread = spawn(std::thread::Builder::new().name(name.into()), body)
            .map_err(|e| RuntimeError::Engine(format!("starting the epoch ticker thread: {e}")))?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for EpochTicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochTicker").field("running", &self.thread.is_some()).finish()
    }
}

/// What to do with a core module where a component is expected.
const CORE_MODULE_HINT: &str = "this is a core wasm module, not a component: componentize it against \
     `wit/world.wit` first (`wasm-tools component new`; for a `.wat` core module, `wasm-system componentize` \
     or name the `.wat` file itself as `wasm`; for a Rust crate, build it for wasm32-wasip2 with `wasm-system build`)";

/// True for a core module's binary header: the magic `\0asm` and version 1
/// (a component's header has layer 1 in the version field instead; WebAssembly
/// core spec section 5.5.16, component model `Binary.md`).
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm\x01\x00\x00\x00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_module_is_refused_with_a_hint_to_componentize() {
        let engine = WasmEngine::new(EngineConfig::default()).expect("engine");
        // The smallest core module: magic and version 1.
        let Err(error) = engine.load("core.wasm", b"\0asm\x01\x00\x00\x00") else {
            panic!("a core module loaded as a component");
        };
        let text = error.to_string();
        assert!(
            text.contains("core.wasm") && text.contains("core wasm module") && text.contains("componentize"),
            "{text}"
        );
        // A component's header (version 0x0d, layer 1) is not taken for one.
        assert!(!is_core_module(b"\0asm\x0d\x00\x01\x00"));
    }

    #[test]
    fn an_epoch_ticker_that_cannot_start_is_an_error() {
        let failing: Spawn = |_, _| Err(std::io::Error::other("no threads left"));
        let error = EpochTicker::start_with(Engine::default(), 1, "wasm-epoch", failing)
            .expect_err("no ticker without its thread");
        assert!(error.to_string().contains("epoch ticker thread: no threads left"), "{error}");
    }
}
