//! The cost of observability on guest-to-guest messaging, each setting
//! beside the others in the same run: a guest sends 64-byte messages to
//! another guest (batches of 10,000, as `messaging`'s
//! `fire_and_forget/guest_to_guest_throughput`); time per message with
//!
//! - `off_round<N>`: no metrics, no trace export (the default);
//! - `metrics_no_exporter_round<N>`: metrics on (`SystemBuilder::metrics_interval`,
//!   so each handler's duration is measured) and no recorder installed;
//! - `metrics_prometheus`: the same with the Prometheus recorder the CLI's
//!   `--metrics-addr` installs (rendering not included: no one scrapes);
//! - `metrics_and_otlp`: and every handler span exported over OTLP/HTTP to
//!   a loopback endpoint that discards what it gets.
//!
//! The first two alternate for two rounds. A recorder and a subscriber are
//! process-wide and cannot be removed, so the last two run after them, in
//! this order, in their own bench binary.
//!
//! Run: `cargo bench -p wasm-system --bench observability`.
#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]

mod common;

use common::{BOUND, manifest, root};

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::runtime::Runtime;
use tracing_subscriber::layer::SubscriberExt;
use wasm_runtime::{EngineConfig, WasmEngine};
use wasm_system::System;
use wasm_system::metrics::{HANDLER_DURATION, HANDLER_DURATION_BUCKETS};
use wasm_system::otlp::OtlpTracing;

#[path = "../../../tests/otlp_receiver.rs"]
mod otlp_receiver;

/// The requester fixture's command: send a 64-byte payload to `sink` `count` times.
fn send_command(count: u32) -> Vec<u8> {
    let mut cmd = vec![0x55, b'm'];
    cmd.extend_from_slice(&count.to_le_bytes());
    cmd.push(4);
    cmd.extend_from_slice(b"sink");
    cmd.push(0x55);
    cmd.extend_from_slice(&[7; 63]);
    cmd
}

/// Measures `name` on a fresh requester -> sink system (metrics on or not).
fn throughput(c: &mut Criterion, rt: &Runtime, engine: &Arc<WasmEngine>, name: &str, metrics: bool) {
    let system = rt.block_on(async {
        let mut builder = System::builder()
            .engine(Arc::clone(engine))
            .component(
                manifest("requester", "[capabilities]\nsend = [\"sink\"]"),
                root().join("tests/fixtures/requester.wat"),
            )
            .component(manifest("sink", "[mailbox]\ncapacity = 16384"), root().join("tests/fixtures/echo.wat"));
        if metrics {
            builder = builder.metrics_interval(Duration::from_secs(1));
        }
        builder.start().await.expect("system starts")
    });
    let system = Arc::new(system);
    let mut group = c.benchmark_group("observability");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let system = Arc::clone(&system);
            rt.block_on(async {
                tokio::spawn(async move {
                    let start = Instant::now();
                    let mut left = iters;
                    while left > 0 {
                        let batch = left.min(10_000);
                        let command = send_command(u32::try_from(batch).expect("batch"));
                        let ask = system.request("requester", command, Some(BOUND)).expect("command");
                        ask.response().await.expect("all sent");
                        assert!(system.wait_quiescent(BOUND).await);
                        left -= batch;
                    }
                    start.elapsed()
                })
                .await
                .expect("measuring task")
            })
        });
    });
    group.finish();
    let system = Arc::into_inner(system).expect("no other owner");
    rt.block_on(system.shutdown(BOUND));
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let engine = Arc::new(WasmEngine::new(EngineConfig::default()).expect("engine"));
    // Two alternating rounds of the pair the target is about: on this
    // 2-core machine runs differ by up to 15 %, so one pair would not show
    // a cost of a few percent.
    for round in 1..=2 {
        throughput(c, &rt, &engine, &format!("off_round{round}"), false);
        throughput(c, &rt, &engine, &format!("metrics_no_exporter_round{round}"), true);
    }
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HANDLER_DURATION.into()), &HANDLER_DURATION_BUCKETS)
        .expect("buckets")
        .install_recorder()
        .expect("the recorder");
    throughput(c, &rt, &engine, "metrics_prometheus", true);
    let otlp = OtlpTracing::new(Some(&otlp_receiver::discarding_receiver()), "bench").expect("exporter");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otlp.layer())).expect("subscriber");
    throughput(c, &rt, &engine, "metrics_and_otlp", true);
    drop(otlp);
}

criterion_group! {
    name = observability;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = benches
}
criterion_main!(observability);
