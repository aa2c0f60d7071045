//! Request-response: responses, handler errors, timeouts, cancellation
//! (owner, non-owner, double, after response) and request cycles.

use std::time::Duration;

use wasm_core::{ComponentError, RequestError};
use wasm_system::SystemEvent;
use wasm_tests::{Harness, PATIENT, REQUESTER, cmd_cancel, code_of, raw, spin};

/// Iterations that keep `slow` busy far longer than a few host round trips.
const LONG_SPIN: u32 = 300_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_response_reaches_the_callback_with_the_payload() {
    let mut h = Harness::start(&[("requester", "requester", REQUESTER), ("echo", "echo", "")]).await;
    let id = h.request_via("requester", 10_000, "echo", &raw(b"ping")).await;
    assert_eq!(h.callback("requester", id).await, Ok(raw(b"ping")));
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.completed, 2, "the command and the guest's request");
    assert_eq!(stats.requests.orphaned, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_handler_error_becomes_handler_error() {
    let mut h = Harness::start(&[("requester", "requester", REQUESTER), ("rejecter", "rejecting", "")]).await;
    let id = h.request_via("requester", 10_000, "rejecter", &raw(b"please")).await;
    assert_eq!(
        h.callback("requester", id).await,
        Err(RequestError::HandlerError(ComponentError { code: 42, message: "rejected".into() }))
    );
    h.settle().await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_timeout_delivers_timeout_and_the_late_response_is_orphaned() {
    let mut h = Harness::start(&[("requester", "requester", REQUESTER), ("slow", "slow", PATIENT)]).await;
    let id = h.request_via("requester", 5, "slow", &spin(50_000_000)).await;
    assert_eq!(h.callback("requester", id).await, Err(RequestError::Timeout));
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.timed_out, 1);
    assert_eq!(stats.requests.orphaned, 1, "slow's response came after the timeout and was dropped");
    assert_eq!(stats.requests.pending, 0, "no expired entry stays in the tracker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cancel_delivers_cancelled() {
    let mut h = Harness::start(&[("requester", "requester", REQUESTER), ("slow", "slow", PATIENT)]).await;
    let id = h.request_via("requester", 60_000, "slow", &spin(LONG_SPIN)).await;
    assert_eq!(h.command("requester", cmd_cancel(&id)).await, Ok(raw(b"")));
    assert_eq!(h.callback("requester", id).await, Err(RequestError::Cancelled));
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.cancelled, 1);
    assert_eq!(stats.requests.orphaned, 1, "the response to a cancelled request is dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cancel_after_response_is_request_not_found() {
    let mut h = Harness::start(&[("requester", "requester", REQUESTER), ("echo", "echo", "")]).await;
    let id = h.request_via("requester", 10_000, "echo", &raw(b"x")).await;
    assert_eq!(h.callback("requester", id).await, Ok(raw(b"x")));
    let refused = h.command("requester", cmd_cancel(&id)).await.expect_err("already completed");
    assert_eq!(refused.code, code_of(6), "request-not-found: {refused:?}");
    h.settle().await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cancel_by_non_owner_is_not_owner_and_the_request_completes() {
    let mut h = Harness::start(&[
        ("owner", "requester", REQUESTER),
        ("intruder", "requester", REQUESTER),
        ("slow", "slow", PATIENT),
    ])
    .await;
    let id = h.request_via("owner", 60_000, "slow", &spin(LONG_SPIN / 3)).await;
    let refused = h.command("intruder", cmd_cancel(&id)).await.expect_err("not the owner");
    assert_eq!(refused.code, code_of(7), "not-owner: {refused:?}");
    assert_eq!(h.callback("owner", id).await, Ok(spin(LONG_SPIN / 3)), "the request stayed pending and completed");
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.cancelled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_double_cancel_is_request_not_found() {
    let mut h = Harness::start(&[("requester", "requester", REQUESTER), ("slow", "slow", PATIENT)]).await;
    let id = h.request_via("requester", 60_000, "slow", &spin(LONG_SPIN)).await;
    assert_eq!(h.command("requester", cmd_cancel(&id)).await, Ok(raw(b"")));
    let again = h.command("requester", cmd_cancel(&id)).await.expect_err("already cancelled");
    assert_eq!(again.code, code_of(6), "request-not-found: {again:?}");
    assert_eq!(h.callback("requester", id).await, Err(RequestError::Cancelled), "exactly one callback");
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.cancelled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cycle_between_two_components_completes_without_deadlock() {
    // a asks b; b handles it by asking a; a answers b while its own request
    // to b is still pending. Handlers never block, so the cycle completes.
    let mut h = Harness::start(&[
        ("a", "requester", "[capabilities]\nsend = [\"b\"]\nrequest = true"),
        ("b", "forwarding", "[capabilities]\nsend = [\"a\"]\nrequest = true"),
    ])
    .await;
    let mut to_b = vec![1, b'a'];
    to_b.extend_from_slice(&raw(b"ping"));
    let id = h.request_via("a", 10_000, "b", &raw(&to_b)).await;
    let a_got = h.callback("a", id).await.expect("b answered a");
    assert!(a_got.starts_with(&raw(b"forwarded")), "{a_got:?}");
    let b_id = wasm_core::CorrelationId::parse(std::str::from_utf8(&a_got[10..]).expect("id")).expect("b's request id");
    assert_eq!(h.callback("b", b_id).await, Ok(raw(b"ping")), "a answered b");
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.completed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_chain_across_components_is_one_trace() {
    // host -> requester (command) -> echo (request) -> requester (callback):
    // one W3C trace id throughout, each span the child of the one that sent
    // the message it handles.
    let mut h = Harness::start(&[("requester", "requester", REQUESTER), ("echo", "echo", "")]).await;
    let id = h.request_via("requester", 10_000, "echo", &raw(b"traced")).await;
    let handled_by = |who: &'static str| {
        move |e: &SystemEvent| match e {
            SystemEvent::Handled { component, trace, parent, .. } if component.as_str() == who => {
                Some((*trace, *parent))
            }
            _ => None,
        }
    };
    let (command, _) = h.wait_for("the command at requester", handled_by("requester")).await;
    let (at_echo, echo_parent) = h.wait_for("the request at echo", handled_by("echo")).await;
    let (callback, callback_parent) = h
        .wait_for("the callback", |e| match e {
            SystemEvent::Callback { request_id, trace, parent, .. } if *request_id == id => Some((*trace, *parent)),
            _ => None,
        })
        .await;
    assert_eq!(at_echo.trace_id, command.trace_id, "the request continues the command's trace");
    assert_eq!(echo_parent.span_id, command.span_id, "echo's span is the child of the requester's");
    assert_ne!(at_echo.span_id, command.span_id);
    assert_eq!(callback.trace_id, command.trace_id, "the callback is in the same trace");
    assert_eq!(callback_parent.span_id, at_echo.span_id, "the callback's parent is echo's span");
    assert!(wasm_core::TraceContext::parse(&callback.traceparent()).is_some(), "{}", callback.traceparent());
    h.settle().await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_timeout_stays_in_the_requesters_trace() {
    // host -> requester (command) -> sleepy (request, 100 ms) -> timeout:
    // the host makes the outcome, and its callback is the child of the span
    // that sent the request, in the same trace.
    let mut h =
        Harness::start(&[("requester", "requester", REQUESTER), ("sleepy", "rust:guest-behaviour", PATIENT)]).await;
    let id = h.request_via("requester", 100, "sleepy", &raw(b"sleep:2000")).await;
    let command = h
        .wait_for("the command at requester", |e| match e {
            SystemEvent::Handled { component, trace, .. } if component.as_str() == "requester" => Some(*trace),
            _ => None,
        })
        .await;
    let (outcome, callback, parent) = h
        .wait_for("the timeout callback", |e| match e {
            SystemEvent::Callback { request_id, outcome, trace, parent, .. } if *request_id == id => {
                Some((outcome.clone(), *trace, *parent))
            }
            _ => None,
        })
        .await;
    assert_eq!(outcome, Err(RequestError::Timeout));
    assert_eq!(parent, command, "the timeout's parent is the span that sent the request");
    assert_eq!(callback.trace_id, command.trace_id, "the callback stays in the requester's trace");
    assert_ne!(callback.span_id, command.span_id);
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.timed_out, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_dropping_a_host_request_future_cancels_the_request() {
    let h = Harness::start(&[("slow", "slow", "[limits]\nfuel_per_call = 100000000000")]).await;
    // The first request keeps `slow` busy; the second waits behind it and is
    // dropped, unanswered, while still pending.
    let busy = h.system.request("slow", spin(LONG_SPIN), Some(Duration::from_secs(60))).expect("queued");
    let dropped = h.system.request("slow", raw(b"never read"), Some(Duration::from_secs(60))).expect("queued");
    let id = dropped.id();
    drop(dropped);
    assert_eq!(
        h.system.cancel(&id),
        Err(wasm_core::MessagingError::RequestNotFound(id.as_str().to_owned())),
        "the drop already cancelled it"
    );
    // One that completes is not cancelled by its drop afterwards.
    assert!(busy.response().await.is_ok());
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!((stats.requests.cancelled, stats.requests.completed), (1, 1), "{stats:#?}");
    assert_eq!(stats.requests.orphaned, 1, "slow still answered the dropped request, to no one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_host_timeout_is_an_option_of_duration_rounded_up_to_whole_ms() {
    let h = Harness::start(&[("slow", "slow", "[limits]\nfuel_per_call = 100000000000")]).await;
    // 1 µs rounds up to 1 ms (0 would mean "the default", 5 s).
    let short = h.system.request("slow", spin(LONG_SPIN), Some(Duration::from_micros(1))).expect("queued");
    assert_eq!(short.response().await, Err(RequestError::Timeout));
    // Above the 300 s maximum: refused at once.
    let refused = h.system.request("slow", raw(b"x"), Some(Duration::from_secs(301)));
    let refused = refused.expect_err("over the maximum");
    assert!(matches!(refused.error(), wasm_core::MessagingError::InvalidMessage(_)), "{refused}");
    assert_eq!(refused.into_inner(), raw(b"x"), "the refused payload is handed back");
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.requests.timed_out, 1);
}
