//! OpenTelemetry export: a chain of three components, ending in a timeout,
//! exported over OTLP/HTTP to a receiver in this test that decodes the
//! protobuf with `opentelemetry-proto`, is one trace with the right parents.
//!
//! Its own test binary: it installs the process's global `tracing`
//! subscriber (the OTLP layer), which the other tests must not see.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;
use wasm_core::RequestError;
use wasm_system::SystemEvent;
use wasm_system::otlp::OtlpTracing;
use wasm_tests::Harness;

/// One exported span, as the receiver decoded it.
#[derive(Clone, Debug)]
struct Exported {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(body: &[u8]) -> Vec<Exported> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let spans = request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans);
    spans
        .map(|span| Exported {
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: hex(&span.parent_span_id),
            attributes: span
                .attributes
                .iter()
                .map(|kv| {
                    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(Value::StringValue(s)) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (kv.key.clone(), value)
                })
                .collect(),
        })
        .collect()
}

/// Serves one HTTP/1.1 connection (keep-alive): each POST body is an
/// export; every span goes to `spans`.
fn serve(stream: TcpStream, spans: &mpsc::Sender<Exported>) {
    let mut reply = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a content length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("the body");
        for span in decode(&body) {
            let _ = spans.send(span);
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if reply.write_all(ok).is_err() {
            return;
        }
    }
}

/// An OTLP/HTTP receiver on a free loopback port: its traces URL and the
/// spans it receives.
fn receiver() -> (String, mpsc::Receiver<Exported>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}/v1/traces", listener.local_addr().expect("its address"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, &tx));
        }
    });
    (url, rx)
}

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
