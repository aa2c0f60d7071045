//! `wasm-system build`: compile the Rust crates that manifests name in
//! `component.build` into components, and write each to its `wasm` path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use wasm_system::LoadedComponent;

/// The Rust target that links a crate as a component of WASI preview 2.
pub(crate) const TARGET: &str = "wasm32-wasip2";

/// Builds every component in `components` that has a `build` crate, once per
/// crate, and copies the component to each manifest's `wasm` path. Returns
/// how many components were written. Progress goes to stderr.
///
/// # Errors
/// A missing `Cargo.toml`, a missing target that cannot be installed, a
/// failed `cargo` run (its diagnostics are on stderr), or an I/O error
/// writing `wasm`.
pub(crate) fn build_components(components: &[LoadedComponent]) -> anyhow::Result<usize> {
    let mut crates: BTreeMap<PathBuf, Vec<&LoadedComponent>> = BTreeMap::new();
    for component in components {
        let Some(dir) = &component.build_dir else { continue };
        let cargo_toml = dir.join("Cargo.toml");
        let cargo_toml = cargo_toml.canonicalize().with_context(|| {
            format!(
                "{}: component.build = {:?} has no Cargo.toml ({})",
                component.file.display(),
                component.manifest.component.build.as_deref().unwrap_or(Path::new("")),
                cargo_toml.display()
            )
        })?;
        crates.entry(cargo_toml).or_default().push(component);
    }
    if crates.is_empty() {
        eprintln!("build: no component names a crate to build (`build = \"<crate dir>\"` in [component])");
        return Ok(0);
    }
    ensure_target()?;
    let mut written = 0;
    for (cargo_toml, users) in &crates {
        eprintln!("build: compiling {} for {TARGET}", cargo_toml.display());
        let artifact = cargo_build(cargo_toml)?;
        for component in users {
            if let Some(parent) = component.wasm_path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            let bytes = install(&artifact, &component.wasm_path)?;
            eprintln!(
                "build: {} -> {} ({bytes} bytes)",
                component.manifest.component.id,
                component.wasm_path.display()
            );
            written += 1;
        }
    }
    Ok(written)
}

/// Copies `artifact` to `wasm` through a temporary file and a rename, so a
/// process loading `wasm` at the same time reads the old file or the new one,
/// never half of one. Returns the bytes written.
fn install(artifact: &Path, wasm: &Path) -> anyhow::Result<u64> {
    let mut partial = wasm.as_os_str().to_owned();
    partial.push(format!(".partial-{}", std::process::id()));
    let partial = PathBuf::from(partial);
    let bytes = std::fs::copy(artifact, &partial)
        .with_context(|| format!("copying {} to {}", artifact.display(), partial.display()))?;
    std::fs::rename(&partial, wasm).with_context(|| format!("renaming {} to {}", partial.display(), wasm.display()))?;
    Ok(bytes)
}

/// Runs `cargo rustc` for the crate's library as a `cdylib` for [`TARGET`]
/// (release profile) and returns the `.wasm` cargo reports for it.
///
/// `--crate-type cdylib` lets a crate stay an `rlib` for host builds (tests,
/// clippy) and still link as a component here. The artifact path comes from
/// cargo's JSON messages, so the crate may be a workspace member (shared
/// target directory) or stand alone.
fn cargo_build(cargo_toml: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["rustc", "--release", "--lib", "--target", TARGET, "--crate-type", "cdylib"])
        .args(["--message-format", "json-render-diagnostics", "--manifest-path"])
        .arg(cargo_toml)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} (is cargo installed?)", Path::new(&cargo).display()))?;
    if !output.status.success() {
        bail!("building {} failed ({}); the compiler's messages are above", cargo_toml.display(), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let artifact = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().is_some_and(|p| Path::new(p) == cargo_toml))
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"));
    artifact.with_context(|| format!("cargo built {} but reported no .wasm file for it", cargo_toml.display()))
}

/// Makes sure the standard library for [`TARGET`] is installed: with rustup,
/// adds it when missing; without rustup, asks rustc whether it has it.
///
/// # Errors
/// When the target is missing and cannot be installed; the text says what
/// to run.
pub(crate) fn ensure_target() -> anyhow::Result<()> {
    let how = format!("install it with `rustup target add {TARGET}` (rustup: https://rustup.rs)");
    match Command::new("rustup").args(["target", "list", "--installed"]).output() {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout).lines().any(|t| t.trim() == TARGET) {
                return Ok(());
            }
            eprintln!("build: the {TARGET} target is missing; running `rustup target add {TARGET}`");
            let added = Command::new("rustup").args(["target", "add", TARGET]).status();
            match added {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => bail!("`rustup target add {TARGET}` failed ({status}); {how}"),
                Err(e) => bail!("running `rustup target add {TARGET}`: {e}; {how}"),
            }
        }
        // No rustup (a distribution's toolchain): the target's standard
        // library is either in rustc's sysroot or not.
        _ => {
            let libdir = Command::new("rustc").args(["--print", "target-libdir", "--target", TARGET]).output();
            let has_std = libdir.ok().filter(|out| out.status.success()).is_some_and(|out| {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                std::fs::read_dir(dir).is_ok_and(|mut entries| {
                    entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
                })
            });
            if has_std {
                Ok(())
            } else {
                bail!("the {TARGET} standard library is not installed and rustup is not available; {how}")
            }
        }
    }
}
