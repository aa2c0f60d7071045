//! Components on two hosts (two systems in one process, joined by an
//! in-process lattice) message each other by `name@node` with the semantics
//! of a local send: SPEC sections 3 and 5.

use std::sync::Arc;

use wasm_core::{MessagingError, RequestError};
use wasm_system::{System, SystemEvent};
use wasm_tests::{
    Harness, MemoryLattice, PATIENT, cmd_request, cmd_send, code_of, compiled, engine, manifest, raw, spin,
};

/// Node `a` runs `requester` (may message and ask anyone on `b`); node `b`
/// runs `echo`, `rejecting` and `slow`.
async fn two_nodes() -> (Harness, Harness) {
    let lattice = Arc::new(MemoryLattice::default());
    let (ta, tb) = (lattice.transport("a"), lattice.transport("b"));
    let a = System::builder().engine(engine()).cluster(Arc::clone(&ta) as _).compiled(
        manifest("requester", "requester", "[capabilities]\nsend = [\"*@b\"]\nrequest = true"),
        compiled("requester"),
    );
    let b = System::builder()
        .engine(engine())
        .cluster(Arc::clone(&tb) as _)
        .compiled(manifest("echo", "echo", "[capabilities]\nsend = [\"*@a\"]"), compiled("echo"))
        .compiled(manifest("rejecting", "rejecting", "[codecs]\naccept = [\"raw\"]"), compiled("rejecting"))
        .compiled(manifest("slow", "slow", PATIENT), compiled("slow"));
    let (a, b) = (Harness::from_builder(a).await, Harness::from_builder(b).await);
    ta.attach(&a.system);
    tb.attach(&b.system);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_messages_and_requests_cross_nodes_with_local_semantics() {
    let (mut a, mut b) = two_nodes().await;
    // Fire-and-forget: the receiver sees the sender qualified with its node.
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
        assert_eq!(sender, "requester@a");
    }
    // Request and response.
    let id = a.request_via("requester", 5_000, "echo@b", &raw(b"ping")).await;
    assert_eq!(a.callback("requester", id).await, Ok(raw(b"ping")));
    // Handler error, as a local one.
    let id = a.request_via("requester", 5_000, "rejecting@b", &raw(b"x")).await;
    match a.callback("requester", id).await {
        Err(RequestError::HandlerError(e)) => assert_eq!((e.code, e.message.as_str()), (42, "rejected")),
        other => panic!("expected handler-error, got {other:?}"),
    }
    // The host asks a remote component too.
    let answer = a.system.request("echo@b", raw(b"from the host"), None).expect("accepted");
    assert_eq!(answer.await, Ok(raw(b"from the host")));
    // The local name qualified with the local node is local.
    assert_eq!(a.ask("requester@a", raw(b"plain")).await, Ok(raw(b"plain")));
    a.settle().await;
    b.settle().await;
    let (sa, sb) = (a.system.stats(), b.system.stats());
    assert_eq!((sa.remote_messages_sent, sa.remote_requests_sent), (2, 3), "{sa:?}");
    assert_eq!(sb.remote_outcomes_sent, 3, "{sb:?}");
    // 5 host requests (commands, the remote one, the local one) and the
    // requester's 2 remote requests: every one completed, none pending.
    assert_eq!((sa.requests.completed, sa.requests.pending), (7, 0), "{sa:?}");
    a.finish().await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_timeout_is_the_requesters_and_a_late_response_is_orphaned() {
    let (mut a, b) = two_nodes().await;
    let id = a.request_via("requester", 20, "slow@b", &spin(30_000_000)).await;
    assert_eq!(a.callback("requester", id).await, Err(RequestError::Timeout));
    // slow answers later: its outcome reaches a, whose entry is gone.
    b.settle().await;
    let orphaned = async {
        while a.system.stats().requests.orphaned == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(wasm_tests::BOUND, orphaned).await.expect("the late response reaches a");
    a.settle().await;
    let (sa, sb) = (a.system.stats(), b.system.stats());
    assert_eq!((sa.requests.timed_out, sa.requests.orphaned), (1, 1), "{sa:?}");
    assert_eq!(sb.requests.completed, 1, "b's own entry ended with the response: {sb:?}");
    a.finish().await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_refusals_for_remote_ids_are_the_local_ones() {
    let (a, b) = two_nodes().await;
    let refused = |cmd| async { a.command("requester", cmd).await.expect_err("refused") };
    let not_found = refused(cmd_send(1, "nobody@b", &raw(b"?"))).await;
    assert_eq!(not_found.code, code_of(0), "target-not-found: {not_found:?}");
    let unknown_node = refused(cmd_request(1_000, "echo@c", &raw(b"?"))).await;
    assert_eq!(unknown_node.code, code_of(1), "permission-denied (only *@b): {unknown_node:?}");
    // A codec the remote target does not accept is refused at send time,
    // from the directory: `rejecting` on b accepts raw only.
    let json = vec![0x80, 0x04, b'{', b'}'];
    let refused = a.system.try_send("rejecting@b", json).expect_err("json is not accepted");
    assert!(matches!(refused.error(), MessagingError::InvalidMessage(m) if m.contains("not accepted")), "{refused:?}");
    // A stopped remote component leaves the directory: target-not-found.
    b.system.stop_component("echo").await.expect("stopped");
    let gone = a.system.try_send("echo@b", raw(b"x")).expect_err("echo@b stopped");
    assert!(matches!(gone.error(), MessagingError::TargetNotFound(_)), "{gone:?}");
    let stats = a.system.stats();
    assert_eq!(stats.remote_messages_sent, 0, "nothing refused was sent: {stats:?}");
    a.finish().await;
    b.finish().await;
}
