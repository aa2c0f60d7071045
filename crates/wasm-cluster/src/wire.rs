//! The wire format (see the crate docs): subjects, and envelopes and
//! outcomes as NATS headers plus a body. Pure functions, no I/O.

use std::borrow::Cow;

use async_nats::HeaderMap;
use bytes::Bytes;
use wasm_core::{
    ComponentError, ComponentId, CorrelationId, RemoteEnvelope, RemoteKind, RemoteOutcome, RequestError, TraceContext,
};

/// An envelope's routing line, one header (one allocation, one lookup):
/// `<kind> <sender> <target> <session> <seq> [<correlation-id> <timeout-ms>]`,
/// space-separated (ids hold no spaces): `message` or `request`; sender and
/// target `name@node` (the target is authoritative over the subject); the
/// sending transport's session and the envelope's sequence number to that
/// node (decimal u64, see the `flow` module); for a request, its
/// correlation id (UUID v4) and timeout (decimal ms).
pub(crate) const ENVELOPE: &str = "airssys-envelope";
/// The kind of a message on an outcome subject: absent for an outcome,
/// [`KIND_ACK`] for an acknowledgement.
pub(crate) const KIND: &str = "airssys-kind";
/// A request's correlation id (UUID v4 text).
pub(crate) const CORRELATION_ID: &str = "airssys-correlation-id";
/// W3C trace context.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The requester an outcome goes back to, `name@node`.
pub(crate) const REQUESTER: &str = "airssys-requester";
/// `response` or a request-error kind (`timeout`, `handler-error`, ...).
pub(crate) const OUTCOME: &str = "airssys-outcome";
/// A handler error's code, decimal.
pub(crate) const ERROR_CODE: &str = "airssys-error-code";
/// An error's message, percent-escaped (see [`escape`]).
pub(crate) const ERROR: &str = "airssys-error";

/// The `airssys-kind` of an acknowledgement on an outcome subject.
pub(crate) const KIND_ACK: &str = "ack";

/// The `airssys-outcome` value of a response.
const RESPONSE: &str = "response";

/// The subjects of one host, built once.
#[derive(Debug)]
pub(crate) struct Subjects {
    /// `<prefix>`.
    prefix: String,
    /// `<prefix>.c.<node>.>`: envelopes for this host.
    pub(crate) envelopes: String,
    /// `<prefix>.r.<node>`: outcomes for this host.
    pub(crate) outcomes: String,
    /// `<prefix>.dir`: announcements.
    pub(crate) directory: String,
    /// `<prefix>.dir.hello`: a starting host asks for announcements.
    pub(crate) hello: String,
    /// `<prefix>.sync.<node>`: nobody subscribes; a request here comes
    /// back from the broker as "no responders" (see `start`).
    pub(crate) sync: String,
}

impl Subjects {
    pub(crate) fn new(prefix: &str, node: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            envelopes: format!("{prefix}.c.{}.>", token(node)),
            outcomes: format!("{prefix}.r.{}", token(node)),
            directory: format!("{prefix}.dir"),
            hello: format!("{prefix}.dir.hello"),
            sync: format!("{prefix}.sync.{}", token(node)),
        }
    }

    /// `<prefix>.c.<node>.<name>`, where `target` is `name@node`.
    pub(crate) fn envelope(&self, node: &str, name: &str) -> String {
        format!("{}.c.{}.{}", self.prefix, token(node), token(name))
    }

    /// `<prefix>.r.<node>`: the outcomes of requesters on `node`.
    pub(crate) fn outcome(&self, node: &str) -> String {
        format!("{}.r.{}", self.prefix, token(node))
    }
}

/// A name or node as subject tokens. Ids may hold `.`, so they may span
/// several tokens, which is fine (hosts subscribe with `>`, and the headers
/// say the real target); but NATS drops subjects with an empty token, so an
/// id with a leading, trailing or doubled `.` has its dots replaced by `_`.
/// Two ids may then share a subject: the receiver's header check sorts
/// them out.
pub(crate) fn token(part: &str) -> Cow<'_, str> {
    if part.split('.').any(str::is_empty) { Cow::Owned(part.replace('.', "_")) } else { Cow::Borrowed(part) }
}

/// The bytes `headers` take in an `HPUB` (`NATS/1.0` line, one
/// `name: value` line each, the blank line), which the broker counts
/// against its `max_payload`.
#[cfg(test)]
pub(crate) fn header_bytes(headers: &HeaderMap) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            values.iter().map(|v| AsRef::<str>::as_ref(name).len() + v.as_str().len() + 4).sum::<usize>()
        })
        .sum();
    "NATS/1.0\r\n\r\n".len() + lines
}

/// Why an inbound message was dropped as malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Malformed> {
    headers.get(name).map(|v| v.as_str()).ok_or_else(|| Malformed(format!("no {name} header")))
}

/// A `name@node` id, `text`, read as `what`.
fn qualified(text: &str, what: &str) -> Result<ComponentId, Malformed> {
    let id = ComponentId::parse(text).map_err(|e| Malformed(format!("{what}: {e}")))?;
    if id.node().is_none() {
        return Err(Malformed(format!("{what}: {text:?} has no @node")));
    }
    Ok(id)
}

fn correlation_id(headers: &HeaderMap) -> Result<CorrelationId, Malformed> {
    CorrelationId::parse(header(headers, CORRELATION_ID)?).map_err(|e| Malformed(format!("{CORRELATION_ID}: {e}")))
}

/// The trace context of `headers`; a missing or malformed `traceparent`
/// starts a new trace, as the W3C spec tells a receiver to.
fn trace(headers: &HeaderMap) -> TraceContext {
    match headers.get(TRACEPARENT).map(|v| TraceContext::parse(v.as_str())) {
        Some(Some(trace)) => trace,
        Some(None) => {
            tracing::debug!(value = ?headers.get(TRACEPARENT), "malformed traceparent; starting a new trace");
            TraceContext::new_root()
        }
        None => TraceContext::new_root(),
    }
}

/// The routing line of `envelope` without its sequence part (see
/// [`ENVELOPE`]): made once per send, before the envelope is numbered.
pub(crate) fn envelope_line(envelope: &RemoteEnvelope) -> String {
    let kind = match envelope.kind {
        RemoteKind::Message => "message",
        RemoteKind::Request { .. } => "request",
    };
    format!("{kind} {} {}", envelope.sender, envelope.target)
}

/// The most bytes the headers of an envelope whose line is `line` take
/// (see [`header_bytes`]), whatever its sequence part.
pub(crate) fn envelope_header_bytes_max(line: &str, kind: RemoteKind) -> usize {
    // ` <session> <seq>`, each up to 20 digits; a request's ` <uuid> <ms>`.
    let sequence = 2 * (1 + 20);
    let request = match kind {
        RemoteKind::Message => 0,
        RemoteKind::Request { .. } => 1 + 36 + 1 + 20,
    };
    let traceparent = TRACEPARENT.len() + 4 + "00-".len() + 32 + 1 + 16 + 1 + 2;
    "NATS/1.0\r\n\r\n".len() + ENVELOPE.len() + 4 + line.len() + sequence + request + traceparent
}

/// The headers of an envelope (its body is the payload): its routing
/// `line` with the session and sequence number (and a request's id and
/// timeout), and its `traceparent`.
pub(crate) fn envelope_headers(
    line: &str,
    kind: RemoteKind,
    session: u64,
    seq: u64,
    trace: &TraceContext,
) -> HeaderMap {
    let value = match kind {
        RemoteKind::Message => format!("{line} {session} {seq}"),
        RemoteKind::Request { id, timeout_ms } => format!("{line} {session} {seq} {id} {timeout_ms}"),
    };
    let mut headers = HeaderMap::new();
    headers.insert(ENVELOPE, value);
    headers.insert(TRACEPARENT, trace.traceparent());
    headers
}

/// Whether a message on an outcome subject is an acknowledgement.
pub(crate) fn is_ack(headers: Option<&HeaderMap>) -> bool {
    headers.and_then(|h| h.get(KIND)).is_some_and(|v| v.as_str() == KIND_ACK)
}

/// The headers of an acknowledgement (its body is [`crate::flow::Ack`]'s JSON).
pub(crate) fn ack_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(KIND, KIND_ACK);
    headers
}

/// The envelope in `headers` and `body`, with its session and sequence
/// number.
pub(crate) fn decode_envelope(
    headers: Option<&HeaderMap>,
    body: &Bytes,
) -> Result<(RemoteEnvelope, (u64, u64)), Malformed> {
    let headers = headers.ok_or_else(|| Malformed("no headers".to_owned()))?;
    let line = header(headers, ENVELOPE)?;
    let mut fields = line.split(' ');
    let mut field = |what: &str| fields.next().ok_or_else(|| Malformed(format!("{ENVELOPE}: no {what} in {line:?}")));
    let kind = field("kind")?;
    let sender = qualified(field("sender")?, "sender")?;
    let target = qualified(field("target")?, "target")?;
    let number = |text: &str, what: &str| {
        text.parse::<u64>().map_err(|_| Malformed(format!("{ENVELOPE}: {what} {text:?} is not a decimal u64")))
    };
    let session = number(field("session")?, "session")?;
    let seq = number(field("sequence number")?, "sequence number")?;
    let kind = match kind {
        "message" => RemoteKind::Message,
        "request" => {
            let text = field("correlation id")?;
            let id = CorrelationId::parse(text).map_err(|e| Malformed(format!("{ENVELOPE}: correlation id: {e}")))?;
            let timeout_ms = number(field("timeout")?, "timeout")?;
            RemoteKind::Request { id, timeout_ms }
        }
        other => return Err(Malformed(format!("{ENVELOPE}: kind {other:?}"))),
    };
    if let Some(extra) = fields.next() {
        return Err(Malformed(format!("{ENVELOPE}: unexpected {extra:?} in {line:?}")));
    }
    let envelope = RemoteEnvelope { sender, target, kind, payload: body.to_vec(), trace: trace(headers) };
    Ok((envelope, (session, seq)))
}

/// The headers and body of `outcome`: the response bytes, or nothing.
pub(crate) fn encode_outcome(outcome: &RemoteOutcome) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(REQUESTER, outcome.requester.as_str());
    headers.insert(CORRELATION_ID, outcome.id.as_str());
    headers.insert(TRACEPARENT, outcome.trace.traceparent());
    let body = match &outcome.outcome {
        Ok(bytes) => {
            headers.insert(OUTCOME, RESPONSE);
            Bytes::copy_from_slice(bytes)
        }
        Err(error) => {
            headers.insert(OUTCOME, error.kind());
            let message = match error {
                RequestError::Timeout | RequestError::Cancelled => None,
                RequestError::HandlerError(e) => {
                    headers.insert(ERROR_CODE, e.code.to_string());
                    Some(&e.message)
                }
                RequestError::TargetFailed(m) | RequestError::DeliveryFailed(m) => Some(m),
            };
            if let Some(message) = message {
                headers.insert(ERROR, escape(message).into_owned());
            }
            Bytes::new()
        }
    };
    (headers, body)
}

/// The outcome in `headers` and `body`.
pub(crate) fn decode_outcome(headers: Option<&HeaderMap>, body: &Bytes) -> Result<RemoteOutcome, Malformed> {
    let headers = headers.ok_or_else(|| Malformed("no headers".to_owned()))?;
    let requester = qualified(header(headers, REQUESTER)?, REQUESTER)?;
    let id = correlation_id(headers)?;
    let message = || -> Result<String, Malformed> {
        let text = headers.get(ERROR).map_or("", |v| v.as_str());
        unescape(text).ok_or_else(|| Malformed(format!("{ERROR}: bad escape in {text:?}")))
    };
    let outcome = match header(headers, OUTCOME)? {
        RESPONSE => Ok(body.to_vec()),
        "timeout" => Err(RequestError::Timeout),
        "cancelled" => Err(RequestError::Cancelled),
        "handler-error" => {
            let code = header(headers, ERROR_CODE)?;
            let code = code.parse().map_err(|_| Malformed(format!("{ERROR_CODE}: {code:?}")))?;
            Err(RequestError::HandlerError(ComponentError { code, message: message()? }))
        }
        "target-failed" => Err(RequestError::TargetFailed(message()?)),
        "delivery-failed" => Err(RequestError::DeliveryFailed(message()?)),
        other => return Err(Malformed(format!("{OUTCOME}: {other:?}"))),
    };
    Ok(RemoteOutcome { requester, id, outcome, trace: trace(headers) })
}

/// A header value for any text: NATS header values end at a line break and
/// lose surrounding whitespace, so `%`, control characters and a leading or
/// trailing space are written `%XX` (RFC 3986 percent-encoding of those
/// bytes only; the rest stays readable).
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    let last = text.len().saturating_sub(1);
    let needs = |i: usize, b: u8| b == b'%' || b.is_ascii_control() || (b == b' ' && (i == 0 || i == last));
    if !text.bytes().enumerate().any(|(i, b)| needs(i, b)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.char_indices() {
        match u8::try_from(c) {
            Ok(b) if needs(i, b) => out.push_str(&format!("%{b:02X}")),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The inverse of [`escape`]; `None` for a `%` not followed by two hex digits.
pub(crate) fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ComponentId {
        ComponentId::parse(text).expect("a valid id")
    }

    #[test]
    fn subjects_keep_ids_readable_and_never_have_an_empty_token() {
        let subjects = Subjects::new("airssys", "node-1");
        assert_eq!(subjects.envelopes, "airssys.c.node-1.>");
        assert_eq!(subjects.outcomes, "airssys.r.node-1");
        assert_eq!(subjects.envelope("b.eu", "billing.v2"), "airssys.c.b.eu.billing.v2");
        assert_eq!(subjects.envelope("b", ".x..y"), "airssys.c.b._x__y");
        assert_eq!(subjects.outcome("a."), "airssys.r.a_");
        assert_eq!(Subjects::new("p", "..").envelopes, "p.c.__.>");
    }

    #[test]
    fn envelopes_round_trip_in_one_routing_header_and_the_size_bound_holds() {
        for kind in [RemoteKind::Message, RemoteKind::Request { id: CorrelationId::generate(), timeout_ms: u64::MAX }] {
            let envelope = RemoteEnvelope {
                sender: id("pinger@a"),
                target: id("echo.v2@b.eu"),
                kind,
                payload: b"\x55ping".to_vec(),
                trace: TraceContext::new_root(),
            };
            let line = envelope_line(&envelope);
            let headers = envelope_headers(&line, kind, u64::MAX, u64::MAX, &envelope.trace);
            assert_eq!(headers.iter().count(), 2, "the routing line and traceparent");
            assert_eq!(header_bytes(&headers), envelope_header_bytes_max(&line, kind), "the bound is tight");
            let small = envelope_headers(&line, kind, 7, 1, &envelope.trace);
            assert!(header_bytes(&small) < envelope_header_bytes_max(&line, kind));
            let body = Bytes::from(envelope.payload.clone());
            assert_eq!(decode_envelope(Some(&small), &body), Ok((envelope, (7, 1))));
        }
        let message = RemoteEnvelope {
            sender: id("pinger@a"),
            target: id("echo@b"),
            kind: RemoteKind::Message,
            payload: Vec::new(),
            trace: TraceContext::new_root(),
        };
        let headers = envelope_headers(&envelope_line(&message), message.kind, 3, 9, &message.trace);
        assert_eq!(headers.get(ENVELOPE).map(|v| v.as_str()), Some("message pinger@a echo@b 3 9"));
    }

    #[test]
    fn malformed_envelopes_are_refused_with_the_reason() {
        let trace = TraceContext::new_root();
        let body = Bytes::new();
        assert!(decode_envelope(None, &body).is_err());
        let with = |line: &str, traceparent: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ENVELOPE, line);
            headers.insert(TRACEPARENT, traceparent);
            decode_envelope(Some(&headers), &body).map(|(e, _)| e).map_err(|Malformed(m)| m)
        };
        let good = trace.traceparent();
        let id = CorrelationId::generate();
        assert!(with(&format!("request pinger@a echo@b 1 2 {id} 5"), &good).is_ok());
        assert!(with("message pinger echo@b 1 2", &good).expect_err("no node").contains("no @node"));
        assert!(with("message pinger@a Echo@b 1 2", &good).is_err());
        assert!(with("gossip pinger@a echo@b 1 2", &good).is_err());
        assert!(with("message pinger@a echo@b 1", &good).expect_err("no seq").contains("sequence number"));
        assert!(with("message pinger@a echo@b x 2", &good).is_err());
        assert!(with("message pinger@a echo@b 1 2 3", &good).expect_err("extra").contains("unexpected"));
        assert!(with("request pinger@a echo@b 1 2 nope 5", &good).is_err());
        assert!(with(&format!("request pinger@a echo@b 1 2 {id} -1"), &good).is_err());
        assert!(with(&format!("request pinger@a echo@b 1 2 {id}"), &good).is_err());
        // A bad traceparent starts a new trace; the envelope is kept.
        let kept = with("message pinger@a echo@b 1 2", "00-zz").expect("kept");
        assert_ne!(kept.trace, trace);
    }

    #[test]
    fn outcomes_round_trip_every_kind() {
        let outcomes = [
            Ok(b"\x55pong".to_vec()),
            Err(RequestError::Timeout),
            Err(RequestError::Cancelled),
            Err(RequestError::HandlerError(ComponentError { code: 7, message: " 100% bad\r\nnews ".into() })),
            Err(RequestError::TargetFailed("trap: unreachable".into())),
            Err(RequestError::DeliveryFailed(String::new())),
        ];
        for outcome in outcomes {
            let outcome = RemoteOutcome {
                requester: id("pinger@a"),
                id: CorrelationId::generate(),
                outcome,
                trace: TraceContext::new_root(),
            };
            let (headers, body) = encode_outcome(&outcome);
            assert_eq!(decode_outcome(Some(&headers), &body), Ok(outcome));
        }
    }

    #[test]
    fn escape_round_trips_and_leaves_plain_text_alone() {
        assert!(matches!(escape("plain text, ok"), Cow::Borrowed(_)));
        for text in ["", " ", "%", "a\nb", " é\t%41 ", "100%"] {
            let escaped = escape(text);
            assert!(!escaped.contains(['\r', '\n']) && escaped.trim() == escaped, "{escaped:?}");
            assert_eq!(unescape(&escaped).as_deref(), Some(text));
        }
        assert_eq!(unescape("%4"), None);
        assert_eq!(unescape("%zz"), None);
    }
}
