//! Components on two hosts (two systems in one process) message each other
//! by `name@node` with the semantics of a local send: SPEC sections 3 and 5.
//! Each scenario runs twice: over an in-process lattice (the routers'
//! semantics alone) and over NATS with a real `nats-server` on loopback
//! (the wire, the directory, a broker restart).

use std::sync::Arc;
use std::time::Duration;

use wasm_cluster::{ClusterConfig, NatsTransport};
use wasm_core::{Codec, ComponentId, DeliveryLoss, MessagingError, RemoteNodeStats, RemoteTransport, RequestError};
use wasm_system::{DeadLetterCause, System, SystemBuilder, SystemEvent};
use wasm_tests::{
    BOUND, Harness, MemoryLattice, NatsServer, PATIENT, cmd_cancel, cmd_request, cmd_send, code_of, compiled, engine,
    manifest, raw, spin,
};

/// Node `a` runs `requester` and `other` (requesters that may message and
/// ask anyone on `b`); node `b` runs `echo` (may answer anyone on `a`),
/// `rejecting` (accepts raw only) and `slow`.
fn builders() -> (SystemBuilder, SystemBuilder) {
    let requester = "[capabilities]\nsend = [\"*@b\"]\nrequest = true";
    let a = System::builder()
        .engine(engine())
        .compiled(manifest("requester", "requester", requester), compiled("requester"))
        .compiled(manifest("other", "requester", requester), compiled("requester"));
    let b = System::builder()
        .engine(engine())
        .compiled(manifest("echo", "echo", "[capabilities]\nsend = [\"*@a\"]"), compiled("echo"))
        .compiled(manifest("rejecting", "rejecting", "[codecs]\naccept = [\"raw\"]"), compiled("rejecting"))
        .compiled(manifest("slow", "slow", PATIENT), compiled("slow"));
    (a, b)
}

/// Two nodes joined by an in-process lattice.
async fn memory_nodes() -> (Harness, Harness) {
    let lattice = Arc::new(MemoryLattice::default());
    let (ta, tb) = (lattice.transport("a"), lattice.transport("b"));
    let (a, b) = builders();
    let a = Harness::from_builder(a.cluster(Arc::clone(&ta) as _)).await;
    let b = Harness::from_builder(b.cluster(Arc::clone(&tb) as _)).await;
    ta.attach(&a.system);
    tb.attach(&b.system);
    (a, b)
}

/// Two nodes joined over NATS (heartbeat 100 ms, acknowledgement timeout
/// 1 s), once each sees the other's components in its directory.
async fn nats_nodes(url: &str) -> (Harness, Harness, Arc<NatsTransport>, Arc<NatsTransport>) {
    nats_nodes_of(url, builders()).await
}

/// [`nats_nodes`] with other components.
async fn nats_nodes_of(
    url: &str,
    (a, b): (SystemBuilder, SystemBuilder),
) -> (Harness, Harness, Arc<NatsTransport>, Arc<NatsTransport>) {
    let connect = |node: &str| {
        let mut config = ClusterConfig::new(url, node);
        config.heartbeat = Duration::from_millis(100);
        config.ack_timeout = Duration::from_secs(1);
        NatsTransport::connect(config)
    };
    let (ta, tb) = (connect("a").await.expect("a connects"), connect("b").await.expect("b connects"));
    let a = Harness::from_builder(a.cluster(Arc::clone(&ta) as _)).await;
    let b = Harness::from_builder(b.cluster(Arc::clone(&tb) as _)).await;
    ta.start(Arc::downgrade(&a.system.remote_inbound())).await.expect("a starts");
    tb.start(Arc::downgrade(&b.system.remote_inbound())).await.expect("b starts");
    wait_until("a's directory has b and b's has a", || {
        let id = |text: &str| ComponentId::parse(text).expect("id");
        ta.accepts(&id("slow@b"), Codec::Raw) == Some(true) && tb.accepts(&id("requester@a"), Codec::Raw).is_some()
    })
    .await;
    (a, b, ta, tb)
}

/// Polls `done` until it holds, within [`BOUND`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(BOUND, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waited.await.unwrap_or_else(|_| panic!("{what}: not within {BOUND:?}"));
}

/// Fire-and-forget, request/response, handler error, the host's own remote
/// request, trace continuity, and a local name qualified with the local node.
async fn messages_and_requests(a: &mut Harness, b: &mut Harness) {
    assert_eq!(a.command("requester", cmd_send(2, "echo@b", &raw(b"hi"))).await, Ok(raw(&2u32.to_le_bytes())));
    for _ in 0..2 {
        let sender = b
            .wait_for("echo handles a remote message", |e| match e {
                SystemEvent::Handled { component, sender, request_id: None, .. } if component.as_str() == "echo" => {
                    Some(sender.to_string())
                }
                _ => None,
            })
            .await;
        assert_eq!(sender, "requester@a", "the receiver sees the sender qualified with its node");
    }
    let id = a.request_via("requester", 5_000, "echo@b", &raw(b"ping")).await;
    assert_eq!(a.callback("requester", id).await, Ok(raw(b"ping")));
    // The request's trace continues on b: echo's handler is a child of the
    // requester's span, and the callback on a is a child of echo's.
    let (echo_trace, echo_parent) = b
        .wait_for("echo handles the request", |e| match e {
            SystemEvent::Handled { component, request_id: Some(_), trace, parent, .. }
                if component.as_str() == "echo" =>
            {
                Some((*trace, *parent))
            }
            _ => None,
        })
        .await;
    let requester_span = a
        .wait_for("the requester's command span", |e| match e {
            SystemEvent::Handled { component, trace, .. }
                if component.as_str() == "requester" && trace.trace_id == echo_trace.trace_id =>
            {
                Some(*trace)
            }
            _ => None,
        })
        .await;
    assert_eq!(echo_parent.span_id, requester_span.span_id, "one trace across hosts");
    let id = a.request_via("requester", 5_000, "rejecting@b", &raw(b"x")).await;
    match a.callback("requester", id).await {
        Err(RequestError::HandlerError(e)) => assert_eq!((e.code, e.message.as_str()), (42, "rejected")),
        other => panic!("expected handler-error, got {other:?}"),
    }
    let answer = a.system.request("echo@b", raw(b"from the host"), None).expect("accepted");
    assert_eq!(answer.await, Ok(raw(b"from the host")));
    assert_eq!(a.ask("requester@a", raw(b"plain")).await, Ok(raw(b"plain")), "requester@a is local on a");
    a.settle().await;
    b.settle().await;
    let (sa, sb) = (a.system.stats(), b.system.stats());
    assert_eq!((sa.remote_messages_sent, sa.remote_requests_sent), (2, 3), "{sa:?}");
    assert_eq!(sb.remote_outcomes_sent, 3, "{sb:?}");
    // 5 host requests (commands, the remote one, the local one) and the
    // requester's 2 remote requests: every one completed, none pending.
    assert_eq!((sa.requests.completed, sa.requests.pending), (7, 0), "{sa:?}");
}

/// The requester's host owns the timer; a response after the timeout is
/// orphaned there. Cancel keeps its ownership check.
async fn timeout_and_cancel(a: &mut Harness, b: &mut Harness) {
    // Counted from here: the scenarios may run one after another on the
    // same two hosts.
    let (a0, b0) = (a.system.stats().requests, b.system.stats().requests);
    let orphaned = |a: &Harness| a.system.stats().requests.orphaned - a0.orphaned;
    let id = a.request_via("requester", 20, "slow@b", &spin(30_000_000)).await;
    assert_eq!(a.callback("requester", id).await, Err(RequestError::Timeout));
    b.settle().await;
    wait_until("the late response reaches a", || orphaned(a) == 1).await;
    // Cancel: only the owner may; the owner's cancel ends it at once.
    let id = a.request_via("requester", 60_000, "slow@b", &spin(30_000_000)).await;
    let not_owner = a.command("other", cmd_cancel(&id)).await.expect_err("not the owner");
    assert_eq!(not_owner.code, code_of(7), "not-owner: {not_owner:?}");
    a.command("requester", cmd_cancel(&id)).await.expect("the owner cancels");
    assert_eq!(a.callback("requester", id).await, Err(RequestError::Cancelled));
    b.settle().await;
    wait_until("the cancelled request's response is orphaned", || orphaned(a) == 2).await;
    a.settle().await;
    let (sa, sb) = (a.system.stats().requests, b.system.stats().requests);
    assert_eq!((sa.timed_out - a0.timed_out, sa.cancelled - a0.cancelled), (1, 1), "{sa:?}");
    assert_eq!(sb.completed - b0.completed, 2, "b answered both: {sb:?}");
}

/// Refusals for remote ids are decided at send time, as for local ones.
async fn refusals(a: &mut Harness, b: &mut Harness) {
    let not_found = a.command("requester", cmd_send(1, "nobody@b", &raw(b"?"))).await.expect_err("no such component");
    assert_eq!(not_found.code, code_of(0), "target-not-found: {not_found:?}");
    let denied = a.command("requester", cmd_request(1_000, "echo@c", &raw(b"?"))).await.expect_err("only *@b");
    assert_eq!(denied.code, code_of(1), "permission-denied: {denied:?}");
    let json = vec![0x80, 0x04, b'{', b'}'];
    let refused = a.system.try_send("rejecting@b", json).expect_err("rejecting accepts raw only");
    assert!(matches!(refused.error(), MessagingError::InvalidMessage(m) if m.contains("not accepted")), "{refused:?}");
    let sent_before = a.system.stats().remote_messages_sent;
    b.system.stop_component("echo").await.expect("stopped");
    let a_ref = &a.system;
    wait_until("echo@b leaves a's directory", || {
        a_ref.try_send("echo@b", raw(b"x")).is_err_and(|e| matches!(e.error(), MessagingError::TargetNotFound(_)))
    })
    .await;
    let stats = a.system.stats();
    assert!(stats.remote_messages_sent <= sent_before + 1, "at most one send raced the announcement: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_in_process_messages_and_requests_cross_nodes_with_local_semantics() {
    let (mut a, mut b) = memory_nodes().await;
    messages_and_requests(&mut a, &mut b).await;
    a.finish().await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_in_process_timeout_and_cancel_are_the_requesters() {
    let (mut a, mut b) = memory_nodes().await;
    timeout_and_cancel(&mut a, &mut b).await;
    a.finish().await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_in_process_refusals_for_remote_ids_are_the_local_ones() {
    let (mut a, mut b) = memory_nodes().await;
    refusals(&mut a, &mut b).await;
    a.finish().await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nats_messages_requests_timeouts_cancel_and_refusals() {
    let broker = NatsServer::start();
    let (mut a, mut b, ta, tb) = nats_nodes(&broker.url()).await;
    messages_and_requests(&mut a, &mut b).await;
    timeout_and_cancel(&mut a, &mut b).await;
    refusals(&mut a, &mut b).await;
    a.finish().await;
    b.finish().await;
    ta.shutdown().await.expect("a leaves");
    tb.shutdown().await.expect("b leaves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nats_broker_restart_ends_requests_in_flight_and_traffic_resumes() {
    let mut broker = NatsServer::start();
    let (mut a, b, ta, tb) = nats_nodes(&broker.url()).await;
    // In flight when the broker dies: slow works on the first, the others wait.
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        in_flight.push(a.request_via("requester", 300, "slow@b", &spin(30_000_000)).await);
    }
    broker.kill();
    // Fire-and-forget while the broker is away: each ends delivered or as a
    // delivery-failed dead letter on a, never unaccounted.
    assert_eq!(a.command("requester", cmd_send(5, "echo@b", &raw(b"outage"))).await, Ok(raw(&5u32.to_le_bytes())));
    for id in in_flight {
        let outcome = a.callback("requester", id).await;
        assert!(
            matches!(outcome, Err(RequestError::Timeout | RequestError::DeliveryFailed(_))),
            "a request in flight when the broker died ends in timeout or delivery-failed: {outcome:?}"
        );
    }
    broker.restart();
    // New traffic resumes once both hosts reconnected and re-announced.
    let resumed = async {
        loop {
            if let Ok(reply) = a.command("requester", cmd_request(2_000, "echo@b", &raw(b"again"))).await {
                let id = wasm_core::CorrelationId::parse(std::str::from_utf8(&reply[1..]).expect("id")).expect("id");
                if a.callback("requester", id).await == Ok(raw(b"again")) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(BOUND, resumed).await.expect("traffic resumes after the broker restarts");
    assert!(ta.stats().reconnects >= 1 && tb.stats().reconnects >= 1, "{:?} {:?}", ta.stats(), tb.stats());
    b.settle().await;
    a.settle().await;
    // Every envelope a sent to b ended acknowledged or undelivered (at the
    // latest after the 1 s acknowledgement timeout), and every undelivered
    // message is one of a's dead letters.
    wait_until("a's envelopes to b all ended", || settled(&node_of(&ta, "b"))).await;
    let to_b = node_of(&ta, "b");
    let stats = a.system.stats();
    assert_eq!(to_b.messages_sent, stats.remote_messages_sent, "{to_b:?}");
    assert_eq!(to_b.requests_sent, stats.remote_requests_sent, "{to_b:?}");
    let undelivered_messages =
        a.system.dead_letters().iter().filter(|l| l.cause == DeadLetterCause::DeliveryFailed).count();
    assert_eq!(undelivered_messages as u64, stats.remote_dead_lettered);
    assert!(stats.remote_dead_lettered <= to_b.undelivered_total(), "{to_b:?} {stats:?}");
    // What the restart did to this run's traffic (shown with --nocapture).
    let from_a = node_of(&tb, "a");
    eprintln!("after the broker restart, a's traffic to b: {to_b:?}; b's from a: {from_a:?}");
    assert!(from_a.received <= to_b.messages_sent + to_b.requests_sent, "{from_a:?} {to_b:?}");
    // Both hosts' counters balance (finish asserts it).
    a.finish().await;
    b.finish().await;
    ta.shutdown().await.expect("a leaves");
    tb.shutdown().await.expect("b leaves");
}

/// `transport`'s counts for `node`.
fn node_of(transport: &NatsTransport, node: &str) -> RemoteNodeStats {
    transport.node_stats().into_iter().find(|s| s.node == node).unwrap_or_else(|| RemoteNodeStats::new(node))
}

/// Every envelope sent to a node ended acknowledged or undelivered, none
/// pending.
fn settled(s: &RemoteNodeStats) -> bool {
    s.pending_acks == 0 && s.messages_sent + s.requests_sent == s.acknowledged + s.undelivered_total()
}

/// Node `a` runs `requester`; node `b` runs `slow` with a mailbox of 4
/// envelopes and 64 bytes.
fn small_mailbox() -> (SystemBuilder, SystemBuilder) {
    let requester = "[capabilities]\nsend = [\"*@b\"]\nrequest = true";
    let a = System::builder()
        .engine(engine())
        .compiled(manifest("requester", "requester", requester), compiled("requester"));
    let small = format!("{PATIENT}\n[mailbox]\ncapacity = 4\nmax_bytes = 64");
    let b = System::builder().engine(engine()).compiled(manifest("slow", "slow", &small), compiled("slow"));
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nats_queue_full_is_decided_at_send_time_from_credits() {
    let broker = NatsServer::start();
    let (a, mut b, ta, tb) = nats_nodes_of(&broker.url(), small_mailbox()).await;
    // Each message keeps slow busy far longer than a send takes, so its
    // mailbox of 4 fills: the sending host refuses the next send itself.
    let mut accepted = 0;
    let refusal = loop {
        assert!(accepted < 64, "no refusal after {accepted} sends to a mailbox of 4");
        match a.command("requester", cmd_send(1, "slow@b", &spin(50_000_000))).await {
            Ok(_) => accepted += 1,
            Err(refused) => break refused,
        }
    };
    assert_eq!(refusal.code, code_of(3), "queue-full: {refusal:?}");
    assert!(accepted >= 4, "the credit covers the free slots: {accepted}");
    let to_b = node_of(&ta, "b");
    assert!(to_b.credit_refusals >= 1, "refused by the credit, on a: {to_b:?}");
    let requester =
        a.system.component_stats().into_iter().find(|(id, _)| id.as_str() == "requester").expect("requester");
    assert!(requester.1.refused[3] >= 1, "counted as the requester's queue-full: {:?}", requester.1);
    // The host's `send` with a timeout waits for the credit to come back
    // (slow drains its mailbox), as it waits for room in a local mailbox.
    a.system.send("slow@b", spin(50_000_000), BOUND).await.expect("accepted once the credit comes back");
    accepted += 1;

    // Every accepted message reaches slow: none was refused on b (the
    // credit never let a send past the free slots), and the credit comes
    // back as slow drains its mailbox.
    for _ in 0..accepted {
        b.wait_for("slow handles a message from a", |e| match e {
            SystemEvent::Handled { component, .. } if component.as_str() == "slow" => Some(()),
            _ => None,
        })
        .await;
    }
    wait_until("b acknowledged everything", || settled(&node_of(&ta, "b"))).await;
    let to_b = node_of(&ta, "b");
    assert_eq!((to_b.messages_sent, to_b.acknowledged, to_b.undelivered_total()), (accepted, accepted, 0), "{to_b:?}");
    assert_eq!(node_of(&tb, "a").refused_here, 0);
    // slow's mailbox is empty now: b's next credit update (within its
    // 20 ms tick) lets a send again.
    let replenished = async {
        while a.command("requester", cmd_send(1, "slow@b", &raw(b"again"))).await.is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(BOUND, replenished).await.expect("the credit is replenished as slow drains its mailbox");
    b.settle().await;
    a.finish().await;
    b.finish().await;
    ta.shutdown().await.expect("a leaves");
    tb.shutdown().await.expect("b leaves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_nats_a_message_the_remote_host_refuses_is_a_delivery_failed_dead_letter_at_the_sender() {
    let broker = NatsServer::start();
    let (a, b, ta, tb) = nats_nodes_of(&broker.url(), small_mailbox()).await;
    // 100 bytes: within a's payload cap, over slow's 64-byte mailbox on b.
    let big = raw(&[b'x'; 99]);
    assert_eq!(a.command("requester", cmd_send(1, "slow@b", &big)).await, Ok(raw(&1u32.to_le_bytes())));
    let a_ref = &a.system;
    wait_until("a dead-letters it", || !a_ref.dead_letters().is_empty()).await;
    let letters = a.system.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!((letter.sender.as_str(), letter.target.as_str()), ("requester@a", "slow@b"));
    assert_eq!((letter.kind, letter.cause), ("message", DeadLetterCause::DeliveryFailed));
    assert!(letter.reason.contains("refused"), "{letter:?}");
    let requester =
        a.system.component_stats().into_iter().find(|(id, _)| id.as_str() == "requester").expect("requester");
    assert_eq!(requester.1.dead_letters[DeadLetterCause::DeliveryFailed.index()], 1);
    assert_eq!(a.system.stats().remote_dead_lettered, 1);
    let to_b = node_of(&ta, "b");
    assert_eq!((to_b.undelivered[DeliveryLoss::Refused.index()], to_b.acknowledged), (1, 0), "{to_b:?}");
    assert!(settled(&to_b));
    assert_eq!(node_of(&tb, "a").refused_here, 1);
    assert_eq!(b.system.stats().messages_accepted, 0);
    a.finish().await;
    b.finish().await;
    ta.shutdown().await.expect("a leaves");
    tb.shutdown().await.expect("b leaves");
}
