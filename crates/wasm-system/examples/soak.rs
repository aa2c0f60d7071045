//! The soak: pushes a given number of messages and requests through a
//! running system of real components (the WAT fixtures), with a trap every
//! round, timeouts, cancellations and slow handlers mixed in, then checks
//! that every message and request is accounted for and that memory came
//! back. Prints throughput, RSS before, at peak and after, and the counters.
//!
//! Run with `cargo xtask soak` (1,000,000 messages; `--quick` for 100,000),
//! or directly: `cargo run --release -p wasm-system --example soak -- 1000000`.
//! Exits non-zero when the counters do not balance or RSS after the run is
//! more than 64 MB above RSS before it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use wasm_core::{ComponentManifest, RequestError};
use wasm_system::System;

/// How much RSS may grow over the run before the soak fails, in bytes.
const RSS_SLACK_BYTES: u64 = 64 * 1024 * 1024;

/// Messages a round's requester command sends (fire-and-forget, guest to guest).
const MESSAGES_PER_ROUND: u32 = 1_000;
/// Host requests to `echo` per round, in flight together.
const REQUESTS_PER_ROUND: usize = 50;
/// Requests per round cancelled right after they are sent.
const CANCELS_PER_ROUND: usize = 5;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifest(id: &str, extra: &str) -> ComponentManifest {
    toml::from_str(&format!("[component]\nid = \"{id}\"\nwasm = \"x.wat\"\n{extra}")).expect("a valid manifest")
}

fn raw(body: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x55];
    payload.extend_from_slice(body);
    payload
}

/// The requester fixture's command `m`: send `payload` to `target` `count` times.
fn send_command(count: u32, target: &str, payload: &[u8]) -> Vec<u8> {
    let mut cmd = vec![0x55, b'm'];
    cmd.extend_from_slice(&count.to_le_bytes());
    cmd.push(u8::try_from(target.len()).expect("a short id"));
    cmd.extend_from_slice(target.as_bytes());
    cmd.extend_from_slice(payload);
    cmd
}

/// Resident and peak resident set size of this process, in bytes (Linux).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn soak(target: u64) -> Result<(), String> {
    let echo = root().join("tests/fixtures/echo.wat");
    let wide = "[mailbox]\ncapacity = 8192";
    let requester = "[capabilities]\nsend = [\"*\"]\nrequest = true\n[mailbox]\ncapacity = 8192";
    let crashy = "[restart]\nmax_restarts = 1000000\nwithin_ms = 1000";
    let slow = "[limits]\nfuel_per_call = 100000000000";
    let system = System::builder()
        .component(manifest("requester", requester), root().join("tests/fixtures/requester.wat"))
        .component(manifest("echo", wide), &echo)
        .component(manifest("trapping", crashy), root().join("tests/fixtures/trapping.wat"))
        .component(manifest("slow", slow), root().join("tests/fixtures/slow.wat"))
        .start()
        .await
        .map_err(|e| format!("starting the soak system: {e}"))?;
    let (rss_before, _) = rss();
    let started = Instant::now();
    let payload = raw(&[b'x'; 63]);
    let mut rounds = 0u64;
    let (mut timeouts, mut cancelled) = (0u64, 0u64);
    loop {
        let stats = system.stats();
        if stats.messages_accepted + stats.requests_accepted >= target {
            break;
        }
        rounds += 1;
        // Guest to guest: the requester sends a burst to echo.
        let burst = system
            .request("requester", send_command(MESSAGES_PER_ROUND, "echo", &payload), None)
            .map_err(|e| format!("requester command refused: {e}"))?;
        // Host requests in flight together, a few cancelled at once.
        let mut asks = Vec::with_capacity(REQUESTS_PER_ROUND);
        for n in 0..REQUESTS_PER_ROUND {
            let ask = system.request("echo", payload.clone(), None).map_err(|e| format!("request refused: {e}"))?;
            if n < CANCELS_PER_ROUND {
                let _ = system.cancel(&ask.id());
            }
            asks.push(ask);
        }
        // A slow handler (about a million loop iterations) behind a 1 ms timeout.
        let slow = system
            .request("slow", raw(&1_000_000u32.to_le_bytes()), Some(Duration::from_millis(1)))
            .map_err(|e| format!("slow request refused: {e}"))?;
        // And a trap, every round: the supervisor restarts the instance.
        system.try_send("trapping", raw(b"!")).map_err(|e| format!("trap refused: {e}"))?;
        burst.await.map_err(|e| format!("requester command failed: {e:?}"))?;
        for outcome in join_all(asks).await {
            match outcome {
                Ok(_) => {}
                Err(RequestError::Cancelled) => cancelled += 1,
                Err(other) => return Err(format!("an echo request failed: {other:?}")),
            }
        }
        if slow.await == Err(RequestError::Timeout) {
            timeouts += 1;
        }
    }
    let quiet = system.wait_quiescent(Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    let report = system.shutdown(Duration::from_secs(10)).await;
    let (rss_after, rss_peak) = rss();
    let stats = report.stats;
    let moved = stats.messages_accepted + stats.requests_accepted;
    println!("soak: {rounds} rounds in {:.2} s", elapsed.as_secs_f64());
    println!(
        "  accepted   {} messages + {} requests = {moved} ({:.0} per second)",
        stats.messages_accepted,
        stats.requests_accepted,
        moved as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  requests   completed {}  timed out {}  cancelled {}  failed {}  dropped {}  orphaned {}",
        stats.requests.completed,
        stats.requests.timed_out,
        stats.requests.cancelled,
        stats.requests.failed,
        stats.requests.dropped,
        stats.requests.orphaned
    );
    println!(
        "  envelopes  handled {}  callbacks handled {}  dead-lettered {}  (host saw {timeouts} timeouts, {cancelled} cancellations)",
        stats.handled, stats.callbacks_handled, stats.dead_lettered
    );
    println!(
        "  rss        before {:.1} MB  peak {:.1} MB  after {:.1} MB",
        mb(rss_before),
        mb(rss_peak),
        mb(rss_after)
    );
    let balanced = stats.balanced();
    println!("  accounting {}", if balanced { "balanced" } else { "NOT balanced" });
    if !quiet || !balanced {
        return Err(format!("unaccounted messages or requests (quiescent: {quiet}): {stats:?}"));
    }
    if rss_after > rss_before + RSS_SLACK_BYTES {
        return Err(format!(
            "RSS grew by {:.1} MB over the run (allowed {:.0} MB)",
            mb(rss_after - rss_before),
            mb(RSS_SLACK_BYTES)
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let target = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(async { tokio::spawn(soak(target)).await.map_err(|e| e.to_string())? }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("soak failed: {error}");
            ExitCode::FAILURE
        }
    }
}
