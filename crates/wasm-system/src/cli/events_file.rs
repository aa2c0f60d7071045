//! `run --events FILE`: one JSON line per [`SystemEvent`], in the order the
//! system emitted them.
//!
//! Each line has every key below; a key that does not apply to the line's
//! `event` is `null`.
//!
//! | key | `handled` | `callback` | `dead-letter` | `crash`, `restart`, `stop` |
//! |---|---|---|---|---|
//! | `event` | `handled` | `callback` | `dead-letter` | `crash`, `restart`, `stop` |
//! | `component` | the handler | the requester | the target | the component |
//! | `sender` | who sent it | `null` (the host delivers callbacks) | who sent it | `null` |
//! | `kind` | `message`, `request` | `callback` | `message`, `request`, `callback` | `null` |
//! | `correlation_id` | a request's | the request's | a request's or callback's | `null` |
//! | `outcome` | `ok`, `handler-error(<code>)` | `response`, `timeout`, `cancelled`, `handler-error(<code>)`, `target-failed`, `delivery-failed` | `target-failed`, `undelivered` | `null` |
//! | `reason` | the handler error's message | the error's text | why | why (crash, stop) |
//! | `codec`, `bytes`, `preview` | the payload handled | the response | `null` | `null` |
//! | `response_codec`, `response_bytes`, `response_preview` | a request's response | `null` | `null` | `null` |
//! | `callback_result` | `null` | `ok`, `handler-error(<code>)`: what `handle-callback` returned | `null` | `null` |
//! | `restarts` | `null` | `null` | `null` | restarts in the window (`restart`) |
//! | `trace_id` | the handler's W3C trace id | the callback handler's | `null` | `null` |
//!
//! `codec` is the multicodec name (`raw`, `json`, ...), `bytes` the payload
//! length with its prefix, `preview` the first 64 bytes of the body (see
//! [`super::payload::preview`]).

use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasm_core::{ComponentError, RequestError};
use wasm_system::SystemEvent;

use crate::cli::payload::describe;

/// The writer of `--events`: a task that turns events into lines on a
/// buffered file, until [`EventsFile::finish`].
#[derive(Debug)]
pub(crate) struct EventsFile {
    done: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<u64>>,
}

impl EventsFile {
    /// Starts writing `events` to `file`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub(crate) fn start(file: File, events: UnboundedReceiver<SystemEvent>) -> Self {
        let (done, finish) = oneshot::channel();
        let task = tokio::spawn(write_events(BufWriter::with_capacity(64 * 1024, file), events, finish));
        Self { done, task }
    }

    /// Writes what the system emitted before this call, flushes the file and
    /// returns the number of lines written. Call it once the system has shut
    /// down, so that every event is in.
    ///
    /// # Errors
    /// The write error, if writing or flushing failed.
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropped part-way, the writer task stops at its next
    /// event and the last lines may stay unflushed.
    pub(crate) async fn finish(self) -> anyhow::Result<u64> {
        let _ = self.done.send(());
        self.task.await.context("the events writer task failed")?.context("writing the events file")
    }
}

/// Writes one line per event until the stream ends or `finish` fires; then
/// writes what is already queued, flushes, and returns the number of lines.
async fn write_events(
    mut out: BufWriter<File>,
    mut events: UnboundedReceiver<SystemEvent>,
    mut finish: oneshot::Receiver<()>,
) -> std::io::Result<u64> {
    let mut lines = 0;
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(event) => {
                    write_line(&mut out, &event)?;
                    lines += 1;
                }
                None => break,
            },
            _ = &mut finish => {
                events.close();
                while let Ok(event) = events.try_recv() {
                    write_line(&mut out, &event)?;
                    lines += 1;
                }
                break;
            }
        }
    }
    out.flush()?;
    Ok(lines)
}

fn write_line(out: &mut impl Write, event: &SystemEvent) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &EventLine::from(event))?;
    out.write_all(b"\n")
}

/// One line of the events file (see the module docs).
#[derive(Debug, Default, Serialize)]
struct EventLine<'a> {
    event: &'static str,
    component: &'a str,
    sender: Option<&'a str>,
    kind: Option<&'static str>,
    correlation_id: Option<&'a str>,
    outcome: Option<String>,
    reason: Option<&'a str>,
    codec: Option<&'static str>,
    bytes: Option<usize>,
    preview: Option<String>,
    response_codec: Option<&'static str>,
    response_bytes: Option<usize>,
    response_preview: Option<String>,
    callback_result: Option<String>,
    restarts: Option<u32>,
    trace_id: Option<String>,
}

/// `handler-error(<code>)`.
fn handler_error(error: &ComponentError) -> String {
    format!("handler-error({})", error.code)
}

impl<'a> From<&'a SystemEvent> for EventLine<'a> {
    fn from(event: &'a SystemEvent) -> Self {
        match event {
            SystemEvent::Handled { component, sender, request_id, payload, result, trace, .. } => {
                let (codec, preview) = describe(payload);
                let response = match (request_id, result) {
                    (Some(_), Ok(response)) => Some((describe(response), response.len())),
                    _ => None,
                };
                EventLine {
                    event: "handled",
                    component: component.as_str(),
                    sender: Some(sender.as_str()),
                    kind: Some(if request_id.is_some() { "request" } else { "message" }),
                    correlation_id: request_id.as_ref().map(|id| id.as_str()),
                    outcome: Some(result.as_ref().map_or_else(handler_error, |_| "ok".to_owned())),
                    reason: result.as_ref().err().map(|e| e.message.as_str()),
                    codec: codec.map(|c| c.name()),
                    bytes: Some(payload.len()),
                    preview: Some(preview),
                    response_codec: response.as_ref().and_then(|((codec, _), _)| codec.map(|c| c.name())),
                    response_bytes: response.as_ref().map(|(_, bytes)| *bytes),
                    response_preview: response.map(|((_, preview), _)| preview),
                    trace_id: Some(trace.trace_id_hex()),
                    ..EventLine::default()
                }
            }
            SystemEvent::Callback { component, request_id, outcome, result, trace, .. } => {
                let response = outcome.as_ref().ok().map(|bytes| (describe(bytes), bytes.len()));
                let (outcome, reason) = match outcome {
                    Ok(_) => ("response".to_owned(), None),
                    Err(RequestError::HandlerError(e)) => (handler_error(e), Some(e.message.as_str())),
                    Err(e @ (RequestError::TargetFailed(why) | RequestError::DeliveryFailed(why))) => {
                        (e.kind().to_owned(), Some(why.as_str()))
                    }
                    Err(e) => (e.kind().to_owned(), None),
                };
                EventLine {
                    event: "callback",
                    component: component.as_str(),
                    kind: Some("callback"),
                    correlation_id: Some(request_id.as_str()),
                    outcome: Some(outcome),
                    reason,
                    codec: response.as_ref().and_then(|((codec, _), _)| codec.map(|c| c.name())),
                    bytes: response.as_ref().map(|(_, bytes)| *bytes),
                    preview: response.map(|((_, preview), _)| preview),
                    callback_result: Some(result.as_ref().map_or_else(handler_error, |()| "ok".to_owned())),
                    trace_id: Some(trace.trace_id_hex()),
                    ..EventLine::default()
                }
            }
            SystemEvent::DeadLettered(letter) => EventLine {
                event: "dead-letter",
                component: letter.target.as_str(),
                sender: Some(letter.sender.as_str()),
                kind: Some(letter.kind),
                correlation_id: letter.correlation_id.as_ref().map(|id| id.as_str()),
                outcome: Some(letter.cause.as_str().to_owned()),
                reason: Some(letter.reason.as_str()),
                ..EventLine::default()
            },
            SystemEvent::Crashed { component, reason } => EventLine {
                event: "crash",
                component: component.as_str(),
                reason: Some(reason.as_str()),
                ..EventLine::default()
            },
            SystemEvent::Restarted { component, restarts } => EventLine {
                event: "restart",
                component: component.as_str(),
                restarts: Some(*restarts),
                ..EventLine::default()
            },
            SystemEvent::Stopped { component, reason } => EventLine {
                event: "stop",
                component: component.as_str(),
                reason: Some(reason.as_str()),
                ..EventLine::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use wasm_core::{Codec, ComponentId, CorrelationId, MessagePayload, TraceContext};

    use super::*;

    fn line(event: &SystemEvent) -> serde_json::Value {
        serde_json::to_value(EventLine::from(event)).expect("serializable")
    }

    fn id(text: &str) -> ComponentId {
        ComponentId::parse(text).expect("an id")
    }

    #[test]
    fn a_handled_request_shows_payload_response_and_trace() {
        let request = CorrelationId::generate();
        let trace = TraceContext::new_root();
        let event = SystemEvent::Handled {
            component: id("service"),
            sender: id("client"),
            request_id: Some(request),
            payload: MessagePayload::encode(Codec::Raw, b"hello").into_bytes(),
            result: Ok(MessagePayload::encode(Codec::Json, b"\"hi\"").into_bytes()),
            trace,
            parent: trace,
        };
        let line = line(&event);
        assert_eq!(line["event"], "handled");
        assert_eq!(
            (&line["component"], &line["sender"], &line["kind"]),
            (&"service".into(), &"client".into(), &"request".into())
        );
        assert_eq!(line["correlation_id"], request.as_str());
        assert_eq!((&line["outcome"], &line["reason"]), (&"ok".into(), &serde_json::Value::Null));
        assert_eq!((&line["codec"], &line["bytes"], &line["preview"]), (&"raw".into(), &6.into(), &"hello".into()));
        assert_eq!((&line["response_codec"], &line["response_preview"]), (&"json".into(), &"\"hi\"".into()));
        assert_eq!(line["trace_id"], trace.trace_id_hex());
    }

    #[test]
    fn a_handler_error_names_its_code_and_a_callback_its_outcome() {
        let trace = TraceContext::new_root();
        let error = ComponentError { code: 42, message: "rejected".into() };
        let handled = SystemEvent::Handled {
            component: id("rejecter"),
            sender: ComponentId::host(),
            request_id: None,
            payload: MessagePayload::encode(Codec::Raw, b"x").into_bytes(),
            result: Err(error.clone()),
            trace,
            parent: trace,
        };
        let handled = line(&handled);
        assert_eq!((&handled["kind"], &handled["outcome"]), (&"message".into(), &"handler-error(42)".into()));
        assert_eq!((&handled["reason"], &handled["response_codec"]), (&"rejected".into(), &serde_json::Value::Null));
        let callback = SystemEvent::Callback {
            component: id("client"),
            request_id: CorrelationId::generate(),
            outcome: Err(RequestError::Timeout),
            result: Err(ComponentError { code: 7, message: "late".into() }),
            trace,
            parent: trace,
        };
        let callback = line(&callback);
        assert_eq!((&callback["kind"], &callback["outcome"]), (&"callback".into(), &"timeout".into()));
        assert_eq!((&callback["sender"], &callback["codec"]), (&serde_json::Value::Null, &serde_json::Value::Null));
        assert_eq!(callback["callback_result"], "handler-error(7)");
    }
}
