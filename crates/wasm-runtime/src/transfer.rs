//! Copying compiled code from one engine to another
//! ([`WasmEngine::adopt`](crate::WasmEngine::adopt)).
//!
//! wasmtime's compiled code belongs to the engine that compiled it. An
//! engine with the same settings can load a copy without compiling again:
//! `Component::serialize` writes the compiled artifact, and
//! `Component::deserialize` loads it into the other engine. Loading is
//! `unsafe` because wasmtime trusts the bytes to be its own artifact (it
//! checks their header, version and settings, not the code itself); here
//! they are, produced a moment before, in this process, from a component
//! wasmtime compiled.

#![allow(unsafe_code, reason = "wasmtime's Component::deserialize is unsafe; see the safety argument")]

use wasmtime::Engine;
use wasmtime::component::Component;

/// `component`'s compiled code, loaded into `into`.
///
/// # Errors
/// When `into`'s settings do not fit the code (wasmtime compares the
/// engines' compilation settings and versions), or memory runs out.
pub(crate) fn copy_component(component: &Component, into: &Engine) -> wasmtime::Result<Component> {
    let artifact = component.serialize()?;
    // SAFETY: `Component::deserialize` requires bytes that wasmtime itself
    // produced (`Engine::precompile_component` or `Component::serialize`),
    // unaltered: these come from `serialize` just above, in this process,
    // and never leave it. wasmtime still checks that they fit `into`.
    unsafe { Component::deserialize(into, &artifact) }
}
