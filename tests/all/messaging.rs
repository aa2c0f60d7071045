//! Fire-and-forget delivery, ordering, unknown targets, backpressure.

use std::time::Duration;

use wasm_core::MessagingError;
use wasm_system::SystemEvent;
use wasm_tests::{Harness, PATIENT, cmd_send, code_of, raw, spin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_fire_and_forget_is_delivered_and_its_return_ignored() {
    let mut h = Harness::start(&[
        ("requester", "requester", "[capabilities]\nsend = [\"rejecter\"]"),
        ("rejecter", "rejecting", ""),
    ])
    .await;
    // The requester sends one message; the target's handler returns err, which
    // nobody sees: no callback, no dead letter.
    let sent = h.command("requester", cmd_send(1, "rejecter", &raw(b"hi"))).await;
    assert_eq!(sent, Ok(raw(&1u32.to_le_bytes())));
    let (sender, payload, result) = h
        .wait_for("the message at rejecter", |e| match e {
            SystemEvent::Handled { component, sender, request_id: None, payload, result, .. }
                if component.as_str() == "rejecter" =>
            {
                Some((sender.clone(), payload.clone(), result.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(sender.as_str(), "requester", "the host sets the sender from the calling instance");
    assert_eq!(payload, raw(b"hi"));
    assert!(result.is_err(), "the handler's err return is simply ignored");
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(
        stats.callbacks_queued, 0,
        "a message gets no callback (the host's command went straight to its future)"
    );
    assert_eq!(stats.requests.completed, 1, "the host's command request");
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(stats.messages_accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_preserves_per_pair_fifo_order_over_10000_messages() {
    const COUNT: u32 = 10_000;
    let mut h = Harness::start(&[
        ("requester", "requester", "[capabilities]\nsend = [\"sink\"]"),
        ("sink", "echo", "[mailbox]\ncapacity = 16384"),
    ])
    .await;
    let sent = h.command("requester", cmd_send(COUNT, "sink", &raw(&[0, 0, 0, 0, 7]))).await;
    assert_eq!(sent, Ok(raw(&COUNT.to_le_bytes())));
    for expected in 0..COUNT {
        let seq = h
            .wait_for("the next message at sink", |e| match e {
                SystemEvent::Handled { component, payload, .. } if component.as_str() == "sink" => {
                    Some(u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]))
                }
                _ => None,
            })
            .await;
        assert_eq!(seq, expected, "messages from one sender are handled in the order sent");
    }
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.messages_accepted, u64::from(COUNT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_unknown_target_is_refused_with_target_not_found() {
    let h = Harness::start(&[("requester", "requester", "[capabilities]\nsend = [\"*\"]")]).await;
    let refused = h.command("requester", cmd_send(1, "nobody", &raw(b"x"))).await;
    let error = refused.expect_err("refused");
    assert_eq!(error.code, code_of(0), "target-not-found: {error:?}");
    assert!(error.message.contains("nobody"), "{error:?}");
    let refused = h.system.try_send("nobody", raw(b"x")).expect_err("no such target");
    assert_eq!(refused.error(), &MessagingError::TargetNotFound("nobody".into()));
    assert_eq!(refused.into_inner(), raw(b"x"), "the refused payload is handed back");
    // Text that is no id at all is refused as such, not as not found.
    let refused = h.command("requester", cmd_send(1, "No-body", &raw(b"x"))).await.expect_err("refused");
    assert_eq!(refused.code, code_of(4), "invalid-message: {refused:?}");
    assert!(refused.message.contains("invalid target id"), "{refused:?}");
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!((stats.refused[0], stats.refused[4]), (2, 1));
    assert_eq!(stats.messages_accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_full_mailbox_refuses_with_queue_full_and_loses_nothing() {
    let mut h = Harness::start(&[
        ("requester", "requester", "[capabilities]\nsend = [\"slow\"]"),
        ("slow", "slow", &format!("[mailbox]\ncapacity = 2\n{PATIENT}")),
    ])
    .await;
    // Keep `slow` busy on a long spin, then have the requester send 10 more:
    // at most 3 fit (2 queued, plus the spin if not yet taken), the rest are
    // refused at once with queue-full, and the requester is never blocked.
    h.system.try_send("slow", spin(300_000_000)).expect("first message fits");
    let refused = h.command("requester", cmd_send(10, "slow", &raw(b"abcd"))).await.expect_err("mailbox fills");
    assert_eq!(refused.code, code_of(3), "queue-full: {refused:?}");
    let accepted: u64 = refused.message.split(':').next().and_then(|n| n.parse().ok()).expect("success count");
    assert!((1..=2).contains(&accepted), "accepted {accepted} of 10 into a mailbox of 2");
    assert!(matches!(
        h.system.try_send("slow", raw(b"more")).map_err(MessagingError::from),
        Err(MessagingError::QueueFull) | Ok(())
    ));
    h.settle().await;
    let handled_at_slow = h
        .take_events()
        .iter()
        .filter(|e| matches!(e, SystemEvent::Handled { component, .. } if component.as_str() == "slow"))
        .count();
    let stats = h.finish().await;
    assert_eq!(stats.refused_total(), stats.refused[3], "only queue-full refusals");
    assert_eq!(handled_at_slow as u64, stats.messages_accepted, "every accepted message was handled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_a_component_ref_sends_requests_and_reads_its_counts() {
    let mut h = Harness::start(&[
        ("slow", "slow", "[limits]\nfuel_per_call = 100000000000"),
        ("trapping", "trapping", "[restart]\nmax_restarts = 0"),
    ])
    .await;
    assert_eq!(h.system.component("nobody").map(|_| ()), Err(MessagingError::TargetNotFound("nobody".into())));
    let slow = h.system.component("slow").expect("running");
    assert_eq!(slow.id().as_str(), "slow");
    // One long call keeps `slow` busy; what follows (short payloads, which
    // `slow` echoes at once) waits in its mailbox.
    let busy = slow.request(spin(20_000_000), Some(Duration::from_secs(60))).expect("accepted");
    slow.try_send(raw(b"m")).expect("accepted");
    let queued = slow.request(raw(b"q"), Some(Duration::from_secs(60))).expect("accepted");
    let stats = slow.stats();
    assert!(stats.mailbox_len >= 2 && stats.mailbox_bytes > 0 && !stats.stopped, "{stats:?}");
    assert_eq!(busy.await.map(|_| ()), Ok(()));
    assert_eq!(queued.await, Ok(raw(b"q")), "slow echoes a short payload");
    // A handle outlives its component: then it reads `stopped` and sends are refused.
    let trapping = h.system.component("trapping").expect("running");
    trapping.try_send(raw(b"!")).expect("accepted");
    h.wait_for("the stop", |e| matches!(e, SystemEvent::Stopped { .. }).then_some(())).await;
    assert!(trapping.stats().stopped);
    let refused = trapping.try_send(raw(b"x")).expect_err("stopped");
    assert_eq!(refused.error(), &MessagingError::TargetNotFound("trapping".into()));
    h.settle().await;
    h.finish().await;
}
