//! Fairness under CPU-heavy guests: what other components and the host's
//! timers see while two guests spin on the machine's two cores.
//!
//! One system on a 2-worker tokio runtime runs `spinner-a` and `spinner-b`
//! (`slow.wat` looping forever on a 5 s time budget, each fed 64 spins so
//! they spin for the whole run), plus `requester` and `echo`. Measured
//! twice, first with the spinners idle (the baseline, same run), then with
//! both spinning:
//!
//! - **echo round trip**: the host asks `requester` to `send-request` to
//!   `echo`; the time until `requester`'s `handle-callback` ran (an upper
//!   bound of the guest-to-guest round trip: it includes the host command);
//!   p50, p99 and max over 300 round trips.
//! - **timeout lateness**: `requester` sends a request with a 100 ms timeout
//!   to `spinner-a`, which never answers in time; how long after 100 ms its
//!   `handle-callback` got `timeout`; p50, p99 and max over 30 requests.
//!   Beside it, the lateness of a bare `tokio::time::sleep(100 ms)`.
//!
//! Run: `cargo bench -p wasm-system --bench fairness` (prints a table).
//! Without `--bench` (as `cargo test --all-targets` runs it) it makes a
//! tenth of the measurements, as a smoke test.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{manifest, root};
use tokio::sync::mpsc::UnboundedReceiver;
use wasm_core::{CorrelationId, RequestError};
use wasm_runtime::{EngineConfig, WasmEngine};
use wasm_system::{System, SystemEvent};

const TIMEOUT_MS: u32 = 100;

/// Round trips and timeouts per phase: all under `cargo bench`, a tenth otherwise.
fn counts() -> (usize, usize) {
    if std::env::args().any(|arg| arg == "--bench") { (300, 30) } else { (30, 3) }
}

fn request_command(timeout_ms: u32, target: &str) -> Vec<u8> {
    let mut cmd = vec![0x55, b'r'];
    cmd.extend_from_slice(&timeout_ms.to_le_bytes());
    cmd.push(u8::try_from(target.len()).expect("short"));
    cmd.extend_from_slice(target.as_bytes());
    cmd.extend_from_slice(b"\x55ping");
    cmd
}

/// Has `requester` make a request to `target` and waits for its callback;
/// returns the time from the host's command to the callback and the outcome.
async fn round_trip(
    system: &System,
    events: &mut UnboundedReceiver<SystemEvent>,
    target: &str,
    timeout_ms: u32,
) -> (Duration, Result<Vec<u8>, RequestError>) {
    let start = Instant::now();
    let reply = system.request("requester", request_command(timeout_ms, target), None).expect("command").await;
    let reply = reply.expect("the requester answers");
    let id = CorrelationId::parse(std::str::from_utf8(&reply[1..]).expect("id text")).expect("correlation id");
    loop {
        match events.recv().await.expect("event stream") {
            SystemEvent::Callback { request_id, outcome, .. } if request_id == id => return (start.elapsed(), outcome),
            _ => {}
        }
    }
}

/// p50, p99 and max of `samples`, in ms.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1e3
    };
    format!("p50 {:>9.3} ms  p99 {:>9.3} ms  max {:>9.3} ms", at(0.5), at(0.99), at(1.0))
}

async fn measure(system: &System, events: &mut UnboundedReceiver<SystemEvent>, label: &str, spinning: bool) {
    let (round_trips, timeouts) = counts();
    let mut trips = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let (elapsed, outcome) = round_trip(system, events, "echo", 60_000).await;
        assert_eq!(outcome, Ok(b"\x55ping".to_vec()), "echo answers");
        trips.push(elapsed);
    }
    println!("{label:<9} echo round trip        {}", summary(trips));
    let mut sleeps = Vec::with_capacity(timeouts);
    for _ in 0..timeouts {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(u64::from(TIMEOUT_MS))).await;
        sleeps.push(start.elapsed().saturating_sub(Duration::from_millis(u64::from(TIMEOUT_MS))));
    }
    println!("{label:<9} tokio sleep lateness   {}", summary(sleeps));
    if spinning {
        let mut late = Vec::with_capacity(timeouts);
        for _ in 0..timeouts {
            let (elapsed, outcome) = round_trip(system, events, "spinner-a", TIMEOUT_MS).await;
            assert_eq!(outcome, Err(RequestError::Timeout), "the busy spinner never answers in time");
            late.push(elapsed.saturating_sub(Duration::from_millis(u64::from(TIMEOUT_MS))));
        }
        println!("{label:<9} 100 ms timeout late by {}", summary(late));
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let engine = Arc::new(WasmEngine::new(EngineConfig::default()).expect("engine"));
    let spinner =
        "[limits]\nfuel_per_call = 18446744073709551615\ntime_per_call_ms = 5000\n[restart]\nmax_restarts = 1000";
    let requester = "[capabilities]\nsend = [\"*\"]\nrequest = true\n[requests]\nmax_pending = 100000";
    let components = [
        ("spinner-a", "tests/fixtures/slow.wat", spinner),
        ("spinner-b", "tests/fixtures/slow.wat", spinner),
        ("requester", "tests/fixtures/requester.wat", requester),
        ("echo", "tests/fixtures/echo.wat", ""),
    ];
    rt.block_on(async move {
        tokio::spawn(async move {
            let mut builder = System::builder().engine(engine);
            for (id, file, extra) in components {
                builder = builder.component(manifest(id, extra), root().join(file));
            }
            let system = builder.start().await.expect("system starts");
            let mut events = system.subscribe();
            println!("fairness: 2 tokio workers, epoch tick 1 ms; spinners on 5 s budgets");
            measure(&system, &mut events, "idle", false).await;
            for spinner in ["spinner-a", "spinner-b"] {
                for _ in 0..64 {
                    system.try_send(spinner, b"\x55\xff\xff\xff\xff".to_vec()).expect("spin queued");
                }
            }
            // Let both spinners get going before measuring.
            tokio::time::sleep(Duration::from_millis(50)).await;
            measure(&system, &mut events, "2 spinning", true).await;
            let report = system.shutdown(Duration::ZERO).await;
            assert!(report.stats.balanced(), "accounting balances: {:?}", report.stats);
        })
        .await
        .expect("measuring task");
    });
}
