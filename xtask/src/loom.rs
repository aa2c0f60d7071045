//! `cargo xtask loom`: the loom models of `wasm-messaging`.
//!
//! Models are `#[test] fn loom_*()` in `crates/wasm-messaging/src/tests/loom_*.rs`. They
//! build with `--cfg loom` in release mode, in their own target directory
//! (`target-loom/`) so that switching cfgs does not throw away the main build cache.

use std::path::Path;

use anyhow::Result;

use crate::cmd::{self, cargo};

/// How many preemptions loom explores per model; 2 is tokio's usual bound.
const MAX_PREEMPTIONS: &str = "2";

/// Runs every `loom_*` test of `wasm-messaging` under `--cfg loom`.
///
/// # Errors
///
/// Fails when the build fails or a model finds a bad interleaving.
pub(crate) fn run(root: &Path) -> Result<()> {
    cmd::run(
        cargo()
            .current_dir(root)
            .args(["test", "-p", "wasm-messaging", "--release", "--lib", "loom_"])
            // `CARGO_ENCODED_RUSTFLAGS` would take precedence over `RUSTFLAGS`.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("RUSTFLAGS", "--cfg loom")
            .env("LOOM_MAX_PREEMPTIONS", MAX_PREEMPTIONS)
            .env("CARGO_TARGET_DIR", root.join("target-loom")),
    )
}
