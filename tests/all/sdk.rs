//! The guest SDK (`wasm-guest`) end to end: `tests/guests/typed` is written
//! only against the SDK, and runs as `client` and `shop` in a running system.
//! Each test drives the client with raw commands and reads what its callbacks
//! saw from its `report` (see the guest's crate docs).

use serde_json::Value;
use wasm_core::{Codec, MessagePayload, RequestError};
use wasm_system::Payload;
use wasm_system::SystemEvent;
use wasm_tests::{Harness, raw};

/// The SDK test guest.
const GUEST: &str = "rust:guest-typed";

/// The client may request from the shop.
const CLIENT: &str = "[capabilities]\nsend = [\"shop\"]\nrequest = true";

async fn shop_and_client(shop_extra: &str) -> Harness {
    Harness::start(&[("shop", GUEST, shop_extra), ("client", GUEST, CLIENT)]).await
}

/// Sends a raw command to the client and returns its raw answer as text.
async fn command(h: &Harness, text: &str) -> String {
    let answer = h.ask("client", raw(text.as_bytes())).await.unwrap_or_else(|e| panic!("{text}: {e:?}"));
    String::from_utf8(answer[1..].to_vec()).expect("text")
}

/// Waits until the client has settled `callbacks` callbacks, then returns its
/// report (a json object: `callbacks`, `pending`, `received`).
async fn report_after(h: &mut Harness, callbacks: usize) -> Value {
    for _ in 0..callbacks {
        h.wait_for("a client callback", |e| {
            matches!(e, SystemEvent::Callback { component, .. } if component.as_str() == "client").then_some(())
        })
        .await;
    }
    report(h, "client").await
}

async fn report(h: &Harness, component: &str) -> Value {
    let answer = h.ask(component, raw(b"report")).await.expect("report");
    let payload = MessagePayload::new(answer, usize::MAX).map_err(|(e, _)| e).expect("a valid payload");
    assert_eq!(payload.codec(), Codec::Json, "the SDK's Payload::json writes the json prefix");
    serde_json::from_slice(payload.body()).expect("json")
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().expect("an array").iter().map(|v| v.as_str().expect("a string").to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_typed_request_response_and_callback_in_every_serde_codec() {
    let mut h = shop_and_client("").await;
    for (codec, sku) in [("json", "apple"), ("cbor", "pear"), ("messagepack", "plum")] {
        let id = command(&h, &format!("order:{codec}:{sku}:4")).await;
        assert!(wasm_core::CorrelationId::parse(&id).is_ok(), "request returns the correlation id: {id}");
    }
    let seen = report_after(&mut h, 3).await;
    let mut callbacks = strings(&seen["callbacks"]);
    callbacks.sort();
    // The shop decoded each order in the codec it came in and answered in the
    // same codec; the client decoded each receipt with `decode_as` that codec
    // and found its codec again in the per-request state.
    assert_eq!(callbacks, ["ok cbor pear x4 = 500", "ok json apple x4 = 500", "ok messagepack plum x4 = 500"]);
    assert_eq!(seen["pending"], 0, "every callback cleared its request's state");
    let mut received = strings(&report(&h, "shop").await["received"]);
    received.sort();
    assert_eq!(received, ["client cbor pear x4", "client json apple x4", "client messagepack plum x4"]);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_typed_fire_and_forget_in_every_serde_codec() {
    let h = shop_and_client("").await;
    for codec in ["json", "cbor", "messagepack"] {
        assert_eq!(command(&h, &format!("send:{codec}:fig:2")).await, "sent");
    }
    h.settle().await;
    let mut received = strings(&report(&h, "shop").await["received"]);
    received.sort();
    assert_eq!(received, ["client cbor fig x2", "client json fig x2", "client messagepack fig x2"]);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_a_body_that_does_not_decode_is_a_handler_error_naming_codec_and_type() {
    let mut h = shop_and_client("").await;
    for codec in ["json", "cbor", "messagepack"] {
        command(&h, &format!("bad:{codec}")).await;
    }
    let seen = report_after(&mut h, 3).await;
    let callbacks = strings(&seen["callbacks"]);
    assert_eq!(callbacks.len(), 3, "{callbacks:?}");
    for codec in ["json (0x200)", "cbor (0x51)", "messagepack (0x201)"] {
        let line = callbacks.iter().find(|l| l.contains(codec)).unwrap_or_else(|| panic!("{codec}: {callbacks:?}"));
        assert!(line.starts_with("err bad-"), "{line}");
        assert!(line.contains("component error 400:"), "the SDK's code for a decode error: {line}");
        assert!(line.contains("body does not decode as guest_typed::Order"), "names the type: {line}");
    }
    assert_eq!(seen["pending"], 0);
    // The host's own request sees the same error, typed.
    match h.ask("shop", wasm_core::MessagePayload::encode(Codec::Json, b"[1,2]").into_bytes()).await {
        Err(RequestError::HandlerError(e)) => {
            assert_eq!(e.code, 400);
            assert!(e.message.starts_with("json (0x200) body does not decode as guest_typed::Order: "), "{e:?}");
        }
        other => panic!("expected a handler error, got {other:?}"),
    }
    // A raw payload that is not a command is refused by the SDK, not by a panic.
    match h.ask("shop", raw(&[0xff, 0xfe])).await {
        Err(RequestError::HandlerError(e)) => assert!(e.message.contains("not decode as str"), "{e:?}"),
        other => panic!("expected a handler error, got {other:?}"),
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_per_request_state_is_cleared_by_timeouts_and_cancellations_too() {
    let mut h = shop_and_client("[limits]\ntime_per_call_ms = 5000").await;
    command(&h, "slow:50").await;
    command(&h, "cancel").await;
    command(&h, "order:json:kiwi:1").await;
    let seen = report_after(&mut h, 3).await;
    let mut callbacks = strings(&seen["callbacks"]);
    callbacks.sort();
    assert_eq!(callbacks, ["err cancel cancelled", "err slow timeout", "ok json kiwi x1 = 125"]);
    assert_eq!(seen["pending"], 0, "a timeout and a cancellation clear their state as a response does");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_components_take_queued_messages_in_batches_in_order_with_each_outcome() {
    #[derive(serde::Serialize)]
    struct Order {
        sku: String,
        qty: u32,
    }
    let h = shop_and_client("[limits]\ntime_per_call_ms = 60000").await;
    // The shop sleeps 1 s in its first message; the 200 orders queue
    // behind it and are handed over in batches.
    let shop = h.system.component("shop").expect("running");
    shop.try_send(raw(b"sleep:1000")).expect("queued");
    while shop.stats().mailbox_len > 0 {
        tokio::task::yield_now().await;
    }
    // From two senders, in runs of one to three: a message from the sender
    // of the one before reaches the guest without the sender's id, and the
    // SDK must hand the one it kept to the handler.
    let from_client = |n: usize| n % 7 == 2 || n % 7 == 3 || n % 11 == 5;
    // Not an order, from the host: the SDK reports the handler's error for
    // this message alone.
    const BAD: usize = 102;
    for n in 0..200 {
        if from_client(n) {
            assert_eq!(command(&h, &format!("send:json:o{n}:1")).await, "sent");
            continue;
        }
        let order = if n == BAD {
            Payload::json(&"not an order")
        } else {
            Payload::json(&Order { sku: format!("o{n}"), qty: 1 })
        };
        shop.try_send(order.expect("encodes")).expect("queued");
    }
    h.settle().await;
    let stats = shop.stats();
    assert_eq!((stats.handled, stats.handler_errors), (201, 1), "{stats:?}");
    assert!(
        (1..10).contains(&stats.batches),
        "201 messages in {} calls of handle-messages, not one call each",
        stats.batches
    );
    let received = strings(&report(&h, "shop").await["received"]);
    let expected: Vec<String> = (0..200)
        .filter(|n| *n != BAD)
        .map(|n| format!("{} json o{n} x1", if from_client(n) { "client" } else { "host" }))
        .collect();
    assert_eq!(received, expected, "in the order sent, each with its own sender");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_a_panic_mid_batch_fails_only_that_message_and_the_rest_reach_the_new_instance() {
    #[derive(serde::Serialize)]
    struct Order {
        sku: String,
        qty: u32,
    }
    let mut h = shop_and_client("[limits]\ntime_per_call_ms = 60000\n[restart]\nbackoff_ms = 20").await;
    let shop = h.system.component("shop").expect("running");
    shop.try_send(raw(b"sleep:300")).expect("queued");
    while shop.stats().mailbox_len > 0 {
        tokio::task::yield_now().await;
    }
    // Queued behind the sleep, so all ten are in the sleep's batch.
    for n in 0..10 {
        let message = if n == 5 {
            raw(b"panic:order five")
        } else {
            Payload::json(&Order { sku: format!("o{n}"), qty: 1 }).expect("encodes").into_bytes()
        };
        shop.try_send(message).expect("queued");
    }
    let letter = h
        .wait_for("the dead letter", |e| match e {
            SystemEvent::DeadLettered(letter) => Some(letter.clone()),
            _ => None,
        })
        .await;
    assert!(letter.reason.contains("unreachable"), "a Rust panic traps: {}", letter.reason);
    h.settle().await;
    let stats = shop.stats();
    assert_eq!((stats.handled, stats.dead_letters_total(), stats.crashes), (10, 1, 1), "{stats:?}");
    // The restarted instance starts with fresh state: what it received is
    // exactly the four orders the panic left untaken.
    let received = strings(&report(&h, "shop").await["received"]);
    assert_eq!(received, ["host json o6 x1", "host json o7 x1", "host json o8 x1", "host json o9 x1"]);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_the_host_speaks_the_same_typed_payloads_as_the_guests() {
    use wasm_system::Message;

    #[derive(serde::Serialize)]
    struct Order<'a> {
        sku: &'a str,
        qty: u32,
    }
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Receipt {
        sku: String,
        qty: u32,
        total_cents: u64,
    }
    let h = shop_and_client("").await;
    for order in [Payload::cbor(&Order { sku: "fig", qty: 2 }), Payload::messagepack(&Order { sku: "fig", qty: 2 })] {
        let order = order.expect("encodes");
        let codec = order.codec();
        let reply = h.system.request("shop", order, None).expect("accepted").await.expect("answered");
        let reply = Message::from_bytes(reply).expect("a valid prefix");
        assert_eq!(reply.codec(), codec, "the SDK guest answers in the codec it was asked in");
        assert_eq!(reply.decode::<Receipt>(), Ok(Receipt { sku: "fig".into(), qty: 2, total_cents: 250 }));
    }
    h.finish().await;
}
