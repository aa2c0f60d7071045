//! `cargo xtask fixtures`: componentize the `.wat` test fixtures.
//!
//! Fixtures are committed as `.wat` sources in `tests/fixtures/`, never as binaries. This
//! hands all of them to `wasm-system componentize`, which writes `<stem>.wasm` for each
//! into `target/fixtures/`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::{self, cargo};

/// Where fixture sources live, relative to the workspace root.
const SOURCE_DIR: &str = "tests/fixtures";

/// Where componentized fixtures go, relative to the workspace root.
const OUT_DIR: &str = "target/fixtures";

/// Componentizes every `tests/fixtures/*.wat` into `target/fixtures/<stem>.wasm`.
///
/// # Errors
///
/// Fails when the fixture directory cannot be read or `componentize` fails.
pub(crate) fn run(root: &Path) -> Result<()> {
    let sources = wat_sources(root)?;
    if sources.is_empty() {
        println!("fixtures: no .wat files in {SOURCE_DIR}/, nothing to build");
        return Ok(());
    }
    cmd::run(
        cargo()
            .current_dir(root)
            .args(["run", "--quiet", "-p", "wasm-system", "--"])
            .args(["componentize", "--out-dir", OUT_DIR])
            .args(&sources),
    )?;
    let out_dir = root.join(OUT_DIR);
    println!("fixtures: componentized {} fixture(s) into {}", sources.len(), out_dir.display());
    for source in &sources {
        if let Some(stem) = source.file_stem() {
            println!("  {}", out_dir.join(stem).with_extension("wasm").display());
        }
    }
    Ok(())
}

/// The `.wat` files directly in `tests/fixtures/`, as paths relative to `root`, sorted.
///
/// A missing directory means no fixtures yet.
///
/// # Errors
///
/// Fails when the directory exists but cannot be read.
fn wat_sources(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join(SOURCE_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("could not read {}", dir.display()));
        }
    };
    let mut sources = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("could not read {}", dir.display()))?;
        let path = entry.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "wat") {
            sources.push(Path::new(SOURCE_DIR).join(entry.file_name()));
        }
    }
    sources.sort();
    Ok(sources)
}
