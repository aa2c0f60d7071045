//! Containment: every limit bounds what it claims to bound, in bytes as
//! well as in counts, against hostile guests (the Rust test guest's `storm`
//! and `fail` commands, and WAT fixtures).

use std::time::Instant;

use wasm_core::RequestError;
use wasm_tests::{BOUND, Harness, raw};

/// The Rust test guest (see its crate docs for the commands it takes).
const GUEST: &str = "rust:guest-behaviour";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_the_pending_quota_bounds_queued_callbacks_until_they_are_handled() {
    let storm = "[capabilities]\nsend = [\"echo\"]\nrequest = true\n[requests]\nmax_pending = 20";
    let h = Harness::start(&[("storm", GUEST, storm), ("echo", "echo", "")]).await;
    let stormer = h.system.router().lookup("storm").expect("registered");
    // 10 requests now and 10 more from every callback, 3,000 attempts in all.
    h.system.send("storm", raw(b"storm:10:echo:3000")).expect("queued");
    let deadline = Instant::now() + BOUND;
    let mut most_queued = 0;
    while !h.system.router().is_quiescent() {
        most_queued = most_queued.max(stormer.mailbox().len());
        assert!(stormer.pending_requests() <= 20, "the quota holds");
        assert!(Instant::now() < deadline, "the storm ends within the bound: {:?}", h.system.stats());
        tokio::task::yield_now().await;
    }
    assert!(most_queued <= 20, "at most the quota of callbacks (and messages) queued: {most_queued}");
    let stats = h.finish().await;
    assert!(stats.requests.completed > 100, "the storm ran: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_a_handler_error_over_the_payload_cap_is_target_failed() {
    let h = Harness::start(&[("failing", GUEST, "[limits]\nmax_message_bytes = 1024")]).await;
    match h.ask("failing", raw(b"fail:100000")).await {
        Err(RequestError::TargetFailed(reason)) => {
            assert!(reason.contains("100000 bytes exceeds the cap of 1024 bytes"), "{reason}");
        }
        other => panic!("expected target-failed, got {other:?}"),
    }
    match h.ask("failing", raw(b"fail:10")).await {
        Err(RequestError::HandlerError(error)) => assert_eq!((error.code, error.message.len()), (7, 10)),
        other => panic!("expected handler-error, got {other:?}"),
    }
    let stats = h.finish().await;
    assert_eq!(stats.responses_refused, 1);
}
