//! A responder for the request-reply example: echoes every payload, except
//! the raw text `spin`, on which it loops until the host's time budget traps
//! the call.

use wasm_guest::{Codec, Component, HandlerError, Message, Payload};

/// No state.
#[derive(Default)]
struct Responder;

impl Component for Responder {
    fn handle_message(&mut self, _sender: &str, message: Message) -> Result<Payload, HandlerError> {
        if message.codec() == Codec::Raw && message.body() == b"spin" {
            println!("spinning until the time budget stops me");
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Ok(message.into_payload())
    }
}

wasm_guest::export!(Responder);
