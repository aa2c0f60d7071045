//! A minimal OTLP/HTTP trace receiver for tests: it accepts `POST
//! /v1/traces` with a protobuf `ExportTraceServiceRequest` body (what
//! `opentelemetry-otlp`'s `http-proto` exporter sends), decodes it with
//! `opentelemetry-proto` and hands each span to a channel. Shared by the
//! end-to-end OTLP test and the CLI's (included there by `#[path]`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// One exported span, as the receiver decoded it.
#[derive(Clone, Debug)]
#[allow(dead_code, reason = "the benchmark includes this file and reads no span")]
pub(crate) struct Exported {
    pub(crate) trace_id: String,
    pub(crate) span_id: String,
    pub(crate) parent_span_id: String,
    pub(crate) attributes: HashMap<String, String>,
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
/// export; every span goes to `spans` (none are decoded without it).
fn serve(stream: TcpStream, spans: Option<&mpsc::Sender<Exported>>) {
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
        if let Some(spans) = spans {
            for span in decode(&body) {
                let _ = spans.send(span);
            }
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if reply.write_all(ok).is_err() {
            return;
        }
    }
}

/// An OTLP/HTTP receiver on a free loopback port: its traces URL and the
/// spans it receives.
#[allow(dead_code, reason = "the benchmark uses the discarding receiver only")]
pub(crate) fn receiver() -> (String, mpsc::Receiver<Exported>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}/v1/traces", listener.local_addr().expect("its address"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, Some(&tx)));
        }
    });
    (url, rx)
}

/// An OTLP/HTTP endpoint on a free loopback port that answers every export
/// and decodes nothing (for benchmarks: the collector's cost is not the
/// host's). Returns its traces URL.
#[allow(dead_code, reason = "used by the benchmark, not by every includer")]
pub(crate) fn discarding_receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}/v1/traces", listener.local_addr().expect("its address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, None));
        }
    });
    url
}
