//! `cargo xtask soak`: the long-run check of containment (issue: a hostile
//! or just busy tenant must not make the host's memory grow).
//!
//! Two parts, each failing the command when it fails:
//!
//! 1. The soak example (`crates/wasm-system/examples/soak.rs`): 1,000,000
//!    messages and requests through a running system with a trap every
//!    round, timeouts, cancellations and slow handlers; it checks the
//!    counters balance and that RSS after the run is within 64 MB of RSS
//!    before it.
//! 2. The CLI: `wasm-system run` on a ping-pong app of 3,000 concurrent
//!    rallies (3,003,000 messages), RSS sampled from `/proc/<pid>/status`
//!    every 200 ms; it must exit 0 (balanced accounting) and its RSS must
//!    stay within 64 MB of the first sample after start-up.
//!
//! `--quick` (what `cargo xtask ci` runs) makes a tenth of the traffic in
//! the debug build the tests already built; the full run uses `--release`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd::{self, cargo};

/// How far RSS may rise above its start-up level, in bytes.
const RSS_SLACK_BYTES: u64 = 64 * 1024 * 1024;

/// Runs both parts; `quick` for the CI variant.
///
/// # Errors
/// Fails when a build fails, the soak example fails, or the CLI run exits
/// non-zero or grows its RSS past the slack.
pub(crate) fn run(root: &Path, quick: bool) -> Result<()> {
    let (messages, rallies) = if quick { (100_000, 300) } else { (1_000_000, 3_000) };
    let profile: &[&str] = if quick { &[] } else { &["--release"] };
    cmd::run(
        cargo()
            .current_dir(root)
            .args(["run", "-q", "-p", "wasm-system", "--example", "soak"])
            .args(profile)
            .arg("--")
            .arg(messages.to_string()),
    )?;
    cmd::run(
        cargo().current_dir(root).args(["build", "-q", "-p", "wasm-system", "--bin", "wasm-system"]).args(profile),
    )?;
    let binary = root.join("target").join(if quick { "debug" } else { "release" }).join("wasm-system");
    cli_run(root, &binary, rallies)
}

/// Writes the ping-pong soak app and runs the CLI on it, sampling its RSS.
fn cli_run(root: &Path, binary: &Path, rallies: u32) -> Result<()> {
    let dir = root.join("target").join("soak");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pinger = root.join("tests/fixtures/pinger.wat").canonicalize().context("finding pinger.wat")?;
    for (id, peer) in [("ping", "pong"), ("pong", "ping")] {
        let manifest = format!(
            "[component]\nid = \"{id}\"\nwasm = {:?}\n\n[capabilities]\nsend = [\"{peer}\"]\n\n[mailbox]\ncapacity = {}\n",
            pinger.display().to_string(),
            rallies + 1
        );
        std::fs::write(dir.join(format!("{id}.toml")), manifest).context("writing a soak manifest")?;
    }
    let app = format!(
        "components = [\"ping.toml\", \"pong.toml\"]\n\n[app]\nname = \"soak-ping-pong\"\n\n[[inject]]\nto = \"ping\"\ntext = \"pong\"\nrepeat = {rallies}\n"
    );
    let app_file = dir.join("app.toml");
    std::fs::write(&app_file, app).context("writing the soak app")?;

    println!("$ {} run {}  ({rallies} rallies of 1,001 messages)", binary.display(), app_file.display());
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["run"])
        .arg(&app_file)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the CLI")? {
            break status;
        }
        if let Some(rss) = std::fs::read_to_string(&status_file).ok().as_deref().and_then(vm_rss) {
            samples.push((started.elapsed(), rss));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).context("reading the CLI's summary")?;
    }
    print!("{stdout}");
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("the CLI soak run failed ({status})");
    }
    // The first sample after start-up (compilation, instantiation) is the level.
    let level = samples.iter().find(|(at, _)| *at >= Duration::from_secs(1)).or(samples.first()).map(|s| s.1);
    let peak = samples.iter().map(|s| s.1).max();
    let last = samples.last().map(|s| s.1);
    let messages = u64::from(rallies) * 1_001;
    println!(
        "cli soak: {messages} messages in {:.2} s ({:.0} per second); RSS level {} MB, peak {} MB, last {} MB ({} samples)",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64(),
        show(level),
        show(peak),
        show(last),
        samples.len()
    );
    if let (Some(level), Some(peak)) = (level, peak)
        && peak > level + RSS_SLACK_BYTES
    {
        bail!("the CLI's RSS rose by {} MB during the run (allowed 64 MB)", (peak - level) / (1024 * 1024));
    }
    Ok(())
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let kb = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?.split_whitespace().next()?;
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

fn show(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "?".to_owned(), |b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)))
}
