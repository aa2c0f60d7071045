//! The NATS transport against a real `nats-server` on loopback: two (or
//! three) hosts, each a `NatsTransport` with a recording inbound.

mod auth;
mod broker;
mod creds;
mod flow;
mod inbound;

use std::time::Duration;

use async_nats::HeaderMap;
use wasm_cluster::{ClusterConfig, NatsTransport};
use wasm_core::{
    Codec, ComponentError, ComponentId, CorrelationId, LocalComponent, MessagePayload, MessagingError, RemoteEnvelope,
    RemoteKind, RemoteOutcome, RemoteTransport, RequestError, SendError, TraceContext,
};

use crate::broker::Broker;
use crate::inbound::{Host, Inbound, wait_until};

/// A heartbeat so long that only announcements, hellos and goodbyes can
/// explain what a test sees, never a heartbeat or an expiry.
const SLOW: Duration = Duration::from_secs(600);

fn id(text: &str) -> ComponentId {
    ComponentId::parse(text).expect("a valid id")
}

fn envelope(kind: RemoteKind, body: &[u8]) -> RemoteEnvelope {
    RemoteEnvelope {
        sender: id("pinger@a"),
        target: id("echo@b"),
        kind,
        payload: MessagePayload::encode(Codec::Json, body).into_bytes(),
        trace: TraceContext::new_root(),
    }
}

fn echo_json() -> Vec<LocalComponent> {
    vec![LocalComponent { name: "echo".into(), accepts: vec![Codec::Json] }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_announcements_reach_the_others_and_shutdown_withdraws_them() {
    let broker = Broker::start();
    let a = Host::start(&broker.url(), "a", SLOW).await;
    let b = Host::start(&broker.url(), "b", SLOW).await;
    b.transport.announce(echo_json());
    let a_sees = |target: &str, codec| a.transport.accepts(&id(target), codec);
    wait_until("a learns echo@b", || a_sees("echo@b", Codec::Json) == Some(true)).await;
    assert_eq!(a_sees("echo@b", Codec::Cbor), Some(false));
    assert_eq!(a_sees("nope@b", Codec::Json), None);
    assert_eq!(a_sees("echo@z", Codec::Json), None);
    assert_eq!(a.transport.stats().directory_nodes, 1);
    // Its own node answers from its own list.
    assert_eq!(b.transport.accepts(&id("echo@b"), Codec::Cbor), Some(false));

    // A host that starts later asks (hello) and hears b at once.
    let c = Host::start(&broker.url(), "c", SLOW).await;
    wait_until("c learns echo@b from its hello", || c.transport.accepts(&id("echo@b"), Codec::Json) == Some(true))
        .await;

    b.transport.shutdown().await.expect("shutdown");
    wait_until("a forgets b", || a_sees("echo@b", Codec::Json).is_none()).await;
    wait_until("c forgets b", || c.transport.accepts(&id("echo@b"), Codec::Json).is_none()).await;
    assert_eq!(a.transport.stats().directory_nodes, 0);
    assert_eq!(a.transport.stats().dropped_malformed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_forgets_a_host_that_dies_without_a_goodbye() {
    let broker = Broker::start();
    let heartbeat = Duration::from_millis(100);
    let a = Host::start(&broker.url(), "a", heartbeat).await;
    let b = Host::start(&broker.url(), "b", heartbeat).await;
    b.transport.announce(echo_json());
    wait_until("a learns echo@b", || a.transport.accepts(&id("echo@b"), Codec::Json) == Some(true)).await;

    drop(b); // aborts b's tasks: no goodbye, no heartbeat
    wait_until("b's entry expires", || a.transport.accepts(&id("echo@b"), Codec::Json).is_none()).await;
    assert_eq!(a.transport.stats().directory_nodes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_message_and_request_arrive_with_every_field() {
    let broker = Broker::start();
    let a = Host::start(&broker.url(), "a", SLOW).await;
    let mut b = Host::start(&broker.url(), "b", SLOW).await;

    let message = envelope(RemoteKind::Message, br#"{"n":1}"#);
    let request = envelope(RemoteKind::Request { id: CorrelationId::generate(), timeout_ms: 2_500 }, br#"{"n":2}"#);
    a.transport.send(message.clone()).expect("send message");
    a.transport.send(request.clone()).expect("send request");
    assert_eq!(b.next().await, Inbound::Delivered(message));
    assert_eq!(b.next().await, Inbound::Delivered(request));

    // A name and node with dots route too (the header decides).
    let mut dotted = envelope(RemoteKind::Message, b"{}");
    dotted.target = id(".echo..v2@b");
    a.transport.send(dotted.clone()).expect("send");
    assert_eq!(b.next().await, Inbound::Delivered(dotted));

    wait_until("a counts 3 sent", || a.transport.stats().sent == 3).await;
    assert_eq!(b.transport.stats().received, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_of_every_kind_arrives_with_every_field() {
    let broker = Broker::start();
    let mut a = Host::start(&broker.url(), "a", SLOW).await;
    let b = Host::start(&broker.url(), "b", SLOW).await;
    let outcomes = [
        Ok(MessagePayload::encode(Codec::Raw, b"pong").into_bytes()),
        Err(RequestError::HandlerError(ComponentError { code: 404, message: "no such order: 17".into() })),
        Err(RequestError::Timeout),
        Err(RequestError::DeliveryFailed("mailbox of echo@b closed\nwhile stopping".into())),
    ];
    for outcome in outcomes {
        let outcome = RemoteOutcome {
            requester: id("pinger@a"),
            id: CorrelationId::generate(),
            outcome,
            trace: TraceContext::new_root(),
        };
        b.transport.respond(outcome.clone());
        assert_eq!(a.next().await, Inbound::Completed(outcome));
    }
    assert_eq!(a.transport.stats().outcomes_received, 4);
    assert_eq!(b.transport.stats().outcomes_sent, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_refused_request_is_answered_with_delivery_failed() {
    let broker = Broker::start();
    let mut a = Host::start(&broker.url(), "a", SLOW).await;
    let mut b = Host::start(&broker.url(), "b", SLOW).await;
    b.recorder.refuse(MessagingError::QueueFull);

    let correlation = CorrelationId::generate();
    let request = envelope(RemoteKind::Request { id: correlation, timeout_ms: 60_000 }, b"{}");
    a.transport.send(request.clone()).expect("send");
    assert_eq!(b.next().await, Inbound::Delivered(request.clone()));
    let Inbound::Completed(outcome) = a.next().await else { panic!("a expected an outcome") };
    assert_eq!((outcome.requester, outcome.id), (request.sender, correlation));
    assert_eq!(outcome.outcome, Err(RequestError::DeliveryFailed(MessagingError::QueueFull.to_string())));
    assert_eq!(outcome.trace.trace_id, request.trace.trace_id, "the outcome continues the request's trace");

    // A refused message gets no answer.
    a.transport.send(envelope(RemoteKind::Message, b"{}")).expect("send");
    assert!(matches!(b.next().await, Inbound::Delivered(_)));
    assert_eq!(b.transport.stats().outcomes_sent, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_malformed_or_for_another_node_is_dropped_and_counted() {
    let broker = Broker::start();
    let mut b = Host::start(&broker.url(), "b", SLOW).await;
    let raw = async_nats::connect(broker.url()).await.expect("a raw client");

    // No headers at all.
    raw.publish("airssys.c.b.echo", "hello".into()).await.expect("publish");
    // Valid headers, but the target is on node c (subject says b).
    let mut headers = HeaderMap::new();
    headers.insert("airssys-envelope", "message pinger@a echo@c 1 1");
    headers.insert("traceparent", TraceContext::new_root().traceparent().as_str());
    raw.publish_with_headers("airssys.c.b.echo", headers.clone(), "hello".into()).await.expect("publish");
    // A request without its correlation id.
    headers.insert("airssys-envelope", "request pinger@a echo@b 1 2");
    raw.publish_with_headers("airssys.c.b.echo", headers, "hello".into()).await.expect("publish");
    // An outcome without headers, and an announcement that is not JSON.
    raw.publish("airssys.r.b", "pong".into()).await.expect("publish");
    raw.publish("airssys.dir", "{not json".into()).await.expect("publish");
    raw.flush().await.expect("flush");

    let stats = || b.transport.stats();
    wait_until("b drops them", || stats().dropped_malformed == 4 && stats().dropped_wrong_node == 1).await;
    assert_eq!((stats().received, stats().outcomes_received), (0, 0));
    assert!(b.calls.try_recv().is_err(), "nothing reached b's inbound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_refuses_when_the_queue_is_full_and_after_shutdown() {
    let mut broker = Broker::start();
    let mut config = ClusterConfig::new(broker.url(), "a");
    config.outgoing_queue = 1;
    config.client_capacity = 1;
    // Not started: nothing drains the outgoing queue.
    let a = NatsTransport::connect(config).await.expect("connect");
    // Every refusal hands the payload back.
    let send = |envelope: RemoteEnvelope| a.send(envelope).map_err(SendError::into_parts);
    let payload = envelope(RemoteKind::Message, b"{}").payload;
    let mut unqualified = envelope(RemoteKind::Message, b"{}");
    unqualified.target = id("echo");
    assert!(matches!(send(unqualified), Err((MessagingError::InvalidMessage(_), p)) if p == payload));

    // With the broker gone the client stops draining its channel (one
    // command) while it reconnects: then the outgoing queue (one envelope)
    // takes the next, and the one after is refused.
    broker.kill();
    let mut accepted = 0;
    let refused = loop {
        assert!(accepted < 10_000, "no refusal after {accepted} sends");
        match send(envelope(RemoteKind::Message, b"{}")) {
            Ok(()) => accepted += 1,
            Err(refused) => break refused,
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(refused, (MessagingError::QueueFull, payload.clone()));
    assert_eq!(a.stats().dropped_queue_full, 1);
    // Refused sends are not counted as sent to b.
    let to_b = a.node_stats().into_iter().find(|s| s.node == "b").expect("b");
    assert_eq!(to_b.messages_sent, accepted, "{to_b:?}");

    broker.restart();
    a.shutdown().await.expect("shutdown");
    let closed = send(envelope(RemoteKind::Message, b"{}"));
    assert!(matches!(closed, Err((MessagingError::DeliveryFailed(_), ref p)) if *p == payload), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_reconnects_and_sends_arrive_again() {
    let mut broker = Broker::start();
    let a = Host::start(&broker.url(), "a", SLOW).await;
    let mut b = Host::start(&broker.url(), "b", SLOW).await;
    let first = envelope(RemoteKind::Message, b"1");
    a.transport.send(first.clone()).expect("send");
    assert_eq!(b.next().await, Inbound::Delivered(first));

    broker.restart();
    wait_until("both reconnect", || a.transport.stats().reconnects >= 1 && b.transport.stats().reconnects >= 1).await;
    // b's subscription is renewed after its reconnect; until then a's
    // sends may be lost, so a sends until one arrives.
    let deadline = tokio::time::Instant::now() + inbound::BOUND;
    let mut sent = Vec::new();
    let arrived = loop {
        assert!(tokio::time::Instant::now() < deadline, "no send arrived after the restart");
        let next = envelope(RemoteKind::Message, format!("{}", sent.len() + 2).as_bytes());
        a.transport.send(next.clone()).expect("send");
        sent.push(next);
        if let Ok(Some(call)) = tokio::time::timeout(Duration::from_millis(200), b.calls.recv()).await {
            break call;
        }
    };
    let Inbound::Delivered(arrived) = arrived else { panic!("b expected an envelope") };
    assert!(sent.contains(&arrived), "{arrived:?} is one of a's sends");
}
