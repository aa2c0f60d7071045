//! `cargo xtask`: the project's automation, in Rust and with few dependencies.
//!
//! `cargo xtask` is an alias (see `.cargo/config.toml`) for running this binary. It
//! holds what CI runs, so that CI and a developer's machine run the same thing:
//!
//! - `cargo xtask ci` runs every check CI runs, in order, stopping at the first failure:
//!   `cargo fmt --check`, clippy with `-D warnings`, all tests and doc-tests, the API
//!   docs without a rustdoc warning, the short soak, the embedding example, the
//!   architecture lint, the fixture build and the loom models.
//! - `cargo xtask lint` holds each workspace crate's dependencies, read from
//!   `cargo metadata`, against the layer rules of SPEC section 4. The same check is a
//!   `#[test]` in [`lint`], so plain `cargo test` catches a forbidden edge too.
//! - `cargo xtask loom` runs the loom models of `wasm-messaging` under `--cfg loom`.
//! - `cargo xtask fixtures` componentizes `tests/fixtures/*.wat` into `target/fixtures/`.
//! - `cargo xtask soak` pushes 1,000,000 messages through a system and
//!   3,003,000 through the CLI and checks the counters and RSS (`--quick`: a
//!   tenth, in the debug build; part of `cargo xtask ci`).
//!
//! Child processes inherit stdout and stderr, so their output streams as it comes.

#![forbid(unsafe_code)]

mod ci;
mod cmd;
mod fixtures;
mod lint;
mod loom;
mod metadata;
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

/// What `cargo xtask help` prints.
const USAGE: &str = "\
Usage: cargo xtask <command>

Commands:
  ci        run everything CI runs, stopping at the first failure:
            fmt check, clippy -D warnings, tests, doc-tests, docs (no rustdoc
            warning), soak --quick, embed example, lint, fixtures, loom
  lint      check workspace dependency edges and banned crates (SPEC section 4)
  loom      run the loom models of wasm-messaging (tests named `loom_*`)
  fixtures  componentize tests/fixtures/*.wat into target/fixtures/
  soak      1,000,000 messages through a system and 3,003,000 through the CLI,
            checking balanced counters and flat RSS (--quick: a tenth, debug build)
  help      print this message
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the subcommand named by `args` (the arguments after `cargo xtask`).
///
/// # Errors
///
/// Fails when the subcommand fails, or when `args` name no subcommand.
fn dispatch(args: &[String]) -> Result<()> {
    let root = &workspace_root();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            Ok(())
        }
        ["ci"] => ci::run(root),
        ["lint"] => lint::run(root),
        ["loom"] => loom::run(root),
        ["fixtures"] => fixtures::run(root),
        ["soak"] => soak::run(root, false),
        ["soak", "--quick"] => soak::run(root, true),
        _ => bail!("unknown arguments `{}`\n\n{USAGE}", args.join(" ")),
    }
}

/// The workspace root: the parent of this crate's directory. Read from
/// `CARGO_MANIFEST_DIR` at run time (cargo sets it for `cargo run` and
/// `cargo test`), so a binary reused from a shared target directory never
/// points at another checkout; the compile-time value is the fallback.
fn workspace_root() -> PathBuf {
    let xtask_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    xtask_dir.parent().expect("xtask lives one directory below the workspace root").to_path_buf()
}
