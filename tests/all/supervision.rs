//! Crashes: traps and exhausted budgets fail only the call, the instance is
//! replaced, the mailbox survives; past the restart intensity the component
//! stops and what was queued for it fails with `delivery-failed`.

use std::time::Duration;

use wasm_core::{MessagingError, RequestError};
use wasm_system::SystemEvent;
use wasm_tests::{Harness, REQUESTER, raw, spin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_trap_mid_request_gives_target_failed_and_a_new_instance_handles_the_next() {
    let mut h = Harness::start(&[("requester", "requester", REQUESTER), ("trapping", "trapping", "")]).await;
    let id = h.request_via("requester", 10_000, "trapping", &raw(b"!boom")).await;
    match h.callback("requester", id).await {
        Err(RequestError::TargetFailed(reason)) => assert!(reason.contains("trap"), "{reason}"),
        other => panic!("expected target-failed, got {other:?}"),
    }
    assert_eq!(h.ask("trapping", raw(b"after")).await, Ok(raw(b"after")), "the re-instantiated instance answers");
    let letter = h
        .wait_for("the dead letter", |e| match e {
            SystemEvent::DeadLettered(letter) => Some(letter.clone()),
            _ => None,
        })
        .await;
    assert_eq!((letter.target.as_str(), letter.kind, letter.correlation_id), ("trapping", "request", Some(id)));
    h.wait_for("the restart", |e| matches!(e, SystemEvent::Restarted { .. }).then_some(())).await;
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.dead_lettered, 1);
    assert_eq!(stats.requests.failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_mailbox_survives_a_crash() {
    let mut h = Harness::start(&[("trapping", "trapping", "[restart]\nbackoff_ms = 20")]).await;
    h.system.try_send("trapping", raw(b"!")).expect("queued");
    for n in 0u8..5 {
        h.system.try_send("trapping", raw(&[b'm', n])).expect("queued behind the trap");
    }
    h.settle().await;
    let handled: Vec<Vec<u8>> = h
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            SystemEvent::Handled { payload, .. } => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(handled, (0u8..5).map(|n| raw(&[b'm', n])).collect::<Vec<_>>(), "nothing queued was lost");
    let stats = h.finish().await;
    assert_eq!((stats.dead_lettered, stats.handled), (1, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_exhausted_fuel_and_time_fail_only_that_call() {
    let mut h = Harness::start(&[
        ("requester", "requester", REQUESTER),
        ("fuel", "slow", "[limits]\nfuel_per_call = 1000000"),
        ("clock", "slow", "[limits]\nfuel_per_call = 1000000000000\ntime_per_call_ms = 50"),
    ])
    .await;
    for target in ["fuel", "clock"] {
        let id = h.request_via("requester", 60_000, target, &spin(u32::MAX)).await;
        match h.callback("requester", id).await {
            Err(RequestError::TargetFailed(reason)) => {
                let expected = if target == "fuel" { "fuel" } else { "time budget" };
                assert!(reason.contains(expected), "{target}: {reason}");
            }
            other => panic!("{target}: expected target-failed, got {other:?}"),
        }
        assert_eq!(h.ask(target, spin(10)).await, Ok(spin(10)), "{target} serves the next call");
    }
    h.settle().await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_past_the_restart_intensity_the_component_stops_and_queued_requests_fail() {
    // The first call loops until its 200 ms budget kills it, so the second
    // request is queued behind it when the component crashes and stops.
    let mut h = Harness::start(&[(
        "spinner",
        "slow",
        "[limits]\nfuel_per_call = 1000000000000\ntime_per_call_ms = 200\n[restart]\nmax_restarts = 0\nwithin_ms = 60000",
    )])
    .await;
    let first = h.system.request("spinner", spin(u32::MAX), Some(Duration::from_secs(60))).expect("queued");
    let queued = h.system.request("spinner", spin(1), Some(Duration::from_secs(60))).expect("queued behind");
    assert!(matches!(first.response().await, Err(RequestError::TargetFailed(_))));
    match queued.response().await {
        Err(RequestError::DeliveryFailed(reason)) => assert!(reason.contains("stopped"), "{reason}"),
        other => panic!("expected delivery-failed, got {other:?}"),
    }
    h.wait_for("the stop", |e| matches!(e, SystemEvent::Stopped { .. }).then_some(())).await;
    assert_eq!(
        h.system.try_send("spinner", raw(b"y")).map_err(MessagingError::from),
        Err(MessagingError::TargetNotFound("spinner".into()))
    );
    assert!(h.system.components().is_empty());
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!((stats.requests.failed, stats.dead_lettered), (2, 2));
}
