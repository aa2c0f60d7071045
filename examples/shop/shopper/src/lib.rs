//! The shop's customer, driven by the app's injected [`Command`]s: places
//! and cancels orders (requests to orders), browses (fire-and-forget views
//! to inventory, limited by its `[rate]`), and prints what happens to each
//! order when orders' [`OrderUpdate`] arrives.

use std::time::Duration;

use shop_api::{Ack, Command, OrderRequest, OrderUpdate, View};
use wasm_guest::{Callback, Component, HandlerError, Message, MessagingError, Payload};

/// How long orders may take to acknowledge.
const ORDER_TIMEOUT: Duration = Duration::from_secs(2);

/// Counts of what happened.
#[derive(Default)]
struct Shopper {
    confirmed: u32,
    failed: u32,
}

impl Shopper {
    fn command(command: Command) -> Result<Payload, HandlerError> {
        let request = match command {
            Command::Place(order) => OrderRequest::Place(order),
            Command::Cancel(order) => OrderRequest::Cancel { order },
            Command::Browse(pages) => return Self::browse(pages),
        };
        wasm_guest::request("orders", &Payload::json(&request)?, ORDER_TIMEOUT)?;
        Ok(Payload::empty())
    }

    /// Sends `pages` views as fast as it can; the host's rate limit refuses
    /// those above the shopper's budget.
    fn browse(pages: u32) -> Result<Payload, HandlerError> {
        let (mut viewed, mut limited) = (0, 0);
        for page in 0..pages {
            let view = Payload::json(&View { sku: format!("page-{page}") })?;
            match wasm_guest::send("inventory", &view) {
                Ok(()) => viewed += 1,
                Err(MessagingError::RateLimited(_)) => limited += 1,
                Err(other) => return Err(other.into()),
            }
        }
        println!("browsed {viewed} pages; {limited} views refused by the rate limit");
        Ok(Payload::empty())
    }
}

impl Component for Shopper {
    fn handle_message(&mut self, sender: &str, message: Message) -> Result<Payload, HandlerError> {
        if sender == "orders" {
            let update: OrderUpdate = message.decode()?;
            if update.status == "confirmed" {
                self.confirmed += 1;
            } else {
                self.failed += 1;
            }
            println!(
                "order {} {}: {} (so far {} confirmed, {} failed)",
                update.order, update.status, update.detail, self.confirmed, self.failed
            );
            return Ok(Payload::empty());
        }
        Self::command(message.decode()?)
    }

    fn handle_callback(&mut self, callback: Callback) -> Result<(), HandlerError> {
        match callback.outcome() {
            Ok(reply) => {
                let ack: Ack = reply.decode()?;
                println!("order {}: {}", ack.order, ack.status);
            }
            Err(error) => eprintln!("orders did not answer: {error}"),
        }
        Ok(())
    }
}

wasm_guest::export!(Shopper);
