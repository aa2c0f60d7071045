//! What the benches share: the workspace root, test manifests, payloads.

#![allow(dead_code, reason = "each bench uses part of it")]

use std::path::PathBuf;
use std::time::Duration;

use wasm_core::ComponentManifest;
use wasm_runtime::EngineConfig;

/// How long any wait in a bench may take.
pub(crate) const BOUND: Duration = Duration::from_secs(60);

/// The workspace root (fixtures are under `tests/fixtures`).
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A component manifest for `id` with extra TOML sections (its code comes
/// from the builder, not from `wasm`).
pub(crate) fn manifest(id: &str, extra: &str) -> ComponentManifest {
    toml::from_str(&format!("[component]\nid = \"{id}\"\nwasm = \"x.wat\"\n{extra}")).expect("manifest")
}

/// A 64-byte raw payload (prefix included).
pub(crate) fn payload64() -> Vec<u8> {
    let mut payload = vec![0x55];
    payload.resize(64, b'x');
    payload
}

/// The engine settings a bench runs with: wasmtime's defaults, or
/// `EngineConfig::dense()` when `BENCH_ENGINE=dense`; with
/// `BENCH_PERF_MAP=1`, a perf map of the guests' functions for `perf`
/// (`EngineConfig::perf_map`).
pub(crate) fn engine_config() -> EngineConfig {
    let mut config = match std::env::var("BENCH_ENGINE").as_deref() {
        Ok("dense") => EngineConfig::dense(),
        _ => EngineConfig::default(),
    };
    config.perf_map = std::env::var_os("BENCH_PERF_MAP").is_some_and(|v| v == "1");
    config
}

/// Builds the SDK bench guest (`tests/guests/bench`) with the `wasm-system`
/// binary, into the guests' target directory, and returns its path.
pub(crate) fn sdk_guest() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from).join("guests");
    let wasm = target.join("bench-sdk").join("guest_bench.wasm");
    let manifest = target.join("bench-sdk.toml");
    std::fs::create_dir_all(&target).expect("target dir");
    let text = format!(
        "[component]\nid = \"bench\"\nwasm = {:?}\nbuild = {:?}\n",
        wasm.display().to_string(),
        root().join("tests/guests/bench").display().to_string()
    );
    std::fs::write(&manifest, text).expect("manifest");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-system"))
        .arg("build")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("running wasm-system build");
    assert!(status.success(), "building the SDK bench guest failed");
    wasm
}

/// A bare instance of the echo fixture (no actor, no mailbox): what the
/// raw-call baselines call. Its host calls would go to `router`.
pub(crate) fn echo_instance(
    rt: &tokio::runtime::Runtime,
    engine: &wasm_runtime::WasmEngine,
    router: std::sync::Arc<dyn wasm_core::MessageRouter>,
) -> wasm_runtime::ComponentInstance {
    fixture_instance(rt, engine, "echo", router)
}

/// A bare instance of fixture `tests/fixtures/<name>.wat`, running as
/// component `name`, with default limits; its host calls go to `router`.
pub(crate) fn fixture_instance(
    rt: &tokio::runtime::Runtime,
    engine: &wasm_runtime::WasmEngine,
    name: &str,
    router: std::sync::Arc<dyn wasm_core::MessageRouter>,
) -> wasm_runtime::ComponentInstance {
    let compiled = engine.load_file(&root().join(format!("tests/fixtures/{name}.wat"))).expect(name);
    let id = wasm_core::ComponentId::parse(name).expect("id");
    rt.block_on(engine.instantiate(
        &compiled,
        id,
        &wasm_core::Limits::default(),
        &wasm_core::WasiSection::default(),
        router,
    ))
    .expect("instance")
}

/// The channel baseline's echo: a task that sends back every message it
/// gets. Returns the way to it, the way back, and the task (to abort).
/// Call it inside the runtime.
pub(crate) fn channel_echo()
-> (tokio::sync::mpsc::Sender<Vec<u8>>, tokio::sync::mpsc::Receiver<Vec<u8>>, tokio::task::JoinHandle<()>) {
    let (to_echo, mut echo_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let (to_main, main_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let echo = tokio::spawn(async move {
        while let Some(m) = echo_rx.recv().await {
            if to_main.send(m).await.is_err() {
                break;
            }
        }
    });
    (to_echo, main_rx, echo)
}

/// The `requester.wat` command that sends `count` 64-byte messages to
/// `target` (`0x55 'm' count:u32 L:u8 target payload`, see
/// `tests/fixtures/README.md`).
pub(crate) fn send_command(count: u32, target: &str) -> Vec<u8> {
    let mut cmd = vec![0x55, b'm'];
    cmd.extend_from_slice(&count.to_le_bytes());
    cmd.push(u8::try_from(target.len()).expect("short"));
    cmd.extend_from_slice(target.as_bytes());
    cmd.extend_from_slice(&payload64());
    cmd
}

/// Runs `work` inside a spawned task and returns its output: waking the
/// bench thread from a worker (`block_on`) costs tens of microseconds here
/// and would swamp the numbers, so hot paths stay between tasks.
pub(crate) fn in_task<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    rt.block_on(async { tokio::spawn(work).await.expect("measuring task") })
}

/// Shuts down the bench's system, which must have no other owner left.
pub(crate) fn shutdown(rt: &tokio::runtime::Runtime, system: std::sync::Arc<wasm_system::System>) {
    let system = std::sync::Arc::into_inner(system).expect("no other owner");
    rt.block_on(system.shutdown(BOUND));
}
