//! Errors of the composition root.

use std::path::{Path, PathBuf};

use thiserror::Error;
use wasm_core::ComponentId;
use wasm_messaging::RegistryError;
use wasm_runtime::RuntimeError;

/// A manifest that cannot be read or is wrong. Every variant names the file;
/// parse errors carry toml's report (line, column, the key, the problem).
#[derive(Debug, Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The manifest file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key (a typo), a missing key or a wrong type.
    #[error("{file}: {detail}")]
    Parse {
        /// The manifest file.
        file: PathBuf,
        /// toml's report: position, key and problem.
        detail: String,
    },
    /// Valid TOML with a value the host refuses.
    #[error("{file}: key `{key}`: {problem}")]
    Invalid {
        /// The manifest file.
        file: PathBuf,
        /// The dotted key at fault.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// Why a [`crate::System`] could not start.
#[derive(Debug, Error)]
pub enum SystemError {
    /// A manifest is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A component could not be compiled, checked or instantiated.
    #[error("component {id}{}: {source}", in_manifest(manifest.as_deref()))]
    Runtime {
        /// The component id.
        id: String,
        /// The manifest file it was loaded from, when it came from one.
        manifest: Option<PathBuf>,
        /// What the runtime said.
        source: RuntimeError,
    },
    /// The engine could not start.
    #[error("engine: {0}")]
    Engine(RuntimeError),
    /// Two components share an id, or one is called `host`.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// [`crate::System::stop_component`] found no running component by that
    /// id (with why, when it had stopped on its own).
    #[error("no running component {0}")]
    NotRunning(String),
    /// The shards of [`crate::SystemBuilder::shards`] could not start (a
    /// thread or a runtime's I/O driver).
    #[error("shards: {0}")]
    Shards(std::io::Error),
    /// The audit log could not be opened.
    #[error("audit log {file}: {source}")]
    Audit {
        /// The audit file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SystemError {
    /// [`SystemError::Runtime`] for component `id`, loaded from `manifest`.
    pub(crate) fn runtime(id: &ComponentId, manifest: Option<&Path>, source: RuntimeError) -> Self {
        SystemError::Runtime { id: id.to_string(), manifest: manifest.map(Path::to_path_buf), source }
    }
}

/// ` (manifest <file>)`, or nothing.
fn in_manifest(manifest: Option<&Path>) -> String {
    manifest.map(|file| format!(" (manifest {})", file.display())).unwrap_or_default()
}
