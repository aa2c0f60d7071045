//! The wasmtime side of the airssys wasm host: it compiles components
//! against the `airssys:wasm` world (`wit/world.wit`), instantiates them
//! with per-call fuel and time budgets and a memory cap, runs every guest
//! call asynchronously with epoch-based preemption (see [`WasmEngine`] and
//! the execution model in `engine.rs`), links WASI preview 2 with nothing
//! granted but what a manifest lists, and implements the `host-services`
//! imports by calling an injected [`wasm_core::MessageRouter`]. It never
//! names the messaging crate; the composition root wires the two.
//!
//! ```no_run
//! use std::sync::Arc;
//! use wasm_core::{ComponentId, Limits, MessageRouter, WasiSection};
//! use wasm_runtime::{EngineConfig, WasmEngine};
//!
//! # async fn run(router: Arc<dyn MessageRouter>) -> Result<(), Box<dyn std::error::Error>> {
//! let engine = WasmEngine::new(EngineConfig::default())?;
//! let echo = engine.load_file("tests/fixtures/echo.wat".as_ref())?;
//! let id = ComponentId::parse("echo")?;
//! let mut instance =
//!     engine.instantiate(&echo, id, &Limits::default(), &WasiSection::default(), router).await?;
//! let reply = instance.handle_message(&ComponentId::host(), b"\x55hi", None).await?;
//! assert_eq!(reply, Ok(b"\x55hi".to_vec()));
//! # Ok(()) }
//! ```
// `deny`, not `forbid`: `stacks.rs` (the fiber stack pool: an unsafe
// wasmtime trait, mmap and madvise) and `transfer.rs` (wasmtime's unsafe
// `Component::deserialize`) are the modules allowed unsafe code.
#![deny(unsafe_code)]

mod bindings;
#[cfg(feature = "wat")]
mod componentize;
mod engine;
mod error;
mod guest_log;
mod host;
mod limits;
#[cfg(target_os = "linux")]
mod stacks;
mod transfer;

#[cfg(feature = "wat")]
pub use componentize::{WIT, componentize_wat, componentize_wat_with_packages, componentize_wat_with_wit};
pub use engine::{CompiledComponent, ComponentInstance, EngineConfig, WasmEngine};
pub use error::{GuestFailure, RuntimeError};
pub use guest_log::GuestLogLimits;
pub use host::{InboundMessage, MessageSource};
