//! `wasm-system`: run an app of wasm components, check manifests, and
//! componentize `.wat` core modules.
//!
//! ```text
//! wasm-system run examples/request-reply/app.toml [--duration 10s] [--audit-log audit.jsonl]
//! wasm-system run --build examples/shop/app.toml
//! wasm-system new my-component
//! wasm-system build my-component/app.toml
//! wasm-system check examples/request-reply/app.toml
//! wasm-system componentize --out-dir target/fixtures tests/fixtures/echo.wat
//! ```

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod cli;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::UnboundedReceiver;
use wasm_core::MessagingError;
use wasm_messaging::AuditSink;
use wasm_runtime::{EngineConfig, WasmEngine, componentize_wat};
use wasm_system::{
    AuditLog, LoadedApp, LoadedComponent, ShutdownReport, System, SystemEvent, injection_payload, load_app,
    load_component,
};

/// Runs WebAssembly components as isolated actors that talk only through the host.
#[derive(Debug, Parser)]
#[command(name = "wasm-system", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start an app, inject its messages, run until quiescent (or the
    /// duration passes, or Ctrl-C), then print a summary.
    Run {
        /// The app manifest (`app.toml`).
        app: PathBuf,
        /// Stop after this long even if still busy (e.g. `10s`, `500ms`).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Keep running this long after quiescence (e.g. `2s`): for apps
        /// driven from outside. Default: stop once quiescent.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        linger: Duration,
        /// Write one JSON line per refusal and lifecycle event to this file.
        #[arg(long)]
        audit_log: Option<PathBuf>,
        /// How long shutdown may drain mailboxes.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
        drain: Duration,
        /// First build the Rust crates the manifests name (as `build` does).
        #[arg(long)]
        build: bool,
    },
    /// Create a component crate that uses the guest SDK: Cargo.toml,
    /// src/lib.rs, Component.toml and a one-component app.toml.
    New {
        /// The directory to create; its name is the crate's and the component's.
        dir: PathBuf,
        /// The guest SDK crate (`crates/wasm-guest`) to depend on. Default: the
        /// one in the source tree this binary was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the Rust crates that manifests name (`build = "<crate dir>"` in
    /// `[component]`) for wasm32-wasip2, writing each component to its `wasm`
    /// path. Installs the target with rustup when it is missing.
    Build {
        /// An `app.toml` or a component manifest.
        manifest: PathBuf,
    },
    /// Validate an app or component manifest and check that each component
    /// compiles and has the imports and exports of world `airssys:wasm/component`.
    Check {
        /// An `app.toml` or a component manifest.
        manifest: PathBuf,
    },
    /// Turn `.wat` core modules into components of the `airssys:wasm` world.
    Componentize {
        /// Where to write `<stem>.wasm` files.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// The `.wat` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,wasm_system=info,guest=info"));
    // Colours only on a terminal: a redirected log stays plain text.
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { app, duration, linger, audit_log, drain, build } => {
            run(&app, duration, linger, audit_log.as_deref(), drain, build)
        }
        Command::New { dir, sdk } => cli::new::new_component(&dir, sdk.as_deref()),
        Command::Build { manifest } => {
            load_components(&manifest).and_then(|c| cli::build::build_components(&c)).map(drop)
        }
        Command::Check { manifest } => check(&manifest),
        Command::Componentize { out_dir, files } => componentize(&out_dir, &files),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")
}

#[derive(Default, Debug)]
struct Lifecycle {
    crashes: u64,
    restarts: u64,
    stops: u64,
}

fn run(
    app_file: &Path,
    duration: Option<Duration>,
    linger: Duration,
    audit_file: Option<&Path>,
    drain: Duration,
    build: bool,
) -> anyhow::Result<()> {
    let app = load_app(app_file)?;
    if build {
        cli::build::build_components(&app.components)?;
    }
    let audit = match audit_file {
        Some(path) => {
            Some(Arc::new(AuditLog::create(path).with_context(|| format!("creating audit log {}", path.display()))?))
        }
        None => None,
    };
    let runtime = runtime()?;
    let outcome = runtime.block_on(run_app(&app, audit.clone(), duration, linger, drain))?;
    let (written, dropped) = match &audit {
        Some(log) => {
            log.close().context("writing the audit log")?;
            (Some(log.written()), log.dropped())
        }
        None => (None, 0),
    };
    print_summary(&app, &outcome, written, dropped);
    if !outcome.report.stats.balanced() {
        bail!("accounting did not balance: some message or request is unaccounted for");
    }
    if !outcome.report.stopped_abnormally.is_empty() {
        let stopped: Vec<String> =
            outcome.report.stopped_abnormally.iter().map(|(id, reason)| format!("{id} ({reason})")).collect();
        bail!("{} component(s) stopped abnormally: {}", stopped.len(), stopped.join("; "));
    }
    Ok(())
}

/// What a run of an app ended with.
struct RunOutcome {
    report: ShutdownReport,
    lifecycle: Lifecycle,
    elapsed: Duration,
}

async fn run_app(
    app: &LoadedApp,
    audit: Option<Arc<AuditLog>>,
    duration: Option<Duration>,
    linger: Duration,
    drain: Duration,
) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    // Installed before the components start, so a SIGTERM at any point is a
    // graceful stop (drain, audit flushed, summary) and not the default kill.
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut builder = System::builder();
    if let Some(log) = audit {
        builder = builder.audit(log as Arc<dyn AuditSink>);
    }
    for component in &app.components {
        builder = builder.loaded(component);
    }
    let system = builder.start().await.with_context(|| format!("starting {}", app.file.display()))?;
    // Lifecycle events are counted as they come, so nothing piles up in memory.
    let lifecycle = tokio::spawn(count_lifecycle(system.subscribe()));
    for injection in &app.manifest.injections {
        let payload = injection_payload(injection);
        for _ in 0..injection.repeat {
            if let Err(error) = system.try_send(injection.to.as_str(), payload.clone()) {
                tracing::warn!(target_id = %injection.to, %error, "injected message refused");
            }
        }
    }
    let limit = duration.unwrap_or(Duration::from_secs(24 * 3600));
    tokio::select! {
        quiet = system.wait_quiescent(limit) => {
            if quiet && !linger.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(linger) => {}
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupted (SIGINT)"),
                    _ = terminate.recv() => tracing::info!("terminated (SIGTERM)"),
                }
            }
        }
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted (SIGINT)"),
        _ = terminate.recv() => tracing::info!("terminated (SIGTERM)"),
    }
    let report = system.shutdown(drain).await;
    let lifecycle = lifecycle.await.context("counting lifecycle events")?;
    Ok(RunOutcome { report, lifecycle, elapsed: started.elapsed() })
}

/// Counts crashes, restarts and stops until the system's event stream ends.
async fn count_lifecycle(mut events: UnboundedReceiver<SystemEvent>) -> Lifecycle {
    let mut lifecycle = Lifecycle::default();
    while let Some(event) = events.recv().await {
        match event {
            SystemEvent::Crashed { .. } => lifecycle.crashes += 1,
            SystemEvent::Restarted { .. } => lifecycle.restarts += 1,
            SystemEvent::Stopped { .. } => lifecycle.stops += 1,
            _ => {}
        }
    }
    lifecycle
}

fn print_summary(app: &LoadedApp, outcome: &RunOutcome, audit_written: Option<u64>, audit_dropped: u64) {
    let RunOutcome { report, lifecycle, elapsed } = outcome;
    let (stats, drained) = (&report.stats, report.drained);
    let name =
        if app.manifest.app.name.is_empty() { app.file.display().to_string() } else { app.manifest.app.name.clone() };
    let r = &stats.requests;
    println!("== {name}: {} components, {:.3}s ==", app.components.len(), elapsed.as_secs_f64());
    println!(
        "messages   sent {:>8}  requests sent {:>6}  handled {:>8} (both)  dead-lettered {:>6}",
        stats.messages_accepted, stats.requests_accepted, stats.handled, stats.dead_lettered
    );
    println!(
        "requests   sent {:>8}  completed {:>6}  timed out {:>4}  cancelled {:>4}  failed {:>4}  dropped {:>4}  orphaned {:>4}  pending {}",
        r.registered, r.completed, r.timed_out, r.cancelled, r.failed, r.dropped, r.orphaned, r.pending
    );
    println!(
        "callbacks  delivered {:>5}  handled {:>8}  dropped {:>4}  bad responses {}",
        stats.callbacks_queued, stats.callbacks_handled, stats.callbacks_dropped, stats.responses_refused
    );
    let refusals: Vec<String> = MessagingError::KINDS
        .iter()
        .zip(stats.refused)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    println!(
        "refused    {:>8}{}",
        stats.refused_total(),
        if refusals.is_empty() { String::new() } else { format!("  ({})", refusals.join(", ")) }
    );
    println!("lifecycle  crashes {}  restarts {}  stops {}", lifecycle.crashes, lifecycle.restarts, lifecycle.stops);
    for (id, reason) in &report.stopped_abnormally {
        println!("stopped    {id}: {reason}");
    }
    if let Some(written) = audit_written {
        println!("audit      written {written}  dropped {audit_dropped}");
    }
    println!(
        "accounting {}{}",
        if stats.balanced() { "balanced" } else { "NOT balanced" },
        if drained { "" } else { " (stopped before quiescence)" }
    );
}

/// The components of an app manifest, or the one of a component manifest
/// (a file with a `[component]` table).
///
/// Decided by the typed parse of each kind, not by a generic TOML table
/// (which refuses a u64 above i64::MAX, such as `fuel_per_call`): whichever
/// parses is what the file is. When neither does, the error reported is the
/// one of the kind the file's tables name (`[component]` or not), so a typo
/// in a component manifest is not reported as an unknown app key.
fn load_components(manifest: &Path) -> anyhow::Result<Vec<LoadedComponent>> {
    let component_error = match load_component(manifest) {
        Ok(component) => return Ok(vec![component]),
        Err(error) => error,
    };
    let app_error = match load_app(manifest) {
        Ok(app) => return Ok(app.components),
        Err(error) => error,
    };
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let names_a_component = text.lines().any(|line| line.trim_start().starts_with("[component]"));
    Err(if names_a_component { component_error } else { app_error }.into())
}

fn check(manifest: &Path) -> anyhow::Result<()> {
    let components = load_components(manifest)?;
    let engine = WasmEngine::new(EngineConfig::default())?;
    let mut failed = 0;
    for component in &components {
        let id = &component.manifest.component.id;
        if !component.wasm_path.exists()
            && let Some(dir) = &component.build_dir
        {
            if dir.join("Cargo.toml").exists() {
                println!(
                    "ok    {id} (not built yet: `wasm-system build {}` writes {} from {})",
                    manifest.display(),
                    component.wasm_path.display(),
                    dir.display()
                );
            } else {
                failed += 1;
                eprintln!("error {id}: component.build names {}, which has no Cargo.toml", dir.display());
            }
            continue;
        }
        match engine.load_file(&component.wasm_path) {
            Ok(_) => println!("ok    {id} ({}, from {})", component.wasm_path.display(), component.file.display()),
            Err(error) => {
                failed += 1;
                eprintln!("error {id}: {error} (manifest {})", component.file.display());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} components failed the check", components.len());
    }
    println!("{}: {} components ok", manifest.display(), components.len());
    Ok(())
}

fn componentize(out_dir: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let component = componentize_wat(&file.display().to_string(), &text)?;
        let stem = file.file_stem().context("file has no name")?;
        let out = out_dir.join(stem).with_extension("wasm");
        std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
        println!("{} -> {} ({} bytes)", file.display(), out.display(), component.len());
    }
    Ok(())
}
