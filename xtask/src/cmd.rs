//! Running child processes with their output streamed, not captured.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A `cargo` command: the cargo that runs this xtask (`$CARGO`), else `cargo` on `PATH`.
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `command` to completion with inherited stdio, after echoing it.
///
/// # Errors
///
/// Fails when the command cannot be started or exits unsuccessfully; the message
/// names the command.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let shown = describe(command);
    println!("$ {shown}");
    let status = command.status().with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// A shell-like rendering of `command` for logs: env overrides, program name, arguments.
fn describe(command: &Command) -> String {
    let mut parts: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| value.map(|value| format!("{}={}", key.to_string_lossy(), quote(value))))
        .collect();
    let program = command.get_program();
    let program = Path::new(program).file_name().unwrap_or(program);
    parts.push(quote(program));
    parts.extend(command.get_args().map(quote));
    parts.join(" ")
}

/// `word` as text, in double quotes if it holds whitespace.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    if word.contains(char::is_whitespace) { format!("\"{word}\"") } else { word.into_owned() }
}
