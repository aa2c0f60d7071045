//! Building Rust component crates for `wasm32-wasip2`: one implementation for
//! `wasm-system build` and for the test harness that builds the Rust guests
//! of `tests/guests`.
//!
//! A crate is built with `cargo rustc --release --lib --target wasm32-wasip2
//! --crate-type cdylib`, so it can stay an `rlib` for host builds (tests,
//! clippy) and still link as a component here. The artifact's path comes
//! from cargo's JSON messages, so the crate may be a workspace member (shared
//! target directory) or stand alone.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The Rust target that links a crate as a component of WASI preview 2.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Why a guest crate was not built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestBuildError {
    /// The `wasm32-wasip2` standard library is missing and could not be
    /// installed; the text says what to run.
    #[error("the {GUEST_TARGET} target is missing: {0}")]
    TargetMissing(String),
    /// The crate's `Cargo.toml` does not exist.
    #[error("no Cargo.toml at {path}: {source}")]
    NoCrate {
        /// The path looked at.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// `cargo` (or `rustup`) could not be run.
    #[error("running {program} (is it installed?): {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The build failed; cargo's diagnostics went to stderr.
    #[error("building {} failed ({status}); the compiler's messages are above", manifest.display())]
    Failed {
        /// The crate's `Cargo.toml`.
        manifest: PathBuf,
        /// cargo's exit status.
        status: ExitStatus,
    },
    /// cargo succeeded but named no `.wasm` for the crate.
    #[error("cargo built {} but reported no .wasm file for it", .0.display())]
    NoArtifact(PathBuf),
}

/// Builds the library of the crate at `cargo_toml` as a component for
/// [`GUEST_TARGET`] (release profile), in `target_dir` when given (cargo's
/// default otherwise), and returns the path of the `.wasm` cargo wrote.
/// cargo's diagnostics go to this process's stderr.
///
/// # Errors
/// [`GuestBuildError::NoCrate`], [`GuestBuildError::Spawn`],
/// [`GuestBuildError::Failed`] or [`GuestBuildError::NoArtifact`]. Call
/// [`ensure_guest_target`] first for a clear error when the target is
/// missing.
pub fn build_guest(cargo_toml: &Path, target_dir: Option<&Path>) -> Result<PathBuf, GuestBuildError> {
    let cargo_toml =
        cargo_toml.canonicalize().map_err(|source| GuestBuildError::NoCrate { path: cargo_toml.to_owned(), source })?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args(["rustc", "--release", "--lib", "--target", GUEST_TARGET, "--crate-type", "cdylib"])
        .args(["--message-format", "json-render-diagnostics", "--manifest-path"])
        .arg(&cargo_toml);
    if let Some(dir) = target_dir {
        command.arg("--target-dir").arg(dir);
    }
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| GuestBuildError::Spawn { program: Path::new(&cargo).display().to_string(), source })?;
    if !output.status.success() {
        return Err(GuestBuildError::Failed { manifest: cargo_toml, status: output.status });
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
    artifact.ok_or(GuestBuildError::NoArtifact(cargo_toml))
}

/// Makes sure the standard library for [`GUEST_TARGET`] is installed: with
/// rustup, adds it when missing (logged at INFO); without rustup, asks rustc
/// whether its sysroot has it.
///
/// Processes that find it missing at the same moment (parallel
/// `wasm-system build` runs, test binaries building guests) take turns on an
/// exclusive file lock, `wasm-system-rustup-target.lock` in the temporary
/// directory, and look again once it is theirs: of two concurrent
/// `rustup target add` runs of one component, one or both fail (rustup rolls
/// back on the other's files; both did on our CI machine), so only the
/// first adds it and the others find it installed. A waiter waits as long
/// as the install it waits for takes (no time limit: a stalled download
/// stalls it too). The lock is per temporary directory: processes with
/// another `TMPDIR` do not take turns with these. If the lock file cannot be
/// opened or locked (another user's file, a file system without locks),
/// the install goes ahead without it.
///
/// # Errors
/// [`GuestBuildError::TargetMissing`] when it is missing and cannot be
/// installed; the text says what to run.
pub fn ensure_guest_target() -> Result<(), GuestBuildError> {
    ensure_target_with(Path::new("rustup"), &std::env::temp_dir().join("wasm-system-rustup-target.lock"))
}

/// [`ensure_guest_target`] with the `rustup` program and the lock file
/// given (the tests pass a stand-in rustup).
fn ensure_target_with(rustup: &Path, lock: &Path) -> Result<(), GuestBuildError> {
    let how = format!("install it with `rustup target add {GUEST_TARGET}` (rustup: https://rustup.rs)");
    // `Some(installed?)`, or `None` without a working rustup.
    let installed = || {
        let out = Command::new(rustup).args(["target", "list", "--installed"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().any(|t| t.trim() == GUEST_TARGET))
    };
    match installed() {
        Some(true) => Ok(()),
        Some(false) => {
            // Held until this returns: one install at a time (see above).
            let _turn = install_turn(lock);
            if installed() == Some(true) {
                return Ok(());
            }
            tracing::info!("the {GUEST_TARGET} target is missing; running `rustup target add {GUEST_TARGET}`");
            match Command::new(rustup).args(["target", "add", GUEST_TARGET]).status() {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(GuestBuildError::TargetMissing(format!(
                    "`rustup target add {GUEST_TARGET}` failed ({status}); {how}"
                ))),
                Err(e) => Err(GuestBuildError::TargetMissing(format!(
                    "running `rustup target add {GUEST_TARGET}`: {e}; {how}"
                ))),
            }
        }
        // No rustup (a distribution's toolchain): the target's standard
        // library is either in rustc's sysroot or not.
        None => {
            let libdir = Command::new("rustc").args(["--print", "target-libdir", "--target", GUEST_TARGET]).output();
            let has_std = libdir.ok().filter(|out| out.status.success()).is_some_and(|out| {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                std::fs::read_dir(dir).is_ok_and(|mut entries| {
                    entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
                })
            });
            if has_std {
                Ok(())
            } else {
                Err(GuestBuildError::TargetMissing(format!(
                    "its standard library is not installed and rustup is not available; {how}"
                )))
            }
        }
    }
}

/// An exclusive lock on `lock` ([`std::fs::File::lock`]: `flock` on Linux,
/// released when the file is dropped), waited for; `None` if the file
/// cannot be opened or locked.
fn install_turn(lock: &Path) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock);
    let file = file.inspect_err(|e| tracing::debug!("no install lock at {}: {e}", lock.display())).ok()?;
    file.lock().inspect_err(|e| tracing::debug!("no install lock at {}: {e}", lock.display())).ok()?;
    Some(file)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A stand-in rustup: `target list --installed` lists the target once
    /// `installed` exists; `target add` fails (as rustup's rollback does)
    /// when another add runs at the same time, else takes 300 ms, marks it
    /// installed and logs a line to `adds`.
    const FAKE_RUSTUP: &str = r#"#!/bin/sh
dir="$(dirname "$0")"
case "$1 $2" in
  "target list") [ -f "$dir/installed" ] && echo wasm32-wasip2; echo x86_64-unknown-linux-gnu; exit 0 ;;
  "target add")
    mkdir "$dir/busy" 2>/dev/null || { echo "detected conflict" >&2; exit 1; }
    sleep 0.3; touch "$dir/installed"; echo add >> "$dir/adds"; rmdir "$dir/busy"; exit 0 ;;
esac
exit 2
"#;

    #[test]
    fn ensure_guest_target_installs_once_when_several_find_it_missing_at_once() {
        use std::os::unix::fs::PermissionsExt;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("wasm-system-target-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test dir");
        let rustup = dir.join("rustup");
        std::fs::write(&rustup, FAKE_RUSTUP).expect("stand-in rustup");
        std::fs::set_permissions(&rustup, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let lock = dir.join("install.lock");

        let results: Vec<_> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..4).map(|_| scope.spawn(|| ensure_target_with(&rustup, &lock))).collect();
            runs.into_iter().map(|run| run.join().expect("no panic")).collect()
        });
        let adds = std::fs::read_to_string(dir.join("adds")).unwrap_or_default();
        std::fs::remove_dir_all(&dir).ok();
        for result in &results {
            assert!(result.is_ok(), "every caller gets the target: {results:?}");
        }
        assert_eq!(adds.lines().count(), 1, "one `rustup target add` ran; the others found it installed");
    }
}
