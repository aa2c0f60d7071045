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
/// `EngineConfig::dense()` when `BENCH_ENGINE=dense`.
pub(crate) fn engine_config() -> EngineConfig {
    match std::env::var("BENCH_ENGINE").as_deref() {
        Ok("dense") => EngineConfig::dense(),
        _ => EngineConfig::default(),
    }
}
