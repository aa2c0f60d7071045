//! OpenTelemetry export: a chain of three components, ending in a timeout,
//! exported over OTLP/HTTP to a receiver in this test that decodes the
//! protobuf with `opentelemetry-proto`, is one trace with the right parents.
//!
//! Its own test binary: it installs the process's global `tracing`
//! subscriber (the OTLP layer), which the other tests must not see.

mod otlp_receiver;

use std::time::{Duration, Instant};

use otlp_receiver::{Exported, receiver};
use tracing_subscriber::layer::SubscriberExt;
use wasm_core::RequestError;
use wasm_system::SystemEvent;
use wasm_system::otlp::OtlpTracing;
use wasm_tests::Harness;

/// A forwarding payload: `0x55 L target inner`.
fn forward(target: &str, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x55, u8::try_from(target.len()).expect("short")];
    payload.extend_from_slice(target.as_bytes());
    payload.extend_from_slice(inner);
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_a_request_chain_with_a_timeout_is_one_trace_with_the_right_parents() {
    let (url, spans) = receiver();
    let otlp = OtlpTracing::new(Some(&url), "wasm-tests").expect("the exporter");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(otlp.layer()))
        .expect("the only subscriber of this binary");

    // front --request--> middle --request (50 ms timeout)--> slow, which spins
    // until its 300 ms time budget traps it: middle's request times out first.
    let mut h = Harness::start(&[
        ("front", "forwarding", "[capabilities]\nsend = [\"middle\"]\nrequest = true"),
        (
            "middle",
            "forwarding",
            "[capabilities]\nsend = [\"slow\"]\nrequest = true\n[requests]\ndefault_timeout_ms = 50",
        ),
        ("slow", "slow", "[limits]\nfuel_per_call = 1000000000000\ntime_per_call_ms = 300"),
    ])
    .await;
    let spin_forever = [0x55, 0xff, 0xff, 0xff, 0xff];
    h.system.try_send("front", forward("middle", &forward("slow", &spin_forever))).expect("accepted");
    let (front_trace, middle_trace) = (
        h.wait_for("front's callback", |e| match e {
            SystemEvent::Callback { component, outcome: Ok(_), trace, .. } if component.as_str() == "front" => {
                Some(*trace)
            }
            _ => None,
        })
        .await,
        h.wait_for("middle's timeout", |e| match e {
            SystemEvent::Callback { component, outcome: Err(RequestError::Timeout), trace, .. }
                if component.as_str() == "middle" =>
            {
                Some(*trace)
            }
            _ => None,
        })
        .await,
    );
    h.wait_for("slow's trap", |e| matches!(e, SystemEvent::Crashed { .. }).then_some(())).await;
    h.settle().await;
    let trace_id = front_trace.trace_id_hex();
    assert_eq!(middle_trace.trace_id_hex(), trace_id, "the host's events already say one trace");
    otlp.flush();

    // Five handler spans: front (message), middle (request), slow (request),
    // front (callback: response), middle (callback: timeout).
    let mut got: Vec<Exported> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.iter().filter(|s| s.trace_id == trace_id).count() < 5 {
        let left = deadline.checked_duration_since(Instant::now()).expect("five spans within 20 s");
        if let Ok(span) = spans.recv_timeout(left) {
            got.push(span);
        }
    }
    let chain: Vec<&Exported> = got.iter().filter(|s| s.trace_id == trace_id).collect();
    let find = |component: &str, kind: &str| -> &Exported {
        let matching: Vec<_> = chain
            .iter()
            .filter(|s| s.attributes.get("component").map(String::as_str) == Some(component))
            .filter(|s| s.attributes.get("kind").map(String::as_str) == Some(kind))
            .collect();
        assert_eq!(matching.len(), 1, "one {kind} span at {component}: {chain:#?}");
        matching[0]
    };
    let front = find("front", "message");
    let middle = find("middle", "request");
    let slow = find("slow", "request");
    let front_callback = find("front", "callback");
    let middle_callback = find("middle", "callback");

    assert_eq!(front.parent_span_id, "", "the host's message starts the trace");
    assert_eq!(front.attributes["sender"], "host");
    assert_eq!(front.attributes["outcome"], "ok");
    assert_eq!(middle.parent_span_id, front.span_id, "middle handles front's request");
    assert_eq!(middle.attributes["sender"], "front");
    assert!(!middle.attributes["correlation_id"].is_empty());
    assert_eq!(slow.parent_span_id, middle.span_id, "slow handles middle's request");
    assert_eq!(slow.attributes["outcome"], "target-failed", "its time budget trapped it");
    assert_eq!(front_callback.parent_span_id, middle.span_id, "the response came from middle's handler");
    assert_eq!(front_callback.attributes["request_outcome"], "response");
    assert_eq!(front_callback.attributes["correlation_id"], middle.attributes["correlation_id"]);
    assert_eq!(middle_callback.parent_span_id, middle.span_id, "the timeout stays in the requester's trace");
    assert_eq!(middle_callback.attributes["request_outcome"], "timeout");
    assert_eq!(middle_callback.attributes["correlation_id"], slow.attributes["correlation_id"]);
    // The exported ids are the host's own: the callback events carry them.
    assert_eq!(front_callback.span_id, front_trace.span_id_hex());
    assert_eq!(middle_callback.span_id, middle_trace.span_id_hex());
    h.finish().await;
}
