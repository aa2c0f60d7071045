//! Batched delivery (`batch-lifecycle`, `inbox`): a component that exports
//! it gets its queued fire-and-forget messages in runs, in order, each
//! settled once; a trap fails only the message it hit and what was not taken
//! yet reaches the restarted instance; requests and callbacks end a batch
//! and keep their place.
//!
//! `tests/fixtures/batching.wat` traps on any message that reaches
//! `handle-message`, so each test here fails if messages are not batched.
//! Messages are queued behind a message that computes for a while (a spin of
//! `BLOCK` iterations, about 0.1 s here) so that batches form whatever the
//! machine's speed; no test asserts a time.

use wasm_system::{ComponentRef, SystemEvent};
use wasm_tests::{Harness, PATIENT, raw};

/// The batching fixture's spin loop: about 100 ms of computing here, far
/// longer than the host takes to queue what follows it.
const BLOCK: u32 = 100_000_000;

/// The most messages one batch hands out (the host's `BATCH_MAX`).
const BATCH_MAX: u32 = 64;

/// A `batching` message spinning `iterations` times.
fn spin(iterations: u32) -> Vec<u8> {
    let mut message = raw(b"s");
    message.extend_from_slice(&iterations.to_le_bytes());
    message
}

/// Message `n` of a numbered run.
fn numbered(n: u8) -> Vec<u8> {
    raw(&[b'm', n])
}

/// Sends a spin of [`BLOCK`] and waits until the actor has taken it: what is
/// sent next queues behind it.
async fn block(h: &Harness) -> ComponentRef {
    let component = h.system.component("batching").expect("running");
    component.try_send(spin(BLOCK)).expect("queued");
    while component.stats().mailbox_len > 0 {
        tokio::task::yield_now().await;
    }
    component
}

/// The fixture's counts, from its `q` request: (batches, messages, largest
/// batch) since its instance started.
async fn counts(h: &Harness) -> (u32, u32, u32) {
    let (batches, messages, largest, _) = all_counts(h).await;
    (batches, messages, largest)
}

/// As [`counts`], and the messages that came with their sender's id (the
/// others came with `none`: the sender of the message before).
async fn all_counts(h: &Harness) -> (u32, u32, u32, u32) {
    let reply = h.ask("batching", raw(b"q")).await.expect("answered");
    let word = |at: usize| u32::from_le_bytes(reply[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(reply.len(), 17, "{reply:?}");
    (word(1), word(5), word(9), word(13))
}

/// The payloads of the fire-and-forget messages `batching` handled, in the
/// order their `Handled` events came.
fn handled_messages(h: &mut Harness) -> Vec<Vec<u8>> {
    h.take_events()
        .into_iter()
        .filter_map(|e| match e {
            SystemEvent::Handled { component, request_id: None, payload, .. } if component.as_str() == "batching" => {
                Some(payload)
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_queued_messages_arrive_in_full_batches_in_order_each_settled_once() {
    let mut h = Harness::start(&[("batching", "batching", PATIENT)]).await;
    let component = block(&h).await;
    for n in 0..100 {
        h.system.try_send("batching", numbered(n)).expect("queued");
    }
    // The request queues behind the 100 messages: it ends the second batch
    // and is answered through handle-message.
    let (batches, messages, largest, named) = all_counts(&h).await;
    assert_eq!(messages, 101, "the spin and the 100 messages, all through handle-messages");
    assert_eq!(largest, BATCH_MAX, "the first batch stopped at the cap");
    assert_eq!(batches, 2, "64 then 37 messages");
    assert_eq!(named, 2, "all from the host: its id went to the guest once a batch, not once a message");
    h.settle().await;
    let expected: Vec<Vec<u8>> = std::iter::once(spin(BLOCK)).chain((0..100).map(numbered)).collect();
    assert_eq!(handled_messages(&mut h), expected, "in the order sent, each once");
    let stats = component.stats();
    assert_eq!((stats.handled, stats.batches, stats.dead_letters_total()), (102, 2, 0), "{stats:?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_a_trap_mid_batch_dead_letters_that_message_only_and_the_rest_reach_the_new_instance() {
    let extra = format!("{PATIENT}\n[restart]\nbackoff_ms = 20");
    let mut h = Harness::start(&[("batching", "batching", &extra)]).await;
    let component = block(&h).await;
    for n in 0..10 {
        let message = if n == 5 { raw(b"!") } else { numbered(n) };
        h.system.try_send("batching", message).expect("queued");
    }
    let letter = h
        .wait_for("the dead letter", |e| match e {
            SystemEvent::DeadLettered(letter) => Some(letter.clone()),
            _ => None,
        })
        .await;
    assert_eq!((letter.target.as_str(), letter.kind), ("batching", "message"));
    assert!(letter.reason.contains("unreachable"), "the trap's reason: {}", letter.reason);
    h.wait_for("the restart", |e| matches!(e, SystemEvent::Restarted { .. }).then_some(())).await;
    h.settle().await;
    let before_and_after: Vec<Vec<u8>> =
        std::iter::once(spin(BLOCK)).chain((0..10).filter(|n| *n != 5).map(numbered)).collect();
    assert_eq!(handled_messages(&mut h), before_and_after, "nothing but the trapping message was lost, in order");
    let (batches, messages, _) = counts(&h).await;
    assert_eq!((batches, messages), (1, 4), "the new instance got the four messages never taken, in one batch");
    let stats = component.stats();
    assert_eq!((stats.crashes, stats.restarts, stats.dead_letters_total()), (1, 1, 1), "{stats:?}");
    let totals = h.finish().await;
    assert_eq!((totals.handled, totals.dead_lettered), (11, 1), "the spin, 9 messages and the q request; the trap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_a_request_between_messages_ends_the_batch_and_keeps_its_place() {
    let h = Harness::start(&[("batching", "batching", PATIENT)]).await;
    block(&h).await;
    for n in 0..5 {
        h.system.try_send("batching", numbered(n)).expect("queued");
    }
    let between = h.system.request("batching", raw(b"q"), None).expect("queued");
    for n in 5..10 {
        h.system.try_send("batching", numbered(n)).expect("queued");
    }
    let reply = between.await.expect("answered");
    let messages = u32::from_le_bytes(reply[5..9].try_into().expect("4 bytes"));
    assert_eq!(messages, 6, "the request saw the spin and the five messages before it, none after");
    h.settle().await;
    assert_eq!(counts(&h).await.1, 11);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_a_message_that_never_ends_meets_its_time_budget_and_the_next_runs() {
    let limits = "[limits]\nfuel_per_call = 1000000000000\ntime_per_call_ms = 200\n[restart]\nbackoff_ms = 20";
    let mut h = Harness::start(&[("batching", "batching", limits)]).await;
    h.system.try_send("batching", raw(b"a")).expect("queued");
    h.system.try_send("batching", spin(u32::MAX)).expect("queued");
    h.system.try_send("batching", raw(b"b")).expect("queued");
    let letter = h
        .wait_for("the dead letter", |e| match e {
            SystemEvent::DeadLettered(letter) => Some(letter.clone()),
            _ => None,
        })
        .await;
    assert!(letter.reason.contains("time budget"), "{}", letter.reason);
    h.settle().await;
    assert_eq!(handled_messages(&mut h), [raw(b"a"), raw(b"b")]);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_a_guest_that_never_takes_gets_each_message_through_handle_message() {
    // batching.wat with a handle-messages that counts the call and returns
    // without taking anything.
    let text = std::fs::read_to_string(wasm_tests::fixture("batching")).expect("batching.wat");
    let count = "(global.set $batches (i32.add (global.get $batches) (i32.const 1)))";
    assert_eq!(text.matches(count).count(), 1, "the fixture counts each call once");
    let idle = text.replace(count, &format!("{count} (return)"));
    let component = wasm_runtime::componentize_wat("idle-batching.wat", &idle).expect("componentizes");
    let compiled = wasm_tests::engine().load("idle-batching", &component).expect("loads");
    let builder = wasm_system::System::builder()
        .engine(wasm_tests::engine())
        .compiled(wasm_tests::manifest("batching", "batching", ""), compiled);
    let h = Harness::from_builder(builder).await;
    // `q` as a plain message: handle-message answers it (the answer is
    // dropped), where any other message would trap.
    for _ in 0..3 {
        h.system.try_send("batching", raw(b"q")).expect("queued");
    }
    h.settle().await;
    let (calls, messages, _) = counts(&h).await;
    assert_eq!(messages, 0, "nothing was taken");
    assert_eq!(calls, 3, "handle-messages was offered each message once, first");
    // The answer comes back before the actor counts the request handled.
    h.settle().await;
    let stats = h.system.component("batching").expect("running").stats();
    assert_eq!((stats.handled, stats.batches, stats.dead_letters_total()), (4, 0, 0), "{stats:?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_each_message_of_a_batch_has_the_whole_time_budget() {
    // Thirteen messages of about 100 ms of computing each, in one batch:
    // about 1.3 s in one call, over the 1,000 ms a call may take, but each
    // message well inside it.
    let limits = "[limits]\nfuel_per_call = 1000000000000\ntime_per_call_ms = 1000";
    let h = Harness::start(&[("batching", "batching", limits)]).await;
    let component = block(&h).await;
    for _ in 0..12 {
        h.system.try_send("batching", spin(BLOCK)).expect("queued");
    }
    h.settle().await;
    let stats = component.stats();
    assert_eq!((stats.handled, stats.batches), (13, 1), "one batch of 13: {stats:?}");
    assert_eq!((stats.crashes, stats.dead_letters_total()), (0, 0), "no message ran out of time: {stats:?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_a_shutdown_mid_batch_settles_the_message_in_hand_and_what_was_queued() {
    let h = Harness::start(&[("batching", "batching", PATIENT)]).await;
    let component = h.system.component("batching").expect("running");
    component.try_send(raw(b"a")).expect("queued");
    component.try_send(spin(u32::MAX)).expect("queued");
    for n in 0..5 {
        component.try_send(numbered(n)).expect("queued");
    }
    // `a` handled; the batch is stuck in the endless spin with five queued.
    while component.stats().handled < 1 || component.stats().mailbox_len > 5 {
        tokio::task::yield_now().await;
    }
    let report = h.system.shutdown(std::time::Duration::from_millis(200)).await;
    assert!(!report.drained, "the spin never ends");
    assert!(report.stats.balanced(), "{:#?}", report.stats);
    let (_, stats) = report.components.iter().find(|(id, _)| id.as_str() == "batching").expect("its counts");
    let failed = stats.dead_letters[wasm_messaging::DeadLetterCause::TargetFailed.index()];
    let undelivered = stats.dead_letters[wasm_messaging::DeadLetterCause::Undelivered.index()];
    assert_eq!(
        (stats.handled, failed, undelivered),
        (1, 1, 5),
        "the spin interrupted, the rest never taken: {stats:?}"
    );
}
