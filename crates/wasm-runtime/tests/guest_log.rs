//! Guest stdout and stderr reach the host's log, tagged with the component
//! id, through real WASI preview 2 imports (`wasi:cli/stdout`,
//! `wasi:io/streams`) linked by the engine. One test per binary: it installs
//! a global `tracing` subscriber, because WASI writes happen on
//! wasmtime-wasi's own worker threads.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use wasm_core::{ComponentId, CorrelationId, Limits, MessageRouter, MessagingError, Origin};
use wasm_runtime::{EngineConfig, WasmEngine, componentize_wat_with_packages};

/// A router the logging fixture never calls.
struct NoRouter;

impl MessageRouter for NoRouter {
    fn send_message(&self, _: Origin<'_>, _: &str, _: Vec<u8>) -> Result<(), MessagingError> {
        Err(MessagingError::DeliveryFailed("test".into()))
    }
    fn send_request(&self, _: Origin<'_>, _: &str, _: Vec<u8>, _: u64) -> Result<CorrelationId, MessagingError> {
        Err(MessagingError::DeliveryFailed("test".into()))
    }
    fn cancel_request(&self, _: Origin<'_>, _: &str) -> Result<(), MessagingError> {
        Err(MessagingError::DeliveryFailed("test".into()))
    }
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/wasi").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn guest_stdout_and_stderr_go_to_the_host_log_with_the_component_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();

    let component = componentize_wat_with_packages(
        "logging.wat",
        &fixture("logging.wat"),
        &[&fixture("io.wit"), &fixture("cli.wit"), wasm_runtime::WIT, &fixture("logging-world.wit")],
        "logging-component",
    )
    .expect("componentizes against a world with WASI imports");
    let engine = WasmEngine::new(EngineConfig::default()).expect("engine");
    let compiled = engine.load("logging", &component).expect("the engine links WASI preview 2");
    let id = ComponentId::parse("logger-7").expect("id");
    let mut instance = engine.instantiate(&compiled, id, &Limits::default(), Arc::new(NoRouter)).expect("instance");

    let sender = ComponentId::host();
    let out = b"\x55hello from the guest".to_vec();
    assert_eq!(instance.handle_message(&sender, &out, None), Ok(Ok(out.clone())));
    let err = b"\x55e-rror on stderr".to_vec();
    assert_eq!(instance.handle_message(&sender, &err, None), Ok(Ok(err.clone())));

    // blocking-write-and-flush returns only once the host stream took the
    // bytes, so both lines are logged by now.
    let log = captured.text();
    let stdout_line = log.lines().find(|l| l.contains("hello from the guest")).unwrap_or_else(|| panic!("{log}"));
    assert!(stdout_line.contains("INFO") && stdout_line.contains("guest"), "{stdout_line}");
    assert!(stdout_line.contains("component=logger-7") && stdout_line.contains("stream=\"stdout\""), "{stdout_line}");
    let stderr_line = log.lines().find(|l| l.contains("e-rror on stderr")).unwrap_or_else(|| panic!("{log}"));
    assert!(stderr_line.contains("WARN") && stderr_line.contains("stream=\"stderr\""), "{stderr_line}");
    assert!(stderr_line.contains("component=logger-7"), "{stderr_line}");
}
