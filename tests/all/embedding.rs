//! The embedding API on a running system: components added and stopped while
//! it runs, a send that waits for room, and what dropping a `System` (or its
//! `shutdown` future) does.

use std::time::Duration;

use tokio::time::Instant;
use wasm_core::{MessagingError, RequestError};
use wasm_system::{ComponentRef, ComponentSource, SystemError, SystemEvent};
use wasm_tests::{BOUND, Harness, PATIENT, REQUESTER, cmd_request, compiled, manifest, raw};

/// The Rust test guest (see its crate docs for the commands it takes).
const GUEST: &str = "rust:guest-behaviour";

/// Waits (bounded) until `component` has stopped.
async fn stopped(component: &ComponentRef) {
    let deadline = Instant::now() + BOUND;
    while !component.stats().stopped {
        assert!(Instant::now() < deadline, "{} stops within the bound", component.id());
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_components_are_added_and_stopped_while_the_system_runs() {
    let mut h = Harness::start(&[("requester", "requester", REQUESTER)]).await;
    let source = || ComponentSource::Compiled(compiled("echo"));
    let echo = h.system.add(manifest("echo", "echo", ""), source()).await.expect("added while running");
    assert_eq!(h.ask("echo", raw(b"hi")).await, Ok(raw(b"hi")));
    // The others reach it too: the requester's request gets its callback.
    let id = h.request_via("requester", 1_000, "echo", &raw(b"from a component")).await;
    assert_eq!(h.callback("requester", id).await, Ok(raw(b"from a component")));
    // An id that is taken stays taken.
    let duplicate = h.system.add(manifest("echo", "echo", ""), source()).await;
    assert!(matches!(duplicate, Err(SystemError::Registry(_))), "{duplicate:?}");

    h.system.stop_component("echo").await.expect("stopped");
    assert!(echo.stats().stopped);
    assert!(!h.system.components().iter().any(|c| c.as_str() == "echo"));
    let refused = h.system.try_send("echo", raw(b"late")).expect_err("stopped");
    assert!(matches!(refused.error(), MessagingError::TargetNotFound(_)), "{refused}");
    let refused = echo.try_send(raw(b"late")).expect_err("the handle sees the stop too");
    assert_eq!(refused.into_inner(), raw(b"late"), "the payload comes back");
    let again = h.system.stop_component("echo").await;
    assert!(matches!(again, Err(SystemError::NotRunning(_))), "{again:?}");
    let stopped_event = h
        .wait_for("echo's stop", |e| match e {
            SystemEvent::Stopped { component, reason } if component.as_str() == "echo" => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(stopped_event, "stopped by the host");

    // The id is free again.
    h.system.add(manifest("echo", "echo", ""), source()).await.expect("re-added");
    assert_eq!(h.ask("echo", raw(b"again")).await, Ok(raw(b"again")));
    let report = h.system.shutdown(BOUND).await;
    assert!(report.stopped_abnormally.is_empty(), "a stop by the host is a normal end: {report:?}");
    assert!(report.stats.balanced(), "{:?}", report.stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_stopping_a_component_interrupts_its_handler_and_fails_what_it_had_queued() {
    let h = Harness::start(&[("sleepy", GUEST, PATIENT)]).await;
    let sleepy = h.system.component("sleepy").expect("running");
    let busy = h.system.request("sleepy", raw(b"sleep:60000"), Some(Duration::from_secs(120))).expect("accepted");
    while sleepy.stats().mailbox_len > 0 {
        tokio::task::yield_now().await;
    }
    let queued = h.system.request("sleepy", raw(b"echo"), Some(Duration::from_secs(120))).expect("queued");
    h.system.stop_component("sleepy").await.expect("stopped");
    match busy.await {
        Err(RequestError::TargetFailed(reason)) => assert!(reason.contains("stopped by the host"), "{reason}"),
        other => panic!("the interrupted handler's requester gets target-failed, got {other:?}"),
    }
    match queued.await {
        Err(RequestError::DeliveryFailed(reason)) => assert!(reason.contains("stopped by the host"), "{reason}"),
        other => panic!("a queued request answers delivery-failed, got {other:?}"),
    }
    let letters = h.system.dead_letters();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let stats = h.finish().await;
    assert_eq!((stats.requests_accepted, stats.dead_lettered, stats.handled), (2, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_send_waits_for_room_until_its_deadline() {
    let h = Harness::start(&[("stalled", GUEST, "[limits]\ntime_per_call_ms = 60000\n[mailbox]\ncapacity = 1")]).await;
    // The handler sleeps; one message fills the one slot behind it.
    let stalled = h.stall("stalled", 300).await;
    h.system.try_send("stalled", raw(b"echo")).expect("fills the mailbox");
    let full = h.system.try_send("stalled", raw(b"now")).expect_err("try_send refuses at once");
    assert_eq!(full.error(), &MessagingError::QueueFull);
    let late = h.system.send("stalled", raw(b"late"), Duration::from_millis(20)).await.expect_err("still full");
    assert_eq!(late.error(), &MessagingError::QueueFull, "no room before the deadline");
    assert_eq!(late.into_inner(), raw(b"late"), "the payload comes back");
    // The sleep ends, the actor takes the queued message, the waiting send gets in.
    stalled.send(raw(b"waited"), BOUND).await.expect("room came before the deadline");
    let stats = h.finish().await;
    assert_eq!(stats.messages_accepted, 3, "sleep, echo, waited");
    assert_eq!(stats.handled, 3);
    assert_eq!(stats.refused[MessagingError::QueueFull.kind_index()], 2, "one refusal each, not one per wake-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_send_waits_for_bytes_as_well_as_for_a_slot() {
    let bounds = "[limits]\ntime_per_call_ms = 60000\n[mailbox]\ncapacity = 64\nmax_bytes = 4096";
    let h = Harness::start(&[("stalled", GUEST, bounds)]).await;
    let stalled = h.stall("stalled", 300).await;
    let big = raw(&[b'x'; 3000]);
    h.system.try_send("stalled", big.clone()).expect("3000 of 4096 bytes");
    let refused = h.system.try_send("stalled", big.clone()).expect_err("over the byte bound, with slots free");
    assert_eq!(refused.error(), &MessagingError::QueueFull);
    stalled.send(big, BOUND).await.expect("the bytes came free before the deadline");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_dropping_the_system_stops_it_and_ends_host_requests() {
    let h = Harness::start(&[("sleepy", GUEST, PATIENT)]).await;
    let sleepy = h.system.component("sleepy").expect("running");
    let pending = h.system.request("sleepy", raw(b"sleep:60000"), Some(Duration::from_secs(120))).expect("accepted");
    drop(h);
    let outcome = tokio::time::timeout(BOUND, pending).await.expect("the request ends with the system");
    assert!(matches!(outcome, Err(RequestError::TargetFailed(_) | RequestError::DeliveryFailed(_))), "{outcome:?}");
    stopped(&sleepy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_a_dropped_shutdown_future_still_stops_the_system() {
    let h = Harness::start(&[("sleepy", GUEST, PATIENT), ("requester", "requester", REQUESTER)]).await;
    let sleepy = h.system.component("sleepy").expect("running");
    let requester = h.system.component("requester").expect("running");
    h.system.try_send("sleepy", raw(b"sleep:60000")).expect("queued");
    // A request from a component, pending when the system goes.
    h.system.try_send("requester", cmd_request(60_000, "sleepy", &raw(b"echo"))).expect("queued");
    // Draining would wait a minute for the sleeper: give up on it.
    let shutdown = h.system.shutdown(Duration::from_secs(60));
    assert!(tokio::time::timeout(Duration::from_millis(50), shutdown).await.is_err(), "still draining");
    stopped(&sleepy).await;
    stopped(&requester).await;
}

#[tokio::test(flavor = "current_thread")]
async fn embedding_start_compiles_off_the_async_thread() {
    // A fresh engine (no compile cache) and the bytes of a Rust guest, so
    // `start` has real compiling to do; on this one-thread runtime a task
    // that counts while yielding runs only when the runtime thread is free.
    let bytes = std::fs::read(wasm_tests::rust_guest("guest-behaviour")).expect("the guest's bytes");
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&counted);
    let ticker = tokio::spawn(async move {
        loop {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    });
    let manifest = wasm_core::ComponentManifest::new(wasm_core::ComponentId::parse("fresh").expect("id"));
    let system = wasm_system::System::builder().component_bytes(manifest, bytes).start().await.expect("starts");
    let during_start = counted.load(std::sync::atomic::Ordering::Relaxed);
    ticker.abort();
    // Compiling a guest of megabytes takes hundreds of ms; had it run on
    // this thread, the ticker would have run only at `start`'s few awaits.
    assert!(during_start > 1_000, "the runtime thread was free while compiling: {during_start} ticks");
    assert_eq!(system.components().len(), 1);
    let report = system.shutdown(BOUND).await;
    assert!(report.stats.balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_the_host_cancels_a_request_explicitly() {
    let h = Harness::start(&[("sleepy", GUEST, PATIENT)]).await;
    let _busy = h.stall("sleepy", 500).await;
    let queued = h.system.request("sleepy", raw(b"echo"), Some(Duration::from_secs(60))).expect("queued");
    h.system.cancel(&queued.id()).expect("pending, so it can be cancelled");
    assert_eq!(queued.await, Err(RequestError::Cancelled), "the future sees the cancellation");
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!((stats.requests.cancelled, stats.requests.orphaned), (1, 1), "sleepy still answered, to no one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_an_add_dropped_while_instantiating_frees_the_id() {
    let h = Harness::start(&[("requester", "requester", REQUESTER)]).await;
    // Its start function spins: instantiation runs until the budget (a
    // minute here), so the add is dropped part-way.
    let spinning = ComponentSource::Compiled(compiled("spinning_start"));
    let adding = h.system.add(manifest("late", "spinning_start", PATIENT), spinning);
    assert!(tokio::time::timeout(Duration::from_millis(200), adding).await.is_err(), "still instantiating");
    let refused = h.system.try_send("late", raw(b"x")).expect_err("never started");
    assert!(matches!(refused.error(), MessagingError::TargetNotFound(_)), "{refused}");
    // The id is free again.
    h.system.add(manifest("late", "echo", ""), ComponentSource::Compiled(compiled("echo"))).await.expect("added");
    assert_eq!(h.ask("late", raw(b"hi")).await, Ok(raw(b"hi")));
    h.finish().await;
}
