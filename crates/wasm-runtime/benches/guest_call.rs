//! The raw cost of calling a guest: `handle-message` on the `echo` fixture
//! with a 64-byte payload, straight through wasmtime (no router, no actor).
//! This is the baseline the end-to-end messaging benchmarks are held against.
//!
//! Run: `cargo bench -p wasm-runtime --bench guest_call`.
#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use wasm_core::{ComponentId, CorrelationId, Limits, MessageRouter, MessagingError, Origin};
use wasm_runtime::{EngineConfig, WasmEngine};

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

fn guest_call(c: &mut Criterion) {
    let engine = WasmEngine::new(EngineConfig::default()).expect("engine");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/echo.wat");
    let echo = engine.load_file(&path).expect("echo fixture");
    let id = ComponentId::parse("echo").expect("id");
    let mut instance = engine.instantiate(&echo, id, &Limits::default(), Arc::new(NoRouter)).expect("instance");
    let sender = ComponentId::host();
    let mut payload = vec![0x55];
    payload.resize(64, b'x');
    c.bench_function("wasmtime_handle_message_64b", |b| {
        b.iter(|| black_box(instance.handle_message(&sender, black_box(&payload), None)));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(std::time::Duration::from_secs(3));
    targets = guest_call
}
criterion_main!(benches);
