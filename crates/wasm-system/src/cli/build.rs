//! `wasm-system build`: compile the Rust crates that manifests name in
//! `component.build` into components, and write each to its `wasm` path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use wasm_system::{GUEST_TARGET, LoadedComponent, build_guest, ensure_guest_target};

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
    ensure_guest_target()?;
    let mut written = 0;
    for (cargo_toml, users) in &crates {
        eprintln!("build: compiling {} for {GUEST_TARGET}", cargo_toml.display());
        let artifact = build_guest(cargo_toml, None)?;
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
