//! One side of a ping-pong rally, fire-and-forget only.
//!
//! - From the host, a raw text names the peer: start a rally of
//!   `RALLY` (1000) with it by sending it the counter `RALLY` (cbor).
//! - From a component, a counter `n > 0`: send `n - 1` back to the sender
//!   (the host sets `sender`; it cannot be forged, so no configuration says
//!   who the partner is). `n = 0` ends the rally.

use wasm_guest::{Codec, Component, HandlerError, Message, Payload};

/// The length of a rally: `RALLY + 1` messages (RALLY, ..., 1, 0).
const RALLY: u32 = 1000;

/// Rallies played and messages handled by this instance.
#[derive(Default)]
struct Pinger {
    rallies: u32,
}

impl Component for Pinger {
    fn handle_message(&mut self, sender: &str, message: Message) -> Result<Payload, HandlerError> {
        if message.codec() == Codec::Raw {
            let peer = message.text()?;
            self.rallies += 1;
            println!("rally {} with {peer}", self.rallies);
            wasm_guest::send(peer, &Payload::cbor(&RALLY)?)?;
        } else {
            let n: u32 = message.decode()?;
            if n > 0 {
                wasm_guest::send(sender, &Payload::cbor(&(n - 1))?)?;
            }
        }
        Ok(Payload::empty())
    }
}

wasm_guest::export!(Pinger);
