//! The raw cost of calling a guest: `handle-message` on the `echo` fixture
//! with a 64-byte payload, straight through wasmtime (no router, no actor),
//! two ways in the same run:
//!
//! - `guest_call/async_64b`: [`ComponentInstance::handle_message`], the
//!   async call (a fiber switch in and out, epoch yields armed) that the
//!   actors make. This is the baseline the end-to-end benchmarks are held
//!   against.
//! - `guest_call/sync_64b`: the same guest through a plain synchronous
//!   wasmtime call with the same engine settings (fuel, epochs, no
//!   concurrency support), the model the host used before; what async costs
//!   is the difference.
//!
//! Run: `cargo bench -p wasm-runtime --bench guest_call`.
#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use wasm_core::{ComponentId, CorrelationId, Limits, MessageRouter, MessagingError, Origin, WasiSection};
use wasm_runtime::{EngineConfig, WasmEngine, componentize_wat};
use wasmtime::component::{Component, ComponentType, Lift, Linker};
use wasmtime::{Config, Engine, Store};

/// A router that refuses everything: the echo fixture never calls it.
struct NoRouter;

impl MessageRouter for NoRouter {
    fn send_message(&self, _: Origin<'_>, _: &str, _: Vec<u8>) -> Result<(), MessagingError> {
        Err(MessagingError::DeliveryFailed("bench".into()))
    }
    fn send_request(&self, _: Origin<'_>, _: &str, _: Vec<u8>, _: u64) -> Result<CorrelationId, MessagingError> {
        Err(MessagingError::DeliveryFailed("bench".into()))
    }
    fn cancel_request(&self, _: Origin<'_>, _: &str) -> Result<(), MessagingError> {
        Err(MessagingError::DeliveryFailed("bench".into()))
    }
}

/// `component-error` of the WIT, for the typed synchronous call.
#[derive(ComponentType, Lift)]
#[component(record)]
struct ComponentError {
    #[component(name = "code")]
    _code: u32,
    #[component(name = "message")]
    _message: String,
}

fn echo_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/echo.wat")
}

fn payload64() -> Vec<u8> {
    let mut payload = vec![0x55];
    payload.resize(64, b'x');
    payload
}

fn guest_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("guest_call");

    let engine = WasmEngine::new(EngineConfig::default()).expect("engine");
    let echo = engine.load_file(&echo_path()).expect("echo fixture");
    let id = ComponentId::parse("echo").expect("id");
    let instance = rt
        .block_on(engine.instantiate(&echo, id, &Limits::default(), &WasiSection::default(), Arc::new(NoRouter)))
        .expect("instance");
    // The loop runs in a spawned task, as an actor would, and hands the
    // instance back after each measurement.
    let mut instance = Some(instance);
    group.bench_function("async_64b", |b| {
        b.iter_custom(|iters| {
            let mut owned = instance.take().expect("instance between runs");
            let (owned, elapsed) = rt.block_on(async move {
                tokio::spawn(async move {
                    let (sender, payload) = (ComponentId::host(), payload64());
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(owned.handle_message(&sender, black_box(&payload), None).await.ok());
                    }
                    (owned, start.elapsed())
                })
                .await
                .expect("measuring task")
            });
            instance = Some(owned);
            elapsed
        });
    });

    let mut config = Config::new();
    config.wasm_component_model(true).concurrency_support(false).consume_fuel(true).epoch_interruption(true);
    let sync_engine = Engine::new(&config).expect("sync engine");
    let text = std::fs::read_to_string(echo_path()).expect("echo.wat");
    let bytes = componentize_wat("echo.wat", &text).expect("componentize");
    let component = Component::new(&sync_engine, &bytes).expect("compile");
    let mut store = Store::new(&sync_engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    let linked = Linker::<()>::new(&sync_engine).instantiate(&mut store, &component).expect("instantiate");
    let lifecycle =
        linked.get_export_index(&mut store, None, "airssys:wasm/component-lifecycle@0.1.0").expect("lifecycle export");
    let handle = linked.get_export_index(&mut store, Some(&lifecycle), "handle-message").expect("handle-message");
    let call = linked
        .get_typed_func::<(&str, &[u8]), (Result<Vec<u8>, ComponentError>,)>(&mut store, &handle)
        .expect("typed handle-message");
    let payload = payload64();
    group.bench_function("sync_64b", |b| {
        b.iter(|| {
            // As the old per-call arming: a fresh fuel and epoch budget.
            store.set_fuel(1_000_000_000).expect("fuel");
            store.set_epoch_deadline(u64::MAX / 2);
            black_box(call.call(&mut store, ("host", black_box(&payload))).ok().map(|(r,)| r.is_ok()))
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3));
    targets = guest_call
}
criterion_main!(benches);
