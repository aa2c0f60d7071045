//! The wasmtime engine, compiled components and live instances.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasm_core::{ComponentError, ComponentId, CorrelationId, Limits, MessageRouter, RequestError, TraceContext};
use wasmtime::component::{Component as WasmComponent, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use crate::bindings::airssys::wasm::types as wit;
use crate::bindings::{Component as ComponentWorld, ComponentPre as ComponentWorldPre};
use crate::componentize::componentize_wat;
use crate::error::{GuestFailure, RuntimeError};
use crate::guest_log::GuestLog;
use crate::host::HostState;

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Period of the epoch ticker that enforces per-call wall-clock budgets,
    /// in ms (default 5). A call may overrun its budget by up to one tick.
    pub epoch_tick_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { epoch_tick_ms: 5 }
    }
}

/// One wasmtime [`Engine`] with the host functions linked: compiles each
/// component once ([`WasmEngine::load`]) and instantiates it per actor
/// ([`WasmEngine::instantiate`]), one [`Store`] per instance.
///
/// Settings, chosen deliberately:
/// - `concurrency_support(false)`: we run no component-model-async guests, and
///   turning the concurrent runtime off halves the cost of a `handle-message`
///   call (about 650 ns against 1,300-1,500 ns for a 64-byte payload,
///   measured on wasmtime 48; see `benches/guest_call.rs`).
/// - fuel metering and epoch interruption both on: fuel bounds the work of a
///   call deterministically, the epoch bounds its wall-clock time (a guest
///   blocked in a host call still burns no fuel).
/// - WASI preview 2 linked with nothing granted: no preopened directories, no
///   network, no environment; stdout/stderr go to the host log.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<HostState>,
    epoch_tick_ms: u64,
    ticker: EpochTicker,
}

impl WasmEngine {
    /// Builds the engine and starts its epoch ticker thread.
    ///
    /// # Errors
    /// [`RuntimeError::Engine`] when wasmtime rejects the configuration or
    /// the host functions cannot be linked.
    pub fn new(config: EngineConfig) -> Result<Self, RuntimeError> {
        let engine_error = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let mut wasm_config = Config::new();
        wasm_config.wasm_component_model(true).concurrency_support(false).consume_fuel(true).epoch_interruption(true);
        let engine = Engine::new(&wasm_config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_error)?;
        ComponentWorld::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(engine_error)?;
        let epoch_tick_ms = config.epoch_tick_ms.max(1);
        let ticker = EpochTicker::start(engine.clone(), epoch_tick_ms);
        Ok(Self { engine, linker, epoch_tick_ms, ticker })
    }

    /// Compiles and type-checks a component against the world: every import
    /// must be one the host provides and both lifecycle exports must exist
    /// with the WIT signatures. `bytes` is a component binary or
    /// component-model WAT text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`RuntimeError::Compile`] for invalid bytes, [`RuntimeError::World`]
    /// for an unsatisfied import or a missing or mistyped export.
    pub fn load(&self, origin: &str, bytes: &[u8]) -> Result<CompiledComponent, RuntimeError> {
        let component = WasmComponent::new(&self.engine, bytes)
            .map_err(|e| RuntimeError::Compile { origin: origin.to_owned(), reason: format!("{e:#}") })?;
        let world_error =
            |e: wasmtime::Error| RuntimeError::World { origin: origin.to_owned(), reason: format!("{e:#}") };
        let instance_pre = self.linker.instantiate_pre(&component).map_err(world_error)?;
        let pre = ComponentWorldPre::new(instance_pre).map_err(world_error)?;
        Ok(CompiledComponent { pre, origin: origin.to_owned() })
    }

    /// Reads and loads a component file: a `.wat` file is a core module that
    /// is componentized against the world first (see
    /// [`crate::componentize_wat`]); anything else goes to
    /// [`WasmEngine::load`].
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
            let component = componentize_wat(&origin, &text)?;
            self.load(&origin, &component)
        } else {
            self.load(&origin, &bytes)
        }
    }

    /// Instantiates `compiled` as component `id`, in a fresh [`Store`] with
    /// `limits` (memory cap for the instance's life; fuel and time per call),
    /// whose host calls go to `router` on behalf of `id`.
    ///
    /// # Errors
    /// [`RuntimeError::Instantiate`] when instantiation traps or exceeds the limits.
    pub fn instantiate(
        &self,
        compiled: &CompiledComponent,
        id: ComponentId,
        limits: &Limits,
        router: Arc<dyn MessageRouter>,
    ) -> Result<ComponentInstance, RuntimeError> {
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestLog::new(id.as_str(), false))
            .stderr(GuestLog::new(id.as_str(), true))
            .build();
        let state = HostState {
            id: id.clone(),
            router,
            trace: None,
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).trap_on_grow_failure(true).build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let instantiate_error =
            |e: wasmtime::Error| RuntimeError::Instantiate { id: id.to_string(), reason: format!("{e:#}") };
        store.set_fuel(limits.fuel_per_call).map_err(instantiate_error)?;
        let ticks = limits.time_per_call_ms.div_ceil(self.epoch_tick_ms).max(1) + 1;
        store.set_epoch_deadline(ticks);
        let world = compiled.pre.instantiate(&mut store).map_err(instantiate_error)?;
        Ok(ComponentInstance {
            store,
            world,
            fuel_per_call: limits.fuel_per_call,
            time_per_call_ms: limits.time_per_call_ms,
            ticks_per_call: ticks,
        })
    }

    /// The period of the epoch ticker, in ms.
    #[must_use]
    pub fn epoch_tick_ms(&self) -> u64 {
        self.epoch_tick_ms
    }
}

impl fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmEngine").field("epoch_tick_ms", &self.epoch_tick_ms).field("ticker", &self.ticker).finish()
    }
}

/// A component compiled and checked against the world, ready to instantiate
/// any number of times. Cloning is cheap (shared compiled code).
#[derive(Clone)]
pub struct CompiledComponent {
    pre: ComponentWorldPre<HostState>,
    origin: String,
}

impl CompiledComponent {
    /// Where the component came from (a path or a name).
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
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
    world: ComponentWorld,
    fuel_per_call: u64,
    time_per_call_ms: u64,
    ticks_per_call: u64,
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
    pub fn handle_message(
        &mut self,
        sender: &ComponentId,
        message: &[u8],
        trace: Option<TraceContext>,
    ) -> Result<Result<Vec<u8>, ComponentError>, GuestFailure> {
        self.arm(trace)?;
        let result = self.world.airssys_wasm_component_lifecycle().call_handle_message(
            &mut self.store,
            sender.as_string(),
            message,
        );
        self.store.data_mut().trace = None;
        match result {
            Ok(Ok(bytes)) => Ok(Ok(bytes)),
            Ok(Err(e)) => Ok(Err(ComponentError { code: e.code, message: e.message })),
            Err(e) => Err(self.classify(&e)),
        }
    }

    /// Calls the guest's `handle-callback(request-id, result)` with a fresh
    /// budget.
    ///
    /// # Errors
    /// As [`ComponentInstance::handle_message`].
    pub fn handle_callback(
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
        let result = self.world.airssys_wasm_component_lifecycle().call_handle_callback(
            &mut self.store,
            request_id.as_str(),
            outcome,
        );
        self.store.data_mut().trace = None;
        match result {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(e)) => Ok(Err(ComponentError { code: e.code, message: e.message })),
            Err(e) => Err(self.classify(&e)),
        }
    }

    fn arm(&mut self, trace: Option<TraceContext>) -> Result<(), GuestFailure> {
        self.store.set_fuel(self.fuel_per_call).map_err(|e| GuestFailure::Trap(format!("{e:#}")))?;
        self.store.set_epoch_deadline(self.ticks_per_call);
        self.store.data_mut().trace = trace;
        Ok(())
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

impl EpochTicker {
    fn start(engine: Engine, tick_ms: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(tick_ms));
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for EpochTicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochTicker").field("running", &self.thread.is_some()).finish()
    }
}
