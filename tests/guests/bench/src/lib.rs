//! The messaging bench's guest on the SDK, one wasm for both roles, so the
//! bench can set it beside the hand-written WAT `requester.wat` and
//! `echo.wat` with the same work per message:
//!
//! - from the host, raw `r:TARGET`: `request(TARGET, 64-byte raw payload,
//!   60 s)`, answered with the request id; raw `m:N:TARGET`: `send` the
//!   64-byte payload N times, answered with the number sent;
//! - from a component: the payload echoed back unchanged.
//!
//! `handle_callback` takes the outcome and does nothing else, as the WAT
//! requester does.

use std::time::Duration;

use wasm_guest::{Component, HandlerError, Message, Payload};

/// No state.
#[derive(Default)]
struct Bench;

/// The body of the 64-byte payload (63 bytes after the raw prefix).
const BODY: [u8; 63] = [b'x'; 63];

impl Component for Bench {
    fn handle_message(&mut self, sender: &str, message: Message) -> Result<Payload, HandlerError> {
        if sender != "host" {
            return Ok(message.into_payload());
        }
        let command = message.text()?;
        let payload = Payload::raw(BODY);
        if let Some(target) = command.strip_prefix("r:") {
            let id = wasm_guest::request(target, &payload, Duration::from_secs(60))?;
            return Ok(Payload::raw(id.as_str()));
        }
        if let Some((count, target)) = command.strip_prefix("m:").and_then(|rest| rest.split_once(':')) {
            let count: u32 = count.parse().map_err(|_| HandlerError::new(1, "bad count"))?;
            for _ in 0..count {
                wasm_guest::send(target, &payload)?;
            }
            return Ok(Payload::raw(count.to_string()));
        }
        Ok(message.into_payload())
    }
}

wasm_guest::export!(Bench);
