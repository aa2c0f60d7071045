//! Errors of the runtime layer.

use thiserror::Error;

/// Why a component could not be compiled, checked or instantiated.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The wasmtime engine could not be configured.
    #[error("engine configuration: {0}")]
    Engine(String),
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `.wat` core module could not be parsed or componentized against the
    /// `airssys:wasm` world.
    #[error("componentizing {origin}: {reason}")]
    Componentize {
        /// Where the module came from.
        origin: String,
        /// What went wrong, with its chain of causes.
        reason: String,
    },
    /// The bytes are not a valid component.
    #[error("compiling {origin}: {reason}")]
    Compile {
        /// Where the component came from.
        origin: String,
        /// What went wrong.
        reason: String,
    },
    /// The component does not fit the `airssys:wasm/component` world: an
    /// import the host does not provide, or a missing or mistyped export
    /// (for example no `handle-callback`).
    #[error("{origin} does not fit world airssys:wasm/component: {reason}")]
    World {
        /// Where the component came from.
        origin: String,
        /// What is missing or mistyped.
        reason: String,
    },
    /// Instantiation failed (start function trapped, limits exceeded).
    #[error("instantiating {id}: {reason}")]
    Instantiate {
        /// The component id.
        id: String,
        /// What went wrong.
        reason: String,
    },
}

/// Why a guest call did not return: the instance must be discarded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GuestFailure {
    /// The guest trapped (unreachable, out-of-bounds access, memory cap, ...).
    #[error("trap: {0}")]
    Trap(String),
    /// The call used up its fuel budget.
    #[error("out of fuel (budget {budget} units)")]
    OutOfFuel {
        /// The per-call budget, in wasmtime fuel units.
        budget: u64,
    },
    /// The call ran past its wall-clock budget (epoch deadline).
    #[error("time budget of {budget_ms} ms exceeded")]
    Timeout {
        /// The per-call budget, in ms.
        budget_ms: u64,
    },
}
