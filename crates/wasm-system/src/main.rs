//! `wasm-system`: run an app of wasm components, check manifests, and
//! componentize `.wat` core modules.
//!
//! ```text
//! wasm-system run examples/request-reply/app.toml [--duration 10s] [--audit-log audit.jsonl]
//! wasm-system run examples/request-reply/app.toml --json report.json --events events.jsonl
//! wasm-system run --build examples/shop/app.toml
//! wasm-system new my-component
//! wasm-system build my-component/app.toml
//! wasm-system check examples/request-reply/app.toml
//! wasm-system componentize --out-dir target/fixtures tests/fixtures/echo.wat
//! ```

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod cli;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use wasm_messaging::AuditSink;
use wasm_runtime::{EngineConfig, WasmEngine, componentize_wat};
use wasm_system::otlp::OtlpTracing;
use wasm_system::{AuditLog, LoadedApp, LoadedComponent, System, load_app, load_component};

use crate::cli::console::{Console, Progress};
use crate::cli::events_file::EventsFile;
use crate::cli::inject::Injector;
use crate::cli::report::{self, AuditCounts, JsonReport, RunOutcome};

/// Runs WebAssembly components as isolated actors that talk only through the host.
#[derive(Debug, Parser)]
#[command(name = "wasm-system", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start an app, inject its messages on their schedule, run until every
    /// injection is sent and answered and the app is quiescent (or the
    /// duration passes, or Ctrl-C), then print a summary.
    Run(Box<RunArgs>),
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

/// `wasm-system run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// The app manifest (`app.toml`).
    app: PathBuf,
    /// Stop after this long even if still busy (e.g. `10s`, `500ms`).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// After quiescence, keep running until nothing has been queued for
    /// this long (e.g. `2s`): for apps driven from outside, such as a node
    /// of a cluster, whose traffic comes from other hosts. Default: stop
    /// once quiescent, or, in a cluster, once idle for 1 s.
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
    /// Write the final report as one JSON object to this file (`-`: to
    /// stdout, and the summary for people to stderr).
    ///
    /// Keys: `app` (name), `file`, `elapsed_ms`, `drained` (quiescent before
    /// the stop), `balanced` (every message and request accounted for),
    /// `totals` (the router's counters: `messages_accepted`,
    /// `requests_accepted`, `callbacks_queued`, `callbacks_dropped`, `handled`,
    /// `callbacks_handled`, `dead_lettered`, `responses_refused`,
    /// `request_handler_errors`, `refused` and `refused_host` as objects by
    /// kind (`rate-limited`, ...), `refused_total`, `enqueued`, `settled`, `remote_messages_sent`,
    /// `remote_requests_sent`, `remote_outcomes_sent`, `remote_dead_lettered`, and
    /// `requests`: `registered`, `completed` (handler errors included),
    /// `failed`, `timed_out`, `cancelled`, `dropped`, `orphaned`, `pending`),
    /// `components` (one object per component, by id: `id`,
    /// `messages_accepted`, `requests_accepted`, `handled`, `handler_errors`,
    /// `callbacks_handled`, `batches`, `completed`, `dead_letters` by cause
    /// (`target-failed`, `undelivered`, `delivery-failed`), `dead_letters_total`, `refused` by
    /// kind, `refused_total`, `crashes`, `restarts`, `mailbox_len`,
    /// `mailbox_bytes`, `pending_requests`, `stopped`), `nodes` (in a
    /// cluster, per other node: `node`, `messages_sent`, `requests_sent`,
    /// `acknowledged`, `pending_acks`, `undelivered` by reason,
    /// `undelivered_total`, `credit_refusals`, `received`, `refused_here`), `lifecycle`
    /// (`crashes`, `restarts`, `stops`), `stopped_abnormally` (`component`,
    /// `reason`), `dropped_host_requests`, `audit` (`written`, `dropped`, or
    /// null) and `events_written` (or null). Counts are numbers of messages,
    /// requests, callbacks or records.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write one JSON line per handled message, request and callback, dead
    /// letter, crash, restart and stop to this file.
    ///
    /// Keys (null where they do not apply): `event` (`handled`, `callback`,
    /// `dead-letter`, `crash`, `restart`, `stop`), `component`, `sender`,
    /// `kind` (`message`, `request`, `callback`), `correlation_id`,
    /// `outcome` (`ok` or `handler-error(<code>)` for a handled message or
    /// request; `response` or the request error's kind for a callback; the
    /// cause for a dead letter), `reason`, `codec`, `bytes` and `preview` of
    /// the payload (the first 64 bytes of the body as text, or `hex:...`),
    /// `response_codec`, `response_bytes` and `response_preview` of a
    /// request's response, `callback_result` (what `handle-callback`
    /// returned), `restarts` and `trace_id`. Each line costs a copy of the
    /// payload while the run lasts.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// No live progress line (shown on stderr only when it is a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Serve Prometheus metrics at `http://ADDR/metrics` while the app runs
    /// (e.g. `127.0.0.1:9464`): per-component counts, gauges and the handler
    /// and request duration histograms (names in `wasm_system::metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// How often the counts are published to `/metrics`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s", requires = "metrics_addr")]
    metrics_interval: Duration,
    /// Export a span per handled message, request and callback over
    /// OTLP/HTTP (protobuf) to this collector, e.g. `http://localhost:4318`
    /// (`/v1/traces` is appended unless the URL ends with it). Without it,
    /// the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns export on.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Join a cluster as this node: this host's components are
    /// `name@NODE` to the other hosts, and `name@other` reaches theirs
    /// (overrides `[cluster] node`).
    #[arg(long, value_name = "NODE")]
    node: Option<String>,
    /// The NATS broker the hosts share, e.g. `nats://127.0.0.1:4222`
    /// (overrides `[cluster] nats`; default `nats://127.0.0.1:4222`).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let progress = Progress::hidden();
    // Kept to the end of `main`: dropping it flushes the spans still queued.
    let otlp = match init_tracing(&cli, &progress) {
        Ok(otlp) => otlp,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(&args, progress),
        Command::New { dir, sdk } => cli::new::new_component(&dir, sdk.as_deref()),
        Command::Build { manifest } => {
            load_components(&manifest).and_then(|c| cli::build::build_components(&c)).map(drop)
        }
        Command::Check { manifest } => check(&manifest),
        Command::Componentize { out_dir, files } => componentize(&out_dir, &files),
    };
    drop(otlp);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the log (stderr, filtered by `RUST_LOG`, written around the
/// progress line; colours only on a terminal) and, for `run` with an OTLP
/// endpoint (flag or standard variable), the span exporter, each layer with
/// its own filter: the log's filter does not decide what is exported.
fn init_tracing(cli: &Cli, progress: &Progress) -> anyhow::Result<Option<OtlpTracing>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,wasm_system=info,guest=info"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(progress.log_writer())
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    let otlp = match &cli.command {
        Command::Run(args) => otlp_exporter(args.otlp_endpoint.as_deref())?,
        _ => None,
    };
    let registry = tracing_subscriber::registry().with(log);
    match &otlp {
        Some(otlp) => registry.with(otlp.layer()).init(),
        None => registry.init(),
    }
    Ok(otlp)
}

/// The OTLP exporter `run` asked for: `--otlp-endpoint`, else the standard
/// variables, else none.
fn otlp_exporter(endpoint: Option<&str>) -> anyhow::Result<Option<OtlpTracing>> {
    let from_env = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    let url = match endpoint {
        Some(base) if base.trim_end_matches('/').ends_with("/v1/traces") => Some(base.to_owned()),
        Some(base) => Some(format!("{}/v1/traces", base.trim_end_matches('/'))),
        None if from_env => None,
        None => return Ok(None),
    };
    let otlp = OtlpTracing::new(url.as_deref(), "wasm-system").context("starting OTLP trace export")?;
    Ok(Some(otlp))
}

/// Serves `/metrics` at `addr` with the handler and request duration
/// histograms' buckets, as the process's metrics recorder.
fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full(wasm_system::metrics::HANDLER_DURATION.to_owned()),
            &wasm_system::metrics::HANDLER_DURATION_BUCKETS,
        )
        .context("the handler duration buckets")?
        .set_buckets_for_metric(
            Matcher::Full(wasm_system::metrics::REQUEST_DURATION.to_owned()),
            &wasm_system::metrics::HANDLER_DURATION_BUCKETS,
        )
        .context("the request duration buckets")?
        .install()
        .with_context(|| format!("serving metrics at {addr}"))?;
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")
}

fn run(args: &RunArgs, progress: Progress) -> anyhow::Result<()> {
    let app = load_app(&args.app)?;
    if args.build {
        cli::build::build_components(&app.components)?;
    }
    let audit = match &args.audit_log {
        Some(path) => {
            Some(Arc::new(AuditLog::create(path).with_context(|| format!("creating audit log {}", path.display()))?))
        }
        None => None,
    };
    // Created before anything runs, so a bad path fails at once.
    let events = match &args.events {
        Some(path) => Some(File::create(path).with_context(|| format!("creating events file {}", path.display()))?),
        None => None,
    };
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let console = Console::new(progress, json_to_stdout);
    let runtime = runtime()?;
    let outcome = runtime.block_on(run_app(&app, audit.clone(), events, args, &console))?;
    let audit = match &audit {
        Some(log) => {
            log.close().context("writing the audit log")?;
            Some(AuditCounts { written: log.written(), dropped: log.dropped() })
        }
        None => None,
    };
    let summary = report::summary(&app, &outcome, audit);
    console.line(summary.trim_end());
    if let Some(path) = &args.json {
        let mut json = serde_json::to_string_pretty(&JsonReport::new(&app, &outcome, audit))
            .context("serializing the JSON report")?;
        json.push('\n');
        if json_to_stdout {
            std::io::stdout().lock().write_all(json.as_bytes()).context("writing the JSON report to stdout")?;
        } else {
            std::fs::write(path, json).with_context(|| format!("writing the JSON report {}", path.display()))?;
        }
    }
    let report = &outcome.report;
    if !report.stats.balanced() {
        bail!("accounting did not balance: some message or request is unaccounted for");
    }
    if !report.stopped_abnormally.is_empty() {
        let stopped: Vec<String> =
            report.stopped_abnormally.iter().map(|(id, reason)| format!("{id} ({reason})")).collect();
        bail!("{} component(s) stopped abnormally: {}", stopped.len(), stopped.join("; "));
    }
    Ok(())
}

async fn run_app(
    app: &LoadedApp,
    audit: Option<Arc<AuditLog>>,
    events: Option<File>,
    args: &RunArgs,
    console: &Console,
) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    // Installed before the components start, so a SIGTERM at any point is a
    // graceful stop (drain, audit flushed, summary) and not the default kill.
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let base = app.file.parent().unwrap_or(Path::new("."));
    let cluster =
        match cli::cluster::config(app.manifest.cluster.as_ref(), args.node.as_deref(), args.nats.as_deref(), base)? {
            Some(config) => Some(cli::cluster::connect(config).await?),
            None => None,
        };
    let mut builder = System::builder().shards(app.manifest.app.shards);
    if let Some(transport) = &cluster {
        builder = builder.cluster(Arc::clone(transport) as Arc<dyn wasm_core::RemoteTransport>);
    }
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr)?;
        builder = builder.metrics_interval(args.metrics_interval);
    }
    if let Some(log) = audit {
        builder = builder.audit(log as Arc<dyn AuditSink>);
    }
    for component in &app.components {
        builder = builder.loaded(component);
    }
    let system = builder.start().await.with_context(|| format!("starting {}", app.file.display()))?;
    if let Some(transport) = &cluster {
        transport.start(Arc::downgrade(&system.remote_inbound())).await.context("starting the cluster transport")?;
        tracing::info!(node = %wasm_core::RemoteTransport::node(transport.as_ref()), "joined the cluster");
        // `[cluster] requires`, and the other nodes' components the app
        // injects into: announced before anything is sent.
        let host = system.host_handle();
        let mut requires = app.manifest.cluster.as_ref().map_or_else(Vec::new, |c| c.requires.clone());
        for injection in &app.manifest.injections {
            let target = injection.to.to_string();
            if host.is_remote(&target) && !requires.contains(&target) {
                requires.push(target);
            }
        }
        let limit = args.duration.unwrap_or(cli::cluster::REQUIRES_WAIT);
        cli::cluster::await_components(transport.as_ref(), &requires, limit).await?;
    }
    // Only `--events` subscribes: an event costs a copy of its payload. The
    // summary's counts come from the counters.
    let events = events.map(|file| EventsFile::start(file, system.subscribe()));
    let mut injector = Injector::start(&system, &app.manifest.injections, console)?;
    let progress = console.progress();
    if !args.no_progress {
        progress.show();
    }
    let limit = args.duration.unwrap_or(Duration::from_secs(24 * 3600));
    // A cluster node is quiescent between the hops of a conversation with
    // another host: it stops only once idle for a while.
    let linger = if cluster.is_some() && args.linger.is_zero() { cli::cluster::IDLE_LINGER } else { args.linger };
    // Finished: every injection sent and every injected request answered,
    // then nothing queued, running or pending.
    let finished = tokio::time::timeout(limit, async {
        injector.finished().await;
        system.wait_quiescent(limit).await
    });
    tokio::select! {
        quiet = finished => {
            if quiet == Ok(true) && !linger.is_zero() {
                tokio::select! {
                    () = idle_for(&system, linger) => {}
                    never = progress.follow(&system, started) => match never {},
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupted (SIGINT)"),
                    _ = terminate.recv() => tracing::info!("terminated (SIGTERM)"),
                }
            }
        }
        never = progress.follow(&system, started) => match never {},
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted (SIGINT)"),
        _ = terminate.recv() => tracing::info!("terminated (SIGTERM)"),
    }
    injector.stop_sending().await;
    progress.shutting_down(args.drain);
    let report = system.shutdown(args.drain).await;
    if let Some(transport) = &cluster {
        // The others forget this node's components at once.
        if let Err(error) = transport.shutdown().await {
            tracing::warn!(%error, "leaving the cluster");
        }
    }
    // Requests still pending were ended by the shutdown: their outcomes print now.
    injector.finished().await;
    let events_written = match events {
        Some(events) => Some(events.finish().await?),
        None => None,
    };
    progress.clear();
    Ok(RunOutcome { report, elapsed: started.elapsed(), events_written })
}

/// Returns once `system` has been quiescent, with no envelope queued in
/// between, for `linger`: traffic from outside (another host, a
/// `System::try_send` of an embedder) keeps the run going.
async fn idle_for(system: &System, linger: Duration) {
    loop {
        let before = system.stats().enqueued;
        tokio::time::sleep(linger).await;
        if system.is_quiescent() && system.stats().enqueued == before {
            return;
        }
        // Busy again: wait for the next quiet moment, then a whole `linger`.
        system.wait_quiescent(Duration::from_secs(24 * 3600)).await;
    }
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
