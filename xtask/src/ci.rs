//! `cargo xtask ci`: exactly what CI runs, in order, failing fast.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cmd::{self, cargo};
use crate::{fixtures, lint, loom, soak};

/// One named step of the CI run.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// The name printed in progress lines and in the failure message.
    name: &'static str,
    /// What the step does, given the workspace root.
    run: fn(&Path) -> Result<()>,
}

/// The CI steps, in the order they run.
const STEPS: &[Step] = &[
    Step { name: "fmt", run: |root| cmd::run(cargo().current_dir(root).args(["fmt", "--all", "--", "--check"])) },
    Step {
        name: "clippy",
        run: |root| {
            cmd::run(cargo().current_dir(root).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))
        },
    },
    Step {
        name: "test",
        run: |root| cmd::run(cargo().current_dir(root).args(["test", "--workspace", "--all-targets"])),
    },
    Step { name: "doc-test", run: |root| cmd::run(cargo().current_dir(root).args(["test", "--workspace", "--doc"])) },
    // The API docs build without a warning: no broken or private intra-doc
    // link in what users read (`-D warnings` for rustdoc only).
    Step {
        name: "doc",
        run: |root| {
            cmd::run(cargo().current_dir(root).env("RUSTDOCFLAGS", "-D warnings").args([
                "doc",
                "--workspace",
                "--no-deps",
            ]))
        },
    },
    Step { name: "soak", run: |root| soak::run(root, true) },
    // The embedding example: wasm-system without its CLI, run end to end (it
    // fails unless its request completes, its dropped request is cancelled
    // and the accounting balances).
    Step { name: "embed", run: |root| cmd::run(cargo().current_dir(root).args(["run", "-q", "-p", "example-embed"])) },
    Step { name: "lint", run: lint::run },
    Step { name: "fixtures", run: fixtures::run },
    Step { name: "loom", run: loom::run },
];

/// Runs every CI step in order and stops at the first that fails.
///
/// # Errors
///
/// Fails with a message naming the step that failed.
pub(crate) fn run(root: &Path) -> Result<()> {
    let started = Instant::now();
    for (index, step) in STEPS.iter().enumerate() {
        println!("\n==> ci step {}/{}: {}", index + 1, STEPS.len(), step.name);
        let step_started = Instant::now();
        (step.run)(root).with_context(|| format!("ci step `{}` failed", step.name))?;
        println!("==> ci step `{}` passed in {:.1}s", step.name, step_started.elapsed().as_secs_f64());
    }
    println!("\n==> ci: all {} steps passed in {:.1}s", STEPS.len(), started.elapsed().as_secs_f64());
    Ok(())
}
