//! Containment: every limit bounds what it claims to bound, in bytes as
//! well as in counts, against hostile guests (the Rust test guest's `storm`
//! and `fail` commands, and WAT fixtures).

use std::time::{Duration, Instant};

use std::sync::Arc;

use wasm_core::{MessagingError, RequestError};
use wasm_messaging::AuditEvent;
use wasm_system::{System, SystemEvent};
use wasm_tests::{BOUND, Harness, RecordingAudit, raw};

/// The Rust test guest (see its crate docs for the commands it takes).
const GUEST: &str = "rust:guest-behaviour";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_the_pending_quota_bounds_queued_callbacks_until_they_are_handled() {
    let storm = "[capabilities]\nsend = [\"echo\"]\nrequest = true\n[requests]\nmax_pending = 20";
    let h = Harness::start(&[("storm", GUEST, storm), ("echo", "echo", "")]).await;
    let stormer = h.system.component("storm").expect("registered");
    // 10 requests now and 10 more from every callback, 3,000 attempts in all.
    h.system.try_send("storm", raw(b"storm:10:echo:3000")).expect("queued");
    let deadline = Instant::now() + BOUND;
    let mut most_queued = 0;
    while !h.system.is_quiescent() {
        let now = stormer.stats();
        most_queued = most_queued.max(now.mailbox_len);
        assert!(now.pending_requests <= 20, "the quota holds");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_a_stalled_mailbox_is_bounded_in_bytes_as_well_as_in_count() {
    let stalled = "[limits]\ntime_per_call_ms = 60000\n[mailbox]\ncapacity = 1024\nmax_bytes = 65536";
    let h = Harness::start(&[("stalled", GUEST, stalled)]).await;
    // The guest sleeps in its handler: nothing more is taken from its mailbox.
    let target = h.stall("stalled", 60_000).await;
    let big = raw(&[b'x'; 10 * 1024]);
    let mut accepted = 0;
    let refusal = loop {
        match h.system.try_send("stalled", big.clone()) {
            Ok(()) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < 1024, "the count bound was reached first: the byte bound did not hold");
    };
    assert_eq!(refusal.error(), &MessagingError::QueueFull);
    assert_eq!(refusal.into_inner(), big, "the refused payload is handed back");
    assert_eq!(accepted, 6, "six 10 KiB messages fit 64 KiB");
    let bytes = target.stats().mailbox_bytes;
    assert!(bytes <= 65_536, "{bytes} bytes queued");
    // Small messages still fit in what is left.
    h.system.try_send("stalled", raw(b"echo")).expect("a small message fits");
    let report = h.system.shutdown(Duration::ZERO).await;
    assert!(report.stats.balanced(), "{:?}", report.stats);
    assert_eq!(report.stats.dead_lettered, 8, "the sleeping call and what was queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_a_response_over_the_requesters_byte_bound_is_target_failed() {
    let requester = "[capabilities]\nsend = [\"failer\"]\nrequest = true\n[mailbox]\nmax_bytes = 1000";
    let mut h = Harness::start(&[("asker", GUEST, requester), ("failer", GUEST, "")]).await;
    // failer answers with a handler error whose text is 5,000 bytes.
    let id = h.ask("asker", raw(b"request:5000:failer:fail:5000")).await.expect("the request was sent");
    let id = wasm_core::CorrelationId::parse(std::str::from_utf8(&id[1..]).expect("text")).expect("an id");
    match h.callback("asker", id).await {
        Err(RequestError::TargetFailed(reason)) => {
            assert!(reason.contains("5000 bytes does not fit asker's mailbox"), "{reason}");
        }
        other => panic!("expected target-failed, got {other:?}"),
    }
    let handled = h
        .wait_for("failer's answer", |e| match e {
            SystemEvent::Handled { component, result, .. } if component.as_str() == "failer" => Some(result.clone()),
            _ => None,
        })
        .await;
    assert_eq!(handled.map_err(|e| e.message.len()), Err(5000), "failer did answer in full");
    let stats = h.finish().await;
    assert_eq!(stats.responses_refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_the_memory_cap_holds_over_all_linear_memories_and_tables_are_capped() {
    let mut h = Harness::start(&[("hog", "hog", "[limits]\nmemory_bytes = 50331648")]).await;
    // 64 KiB + 32 MiB: within 48 MiB.
    assert_eq!(h.ask("hog", raw(b"a")).await, Ok(raw(b"a")));
    // Another 32 MiB in a third memory: within a per-memory cap, over the total.
    match h.ask("hog", raw(b"b")).await {
        Err(RequestError::TargetFailed(reason)) => assert!(reason.contains("memory cap exceeded"), "{reason}"),
        other => panic!("expected target-failed, got {other:?}"),
    }
    h.wait_for("the restart", |e| matches!(e, SystemEvent::Restarted { .. }).then_some(())).await;
    // 2^27 table elements, one instruction: refused before anything is reserved.
    match h.ask("hog", raw(b"t")).await {
        Err(RequestError::TargetFailed(reason)) => assert!(reason.contains("table cap exceeded"), "{reason}"),
        other => panic!("expected target-failed, got {other:?}"),
    }
    let stats = h.finish().await;
    assert_eq!(stats.requests.failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_a_component_with_more_memories_than_allowed_does_not_start() {
    let builder = wasm_system::System::builder()
        .engine(wasm_tests::engine())
        .compiled(wasm_tests::manifest("hog", "hog", "[limits]\nmax_memories = 2"), wasm_tests::compiled("hog"));
    let error = builder.start().await.expect_err("three memories, two allowed").to_string();
    assert!(error.contains("hog") && error.contains("memor"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_a_refusal_flood_is_aggregated_in_the_audit_log_and_every_refusal_is_counted() {
    let audit = Arc::new(RecordingAudit::default());
    let flooder = "[capabilities]\nsend = [\"sink\"]\n[rate]\nmessages_per_second = 1\nburst = 1";
    let h = Harness::start_audited(
        &[("flooder", GUEST, flooder), ("quiet", GUEST, ""), ("sink", "echo", "")],
        Arc::clone(&audit) as _,
    )
    .await;
    let flood_started = Instant::now();
    let accepted = h.ask("flooder", raw(b"spam:20000:sink")).await.expect("the flood ran");
    let flood_seconds = flood_started.elapsed().as_secs() + 2;
    // One a second gets through (two or three if the flood outlasts a second).
    let accepted: u64 = std::str::from_utf8(&accepted[1..]).expect("text").parse().expect("a count");
    assert!((1..=5).contains(&accepted), "{accepted} accepted");
    let refused_sends = 20_000 - accepted;
    // Another tenant's refusal, in the middle of the flood.
    assert_eq!(h.ask("quiet", raw(b"spam:1:sink")).await, Ok(raw(b"0")));
    let stats = h.finish().await;
    assert_eq!(stats.refused[2], refused_sends, "every rate-limited send is counted");
    let refused = audit.of(AuditEvent::Refused, "rate-limited");
    let from_flooder: Vec<_> = refused.iter().filter(|r| r.tenant() == "flooder").collect();
    // Ten in full and one aggregate per second the flood touched.
    let most = usize::try_from(flood_seconds * 11).expect("small");
    assert!(from_flooder.len() <= most, "at most {most} records, not 19,999: {}", from_flooder.len());
    assert_eq!(from_flooder.iter().map(|r| r.count).sum::<u64>(), refused_sends, "the aggregates add up");
    let quiet = audit.of(AuditEvent::Refused, "permission-denied");
    assert_eq!(quiet.iter().filter(|r| r.tenant() == "quiet").count(), 1, "the other tenant's record is there");
}

/// The engine of `EngineConfig::dense()` (no memory reservations or guard
/// regions) and the fixture `name` compiled with it.
fn dense(name: &str) -> (Arc<wasm_runtime::WasmEngine>, wasm_runtime::CompiledComponent) {
    let engine =
        Arc::new(wasm_runtime::WasmEngine::new(wasm_runtime::EngineConfig::dense()).expect("the dense engine"));
    let compiled = engine.load_file(&wasm_tests::fixture(name)).expect("fixture");
    (engine, compiled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_a_dense_engine_runs_2000_instances_that_each_answer() {
    let (engine, echo) = dense("echo");
    let builder = (0..2000).fold(System::builder().engine(engine), |builder, i| {
        builder.compiled(wasm_tests::manifest(&format!("echo-{i}"), "echo", ""), echo.clone())
    });
    let h = Harness::from_builder(builder).await;
    let mut answers = Vec::new();
    for i in 0..2000 {
        let request = h.system.request(&format!("echo-{i}"), raw(format!("hi {i}").as_bytes()), Some(BOUND));
        answers.push(tokio::spawn(request.expect("accepted").response()));
    }
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.await.expect("task"), Ok(raw(format!("hi {i}").as_bytes())), "echo-{i}");
    }
    let stats = h.finish().await;
    assert_eq!(stats.requests.completed, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containment_a_dense_engine_grows_memories_to_the_cap_and_no_further() {
    let (engine, hog) = dense("hog");
    let builder = System::builder()
        .engine(engine)
        .compiled(wasm_tests::manifest("hog", "hog", "[limits]\nmemory_bytes = 50331648"), hog);
    let mut h = Harness::from_builder(builder).await;
    // 32 MiB grown in one step with nothing reserved for it: the memory moves.
    assert_eq!(h.ask("hog", raw(b"a")).await, Ok(raw(b"a")));
    match h.ask("hog", raw(b"b")).await {
        Err(RequestError::TargetFailed(reason)) => assert!(reason.contains("memory cap exceeded"), "{reason}"),
        other => panic!("expected target-failed, got {other:?}"),
    }
    h.wait_for("the restart", |e| matches!(e, SystemEvent::Restarted { .. }).then_some(())).await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.failed, 1);
}
