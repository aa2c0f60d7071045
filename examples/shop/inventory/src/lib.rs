//! The shop's stock keeper. Answers [`Reserve`] requests with [`Reserved`]
//! and counts [`View`]s. Vault items (`gold`) need a slow check (300 ms of
//! `std::thread::sleep`, a WASI sleep the host does not block on), longer
//! than the 100 ms orders waits: that order times out.

use std::collections::HashMap;
use std::time::Duration;

use shop_api::{Reserve, Reserved, View};
use wasm_guest::{Component, HandlerError, Message, Payload};

/// Stock per item, and page views.
struct Inventory {
    stock: HashMap<String, u32>,
    views: u64,
}

impl Default for Inventory {
    fn default() -> Self {
        let stock = [("apple", 10), ("pear", 5), ("gold", 1), ("glitch", 3), ("banana", 0)];
        Self { stock: stock.into_iter().map(|(sku, n)| (sku.to_owned(), n)).collect(), views: 0 }
    }
}

impl Component for Inventory {
    fn handle_message(&mut self, sender: &str, message: Message) -> Result<Payload, HandlerError> {
        if sender == "shopper" {
            let view: View = message.decode()?;
            self.views += 1;
            println!("page view {} ({})", self.views, view.sku);
            return Ok(Payload::empty());
        }
        let reserve: Reserve = message.decode()?;
        if reserve.sku == "gold" {
            println!("gold needs a vault check");
            std::thread::sleep(Duration::from_millis(300));
        }
        let left = self.stock.entry(reserve.sku.clone()).or_insert(0);
        let ok = *left >= reserve.qty;
        if ok {
            *left -= reserve.qty;
        }
        println!("reserve {} x{}: {} ({} left)", reserve.sku, reserve.qty, if ok { "held" } else { "short" }, *left);
        Ok(Payload::json(&Reserved { ok, left: *left })?)
    }
}

wasm_guest::export!(Inventory);
