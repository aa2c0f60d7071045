//! The parts of the `wasm-system` binary: building and scaffolding
//! component crates, and what `run` shows and writes around a running app.

pub(crate) mod build;
pub(crate) mod cluster;
pub(crate) mod console;
pub(crate) mod events_file;
pub(crate) mod inject;
pub(crate) mod new;
pub(crate) mod payload;
pub(crate) mod report;
