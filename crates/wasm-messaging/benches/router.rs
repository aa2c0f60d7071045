//! The cost of the policy step: `Router::send_message` (id syntax, payload
//! prefix and size, capability glob, rate limit, target lookup, codec, mailbox)
//! beside the unchecked path (`Mailbox::try_send` of the same envelope) in
//! the same run. Both queue a 64-byte message into a mailbox that is
//! drained, untimed, between batches.
//!
//! Run: `cargo bench -p wasm-messaging --bench router`.
#![allow(missing_docs, reason = "criterion's macros generate undocumented items")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wasm_core::{ComponentId, ComponentManifest, MailboxSection, MessageRouter, Origin, TraceContext};
use wasm_messaging::{Envelope, Inbox, NoAudit, Policy, Router, mailbox};

const BATCH: u64 = 50_000;

fn manifest(text: &str) -> ComponentManifest {
    toml::from_str(text).expect("manifest")
}

/// Takes every queued envelope and settles it as handled (untimed).
fn drain(inbox: &mut Inbox) {
    while let Some(delivery) = inbox.try_recv() {
        delivery.handled(Ok(Vec::new()), TraceContext::new_root());
    }
}

fn policy_step(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _guard = rt.enter();
    let router = Router::start(Arc::new(NoAudit));
    let sink = manifest("[component]\nid = \"sink\"\nwasm = \"x\"\n[codecs]\naccept = [\"raw\", \"json\"]");
    let (_sink, mut inbox) = router
        .register(
            sink.component.id.clone(),
            Policy::from_manifest(&sink).expect("policy"),
            &MailboxSection { capacity: 1 << 17, max_bytes: usize::MAX },
        )
        .expect("sink");
    let sender_manifest = |extra: &str| {
        manifest(&format!(
            "[component]\nid = \"sender\"\nwasm = \"x\"\n[capabilities]\nsend = [\"billing-*\", \"sink\"]\n{extra}"
        ))
    };
    let plain = sender_manifest("");
    let (_sender, _sender_inbox) = router
        .register(
            plain.component.id.clone(),
            Policy::from_manifest(&plain).expect("policy"),
            &MailboxSection { capacity: 1, ..MailboxSection::default() },
        )
        .expect("sender");
    let limited = manifest(
        "[component]\nid = \"limited\"\nwasm = \"x\"\n[capabilities]\nsend = [\"sink\"]\n[rate]\nmessages_per_second = 4000000000\nburst = 4000000000",
    );
    let (_limited, _limited_inbox) = router
        .register(
            limited.component.id.clone(),
            Policy::from_manifest(&limited).expect("policy"),
            &MailboxSection { capacity: 1, ..MailboxSection::default() },
        )
        .expect("limited");
    // The baseline: a mailbox of the same bounds that no router sees.
    let (unrouted, mut unrouted_rx) = mailbox(ComponentId::parse("unrouted").expect("id"), 1 << 17, usize::MAX);
    let mut payload = vec![0x55];
    payload.resize(64, b'x');
    let trace = TraceContext::new_root();

    let mut group = c.benchmark_group("policy_step");
    let mut run = |name: &str, send: &mut dyn FnMut()| {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(BATCH);
                    let start = Instant::now();
                    for _ in 0..batch {
                        send();
                    }
                    total += start.elapsed();
                    drain(&mut inbox);
                    while unrouted_rx.try_recv().is_some() {}
                    left -= batch;
                }
                total
            });
        });
    };
    let sender = ComponentId::parse("sender").expect("id");
    let limited_id = ComponentId::parse("limited").expect("id");
    run("unchecked_mailbox_try_send", &mut || {
        let envelope = Envelope::Message { sender: sender.clone(), payload: payload.clone(), trace };
        black_box(unrouted.try_send(envelope)).expect("room");
    });
    run("checked_send_message", &mut || {
        let origin = Origin { sender: &sender, trace: Some(&trace) };
        black_box(router.send_message(origin, "sink", payload.clone())).expect("accepted");
    });
    run("checked_send_message_rate_limited", &mut || {
        let origin = Origin { sender: &limited_id, trace: Some(&trace) };
        black_box(router.send_message(origin, "sink", payload.clone())).expect("accepted");
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = policy_step
}
criterion_main!(benches);
