//! The shop's order service. For each [`OrderRequest::Place`] it answers the
//! customer at once ([`Ack`] `accepted`), then walks the order through two
//! requests, remembering each order in a [`Requests`] map until its callback:
//!
//! 1. [`Reserve`] to inventory (100 ms timeout);
//! 2. if the stock is held, [`Charge`] to billing (500 ms timeout);
//! 3. one [`OrderUpdate`] to the customer, `confirmed` or `failed` with the
//!    reason (out of stock, a timeout, a cancellation, billing's crash).
//!
//! [`OrderRequest::Cancel`] cancels an order's pending reservation; its
//! callback then says `cancelled`.

use std::collections::HashMap;
use std::time::Duration;

use shop_api::{Ack, Charge, Charged, Order, OrderRequest, OrderUpdate, Reserve, Reserved};
use wasm_guest::{Callback, Component, HandlerError, Message, Payload, RequestError, RequestId, Requests};

/// How long inventory may take to answer.
const RESERVE_TIMEOUT: Duration = Duration::from_millis(100);
/// How long billing may take to answer.
const CHARGE_TIMEOUT: Duration = Duration::from_millis(500);

/// An order in flight and who placed it.
#[derive(Debug, Clone)]
struct InFlight {
    order: Order,
    customer: String,
}

/// Orders waiting for inventory and for billing.
#[derive(Default)]
struct Orders {
    reservations: Requests<InFlight>,
    charges: Requests<InFlight>,
    /// Order number -> its pending reservation, for cancellation.
    reserving: HashMap<u64, RequestId>,
}

impl Orders {
    fn place(&mut self, order: Order, customer: &str) -> Result<Ack, HandlerError> {
        let reserve = Payload::json(&Reserve { sku: order.sku.clone(), qty: order.qty })?;
        let number = order.order;
        let flight = InFlight { order, customer: customer.to_owned() };
        let id = self.reservations.request("inventory", &reserve, RESERVE_TIMEOUT, flight)?;
        self.reserving.insert(number, id);
        Ok(Ack { order: number, status: "accepted".into() })
    }

    fn cancel(&mut self, order: u64) -> Ack {
        let status = match self.reserving.get(&order) {
            // The callback (with `cancelled`) tells the customer.
            Some(id) if wasm_guest::cancel(id).is_ok() => "cancelling",
            _ => "not-pending",
        };
        Ack { order, status: status.into() }
    }

    /// Tells the customer how `flight` ended.
    fn finish(flight: &InFlight, outcome: Result<String, String>) -> Result<(), HandlerError> {
        let (status, detail) = match outcome {
            Ok(receipt) => ("confirmed", receipt),
            Err(why) => ("failed", why),
        };
        println!("order {} {status}: {detail}", flight.order.order);
        let update = OrderUpdate { order: flight.order.order, status: status.into(), detail };
        wasm_guest::send(&flight.customer, &Payload::json(&update)?)?;
        Ok(())
    }

    fn reserved(&mut self, flight: InFlight, outcome: Result<Message, RequestError>) -> Result<(), HandlerError> {
        self.reserving.remove(&flight.order.order);
        let reserved: Reserved = match outcome {
            Ok(reply) => reply.decode()?,
            Err(RequestError::Cancelled) => return Self::finish(&flight, Err("cancelled by the customer".into())),
            Err(error) => return Self::finish(&flight, Err(format!("inventory: {error}"))),
        };
        if !reserved.ok {
            return Self::finish(&flight, Err(format!("out of stock ({} left)", reserved.left)));
        }
        let order = &flight.order;
        let charge = Payload::json(&Charge { order: order.order, sku: order.sku.clone(), qty: order.qty })?;
        match self.charges.request("billing", &charge, CHARGE_TIMEOUT, flight.clone()) {
            Ok(_) => Ok(()),
            Err(refused) => Self::finish(&flight, Err(format!("billing refused: {refused}"))),
        }
    }

    fn charged(flight: &InFlight, outcome: Result<Message, RequestError>) -> Result<(), HandlerError> {
        match outcome {
            Ok(reply) => {
                let charged: Charged = reply.decode()?;
                Self::finish(flight, Ok(format!("receipt {}, {} cents", charged.receipt, charged.cents)))
            }
            Err(error) => Self::finish(flight, Err(format!("billing: {error}"))),
        }
    }
}

impl Component for Orders {
    fn handle_message(&mut self, sender: &str, message: Message) -> Result<Payload, HandlerError> {
        let ack = match message.decode()? {
            OrderRequest::Place(order) => self.place(order, sender)?,
            OrderRequest::Cancel { order } => self.cancel(order),
        };
        Ok(Payload::json(&ack)?)
    }

    fn handle_callback(&mut self, callback: Callback) -> Result<(), HandlerError> {
        if self.reservations.get(callback.id()).is_some() {
            let (flight, outcome) = self.reservations.settle(callback);
            return flight.map_or(Ok(()), |flight| self.reserved(flight, outcome));
        }
        match self.charges.settle(callback) {
            (Some(flight), outcome) => Self::charged(&flight, outcome),
            (None, _) => Ok(()),
        }
    }
}

wasm_guest::export!(Orders);
