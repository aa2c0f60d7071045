//! The chokepoint (SPEC section 3): capabilities, rate limits, payload
//! rules, quotas and the audit trail, against real components, including a
//! hostile one.

use std::sync::Arc;
use std::time::Duration;

use wasm_core::{Codec, MessagePayload, MessagingError, RequestError};
use wasm_messaging::{AuditEvent, AuditSink};
use wasm_system::SystemEvent;
use wasm_tests::{
    BOUND, Harness, PATIENT, REQUESTER, RecordingAudit, cmd_cancel, cmd_request, cmd_send, code_of, raw, spin,
};

fn handled_by(events: &[SystemEvent], id: &str) -> usize {
    events.iter().filter(|e| matches!(e, SystemEvent::Handled { component, .. } if component.as_str() == id)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_capability_denial_is_refused_audited_and_never_delivered_while_a_glob_grant_succeeds() {
    let audit = Arc::new(RecordingAudit::default());
    let mut h = Harness::start_audited(
        &[
            ("requester", "requester", "[capabilities]\nsend = [\"billing-*\"]\nrequest = true"),
            ("payroll", "echo", ""),
            ("billing-eu", "echo", ""),
        ],
        Arc::clone(&audit) as Arc<dyn AuditSink>,
    )
    .await;
    let denied = h.command("requester", cmd_send(1, "payroll", &raw(b"pay"))).await.expect_err("no capability");
    assert_eq!(denied.code, code_of(1), "permission-denied: {denied:?}");
    let denied = h.command("requester", cmd_request(1000, "payroll", &raw(b"pay"))).await.expect_err("no capability");
    assert_eq!(denied.code, code_of(1), "permission-denied for requests too: {denied:?}");
    assert_eq!(h.command("requester", cmd_send(1, "billing-eu", &raw(b"bill"))).await, Ok(raw(&1u32.to_le_bytes())));
    h.settle().await;
    let events = h.take_events();
    assert_eq!(handled_by(&events, "payroll"), 0, "the target never sees a refused message");
    assert_eq!(handled_by(&events, "billing-eu"), 1);
    let refusals = audit.of(AuditEvent::Refused, "permission-denied");
    assert_eq!(refusals.len(), 2, "{refusals:#?}");
    let record = &refusals[0];
    assert_eq!(record.sender.as_ref().map(|s| s.as_str()), Some("requester"), "sender is the host's record");
    assert_eq!(record.target.as_deref(), Some("payroll"));
    assert!(record.reason.contains("may not message payroll"), "{}", record.reason);
    let stats = h.finish().await;
    assert_eq!(stats.refused[1], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_rate_limit_refuses_the_excess_and_recovers() {
    let h = Harness::start(&[
        ("requester", "requester", "[capabilities]\nsend = [\"echo\"]\n[rate]\nmessages_per_second = 20\nburst = 5"),
        ("echo", "echo", ""),
    ])
    .await;
    // A burst of 50 in one handler call: the burst allowance passes, the rest
    // is refused at once with rate-limited.
    let refused = h.command("requester", cmd_send(50, "echo", &raw(b"hi"))).await.expect_err("limited");
    assert_eq!(refused.code, code_of(2), "rate-limited: {refused:?}");
    let passed: u32 = refused.message.split(':').next().and_then(|n| n.parse().ok()).expect("success count");
    assert!((5..=6).contains(&passed), "the burst of 5 passes (6 if a cell refilled meanwhile), got {passed}");
    // The limit recovers over time: a later send gets through.
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        match h.command("requester", cmd_send(1, "echo", &raw(b"hi"))).await {
            Ok(_) => break,
            Err(e) => assert_eq!(e.code, code_of(2), "only rate-limited while recovering: {e:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the rate limit never recovered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.messages_accepted, u64::from(passed) + 1);
    assert!(stats.refused[2] >= 1, "the requester stops at its first refusal: {:?}", stats.refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_bad_payloads_are_refused_with_invalid_message_and_nothing_is_queued() {
    let mut h = Harness::start(&[
        ("requester", "requester", "[capabilities]\nsend = [\"*\"]\n[limits]\nmax_message_bytes = 64"),
        ("json-only", "echo", "[codecs]\naccept = [\"json\"]"),
        ("echo", "echo", ""),
    ])
    .await;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("empty", vec![], "empty payload"),
        ("truncated varint", vec![0x80], "truncated"),
        ("unknown codec", vec![0x01, b'x'], "unknown codec 0x1"),
        ("over-size", raw(&[b'x'; 2 * 1024 * 1024]), "exceeds the cap"),
        ("not accepted", raw(b"plain"), "raw (0x55) is not accepted by json-only"),
    ];
    for (case, payload, expect) in &cases {
        let target = if *case == "not accepted" { "json-only" } else { "echo" };
        match h.system.try_send(target, payload.clone()).map_err(MessagingError::from) {
            Err(MessagingError::InvalidMessage(reason)) => assert!(reason.contains(expect), "{case}: {reason}"),
            other => panic!("{case}: expected invalid-message, got {other:?}"),
        }
    }
    // From a guest too, with its own (smaller) payload cap.
    let too_big = h.command("requester", cmd_send(1, "echo", &raw(&[b'y'; 100]))).await.expect_err("over its cap");
    assert_eq!(too_big.code, code_of(4), "invalid-message: {too_big:?}");
    assert!(too_big.message.contains("cap of 64 bytes"), "{too_big:?}");
    let json = MessagePayload::encode(Codec::Json, br#"{"ok":true}"#).into_bytes();
    h.system.try_send("json-only", json).expect("an accepted codec passes");
    h.settle().await;
    let events = h.take_events();
    assert_eq!(handled_by(&events, "echo"), 0, "nothing invalid was queued");
    assert_eq!(handled_by(&events, "json-only"), 1);
    let stats = h.finish().await;
    assert_eq!(stats.refused[4], 6);
    assert_eq!(stats.messages_accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_malformed_responses_reach_the_requester_as_target_failed() {
    let mut h = Harness::start(&[
        ("requester", "requester", REQUESTER),
        ("stripping", "stripping", ""),
        ("small", "echo", "[limits]\nmax_message_bytes = 16"),
        ("raw-only", "requester", "[capabilities]\nsend = [\"*\"]\nrequest = true\n[codecs]\naccept = [\"raw\"]"),
        ("echo", "echo", ""),
    ])
    .await;
    let cases = [
        ("requester", "stripping", raw(&[0x80]), "truncated multicodec varint"),
        ("requester", "stripping", raw(b"hi"), "unknown codec 0x68"),
        ("requester", "small", raw(&[b'z'; 40]), "exceeds the cap of 16 bytes"),
        ("raw-only", "echo", MessagePayload::encode(Codec::Json, b"[1]").into_bytes(), "not accepted by raw-only"),
    ];
    for (requester, target, payload, expect) in cases {
        let id = h.request_via(requester, 10_000, target, &payload).await;
        match h.callback(requester, id).await {
            Err(RequestError::TargetFailed(reason)) => assert!(reason.contains(expect), "{target}: {reason}"),
            other => panic!("{target}: expected target-failed, got {other:?}"),
        }
    }
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!(stats.responses_refused, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_quotas_cap_pending_requests_and_timeouts() {
    let mut h = Harness::start(&[
        (
            "requester",
            "requester",
            "[capabilities]\nsend = [\"*\"]\nrequest = true\n[requests]\nmax_pending = 2\nmax_timeout_ms = 60000",
        ),
        ("slow", "slow", PATIENT),
    ])
    .await;
    let first = h.request_via("requester", 60_000, "slow", &spin(100_000_000)).await;
    let second = h.request_via("requester", 60_000, "slow", &spin(10)).await;
    let third = h.command("requester", cmd_request(60_000, "slow", &spin(10))).await.expect_err("over the quota");
    assert_eq!(third.code, code_of(5), "too-many-pending: {third:?}");
    let too_long = h.command("requester", cmd_request(60_001, "slow", &spin(10))).await.expect_err("over the max");
    assert_eq!(too_long.code, code_of(4), "invalid-message: {too_long:?}");
    assert!(too_long.message.contains("exceeds the maximum of 60000 ms"), "{too_long:?}");
    // Quota slots come back as requests end.
    assert!(h.callback("requester", first).await.is_ok());
    assert!(h.callback("requester", second).await.is_ok());
    let again = h.request_via("requester", 60_000, "slow", &spin(10)).await;
    assert!(h.callback("requester", again).await.is_ok());
    h.settle().await;
    let stats = h.finish().await;
    assert_eq!((stats.refused[5], stats.refused[4]), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_hostile_component_gets_typed_errors_and_the_system_keeps_serving() {
    let audit = Arc::new(RecordingAudit::default());
    let mut h = Harness::start_audited(
        &[
            (
                "hostile",
                "requester",
                "[capabilities]\nsend = [\"*\"]\nrequest = true\n[rate]\nmessages_per_second = 100\nburst = 100",
            ),
            ("victim", "echo", "[mailbox]\ncapacity = 64"),
            ("good", "requester", "[capabilities]\nsend = [\"victim\", \"slow\"]\nrequest = true"),
            ("slow", "slow", PATIENT),
        ],
        Arc::clone(&audit) as Arc<dyn AuditSink>,
    )
    .await;
    // Cancel someone else's request: not-owner, and it stays pending.
    let good_id = h.request_via("good", 60_000, "slow", &spin(50_000_000)).await;
    let stolen = h.command("hostile", cmd_cancel(&good_id)).await.expect_err("not its request");
    assert_eq!(stolen.code, code_of(7), "not-owner: {stolen:?}");
    // Flood the victim: refused (rate or room) long before 10,000.
    let flood = h.command("hostile", cmd_send(10_000, "victim", &raw(b"spam"))).await.expect_err("flood stopped");
    assert!([code_of(2), code_of(3)].contains(&flood.code), "rate-limited or queue-full: {flood:?}");
    // Spoofing the host and malformed ids.
    for target in ["host", "Bad ID!", "", "a@b@c"] {
        let refused = h.command("hostile", cmd_send(1, target, &raw(b"x"))).await;
        let error = refused.expect_err("refused");
        // Target syntax is the first check, before the rate limit the flood
        // used up: always invalid-message.
        assert_eq!(error.code, code_of(4), "{target:?}: {error:?}");
    }
    // Well-behaved components are still served.
    assert_eq!(h.callback("good", good_id).await, Ok(spin(50_000_000)), "the victim's request survived");
    let id = h.request_via("good", 10_000, "victim", &raw(b"still here")).await;
    assert_eq!(h.callback("good", id).await, Ok(raw(b"still here")));
    h.settle().await;
    assert!(!audit.of(AuditEvent::Refused, "not-owner").is_empty());
    assert!(audit.of(AuditEvent::Start, "started").iter().any(|r| r.target.as_deref() == Some("victim")));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_a_manifest_built_in_code_grants_exactly_what_it_says() {
    use wasm_core::{ComponentId, ComponentManifest};
    use wasm_system::System;
    use wasm_tests::{compiled, engine};

    let id = |name: &str| ComponentId::parse(name).expect("an id");
    let builder = System::builder()
        .engine(engine())
        .compiled(
            ComponentManifest::new(id("requester")).may_send(["billing-*"]).may_request(true).rate(1_000, 1_000),
            compiled("requester"),
        )
        .compiled(ComponentManifest::new(id("billing-eu")).accept([Codec::Raw]), compiled("echo"))
        .compiled(ComponentManifest::new(id("payroll")).mailbox(4, 4096), compiled("echo"));
    let h = Harness::from_builder(builder).await;
    assert_eq!(h.command("requester", cmd_send(1, "billing-eu", &raw(b"bill"))).await, Ok(raw(&1u32.to_le_bytes())));
    let denied = h.command("requester", cmd_send(1, "payroll", &raw(b"pay"))).await.expect_err("no capability");
    assert_eq!(denied.code, code_of(1), "permission-denied: {denied:?}");
    // The accepted codecs hold too: json is refused by billing-eu.
    let json = MessagePayload::encode(Codec::Json, b"{}").into_bytes();
    let refused = h.command("requester", cmd_send(1, "billing-eu", &json)).await.expect_err("codec refused");
    assert_eq!(refused.code, code_of(4), "invalid-message: {refused:?}");
    h.settle().await;
    h.finish().await;
}
