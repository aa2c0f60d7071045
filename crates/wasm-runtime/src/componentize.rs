//! Turning a `.wat` core module into a component of the `airssys:wasm`
//! world, with `wat` and `wit-component` (the Bytecode Alliance's encoder):
//! `embed_component_metadata`, then `ComponentEncoder`. Canonical names are
//! off, because wasmtime 48's parser predates the newer name encoding.

use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

use crate::error::RuntimeError;

/// The WIT contract, `wit/world.wit` (SPEC section 2).
pub const WIT: &str = include_str!("../../../wit/world.wit");

/// Componentizes a core module, given as WAT text, against world
/// `airssys:wasm/component`, or `airssys:wasm/batch-component` when the
/// module exports `airssys:wasm/batch-lifecycle@0.1.0#handle-messages`.
/// `origin` names the source in errors.
///
/// The module must import `airssys:wasm/host-services@0.1.0` functions (any
/// subset; with batches also `airssys:wasm/inbox@0.1.0#next-message`) and
/// export `airssys:wasm/component-lifecycle@0.1.0#handle-message` and
/// `#handle-callback`, `memory` and `cabi_realloc`, with the canonical ABI's
/// core signatures.
///
/// # Errors
/// [`RuntimeError::Componentize`] when the text does not parse, or the module
/// does not match the world (a missing export, a wrong signature), with the
/// encoder's reason.
pub fn componentize_wat(origin: &str, wat_text: &str) -> Result<Vec<u8>, RuntimeError> {
    let module = wat::parse_str(wat_text)
        .map_err(|e| RuntimeError::Componentize { origin: origin.to_owned(), reason: e.to_string() })?;
    let world = if exports_batches(&module) { "batch-component" } else { "component" };
    componentize_wat_with_wit(origin, wat_text, WIT, world)
}

/// Whether the core module exports the batch handler (read from its export
/// section with `wasmparser`; a module that does not parse answers `false`
/// and fails later with the encoder's reason).
fn exports_batches(module: &[u8]) -> bool {
    const HANDLE_MESSAGES: &str = "airssys:wasm/batch-lifecycle@0.1.0#handle-messages";
    wasmparser::Parser::new(0).parse_all(module).any(|payload| match payload {
        Ok(wasmparser::Payload::ExportSection(exports)) => {
            exports.into_iter().any(|export| export.is_ok_and(|export| export.name == HANDLE_MESSAGES))
        }
        _ => false,
    })
}

/// As [`componentize_wat`], against world `world` of the WIT package
/// `wit_text` instead of ours: for building components that deliberately do
/// not fit the `airssys:wasm` world (tests of the host's checks), or for
/// other worlds.
///
/// # Errors
/// As [`componentize_wat`], and when the WIT text or world is invalid.
pub fn componentize_wat_with_wit(
    origin: &str,
    wat_text: &str,
    wit_text: &str,
    world: &str,
) -> Result<Vec<u8>, RuntimeError> {
    componentize_wat_with_packages(origin, wat_text, &[wit_text], world)
}

/// As [`componentize_wat_with_wit`], with several WIT packages, each one
/// file's text, given dependencies first; `world` is looked up in the last.
/// For worlds that import other packages, such as WASI's `wasi:cli/stdout`.
///
/// # Errors
/// As [`componentize_wat`], and when a package does not parse or refers to
/// a package not given before it.
pub fn componentize_wat_with_packages(
    origin: &str,
    wat_text: &str,
    packages: &[&str],
    world: &str,
) -> Result<Vec<u8>, RuntimeError> {
    let fail = |reason: String| RuntimeError::Componentize { origin: origin.to_owned(), reason };
    let mut module = wat::parse_str(wat_text).map_err(|e| fail(e.to_string()))?;
    let mut resolve = Resolve::new();
    let mut main = None;
    for (i, text) in packages.iter().enumerate() {
        main = Some(resolve.push_source(&format!("package-{i}.wit"), text).map_err(|e| fail(format!("{e:#}")))?);
    }
    let main = main.ok_or_else(|| fail("no WIT package given".into()))?;
    let world = resolve.select_world(&[main], Some(world)).map_err(|e| fail(format!("{e:#}")))?;
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8, false)
        .map_err(|e| fail(format!("{e:#}")))?;
    ComponentEncoder::default()
        .emit_canonical_names(false)
        .validate(true)
        .module(&module)
        .map_err(|e| fail(format!("{e:#}")))?
        .encode()
        .map_err(|e| fail(format!("{e:#}")))
}
