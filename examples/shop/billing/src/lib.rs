//! The shop's payment service: answers [`Charge`] with [`Charged`]. It has a
//! bug on purpose: an item in stock without a price (`glitch`) hits an
//! `expect`, the guest panics, the host answers orders with `target-failed`,
//! and the supervisor restarts billing with fresh state.

use shop_api::{Charge, Charged};
use wasm_guest::{Component, HandlerError, Message, Payload};

/// Price per item, in cents.
fn price(sku: &str) -> Option<u64> {
    match sku {
        "apple" => Some(50),
        "pear" => Some(80),
        "gold" => Some(100_000),
        "banana" => Some(20),
        _ => None,
    }
}

/// Receipts issued by this instance.
#[derive(Default)]
struct Billing {
    receipts: u64,
}

impl Component for Billing {
    fn handle_message(&mut self, _sender: &str, message: Message) -> Result<Payload, HandlerError> {
        let charge: Charge = message.decode()?;
        let unit = price(&charge.sku).expect("every item in stock has a price");
        self.receipts += 1;
        let cents = unit * u64::from(charge.qty);
        println!("order {}: charged {cents} cents, receipt {}", charge.order, self.receipts);
        Ok(Payload::json(&Charged { cents, receipt: self.receipts })?)
    }
}

wasm_guest::export!(Billing);
