//! Density: how many idle instances one process holds, how fast they start,
//! and what each costs in resident memory.
//!
//! Starts `DENSITY_N` (default 100,000; 1,000 when `cargo test` runs it as a
//! smoke test) instances of the echo fixture
//! (`tests/fixtures/echo.wat`, compiled once) in one running [`System`],
//! then sends one request to every instance and checks that each answered
//! with its own payload. Prints:
//!
//! - start time, total and per instance (`SystemBuilder::start`, which
//!   registers, instantiates and spawns each actor);
//! - resident memory (`VmRSS` of `/proc/self/status`) before and after the
//!   start, and the growth per idle instance; the same for address space
//!   (`VmSize`) and for memory mappings (lines of `/proc/self/maps`; Linux
//!   caps them per process with `vm.max_map_count`, 65,530 by default);
//! - resident memory per instance again after every instance has answered
//!   one request (each has then run on a fiber stack);
//! - the time to send the requests and collect every answer.
//!
//! Fails (panics) if any instance did not answer, or answered wrongly.
//!
//! Run: `cargo bench -p wasm-system --bench density`
//! (`DENSITY_N=2000 cargo bench -p wasm-system --bench density` for a quick one).
#![allow(missing_docs, reason = "a bench binary")]

mod common;

use common::{BOUND, manifest, root};

use std::sync::Arc;
use std::time::Instant;

use wasm_runtime::{EngineConfig, WasmEngine};
use wasm_system::System;

/// One line of `/proc/self/status` (`VmRSS`, `VmSize`), in bytes.
fn status_bytes(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|line| line.starts_with(key)).unwrap_or_else(|| panic!("no {key}"));
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number of kB");
    kib * 1024
}

/// How many memory mappings the process has.
fn mappings() -> u64 {
    std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps").lines().count() as u64
}

#[derive(Clone, Copy)]
struct Sample {
    rss: u64,
    size: u64,
    maps: u64,
}

fn sample() -> Sample {
    Sample { rss: status_bytes("VmRSS:"), size: status_bytes("VmSize:"), maps: mappings() }
}

#[allow(clippy::cast_precision_loss, reason = "printed numbers")]
fn per(total: u64, n: usize) -> f64 {
    total as f64 / n as f64
}

/// `EngineConfig::dense()`, or wasmtime's defaults with `BENCH_ENGINE=default`.
fn engine_config() -> EngineConfig {
    match std::env::var("BENCH_ENGINE").as_deref() {
        Ok("default") => EngineConfig::default(),
        _ => EngineConfig::dense(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, as a smoke test of 1,000 instances.
    let default_n = if std::env::args().any(|arg| arg == "--bench") { 100_000 } else { 1_000 };
    let n: usize = std::env::var("DENSITY_N").ok().map_or(default_n, |v| v.parse().expect("DENSITY_N: a number"));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let engine = Arc::new(WasmEngine::new(engine_config()).expect("engine"));
    let compiled = engine.load_file(&root().join("tests/fixtures/echo.wat")).expect("echo.wat");
    let manifests: Vec<_> = (0..n).map(|i| manifest(&format!("echo-{i}"), "")).collect();
    let builder = manifests
        .into_iter()
        .fold(System::builder().engine(Arc::clone(&engine)), |builder, m| builder.compiled(m, compiled.clone()));

    let before = sample();
    let started = Instant::now();
    let system = match rt.block_on(builder.start()) {
        Ok(system) => system,
        Err(e) => {
            let now = sample();
            panic!(
                "starting {n} instances failed after {:.2?} with {} mappings, VmSize {} MiB: {e}",
                started.elapsed(),
                now.maps,
                now.size >> 20
            );
        }
    };
    let start_time = started.elapsed();
    let idle = sample();

    let payload = |i: usize| format!("\x55hello {i}").into_bytes();
    let asked = Instant::now();
    let answered = rt.block_on(async {
        let mut requests = Vec::with_capacity(n);
        for i in 0..n {
            let request = system.request(&format!("echo-{i}"), payload(i), Some(BOUND)).expect("request accepted");
            requests.push(tokio::spawn(request.response()));
        }
        let mut answered = 0usize;
        for (i, request) in requests.into_iter().enumerate() {
            match request.await.expect("request task") {
                Ok(response) if response == payload(i) => answered += 1,
                Ok(response) => eprintln!("echo-{i} answered {response:?}"),
                Err(e) => eprintln!("echo-{i} did not answer: {e}"),
            }
        }
        answered
    });
    let answer_time = asked.elapsed();
    let after = sample();

    let grown = |to: Sample, what: fn(Sample) -> u64| what(to).saturating_sub(what(before));
    println!("density: {n} idle instances of echo.wat in one System");
    println!(
        "  start:            {:.3} s total, {:.2} us per instance",
        start_time.as_secs_f64(),
        start_time.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "  RSS idle:         +{} MiB, {:.0} bytes per instance (VmRSS {} MiB -> {} MiB)",
        grown(idle, |s| s.rss) >> 20,
        per(grown(idle, |s| s.rss), n),
        before.rss >> 20,
        idle.rss >> 20
    );
    println!(
        "  address space:    +{} GiB, {:.0} KiB per instance",
        grown(idle, |s| s.size) >> 30,
        per(grown(idle, |s| s.size), n) / 1024.0
    );
    println!(
        "  mappings:         {} -> {} ({:.2} per instance)",
        before.maps,
        idle.maps,
        per(grown(idle, |s| s.maps), n)
    );
    println!(
        "  answered:         {answered} of {n} in {:.3} s ({:.2} us per request)",
        answer_time.as_secs_f64(),
        answer_time.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "  RSS after answer: +{} MiB, {:.0} bytes per instance; mappings {} ({:.2} per instance)",
        grown(after, |s| s.rss) >> 20,
        per(grown(after, |s| s.rss), n),
        after.maps,
        per(grown(after, |s| s.maps), n)
    );
    let stopped = Instant::now();
    let report = rt.block_on(system.shutdown(BOUND));
    println!("  shutdown:         {:.3} s", stopped.elapsed().as_secs_f64());
    assert_eq!(answered, n, "every instance must answer its request");
    assert!(report.stats.balanced(), "unbalanced counters at shutdown: {:?}", report.stats);
}
