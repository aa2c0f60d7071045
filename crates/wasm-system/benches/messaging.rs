//! End-to-end messaging between real guests, each beside a baseline measured
//! in the same run, so ratios are reported and not only absolute times:
//!
//! - `baseline/wasmtime_handle_message_64b`: one raw guest call (no router).
//! - `baseline/tokio_mpsc_round_trip`: a message to another task and back.
//! - `fire_and_forget/guest_to_guest_throughput`: a guest sends 64-byte
//!   messages to another guest (batches of 10,000); time per message.
//! - `fire_and_forget/guest_to_guest_hop`: the ping-pong example's rally,
//!   each hop a guest `send-message` to the other guest; time per hop
//!   (criterion's median of samples is the p50 per-hop latency).
//! - `request_response/host_round_trip`: the host's `request` to an echo
//!   guest until the response future resolves.
//! - `request_response/guest_to_guest_round_trip`: a guest's `send-request`
//!   to an echo guest until the requester's `handle-callback` ran, plus the
//!   host command that triggers it (an upper bound).
//! - `..._sdk`: the same two guest-to-guest benches with Rust guests written
//!   on the guest SDK (`tests/guests/bench`, the same protocol and payloads),
//!   so the SDK's guest-side cost is the difference in the same run. The
//!   bench builds that guest with `wasm-system build` first.
//!
//! Run: `cargo bench -p wasm-system --bench messaging` (`BENCH_ENGINE=dense`
//! for the engine of `EngineConfig::dense()`: no memory reservations or
//! guard regions, every access bounds-checked).
#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]

mod common;

use common::{
    BOUND, channel_echo, echo_instance, in_task, manifest, payload64, root, sdk_guest, send_command, shutdown,
};

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use wasm_core::ComponentId;
use wasm_runtime::WasmEngine;
use wasm_system::{System, SystemEvent};

fn request_command(target: &str) -> Vec<u8> {
    let mut cmd = vec![0x55, b'r'];
    cmd.extend_from_slice(&60_000u32.to_le_bytes());
    cmd.push(u8::try_from(target.len()).expect("short"));
    cmd.extend_from_slice(target.as_bytes());
    cmd.extend_from_slice(&payload64());
    cmd
}

/// The host command that makes a requester send a batch of this many messages.
type BatchCommand = fn(u64) -> Vec<u8>;

fn start(rt: &Runtime, engine: &Arc<WasmEngine>, components: &[(&str, &str, &str)]) -> System {
    rt.block_on(async {
        let mut builder = System::builder().engine(Arc::clone(engine));
        for (id, file, extra) in components {
            builder = builder.component(manifest(id, extra), root().join(file));
        }
        builder.start().await.expect("system starts")
    })
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let engine = Arc::new(WasmEngine::new(common::engine_config()).expect("engine"));
    let echo_wat = "tests/fixtures/echo.wat";
    let requester_wat = "tests/fixtures/requester.wat";
    let pinger_wat = "tests/fixtures/pinger.wat";
    let sdk = sdk_guest();
    let sdk = sdk.to_str().expect("a UTF-8 path");

    let mut baseline = c.benchmark_group("baseline");
    {
        let system = start(&rt, &engine, &[]);
        let instance = echo_instance(&rt, &engine, system.message_router());
        let sender = ComponentId::host();
        // The call is async (as the actors make it): the loop runs in a task,
        // which owns the instance for the run and hands it back.
        let mut instance = Some(instance);
        baseline.bench_function("wasmtime_handle_message_64b", |b| {
            b.iter_custom(|iters| {
                let mut owned = instance.take().expect("instance between runs");
                let sender = sender.clone();
                let (owned, elapsed) = rt.block_on(async move {
                    tokio::spawn(async move {
                        let payload = payload64();
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(owned.handle_message(&sender, black_box(&payload), None).await.ok());
                        }
                        (owned, start.elapsed())
                    })
                    .await
                    .expect("measuring task")
                });
                instance = Some(owned);
                elapsed
            });
        });
        rt.block_on(system.shutdown(BOUND));
    }
    baseline.bench_function("tokio_mpsc_round_trip", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let (to_echo, mut main_rx, echo) = channel_echo();
                let driver = tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        to_echo.send(payload64()).await.expect("send");
                        black_box(main_rx.recv().await.expect("recv"));
                    }
                    start.elapsed()
                });
                let elapsed = driver.await.expect("driver");
                echo.abort();
                elapsed
            })
        });
    });
    baseline.finish();

    let mut fire = c.benchmark_group("fire_and_forget");
    fire.throughput(Throughput::Elements(1));
    let throughputs: [(&str, &str, &str, BatchCommand); 2] = [
        ("guest_to_guest_throughput", requester_wat, echo_wat, |batch| {
            send_command(u32::try_from(batch).expect("batch"), "sink")
        }),
        ("guest_to_guest_throughput_sdk", sdk, sdk, |batch| format!("\x55m:{batch}:sink").into_bytes()),
    ];
    for (name, requester, sink, command) in throughputs {
        let system = start(
            &rt,
            &engine,
            &[
                ("requester", requester, "[capabilities]\nsend = [\"sink\"]"),
                ("sink", sink, "[mailbox]\ncapacity = 16384"),
            ],
        );
        let system = Arc::new(system);
        fire.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let system = Arc::clone(&system);
                in_task(&rt, async move {
                    let start = Instant::now();
                    let mut left = iters;
                    while left > 0 {
                        let batch = left.min(10_000);
                        let ask = system
                            .request("requester", command(batch), Some(Duration::from_secs(60)))
                            .expect("command");
                        ask.response().await.expect("all sent");
                        assert!(system.wait_quiescent(BOUND).await);
                        left -= batch;
                    }
                    start.elapsed()
                })
            });
        });
        shutdown(&rt, system);
    }
    {
        let ping = manifest("ping", "[capabilities]\nsend = [\"pong\"]");
        let pong = manifest("pong", "[capabilities]\nsend = [\"ping\"]");
        let system = rt.block_on(async {
            System::builder()
                .engine(Arc::clone(&engine))
                .component(ping, root().join(pinger_wat))
                .component(pong, root().join(pinger_wat))
                .start()
                .await
                .expect("system")
        });
        let system = Arc::new(system);
        // One injected message starts a rally of 1,001 guest-to-guest hops.
        const HOPS_PER_RALLY: u64 = 1_001;
        fire.bench_function("guest_to_guest_hop", |b| {
            b.iter_custom(|iters| {
                let system = Arc::clone(&system);
                in_task(&rt, async move {
                    let rallies = iters.div_ceil(HOPS_PER_RALLY);
                    let start = Instant::now();
                    for _ in 0..rallies {
                        system.try_send("ping", b"\x55pong".to_vec()).expect("start rally");
                        assert!(system.wait_quiescent(BOUND).await);
                    }
                    let elapsed = start.elapsed();
                    elapsed.mul_f64(iters as f64 / (rallies * HOPS_PER_RALLY) as f64)
                })
            });
        });
        shutdown(&rt, system);
    }
    fire.finish();

    let mut reqs = c.benchmark_group("request_response");
    {
        let system = Arc::new(start(&rt, &engine, &[("echo", echo_wat, "")]));
        reqs.bench_function("host_round_trip", |b| {
            b.iter_custom(|iters| {
                let system = Arc::clone(&system);
                in_task(&rt, async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let ask = system.request("echo", payload64(), Some(Duration::from_secs(60))).expect("request");
                        black_box(ask.response().await.expect("response"));
                    }
                    start.elapsed()
                })
            });
        });
        shutdown(&rt, system);
    }
    let round_trips = [
        ("guest_to_guest_round_trip", requester_wat, echo_wat, request_command("echo")),
        ("guest_to_guest_round_trip_sdk", sdk, sdk, b"\x55r:echo".to_vec()),
    ];
    for (name, requester, echo, command) in round_trips {
        let system = start(
            &rt,
            &engine,
            &[("requester", requester, "[capabilities]\nsend = [\"echo\"]\nrequest = true"), ("echo", echo, "")],
        );
        let events = Arc::new(tokio::sync::Mutex::new(system.subscribe()));
        let system = Arc::new(system);
        reqs.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let system = Arc::clone(&system);
                let events = Arc::clone(&events);
                let command = command.clone();
                in_task(&rt, async move {
                    let mut events = events.lock().await;
                    let start = Instant::now();
                    for _ in 0..iters {
                        let ask = system
                            .request("requester", command.clone(), Some(Duration::from_secs(60)))
                            .expect("command");
                        ask.response().await.expect("send-request accepted");
                        loop {
                            let event = events.recv().await.expect("events");
                            if let SystemEvent::Callback { component, .. } = &event
                                && component.as_str() == "requester"
                            {
                                break;
                            }
                        }
                    }
                    start.elapsed()
                })
            });
        });
        drop(events);
        shutdown(&rt, system);
    }
    reqs.finish();
}

criterion_group! {
    name = messaging;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = benches
}
criterion_main!(messaging);
