//! The messaging bench's guest on the SDK, one wasm for both roles, so the
//! bench can set it beside the hand-written WAT `requester.wat` and
//! `echo.wat` with the same work per message:
//!
//! - from the host, raw `r:TARGET`: `request(TARGET, 64-byte raw payload,
//!   60 s)`, answered with the request id; raw `m:N:TARGET`: `send` the
//!   64-byte payload N times, answered with the number sent; raw
//!   `R:N:TARGET`: a request rally driven by the guest, N requests one
//!   after another, each sent from the callback of the one before (as the
//!   WAT requester's `R` command), answered once the first is sent;
//! - from a component: the payload echoed back unchanged.
//!
//! `handle_callback` takes the outcome and, during a rally, sends the next
//! request, as the WAT requester does.

use std::time::Duration;

use wasm_guest::{Callback, Component, HandlerError, Message, Payload};

/// The request rally under way, if any.
#[derive(Default)]
struct Bench {
    /// Requests of the rally still to send, and to whom.
    rally: Option<(u32, String)>,
}

impl Bench {
    /// Sends the rally's next request, if one is due; a refusal ends it.
    fn rally_next(&mut self) -> Result<(), HandlerError> {
        let Some((left, target)) = self.rally.as_mut() else { return Ok(()) };
        if *left == 0 {
            self.rally = None;
            return Ok(());
        }
        *left -= 1;
        let sent = wasm_guest::request(target, &Payload::raw(BODY), Duration::from_secs(60));
        if sent.is_err() {
            self.rally = None;
        }
        sent.map(drop).map_err(Into::into)
    }
}

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
        if let Some((count, target)) = command.strip_prefix("R:").and_then(|rest| rest.split_once(':')) {
            let count: u32 = count.parse().map_err(|_| HandlerError::new(1, "bad count"))?;
            self.rally = Some((count, target.to_owned()));
            self.rally_next()?;
            return Ok(Payload::raw(b""));
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

    fn handle_callback(&mut self, callback: Callback) -> Result<(), HandlerError> {
        drop(callback);
        self.rally_next()
    }
}

wasm_guest::export!(Bench);
