//! Subcommands of the `wasm-system` binary that build component crates.

pub(crate) mod build;
pub(crate) mod new;
