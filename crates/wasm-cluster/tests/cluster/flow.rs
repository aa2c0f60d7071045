//! Acknowledgements and credits between two real hosts: every envelope ends
//! acknowledged or undelivered with its reason, and a target's credit
//! refuses at send time.

use std::time::Duration;

use wasm_cluster::ClusterConfig;
use wasm_core::{
    Codec, DeliveryLoss, MessagingError, RemoteKind, RemoteNodeStats, RemoteTransport, RequestError, SendError,
};

use crate::broker::Broker;
use crate::inbound::{Host, Inbound, wait_until};
use crate::{SLOW, echo_json, envelope, id};

/// `a`'s counts for node `b`.
fn b_of(a: &Host) -> RemoteNodeStats {
    a.transport.node_stats().into_iter().find(|s| s.node == "b").unwrap_or_else(|| RemoteNodeStats::new("b"))
}

/// Every envelope sent is acknowledged, pending or undelivered.
fn balanced(s: &RemoteNodeStats) -> bool {
    s.messages_sent + s.requests_sent == s.acknowledged + s.pending_acks + s.undelivered_total()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_every_envelope_is_acknowledged_once_queued() {
    let broker = Broker::start();
    let a = Host::start(&broker.url(), "a", SLOW).await;
    let b = Host::start(&broker.url(), "b", SLOW).await;
    for n in 0..500 {
        a.transport.send(envelope(RemoteKind::Message, format!("{n}").as_bytes())).expect("send");
    }
    wait_until("b acknowledges all 500", || b_of(&a).acknowledged == 500).await;
    let stats = b_of(&a);
    assert_eq!((stats.messages_sent, stats.pending_acks, stats.undelivered_total()), (500, 0, 0), "{stats:?}");
    assert!(balanced(&stats));
    // Cumulative: far fewer acknowledgements than envelopes.
    assert!(a.transport.stats().acks_received < 500, "{:?}", a.transport.stats());
    let seen_by_b = b.transport.node_stats();
    assert_eq!(seen_by_b.iter().find(|s| s.node == "a").map(|s| (s.received, s.refused_here)), Some((500, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_a_refused_message_ends_as_one_undelivered_report_and_a_refused_request_as_its_outcome() {
    let broker = Broker::start();
    let mut a = Host::start(&broker.url(), "a", SLOW).await;
    let b = Host::start(&broker.url(), "b", SLOW).await;
    b.recorder.refuse(MessagingError::QueueFull);
    a.transport.send(envelope(RemoteKind::Message, b"1")).expect("send");
    let Inbound::Undelivered(letter) = a.next().await else { panic!("a expected an undelivered report") };
    assert_eq!((letter.sender, letter.target, letter.loss), (id("pinger@a"), id("echo@b"), DeliveryLoss::Refused));
    assert!(letter.reason.contains("queue full"), "{}", letter.reason);

    let request_id = wasm_core::CorrelationId::generate();
    a.transport.send(envelope(RemoteKind::Request { id: request_id, timeout_ms: 10_000 }, b"2")).expect("send");
    // Exactly one outcome: b's own delivery-failed answer (the transport
    // adds none for a refused request).
    let Inbound::Completed(outcome) = a.next().await else { panic!("a expected the request's outcome") };
    assert_eq!(outcome.id, request_id);
    assert!(matches!(outcome.outcome, Err(RequestError::DeliveryFailed(_))), "{outcome:?}");
    wait_until("both refusals acknowledged", || b_of(&a).undelivered[DeliveryLoss::Refused.index()] == 2).await;
    assert!(tokio::time::timeout(Duration::from_millis(300), a.calls.recv()).await.is_err(), "nothing more for a");
    let stats = b_of(&a);
    assert!(balanced(&stats) && stats.pending_acks == 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_credit_refuses_with_queue_full_at_send_time_and_is_replenished() {
    let broker = Broker::start();
    let a = Host::start(&broker.url(), "a", SLOW).await;
    let b = Host::start(&broker.url(), "b", SLOW).await;
    // b's echo has 3 free slots when it announces: a's credit is 3.
    b.recorder.set_free(3);
    b.transport.announce(echo_json());
    wait_until("a learns echo@b", || a.transport.accepts(&id("echo@b"), Codec::Json) == Some(true)).await;
    for n in 0..3 {
        a.transport.send(envelope(RemoteKind::Message, format!("{n}").as_bytes())).expect("within credit");
    }
    let refused = a.transport.send(envelope(RemoteKind::Message, b"3")).map_err(SendError::into_parts);
    assert_eq!(refused.map_err(|(e, _)| e), Err(MessagingError::QueueFull));
    assert_eq!(b_of(&a).credit_refusals, 1);

    // b's mailbox is full (0 free): its acknowledgement grants nothing.
    b.recorder.set_free(0);
    wait_until("the 3 are acknowledged", || b_of(&a).acknowledged == 3).await;
    let refused = a.transport.send(envelope(RemoteKind::Message, b"4")).map_err(SendError::into_parts);
    assert_eq!(refused.map_err(|(e, _)| e), Err(MessagingError::QueueFull));

    // The mailbox drains: b's next tick sends the new credit.
    b.recorder.set_free(2);
    wait_until("a gets credit again", || a.transport.send(envelope(RemoteKind::Message, b"5")).is_ok()).await;
    a.transport.send(envelope(RemoteKind::Message, b"6")).expect("the second slot");
    wait_until("both acknowledged", || b_of(&a).acknowledged == 5).await;
    let stats = b_of(&a);
    assert!(balanced(&stats) && stats.undelivered_total() == 0, "{stats:?}");
    assert_eq!(stats.messages_sent, 5, "refused sends are not sent: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_without_an_acknowledgement_a_message_is_reported_undelivered_after_the_timeout() {
    let broker = Broker::start();
    let mut config = ClusterConfig::new(broker.url(), "a");
    config.heartbeat = SLOW;
    config.ack_timeout = Duration::from_millis(300);
    let mut a = Host::start_with(config).await;
    let b = Host::start(&broker.url(), "b", SLOW).await;
    b.transport.announce(echo_json());
    wait_until("a learns echo@b", || a.transport.accepts(&id("echo@b"), Codec::Json) == Some(true)).await;
    drop(b); // no goodbye: a's directory keeps b (slow heartbeat), nobody acknowledges

    a.transport.send(envelope(RemoteKind::Message, b"1")).expect("send");
    let request_id = wasm_core::CorrelationId::generate();
    a.transport.send(envelope(RemoteKind::Request { id: request_id, timeout_ms: 60_000 }, b"2")).expect("send");
    let Inbound::Undelivered(letter) = a.next().await else { panic!("a expected an undelivered report") };
    assert_eq!(letter.loss, DeliveryLoss::AckTimeout);
    // The request ends long before its own 60 s timeout.
    let Inbound::Completed(outcome) = a.next().await else { panic!("a expected the request's outcome") };
    assert_eq!(outcome.id, request_id);
    assert!(
        matches!(&outcome.outcome, Err(RequestError::DeliveryFailed(why)) if why.contains("ack-timeout")),
        "{outcome:?}"
    );
    let stats = b_of(&a);
    assert_eq!((stats.pending_acks, stats.undelivered[DeliveryLoss::AckTimeout.index()]), (0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_a_node_that_leaves_ends_what_is_outstanding_to_it_at_once() {
    let broker = Broker::start();
    let mut a = Host::start(&broker.url(), "a", SLOW).await;
    let b = Host::start(&broker.url(), "b", SLOW).await;
    b.transport.announce(echo_json());
    wait_until("a learns echo@b", || a.transport.accepts(&id("echo@b"), Codec::Json) == Some(true)).await;
    drop(b); // no goodbye and no acknowledgement
    for n in 0..3 {
        a.transport.send(envelope(RemoteKind::Message, format!("{n}").as_bytes())).expect("send");
    }
    wait_until("a's 3 are published", || a.transport.stats().sent == 3).await;
    assert_eq!(b_of(&a).pending_acks, 3);

    // b's goodbye (what its shutdown publishes), sent here by hand since
    // b's tasks are gone: a forgets b and ends the 3 at once, well before
    // the 5 s acknowledgement timeout.
    let client = async_nats::connect(broker.url()).await.expect("a plain client");
    client.publish("airssys.dir", r#"{"node":"b","components":[]}"#.into()).await.expect("publish");
    client.flush().await.expect("flush");
    for _ in 0..3 {
        let Inbound::Undelivered(letter) = a.next().await else { panic!("a expected an undelivered report") };
        assert_eq!(letter.loss, DeliveryLoss::NodeLeft, "{letter:?}");
    }
    let stats = b_of(&a);
    assert_eq!((stats.pending_acks, stats.undelivered[DeliveryLoss::NodeLeft.index()]), (0, 3), "{stats:?}");
    assert!(balanced(&stats));
}
