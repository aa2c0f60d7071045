//! The hand-written fixtures of `tests/fixtures/` (see its `README.md`),
//! componentized by [`WasmEngine::load_file`], instantiated with a
//! [`RecordingRouter`] and driven through the runtime's public API. Each
//! test asserts what a user of the runtime sees: the handler's result, the
//! [`GuestFailure`], and the host-services calls the guest made.
//!
//! Together they check the canonical ABI layouts the fixtures are written
//! to: every `messaging-error` case through the requester, every
//! `request-error` case through the probe.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wasm_core::{
    ComponentError, ComponentId, CorrelationId, Limits, MessageRouter, MessagingError, Origin, RequestError,
    WasiSection,
};
use wasm_runtime::{
    CompiledComponent, ComponentInstance, EngineConfig, GuestFailure, InboundMessage, MessageSource, RuntimeError,
    WasmEngine, componentize_wat,
};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// A host-services call as the router saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Message { sender: String, target: String, message: Vec<u8> },
    Request { sender: String, target: String, request: Vec<u8>, timeout_ms: u64 },
    Cancel { sender: String, request_id: String },
}

/// A [`MessageRouter`] that records every call and answers from a script:
/// the first `successes` calls succeed (all of them when `None`), the rest
/// fail with `error`. Requests get `request_id`.
#[derive(Debug)]
struct RecordingRouter {
    calls: Mutex<Vec<Call>>,
    successes: Option<usize>,
    error: MessagingError,
    request_id: CorrelationId,
}

impl RecordingRouter {
    /// Every call succeeds.
    fn accepting() -> Arc<Self> {
        Self::failing_after(usize::MAX, MessagingError::QueueFull)
    }

    /// Every call fails with `error`.
    fn refusing(error: MessagingError) -> Arc<Self> {
        Self::failing_after(0, error)
    }

    /// The first `successes` calls succeed, the rest fail with `error`.
    fn failing_after(successes: usize, error: MessagingError) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::new(Vec::new()),
            successes: Some(successes),
            error,
            request_id: CorrelationId::generate(),
        })
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records `call` and answers it.
    fn answer(&self, call: Call) -> Result<(), MessagingError> {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        let earlier = calls.len();
        calls.push(call);
        match self.successes {
            Some(successes) if earlier >= successes => Err(self.error.clone()),
            _ => Ok(()),
        }
    }
}

impl MessageRouter for RecordingRouter {
    fn send_message(&self, origin: Origin<'_>, target: &str, message: Vec<u8>) -> Result<(), MessagingError> {
        self.answer(Call::Message { sender: origin.sender.to_string(), target: target.to_owned(), message })
    }

    fn send_request(
        &self,
        origin: Origin<'_>,
        target: &str,
        request: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<CorrelationId, MessagingError> {
        self.answer(Call::Request { sender: origin.sender.to_string(), target: target.to_owned(), request, timeout_ms })
            .map(|()| self.request_id)
    }

    fn cancel_request(&self, origin: Origin<'_>, request_id: &str) -> Result<(), MessagingError> {
        self.answer(Call::Cancel { sender: origin.sender.to_string(), request_id: request_id.to_owned() })
    }
}

/// A fixture compiled on its own engine (whose epoch ticker must outlive
/// the instances, or time budgets never expire).
struct Fixture {
    name: &'static str,
    engine: WasmEngine,
    compiled: CompiledComponent,
}

impl Fixture {
    fn load(name: &'static str) -> Self {
        let engine = WasmEngine::new(EngineConfig::default()).expect("engine");
        let compiled = engine.load_file(&fixture_path(name)).expect("fixture loads");
        Self { name, engine, compiled }
    }

    /// Fixture `fixture` with its one `from` replaced by `to`, compiled as
    /// component `name` (a variant a single test needs).
    fn patched(fixture: &str, name: &'static str, from: &str, to: &str) -> Self {
        let text = std::fs::read_to_string(fixture_path(fixture)).expect("fixture text");
        assert_eq!(text.matches(from).count(), 1, "{fixture}.wat has one {from:?}");
        let component = componentize_wat(&format!("{name}.wat"), &text.replace(from, to)).expect("componentizes");
        let engine = WasmEngine::new(EngineConfig::default()).expect("engine");
        let compiled = engine.load(name, &component).expect("loads");
        Self { name, engine, compiled }
    }

    /// A fresh instance, running as the component id `name`.
    async fn instance(&self, limits: &Limits, router: Arc<RecordingRouter>) -> ComponentInstance {
        let id = ComponentId::parse(self.name).expect("fixture name is a component id");
        self.engine
            .instantiate(&self.compiled, id, limits, &WasiSection::default(), router)
            .await
            .expect("fixture instantiates")
    }

    /// A fresh instance with default limits.
    async fn start(&self, router: Arc<RecordingRouter>) -> ComponentInstance {
        self.instance(&Limits::default(), router).await
    }
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(format!("{name}.wat"))
}

async fn from_host(
    instance: &mut ComponentInstance,
    message: &[u8],
) -> Result<Result<Vec<u8>, ComponentError>, GuestFailure> {
    instance.handle_message(&ComponentId::host(), message, None).await
}

/// Asserts that `outcome` is `Ok(Ok(message))`; on failure it shows lengths,
/// not megabytes of bytes.
fn assert_echoed(outcome: Result<Result<Vec<u8>, ComponentError>, GuestFailure>, message: &[u8]) {
    match outcome {
        Ok(Ok(reply)) => {
            assert!(reply == message, "got {} bytes back, not the {}-byte message", reply.len(), message.len());
        }
        other => panic!("expected the {}-byte message back, got {:?}", message.len(), summary(&other)),
    }
}

/// A handler outcome with the reply shown as its length.
fn summary(
    outcome: &Result<Result<Vec<u8>, ComponentError>, GuestFailure>,
) -> Result<Result<usize, &ComponentError>, &GuestFailure> {
    outcome.as_ref().map(|reply| reply.as_ref().map(Vec::len))
}

fn component_error(code: u32, message: &str) -> ComponentError {
    ComponentError { code, message: message.to_owned() }
}

/// Every `messaging-error` case, with the code the requester and the
/// forwarder report for it (1 + the WIT case index) and its string.
fn every_messaging_error() -> Vec<(MessagingError, u32, &'static str)> {
    vec![
        (MessagingError::TargetNotFound("no component nobody".into()), 1, "no component nobody"),
        (MessagingError::PermissionDenied("may not message sink".into()), 2, "may not message sink"),
        (MessagingError::RateLimited("10 per second".into()), 3, "10 per second"),
        (MessagingError::QueueFull, 4, ""),
        (MessagingError::InvalidMessage("unknown codec 0x99".into()), 5, "unknown codec 0x99"),
        (MessagingError::TooManyPending("10000 pending".into()), 6, "10000 pending"),
        (MessagingError::RequestNotFound("no such request".into()), 7, "no such request"),
        (MessagingError::NotOwner("owned by another component".into()), 8, "owned by another component"),
        (MessagingError::DeliveryFailed("transport down: ünïcödé".into()), 9, "transport down: ünïcödé"),
    ]
}

/// Every shape of `result<list<u8>, request-error>`.
fn every_callback_outcome() -> Vec<Result<Vec<u8>, RequestError>> {
    vec![
        Ok(Vec::new()),
        Ok(b"\x55pong".to_vec()),
        Err(RequestError::Timeout),
        Err(RequestError::Cancelled),
        Err(RequestError::HandlerError(component_error(42, "rejected"))),
        Err(RequestError::HandlerError(component_error(u32::MAX, ""))),
        Err(RequestError::TargetFailed("trap: wasm `unreachable` instruction executed".into())),
        Err(RequestError::DeliveryFailed("target stopped".into())),
    ]
}

/// Delivers every callback outcome to a fresh instance of `name`, which must
/// accept each with `ok`.
async fn assert_accepts_every_callback_outcome(name: &'static str) {
    let fixture = Fixture::load(name);
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    for outcome in every_callback_outcome() {
        let id = CorrelationId::generate();
        assert_eq!(instance.handle_callback(&id, &outcome, None).await, Ok(Ok(())), "{name}: callback {outcome:?}");
    }
    assert_eq!(router.calls(), Vec::new(), "{name} makes no host calls from handle-callback");
}

// ---------------------------------------------------------------------------
// echo
// ---------------------------------------------------------------------------

#[tokio::test]
async fn echo_returns_message_unchanged() {
    let fixture = Fixture::load("echo");
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    let large: Vec<u8> = std::iter::once(0x55).chain((0..200_000u32).map(|i| i.to_le_bytes()[0])).collect();
    for message in [b"\x55hi".to_vec(), Vec::new(), b"\x51\xa0".to_vec(), large] {
        assert_echoed(from_host(&mut instance, &message).await, &message);
    }
}

#[tokio::test]
async fn adopted_code_runs_on_a_sibling_engine_without_compiling_again() {
    let fixture = Fixture::load("echo");
    let sibling = fixture.engine.sibling().expect("sibling engine");
    assert!(fixture.engine.owns(&fixture.compiled));
    assert!(!sibling.owns(&fixture.compiled), "compiled code belongs to the engine that compiled it");
    let copy = sibling.adopt(&fixture.compiled).expect("same settings: the code is copied");
    assert!(sibling.owns(&copy) && !fixture.engine.owns(&copy));
    assert!(!copy.same_code(&fixture.compiled), "a copy, not the original");
    assert_eq!(copy.origin(), fixture.compiled.origin());
    // One copy per original: adopting it (or a clone of it) again finds it.
    assert!(sibling.adopted(&fixture.compiled).expect("copied before").same_code(&copy));
    assert!(sibling.adopt(&fixture.compiled.clone()).expect("found").same_code(&copy));
    let again = Fixture::load("echo");
    assert!(sibling.adopted(&again.compiled).is_none(), "another compilation is another component");
    // Adopting what an engine already owns hands the same code back.
    assert!(sibling.adopt(&copy).expect("owned").same_code(&copy));
    assert!(fixture.engine.adopt(&fixture.compiled).expect("owned").same_code(&fixture.compiled));
    let id = ComponentId::parse("echo").expect("id");
    let mut instance = sibling
        .instantiate(&copy, id, &Limits::default(), &WasiSection::default(), RecordingRouter::accepting())
        .await
        .expect("the copy instantiates on its engine");
    assert_echoed(from_host(&mut instance, b"\x55copied").await, b"\x55copied");
    // The original, on the engine that did not compile it: a typed error.
    let id = ComponentId::parse("echo").expect("id");
    match sibling
        .instantiate(&fixture.compiled, id, &Limits::default(), &WasiSection::default(), RecordingRouter::accepting())
        .await
    {
        Err(RuntimeError::Instantiate { reason, .. }) => {
            assert!(reason.contains("compiled by another engine: adopt it first"), "{reason}");
        }
        Err(other) => panic!("expected an instantiate error, got {other:?}"),
        Ok(_) => panic!("expected an instantiate error, got an instance"),
    }
    // A component with batches keeps them.
    let batching = Fixture::load("batching");
    assert!(sibling.adopt(&batching.compiled).expect("copied").accepts_batches());
}

#[tokio::test]
async fn adopt_refuses_code_compiled_with_other_settings() {
    let fixture = Fixture::load("echo");
    let dense = WasmEngine::new(EngineConfig::dense()).expect("engine");
    match dense.adopt(&fixture.compiled) {
        Err(RuntimeError::Compile { origin, reason }) => {
            assert_eq!(origin, fixture.compiled.origin());
            assert!(reason.contains("copying its compiled code"), "{reason}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[tokio::test]
async fn echo_reuses_its_heap_across_calls() {
    // 600 KiB fits a 1 MiB cap once; the post-return functions reset the bump
    // heap, so it fits every time.
    let fixture = Fixture::load("echo");
    let limits = Limits { memory_bytes: 1 << 20, ..Limits::default() };
    let mut instance = fixture.instance(&limits, RecordingRouter::accepting()).await;
    let message = vec![0x55; 600 << 10];
    for _ in 0..10 {
        assert_echoed(from_host(&mut instance, &message).await, &message);
    }
}

#[tokio::test]
async fn echo_traps_when_message_exceeds_memory_cap() {
    let fixture = Fixture::load("echo");
    let limits = Limits { memory_bytes: 1 << 20, ..Limits::default() };
    let mut instance = fixture.instance(&limits, RecordingRouter::accepting()).await;
    let message = vec![0x55; 2 << 20];
    let outcome = from_host(&mut instance, &message).await;
    assert!(matches!(outcome, Err(GuestFailure::Trap(_))), "{:?}", summary(&outcome));
}

#[tokio::test]
async fn echo_accepts_every_callback_outcome() {
    assert_accepts_every_callback_outcome("echo").await;
}

// ---------------------------------------------------------------------------
// rejecting
// ---------------------------------------------------------------------------

#[tokio::test]
async fn rejecting_returns_component_error() {
    let fixture = Fixture::load("rejecting");
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    for message in [&b"\x55hi"[..], b""] {
        assert_eq!(from_host(&mut instance, message).await, Ok(Err(component_error(42, "rejected"))));
    }
}

#[tokio::test]
async fn rejecting_accepts_every_callback_outcome() {
    assert_accepts_every_callback_outcome("rejecting").await;
}

// ---------------------------------------------------------------------------
// trapping
// ---------------------------------------------------------------------------

#[tokio::test]
async fn trapping_traps_on_bang_and_fresh_instance_echoes() {
    let fixture = Fixture::load("trapping");
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    assert_eq!(from_host(&mut instance, b"\x55?").await, Ok(Ok(b"\x55?".to_vec())));
    let outcome = from_host(&mut instance, b"\x55!").await;
    assert!(matches!(&outcome, Err(GuestFailure::Trap(reason)) if reason.contains("unreachable")), "{outcome:?}");

    let mut fresh = fixture.start(RecordingRouter::accepting()).await;
    assert_eq!(from_host(&mut fresh, b"\x55hello").await, Ok(Ok(b"\x55hello".to_vec())));
    assert_eq!(from_host(&mut fresh, b"!").await, Ok(Ok(b"!".to_vec())), "only byte 1 triggers the trap");
}

#[tokio::test]
async fn trapping_accepts_every_callback_outcome() {
    assert_accepts_every_callback_outcome("trapping").await;
}

// ---------------------------------------------------------------------------
// slow
// ---------------------------------------------------------------------------

fn spin_command(iterations: u32) -> Vec<u8> {
    let mut message = vec![0x55];
    message.extend_from_slice(&iterations.to_le_bytes());
    message
}

#[tokio::test]
async fn slow_returns_message_after_bounded_loop() {
    let fixture = Fixture::load("slow");
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    let message = spin_command(10_000);
    assert_eq!(from_host(&mut instance, &message).await, Ok(Ok(message.clone())));
    assert_eq!(from_host(&mut instance, b"\x55ab").await, Ok(Ok(b"\x55ab".to_vec())), "short messages are echoed");
}

#[tokio::test]
async fn slow_runs_out_of_fuel() {
    let fixture = Fixture::load("slow");
    let limits = Limits { fuel_per_call: 1_000_000, ..Limits::default() };
    for iterations in [u32::MAX, 10_000_000] {
        let mut instance = fixture.instance(&limits, RecordingRouter::accepting()).await;
        assert_eq!(
            from_host(&mut instance, &spin_command(iterations)).await,
            Err(GuestFailure::OutOfFuel { budget: 1_000_000 }),
            "{iterations} iterations"
        );
    }
}

#[tokio::test]
async fn slow_times_out_when_looping_forever() {
    let fixture = Fixture::load("slow");
    let limits = Limits { fuel_per_call: u64::MAX, time_per_call_ms: 50, ..Limits::default() };
    let mut instance = fixture.instance(&limits, RecordingRouter::accepting()).await;
    assert_eq!(from_host(&mut instance, &spin_command(u32::MAX)).await, Err(GuestFailure::Timeout { budget_ms: 50 }));
}

#[tokio::test]
async fn slow_accepts_every_callback_outcome() {
    assert_accepts_every_callback_outcome("slow").await;
}

// ---------------------------------------------------------------------------
// requester
// ---------------------------------------------------------------------------

fn send_messages_command(count: u32, target: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = vec![0x55, b'm'];
    message.extend_from_slice(&count.to_le_bytes());
    message.push(u8::try_from(target.len()).expect("target length fits a byte"));
    message.extend_from_slice(target.as_bytes());
    message.extend_from_slice(payload);
    message
}

fn send_request_command(timeout_ms: u32, target: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = vec![0x55, b'r'];
    message.extend_from_slice(&timeout_ms.to_le_bytes());
    message.push(u8::try_from(target.len()).expect("target length fits a byte"));
    message.extend_from_slice(target.as_bytes());
    message.extend_from_slice(payload);
    message
}

fn cancel_command(request_id: &str) -> Vec<u8> {
    let mut message = vec![0x55, b'c'];
    message.extend_from_slice(request_id.as_bytes());
    message
}

fn sent_count(count: u32) -> Vec<u8> {
    let mut reply = vec![0x55];
    reply.extend_from_slice(&count.to_le_bytes());
    reply
}

fn message_call(target: &str, message: &[u8]) -> Call {
    Call::Message { sender: "requester".into(), target: target.into(), message: message.to_vec() }
}

#[tokio::test]
async fn requester_send_message_numbers_each_send() {
    let fixture = Fixture::load("requester");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let command = send_messages_command(3, "sink", b"\x55\xff\xff\xff\xffbody");
    assert_eq!(from_host(&mut instance, &command).await, Ok(Ok(sent_count(3))));
    assert_eq!(
        router.calls(),
        vec![
            message_call("sink", b"\x55\x00\x00\x00\x00body"),
            message_call("sink", b"\x55\x01\x00\x00\x00body"),
            message_call("sink", b"\x55\x02\x00\x00\x00body"),
        ]
    );
}

#[tokio::test]
async fn requester_send_message_leaves_short_payloads_alone() {
    let fixture = Fixture::load("requester");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let command = send_messages_command(2, "peer@node-b", b"\x55abc");
    assert_eq!(from_host(&mut instance, &command).await, Ok(Ok(sent_count(2))));
    assert_eq!(router.calls(), vec![message_call("peer@node-b", b"\x55abc"), message_call("peer@node-b", b"\x55abc")]);
}

#[tokio::test]
async fn requester_send_message_stops_at_first_error_with_success_count() {
    let fixture = Fixture::load("requester");
    let router = RecordingRouter::failing_after(2, MessagingError::RateLimited("burst of 2".into()));
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let command = send_messages_command(5, "sink", b"\x55\x00\x00\x00\x00");
    assert_eq!(from_host(&mut instance, &command).await, Ok(Err(component_error(3, "2:burst of 2"))));
    assert_eq!(router.calls().len(), 3, "two sends succeeded, the third failed, no more were tried");

    let router = RecordingRouter::failing_after(1_234, MessagingError::QueueFull);
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let command = send_messages_command(2_000, "sink", b"\x55");
    assert_eq!(from_host(&mut instance, &command).await, Ok(Err(component_error(4, "1234:"))));
}

#[tokio::test]
async fn requester_send_message_relays_every_error_variant() {
    let fixture = Fixture::load("requester");
    for (error, code, text) in every_messaging_error() {
        let mut instance = fixture.start(RecordingRouter::refusing(error.clone())).await;
        let command = send_messages_command(1, "sink", b"\x55x");
        assert_eq!(
            from_host(&mut instance, &command).await,
            Ok(Err(component_error(code, &format!("0:{text}")))),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn requester_send_request_returns_correlation_id() {
    let fixture = Fixture::load("requester");
    for timeout_ms in [0, 1_234, u32::MAX] {
        let router = RecordingRouter::accepting();
        let mut instance = fixture.start(Arc::clone(&router)).await;
        let command = send_request_command(timeout_ms, "responder", b"\x55ping");
        let mut expected = vec![0x55];
        expected.extend_from_slice(router.request_id.as_str().as_bytes());
        assert_eq!(from_host(&mut instance, &command).await, Ok(Ok(expected)));
        assert_eq!(
            router.calls(),
            vec![Call::Request {
                sender: "requester".into(),
                target: "responder".into(),
                request: b"\x55ping".to_vec(),
                timeout_ms: u64::from(timeout_ms),
            }]
        );
    }
}

#[tokio::test]
async fn requester_send_request_relays_every_error_variant() {
    let fixture = Fixture::load("requester");
    for (error, code, text) in every_messaging_error() {
        let mut instance = fixture.start(RecordingRouter::refusing(error.clone())).await;
        let command = send_request_command(100, "responder", b"\x55ping");
        assert_eq!(from_host(&mut instance, &command).await, Ok(Err(component_error(code, text))), "{error:?}");
    }
}

#[tokio::test]
async fn requester_cancel_request_passes_id() {
    let fixture = Fixture::load("requester");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let id = CorrelationId::generate();
    assert_eq!(from_host(&mut instance, &cancel_command(id.as_str())).await, Ok(Ok(vec![0x55])));
    assert_eq!(router.calls(), vec![Call::Cancel { sender: "requester".into(), request_id: id.as_str().into() }]);
}

#[tokio::test]
async fn requester_cancel_request_relays_errors() {
    let fixture = Fixture::load("requester");
    for (error, code, text) in every_messaging_error() {
        let mut instance = fixture.start(RecordingRouter::refusing(error.clone())).await;
        let command = cancel_command(CorrelationId::generate().as_str());
        assert_eq!(from_host(&mut instance, &command).await, Ok(Err(component_error(code, text))), "{error:?}");
    }
}

fn rally_command(count: u32, target: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = send_messages_command(count, target, payload);
    message[1] = b'R';
    message
}

fn rally_call(target: &str, payload: &[u8]) -> Call {
    Call::Request { sender: "requester".into(), target: target.into(), request: payload.to_vec(), timeout_ms: 60_000 }
}

#[tokio::test]
async fn requester_rally_sends_count_requests_one_per_callback() {
    let fixture = Fixture::load("requester");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let payload = b"\x55ping";
    assert_eq!(from_host(&mut instance, &rally_command(3, "echo", payload)).await, Ok(Ok(vec![0x55])));
    assert_eq!(router.calls(), vec![rally_call("echo", payload)], "the first request at once");
    // Each callback (whatever its outcome) sends the next, until 3 were sent.
    let outcomes = [Ok(vec![0x55]), Err(RequestError::Timeout), Ok(vec![0x55]), Ok(vec![0x55])];
    for (n, outcome) in outcomes.iter().enumerate() {
        let id = CorrelationId::generate();
        assert_eq!(instance.handle_callback(&id, outcome, None).await, Ok(Ok(())), "callback {n}");
        assert_eq!(router.calls().len(), (n + 2).min(3), "after callback {n}");
    }
    assert_eq!(router.calls(), vec![rally_call("echo", payload); 3]);
}

#[tokio::test]
async fn requester_rally_of_zero_sends_nothing() {
    let fixture = Fixture::load("requester");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    assert_eq!(from_host(&mut instance, &rally_command(0, "echo", b"\x55")).await, Ok(Ok(vec![0x55])));
    let id = CorrelationId::generate();
    assert_eq!(instance.handle_callback(&id, &Ok(vec![0x55]), None).await, Ok(Ok(())));
    assert_eq!(router.calls(), Vec::new());
}

#[tokio::test]
async fn requester_rally_ends_at_a_refusal_with_its_error() {
    let fixture = Fixture::load("requester");
    // The first request is accepted, the second refused.
    let router = RecordingRouter::failing_after(1, MessagingError::TooManyPending("quota".into()));
    let mut instance = fixture.start(Arc::clone(&router)).await;
    assert_eq!(from_host(&mut instance, &rally_command(5, "echo", b"\x55")).await, Ok(Ok(vec![0x55])));
    let id = CorrelationId::generate();
    assert_eq!(
        instance.handle_callback(&id, &Ok(vec![0x55]), None).await,
        Ok(Err(component_error(6, "quota"))),
        "the callback whose send was refused returns the refusal"
    );
    // The rally is over: later callbacks send nothing.
    assert_eq!(instance.handle_callback(&id, &Ok(vec![0x55]), None).await, Ok(Ok(())));
    assert_eq!(router.calls().len(), 2);
    // A refusal of the first request is the command's own error.
    let mut instance = fixture.start(RecordingRouter::refusing(MessagingError::QueueFull)).await;
    assert_eq!(from_host(&mut instance, &rally_command(5, "echo", b"\x55")).await, Ok(Err(component_error(4, ""))));
}

#[tokio::test]
async fn requester_rally_refuses_more_than_880_bytes_of_target_and_payload() {
    let fixture = Fixture::load("requester");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let fits = vec![0x55; 880 - 4];
    assert_eq!(from_host(&mut instance, &rally_command(1, "echo", &fits)).await, Ok(Ok(vec![0x55])));
    let over = vec![0x55; 880 - 4 + 1];
    assert_eq!(
        from_host(&mut instance, &rally_command(1, "echo", &over)).await,
        Ok(Err(component_error(100, "malformed command")))
    );
    assert_eq!(from_host(&mut instance, b"\x55R\x01\x00").await, Ok(Err(component_error(100, "malformed command"))));
    assert_eq!(router.calls(), vec![rally_call("echo", &fits)], "only the one that fits was sent");
}

#[tokio::test]
async fn requester_echoes_other_messages() {
    let fixture = Fixture::load("requester");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    for message in [&b"\x55x-unknown-op"[..], b"\x55", b"", b"\x51m\x01\x00\x00\x00\x04sink\x55"] {
        assert_eq!(from_host(&mut instance, message).await, Ok(Ok(message.to_vec())), "{message:?}");
    }
    assert_eq!(router.calls(), Vec::new());
}

#[tokio::test]
async fn requester_refuses_malformed_commands() {
    let fixture = Fixture::load("requester");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let truncated_target = b"\x55m\x01\x00\x00\x00\x09sink";
    for message in [&b"\x55m\x01\x00"[..], truncated_target, b"\x55r\x00\x00", b"\x55r\x00\x00\x00\x00\x05sink"] {
        assert_eq!(
            from_host(&mut instance, message).await,
            Ok(Err(component_error(100, "malformed command"))),
            "{message:?}"
        );
    }
    assert_eq!(router.calls(), Vec::new());
}

#[tokio::test]
async fn requester_accepts_every_callback_outcome() {
    assert_accepts_every_callback_outcome("requester").await;
}

// ---------------------------------------------------------------------------
// forwarding
// ---------------------------------------------------------------------------

fn forward_command(target: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = vec![0x55, u8::try_from(target.len()).expect("target length fits a byte")];
    message.extend_from_slice(target.as_bytes());
    message.extend_from_slice(payload);
    message
}

#[tokio::test]
async fn forwarding_sends_request_with_default_timeout() {
    let fixture = Fixture::load("forwarding");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let mut expected = b"\x55forwarded".to_vec();
    expected.extend_from_slice(router.request_id.as_str().as_bytes());
    assert_eq!(from_host(&mut instance, &forward_command("sink", b"\x55data")).await, Ok(Ok(expected)));
    assert_eq!(
        router.calls(),
        vec![Call::Request {
            sender: "forwarding".into(),
            target: "sink".into(),
            request: b"\x55data".to_vec(),
            timeout_ms: 0,
        }]
    );
}

#[tokio::test]
async fn forwarding_relays_send_request_errors() {
    let fixture = Fixture::load("forwarding");
    for (error, code, text) in every_messaging_error() {
        let mut instance = fixture.start(RecordingRouter::refusing(error.clone())).await;
        assert_eq!(
            from_host(&mut instance, &forward_command("sink", b"\x55data")).await,
            Ok(Err(component_error(code, text))),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn forwarding_echoes_short_messages() {
    let fixture = Fixture::load("forwarding");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    for message in [&b"\x55\x09sink"[..], b"\x55", b"", b"\x51\x04sink\x55"] {
        assert_eq!(from_host(&mut instance, message).await, Ok(Ok(message.to_vec())), "{message:?}");
    }
    assert_eq!(router.calls(), Vec::new());
}

#[tokio::test]
async fn forwarding_accepts_every_callback_outcome() {
    assert_accepts_every_callback_outcome("forwarding").await;
}

// ---------------------------------------------------------------------------
// probe: what the guest actually receives
// ---------------------------------------------------------------------------

/// The report `probe.wat` sends to `probe-sink` for a callback, built here
/// from the README's description, independently of the guest.
fn probe_report(id: &CorrelationId, outcome: &Result<Vec<u8>, RequestError>) -> Vec<u8> {
    let mut report = vec![0x55];
    let id_len = u32::try_from(id.as_str().len()).expect("id length fits u32");
    report.extend_from_slice(&id_len.to_le_bytes());
    report.extend_from_slice(id.as_str().as_bytes());
    match outcome {
        Ok(bytes) => {
            report.push(0);
            report.extend_from_slice(bytes);
        }
        Err(RequestError::Timeout) => report.extend_from_slice(&[1, 0]),
        Err(RequestError::Cancelled) => report.extend_from_slice(&[1, 1]),
        Err(RequestError::HandlerError(e)) => {
            report.extend_from_slice(&[1, 2]);
            report.extend_from_slice(&e.code.to_le_bytes());
            report.extend_from_slice(e.message.as_bytes());
        }
        Err(RequestError::TargetFailed(s)) => {
            report.extend_from_slice(&[1, 3]);
            report.extend_from_slice(s.as_bytes());
        }
        Err(RequestError::DeliveryFailed(s)) => {
            report.extend_from_slice(&[1, 4]);
            report.extend_from_slice(s.as_bytes());
        }
    }
    report
}

#[tokio::test]
async fn probe_reports_sender() {
    let fixture = Fixture::load("probe");
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    assert_eq!(from_host(&mut instance, b"\x55").await, Ok(Ok(b"\x55host".to_vec())));
    let peer = ComponentId::parse("billing-2.eu@node-7").expect("valid id");
    assert_eq!(instance.handle_message(&peer, b"\x55", None).await, Ok(Ok(b"\x55billing-2.eu@node-7".to_vec())));
}

#[tokio::test]
async fn probe_reports_every_callback_outcome() {
    let fixture = Fixture::load("probe");
    let router = RecordingRouter::accepting();
    let mut instance = fixture.start(Arc::clone(&router)).await;
    let mut expected = Vec::new();
    for outcome in every_callback_outcome() {
        let id = CorrelationId::generate();
        assert_eq!(instance.handle_callback(&id, &outcome, None).await, Ok(Ok(())), "{outcome:?}");
        expected.push(Call::Message {
            sender: "probe".into(),
            target: "probe-sink".into(),
            message: probe_report(&id, &outcome),
        });
    }
    assert_eq!(router.calls(), expected);
}

#[tokio::test]
async fn probe_callback_returns_component_error() {
    let fixture = Fixture::load("probe");
    let router = RecordingRouter::refusing(MessagingError::TargetNotFound("probe-sink".into()));
    let mut instance = fixture.start(router).await;
    let outcome = Err(RequestError::Timeout);
    assert_eq!(
        instance.handle_callback(&CorrelationId::generate(), &outcome, None).await,
        Ok(Err(component_error(1, "probe-sink")))
    );
}

// ---------------------------------------------------------------------------
// batching (world batch-component)
// ---------------------------------------------------------------------------

/// A [`MessageSource`] handing out a script of messages from `sender-a`,
/// recording what it handed out and every outcome reported. `pause` is
/// slept (blocking the thread, as a slow host would) before each message is
/// handed out.
#[derive(Default)]
struct ScriptedSource {
    queue: VecDeque<Vec<u8>>,
    handed: Vec<Vec<u8>>,
    /// What each `next` reported for the message before it.
    reported: Vec<Option<Result<(), ComponentError>>>,
    pause: Duration,
    /// Answers `None` once after handing out this many messages, as a
    /// mailbox that ran dry would, however many are still queued.
    gap_after: Option<usize>,
    /// Calls of `next`.
    calls: usize,
    /// Hands out every message without a sender, the first one too (a
    /// host bug the runtime must refuse).
    unnamed_first: bool,
    /// The sender was named in this batch (the others go without it).
    named: bool,
}

impl ScriptedSource {
    fn of(messages: &[&[u8]]) -> Box<Self> {
        Box::new(Self { queue: messages.iter().map(|m| m.to_vec()).collect(), ..Self::default() })
    }
}

impl MessageSource for ScriptedSource {
    fn next(&mut self, previous: Option<Result<(), ComponentError>>) -> Option<InboundMessage> {
        self.calls += 1;
        if self.reported.len() < self.handed.len() {
            self.reported.push(previous);
        }
        if self.gap_after.is_some_and(|n| n == self.handed.len()) {
            self.gap_after = None;
            return None;
        }
        std::thread::sleep(self.pause);
        let message = self.queue.pop_front()?;
        // Named on the first message, the same sender after that.
        let sender = (!self.named && !self.unnamed_first).then(|| "sender-a".into());
        self.named = true;
        self.handed.push(message.clone());
        Some(InboundMessage { sender, message, trace: None })
    }
}

/// Runs one batch of `source` and takes the source back.
async fn batch(
    instance: &mut ComponentInstance,
    mut source: Box<ScriptedSource>,
) -> (Result<(), GuestFailure>, Box<ScriptedSource>) {
    source.named = false;
    let outcome = instance.handle_messages(source).await;
    (outcome, instance.take_source::<ScriptedSource>().expect("the source comes back"))
}

/// The batching fixture's counts: (batches, messages, largest batch).
async fn batch_counts(instance: &mut ComponentInstance) -> (u32, u32, u32, u32) {
    let reply = from_host(instance, b"\x55q").await.expect("no trap").expect("ok");
    let word = |at: usize| u32::from_le_bytes(reply[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!((reply.len(), reply[0]), (17, 0x55), "{reply:?}");
    (word(1), word(5), word(9), word(13))
}

/// A `batching` message spinning `iterations` times.
fn batch_spin(iterations: u32) -> Vec<u8> {
    let mut message = b"\x55s".to_vec();
    message.extend_from_slice(&iterations.to_le_bytes());
    message
}

#[tokio::test]
async fn batching_takes_every_message_in_order_and_reports_each_outcome() {
    let fixture = Fixture::load("batching");
    assert!(fixture.compiled.accepts_batches(), "batching.wat exports batch-lifecycle");
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    assert!(instance.accepts_batches());
    let (outcome, source) = batch(&mut instance, ScriptedSource::of(&[b"\x55a", b"\x55e", b"\x55b"])).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(source.handed, [b"\x55a".to_vec(), b"\x55e".to_vec(), b"\x55b".to_vec()]);
    let error = component_error(7, "batch error");
    assert_eq!(source.reported, [Some(Ok(())), Some(Err(error)), Some(Ok(()))], "one outcome per message, in order");
    // An empty batch is a call that takes nothing.
    let (outcome, source) = batch(&mut instance, ScriptedSource::of(&[])).await;
    assert_eq!((outcome, source.handed.len()), (Ok(()), 0));
    // The source named its sender on the first message only: the guest got
    // `none` for the other two.
    assert_eq!(batch_counts(&mut instance).await, (2, 3, 3, 1));
}

#[tokio::test]
async fn batching_a_trap_fails_the_message_taken_last_and_leaves_the_rest_untaken() {
    let fixture = Fixture::load("batching");
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    let (outcome, source) = batch(&mut instance, ScriptedSource::of(&[b"\x55a", b"\x55!", b"\x55b"])).await;
    assert!(matches!(outcome, Err(GuestFailure::Trap(_))), "{outcome:?}");
    assert_eq!(source.handed, [b"\x55a".to_vec(), b"\x55!".to_vec()], "the trap hit the message taken last");
    assert_eq!(source.reported, [Some(Ok(()))], "the message before it was reported handled");
    assert_eq!(source.queue, [b"\x55b".to_vec()], "the message after it was never taken");
}

#[tokio::test]
async fn batching_a_first_message_without_its_sender_fails_the_call_as_a_host_bug() {
    // After the first message the guest keeps the sender it was given; the
    // first one must name it, or the guest would have none.
    let fixture = Fixture::load("batching");
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    // A batch that named its sender does not name the next batch's.
    let (outcome, _) = batch(&mut instance, ScriptedSource::of(&[b"\x55a"])).await;
    assert_eq!(outcome, Ok(()));
    let mut source = ScriptedSource::of(&[b"\x55a", b"\x55b"]);
    source.unnamed_first = true;
    let (outcome, source) = batch(&mut instance, source).await;
    assert!(matches!(&outcome, Err(GuestFailure::Trap(reason)) if reason.contains("host bug")), "{outcome:?}");
    assert_eq!(source.handed.len(), 1, "the call failed at the first message");
}

#[tokio::test]
async fn batching_a_guest_that_returns_early_leaves_the_rest_untaken() {
    let fixture = Fixture::load("batching");
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    let (outcome, source) = batch(&mut instance, ScriptedSource::of(&[b"\x55a", b"\x55x", b"\x55b"])).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(source.handed.len(), 2, "'x' returns at once");
    assert_eq!(source.reported, [Some(Ok(()))], "'x' itself is never reported: the caller settles it");
    assert_eq!(source.queue.len(), 1);
}

#[tokio::test]
async fn batching_each_message_gets_the_whole_fuel_budget() {
    let fixture = Fixture::load("batching");
    let budget = 1_000_000;
    let limits = Limits { fuel_per_call: budget, ..Limits::default() };
    // Twice the work of one message below is more than one budget...
    let mut instance = fixture.instance(&limits, RecordingRouter::accepting()).await;
    let (outcome, _) = batch(&mut instance, ScriptedSource::of(&[&batch_spin(2 * ITERATIONS)])).await;
    assert_eq!(outcome, Err(GuestFailure::OutOfFuel { budget }), "{} iterations exceed the budget", 2 * ITERATIONS);
    // ...yet five such messages in one batch all run: each got its own.
    let mut instance = fixture.instance(&limits, RecordingRouter::accepting()).await;
    let one = batch_spin(ITERATIONS);
    let (outcome, source) = batch(&mut instance, ScriptedSource::of(&[&one, &one, &one, &one, &one])).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(source.reported, vec![Some(Ok(())); 5]);
}

/// Iterations of the batching fixture's spin loop that fit one budget of
/// 1,000,000 fuel, twice over not (its loop costs about 14 fuel an
/// iteration).
const ITERATIONS: u32 = 40_000;

#[tokio::test]
async fn batching_the_time_budget_starts_again_for_each_message() {
    let fixture = Fixture::load("batching");
    let limits = Limits { fuel_per_call: u64::MAX, time_per_call_ms: 300, ..Limits::default() };
    let mut instance = fixture.instance(&limits, RecordingRouter::accepting()).await;
    // Three messages that each wait a while in the host (200 ms before each
    // is handed out) and then compute across epoch ticks: 600 ms in all,
    // twice the budget of one call, but each message well inside it.
    let one = batch_spin(3_000_000);
    let mut source = ScriptedSource::of(&[&one, &one, &one]);
    source.pause = Duration::from_millis(200);
    let (outcome, source) = batch(&mut instance, source).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(source.reported.len(), 3);
    // A message that never ends still meets the budget.
    let (outcome, source) = batch(&mut instance, ScriptedSource::of(&[b"\x55a", &batch_spin(u32::MAX)])).await;
    assert_eq!(outcome, Err(GuestFailure::Timeout { budget_ms: 300 }));
    assert_eq!(source.handed.len(), 2);
}

#[tokio::test]
async fn batching_none_ends_the_batch_for_a_guest_that_asks_again() {
    // batching.wat, asking once more after `none` and handling whatever
    // that gives.
    let end = "(br_if $end (i32.eqz (i32.load8_u (i32.const 64))))";
    let again = format!(
        "(if (i32.eqz (i32.load8_u (i32.const 64))) (then (call $next_message (i32.const 0) (i32.const 0) \
         (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 64)))) {end}"
    );
    let fixture = Fixture::patched("batching", "asks-again", end, &again);
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    let mut source = ScriptedSource::of(&[b"\x55a", b"\x55b", b"\x55c"]);
    source.gap_after = Some(1);
    let (outcome, source) = batch(&mut instance, source).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(source.handed, [b"\x55a".to_vec()], "nothing taken after the source said none");
    assert_eq!(source.calls, 2, "the guest's second ask was answered by the runtime, not the source");
    // The next batch asks the source again.
    let (outcome, source) = batch(&mut instance, source).await;
    assert_eq!((outcome, source.handed.len()), (Ok(()), 3));
}

#[tokio::test]
async fn batching_a_source_left_installed_hands_nothing_to_a_later_call() {
    // batching.wat whose handle-message first asks next-message, and traps
    // if that hands it a message.
    let head = "(func (export \"airssys:wasm/component-lifecycle@0.1.0#handle-message\")\n    \
                (param $sender i32) (param $sender_len i32) (param $msg i32) (param $len i32)\n    (result i32)";
    let asks = format!(
        "{head} (call $next_message (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) \
         (i32.const 64)) (if (i32.load8_u (i32.const 64)) (then unreachable))"
    );
    let fixture = Fixture::patched("batching", "asks-later", head, &asks);
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    // `x` returns early: the batch ends with messages left in the source,
    // which the caller does not take back.
    let source = ScriptedSource::of(&[b"\x55x", b"\x55a", b"\x55b"]);
    assert_eq!(instance.handle_messages(source).await, Ok(()));
    let answer = from_host(&mut instance, b"\x55q").await;
    assert!(matches!(&answer, Ok(Ok(reply)) if reply.len() == 17), "next-message gave none: {answer:?}");
    let source = instance.take_source::<ScriptedSource>().expect("still installed");
    assert_eq!(source.handed.len(), 1, "nothing more was taken");
}

#[tokio::test]
async fn batching_a_component_without_the_export_refuses_a_batch_and_gives_the_source_back() {
    let fixture = Fixture::load("echo");
    assert!(!fixture.compiled.accepts_batches());
    let mut instance = fixture.start(RecordingRouter::accepting()).await;
    assert!(!instance.accepts_batches());
    let (outcome, source) = batch(&mut instance, ScriptedSource::of(&[b"\x55a"])).await;
    assert!(matches!(&outcome, Err(GuestFailure::Trap(reason)) if reason.contains("batch-lifecycle")), "{outcome:?}");
    assert_eq!((source.handed.len(), source.queue.len()), (0, 1), "nothing was taken");
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

#[tokio::test]
async fn componentize_wat_rejects_module_without_handle_callback() {
    let text = std::fs::read_to_string(fixture_path("echo")).expect("echo.wat");
    let export = r#"(export "airssys:wasm/component-lifecycle@0.1.0#handle-callback")"#;
    assert!(text.contains(export), "echo.wat exports handle-callback");
    let without_callback = text
        .replace(export, "")
        .replace(r#"(export "cabi_post_airssys:wasm/component-lifecycle@0.1.0#handle-callback")"#, "");
    match componentize_wat("no-callback.wat", &without_callback) {
        Err(RuntimeError::Componentize { origin, reason }) => {
            assert_eq!(origin, "no-callback.wat");
            assert!(reason.contains("handle-callback"), "{reason}");
        }
        other => panic!("expected a componentize error, got {other:?}"),
    }
}

#[tokio::test]
async fn engine_load_rejects_garbage_bytes() {
    let engine = WasmEngine::new(EngineConfig::default()).expect("engine");
    let outcome = engine.load("garbage", b"\x00asm-not-really\xff\xfe");
    assert!(matches!(&outcome, Err(RuntimeError::Compile { origin, .. }) if origin == "garbage"), "{outcome:?}");
}

// ---------------------------------------------------------------------------
// Profiling
// ---------------------------------------------------------------------------

#[cfg(target_os = "linux")]
#[test]
fn perf_map_names_the_guest_functions_of_a_loaded_component() {
    // wasmtime's perf-map agent writes `/tmp/perf-<pid>.map`, one line per
    // compiled function: start address (`0x` hex), size (hex) and name,
    // from the module's name section where it has one.
    let path = PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let text = std::fs::read_to_string(fixture_path("echo")).expect("echo.wat");
    let component = componentize_wat("echo.wat", &text).expect("componentizes");
    let mut config = EngineConfig::default();
    config.perf_map = true;
    let engine = WasmEngine::new(config).expect("engine");
    engine.load("echo", &component).expect("loads");
    let map = std::fs::read_to_string(&path).expect("the perf map was written");
    let _ = std::fs::remove_file(&path);
    let named = |name: &str| {
        map.lines().any(|line| {
            let mut fields = line.splitn(3, ' ');
            let (start, size, symbol) = (fields.next(), fields.next(), fields.next());
            start.and_then(|s| s.strip_prefix("0x")).is_some_and(|s| u64::from_str_radix(s, 16).is_ok())
                && size.is_some_and(|s| u64::from_str_radix(s, 16).is_ok_and(|n| n > 0))
                && symbol.is_some_and(|s| s.contains(name))
        })
    };
    // `echo.wat` names its allocator; its handlers are unnamed.
    assert!(named("cabi_realloc"), "no line names the guest's cabi_realloc:\n{map}");
}
