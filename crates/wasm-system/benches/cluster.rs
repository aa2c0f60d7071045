//! Cross-host messaging over NATS, beside NATS's own request round trip on
//! the same broker in the same run (a real `nats-server` on loopback, which
//! the bench starts; Debian's `nats-server` package):
//!
//! - `cluster/nats_request_round_trip`: an async-nats client's `request` to
//!   a plain async-nats responder that echoes: the broker's floor.
//! - `cluster/host_request_round_trip`: host `a`'s `System::request` to
//!   `echo@b`, a guest on host `b` (two systems in this process, each with
//!   its own connection): policy step, tracker, headers, b's mailbox and
//!   guest call, the outcome back.
//! - `cluster/fire_and_forget_throughput`: host `a` sends 64-byte messages to
//!   `echo@b` in batches of 1,000 until b has handled them; time per message.
//!
//! Criterion's median is the p50 of a round trip.
//!
//! Run: `cargo bench -p wasm-system --bench cluster`.
#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]

mod common;

use common::{BOUND, manifest, payload64, root};

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use wasm_cluster::{ClusterConfig, NatsTransport};
use wasm_core::{Codec, ComponentId, RemoteTransport};
use wasm_runtime::{EngineConfig, WasmEngine};
use wasm_system::System;

#[path = "../../wasm-cluster/tests/cluster/broker.rs"]
mod broker;

fn benches(c: &mut Criterion) {
    let broker = broker::Broker::start();
    let url = broker.url();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let engine = Arc::new(WasmEngine::new(EngineConfig::default()).expect("engine"));
    let mut group = c.benchmark_group("cluster");

    // NATS's own request round trip: a client, a responder, the broker.
    let client = rt.block_on(async {
        let responder = async_nats::connect(&url).await.expect("responder connects");
        let mut requests = responder.subscribe("bench.echo").await.expect("subscribe");
        responder.flush().await.expect("flush");
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = responder.publish(reply, request.payload).await;
                }
            }
        });
        async_nats::connect(&url).await.expect("client connects")
    });
    group.bench_function("nats_request_round_trip", |b| {
        b.iter_custom(|iters| {
            let client = client.clone();
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        client.request("bench.echo", payload64().into()).await.expect("a reply");
                    }
                    start.elapsed()
                })
                .await
                .expect("measuring task")
            })
        });
    });

    // Two hosts in this process, each with its own connection.
    let (a, b, ta, tb) = rt.block_on(async {
        let connect = |node: &str| NatsTransport::connect(ClusterConfig::new(url.clone(), node));
        let (ta, tb) = (connect("a").await.expect("a"), connect("b").await.expect("b"));
        let a = System::builder().engine(Arc::clone(&engine)).cluster(Arc::clone(&ta) as _);
        let b = System::builder()
            .engine(Arc::clone(&engine))
            .cluster(Arc::clone(&tb) as _)
            .component(manifest("echo", "[mailbox]\ncapacity = 16384"), root().join("tests/fixtures/echo.wat"));
        let (a, b) = (a.start().await.expect("a starts"), b.start().await.expect("b starts"));
        ta.start(Arc::downgrade(&a.remote_inbound())).await.expect("a joins");
        tb.start(Arc::downgrade(&b.remote_inbound())).await.expect("b joins");
        let echo = ComponentId::parse("echo@b").expect("id");
        let deadline = Instant::now() + BOUND;
        while ta.accepts(&echo, Codec::Raw).is_none() {
            assert!(Instant::now() < deadline, "a learns echo@b");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (Arc::new(a), Arc::new(b), ta, tb)
    });
    group.bench_function("host_request_round_trip", |bench| {
        bench.iter_custom(|iters| {
            let a = Arc::clone(&a);
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let request = a.request("echo@b", payload64(), Some(BOUND)).expect("accepted");
                        request.await.expect("the echo");
                    }
                    start.elapsed()
                })
                .await
                .expect("measuring task")
            })
        });
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("fire_and_forget_throughput", |bench| {
        bench.iter_custom(|iters| {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    let target = b.stats().handled + iters;
                    let mut left = iters;
                    while left > 0 {
                        let batch = left.min(1_000);
                        for _ in 0..batch {
                            a.send("echo@b", payload64(), BOUND).await.expect("accepted");
                        }
                        left -= batch;
                        // Let b keep up: at most one batch in flight.
                        while b.stats().handled + 1_000 < target - left {
                            tokio::task::yield_now().await;
                        }
                    }
                    while b.stats().handled < target {
                        tokio::task::yield_now().await;
                    }
                    start.elapsed()
                })
                .await
                .expect("measuring task")
            })
        });
    });
    group.finish();
    rt.block_on(async {
        for (system, transport) in [(a, ta), (b, tb)] {
            Arc::into_inner(system).expect("no other owner").shutdown(BOUND).await;
            transport.shutdown().await.expect("leaves");
        }
    });
    drop(broker);
}

criterion_group! {
    name = cluster;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = benches
}
criterion_main!(cluster);
