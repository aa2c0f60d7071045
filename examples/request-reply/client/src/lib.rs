//! The requester of the request-reply example. One message from the host
//! makes it send three requests, then each ends its own way:
//!
//! 1. `hello` to `service` (100 ms): answered, **completed**;
//! 2. `spin` to `sleepy` (100 ms): sleepy spins, so at 100 ms the callback
//!    gets **timeout** (later sleepy's 1 s time budget traps it: a dead
//!    letter, a crash and a restart);
//! 3. `hi` to `sleepy` (5 s), cancelled at once: **cancelled**. It waits in
//!    sleepy's mailbox behind the spin, so the cancel always comes first.
//!
//! Each callback finds the request's label again in a [`Requests`] map and
//! prints the outcome.

use std::time::Duration;

use wasm_guest::{Callback, Component, HandlerError, Message, Payload, Requests};

/// What each pending request was.
#[derive(Default)]
struct Client {
    labels: Requests<&'static str>,
}

impl Component for Client {
    fn handle_message(&mut self, _sender: &str, _message: Message) -> Result<Payload, HandlerError> {
        let short = Duration::from_millis(100);
        self.labels.request("service", &Payload::raw("hello"), short, "hello to service")?;
        self.labels.request("sleepy", &Payload::raw("spin"), short, "spin to sleepy")?;
        let id = self.labels.request("sleepy", &Payload::raw("hi"), Duration::from_secs(5), "hi to sleepy")?;
        wasm_guest::cancel(&id)?;
        Ok(Payload::empty())
    }

    fn handle_callback(&mut self, callback: Callback) -> Result<(), HandlerError> {
        let (label, outcome) = self.labels.settle(callback);
        let label = label.unwrap_or("an unknown request");
        match outcome {
            Ok(reply) => println!("{label}: answered {:?}", String::from_utf8_lossy(reply.body())),
            Err(why) => println!("{label}: {why}"),
        }
        Ok(())
    }
}

wasm_guest::export!(Client);
